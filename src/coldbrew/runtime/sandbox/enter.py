"""The sandbox, applied by a tenant process to itself before it imports any tenant code.

Order matters: join the cgroups and take namespaces and mounts while still privileged, open the
paths Landlock will grant (as root they may lie behind directories the tenant uid cannot
traverse), drop to the account's uid, forbid new privileges, then install seccomp, Landlock and
rlimits. Everything it forks or executes inherits all of it, which is why a template that did
this before loading the model hands a sandboxed worker to every fork for free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from coldbrew.runtime.sandbox import _libc, landlock, seccomp
from coldbrew.runtime.sandbox.line import FORWARD_FD_ENV, FORWARD_PORT_ENV, start_forwarder
from coldbrew.runtime.sandbox.policy import POLICY_ENV, Policy

#: Read-only system paths (those that exist); the interpreter, its environment and sys.path
#: are added per process.
SYSTEM_PATHS = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
)
SHM = "/dev/shm"
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 1


class SandboxError(RuntimeError):
    """A protection could not be applied in strict mode."""


#: The policy this process entered (a worker process has exactly one).
_active: list[Policy] = []


def limit_message(exc: BaseException) -> str | None:
    """The sentence for a job whose code hit the sandbox's memory rlimit (MemoryError)."""
    if isinstance(exc, MemoryError) and _active and _active[0].memory_mb:
        return f"the worker exceeded its memory limit of {_active[0].memory_mb} MB"
    return None


def enter_from_env() -> Policy | None:
    """Apply the policy the gateway put in the environment, if any (and remove it); the policy
    already applied when `runtime/boot.py` entered it first."""
    text = os.environ.pop(POLICY_ENV, None)
    fd = os.environ.pop(FORWARD_FD_ENV, None)
    port = os.environ.pop(FORWARD_PORT_ENV, None)
    if not text:
        return _active[0] if _active else None
    policy = Policy.from_env(text)
    enter(policy)
    if fd is not None and port is not None:
        _step(policy, "gateway line", lambda: start_forwarder(int(fd), int(port)))
    return policy


def enter(policy: Policy) -> None:
    """Apply every layer of `policy` to this process (see the module docstring for the order)."""
    _step(policy, "cgroups", lambda: _join_cgroups(policy))
    _step(policy, "namespaces", lambda: _namespaces(policy))
    _step(policy, "mounts", lambda: _mounts(policy))
    if policy.uid is not None and policy.landlock:
        _step(policy, "mounts", lambda: expose([p for p, _ in granted_paths(policy)], policy))
    rules = _open_rules(policy) if policy.landlock else []
    os.chdir(policy.workdir)
    if policy.uid is not None:
        _step(policy, "uid", lambda: _drop_to(policy.uid or 0))
    _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if policy.seccomp:
        _step(policy, "seccomp", lambda: seccomp.install(policy.deny_unix))
    if policy.landlock:
        _step(policy, "landlock", lambda: landlock.restrict(rules, policy.deny_tcp))
    for fd, _ in rules:
        os.close(fd)
    _step(policy, "rlimits", lambda: _rlimits(policy.rlimits))
    _active[:] = [policy]


def _step(policy: Policy, name: str, apply: Callable[[], None]) -> None:
    try:
        apply()
    except OSError as exc:
        if policy.strict:
            raise SandboxError(f"sandbox layer {name!r} could not be applied: {exc}") from exc
        sys.stderr.write(f"coldbrew sandbox: {name} not applied: {exc}\n")


def _join_cgroups(policy: Policy) -> None:
    for procs in policy.cgroup_procs:
        with open(procs, "w") as out:
            out.write(str(os.getpid()))


def _namespaces(policy: Policy) -> None:
    if policy.uid is not None:  # root: mounts need a private mount namespace
        flags = _libc.CLONE_NEWIPC  # System V shared memory and queues are not shared either
        flags |= _libc.CLONE_NEWNS if (policy.artifact or policy.scratch_mb) else 0
        flags |= _libc.CLONE_NEWNET if policy.netns else 0
        _libc.unshare(flags)
    elif policy.userns:  # its own mount namespace too: scratch and /dev/shm become tmpfs
        uid, gid = os.getuid(), os.getgid()
        flags = _libc.CLONE_NEWUSER | _libc.CLONE_NEWNS | _libc.CLONE_NEWIPC
        _libc.unshare(flags | (_libc.CLONE_NEWNET if policy.netns else 0))
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    if policy.netns:
        loopback_up()


def loopback_up() -> None:
    """A new network namespace's `lo` is down; bring it up so 127.0.0.1 works inside."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        (flags,) = struct.unpack("16xH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _mounts(policy: Policy) -> None:
    """Size-bounded private tmpfs on its scratch and on /dev/shm (shared memory is otherwise a
    directory every process on the machine shares), and, as root, its artifact read-only."""
    if not policy.scratch_mb or (policy.uid is None and not policy.userns):
        return
    _libc.mount("none", "/", None, _libc.MS_REC | _libc.MS_PRIVATE, None)
    uid = os.getuid() if policy.uid is None else policy.uid
    options = f"size={policy.scratch_mb}m,mode=0700,uid={uid},gid={uid}"
    flags = _libc.MS_NOSUID | _libc.MS_NODEV
    _libc.mount("tmpfs", policy.scratch, "tmpfs", flags, options)
    if os.path.isdir(SHM):
        _libc.mount("tmpfs", SHM, "tmpfs", flags, options)
    if policy.uid is not None:  # a /proc that shows only its own uid's processes
        proc_flags = flags | _libc.MS_NOEXEC
        _libc.mount("proc", "/proc", "proc", proc_flags, "hidepid=invisible")
    if policy.artifact:
        _libc.mount(policy.artifact, policy.workdir, None, _libc.MS_BIND | _libc.MS_REC, None)
        flags = _libc.MS_BIND | _libc.MS_REMOUNT | _libc.MS_RDONLY | _libc.MS_NOSUID
        _libc.mount("none", policy.workdir, None, flags | _libc.MS_NODEV, None)


def _traversable(path: str, uid: int) -> bool:
    info = os.stat(path)
    if info.st_uid == uid:
        return bool(info.st_mode & 0o100)
    if info.st_gid == uid:
        return bool(info.st_mode & 0o010)
    return bool(info.st_mode & 0o001)


def _blocking(paths: list[str], uid: int) -> dict[str, set[str]]:
    """Directories the uid cannot pass on the way to `paths`: {dir: names needed inside}."""
    blocked: dict[str, set[str]] = {}
    for path in paths:
        parts = Path(path).parts
        for depth in range(1, len(parts) - 1):
            ancestor = str(Path(*parts[: depth + 1]))
            if not os.path.isdir(ancestor):
                break
            if not _traversable(ancestor, uid):
                blocked.setdefault(ancestor, set()).add(parts[depth + 1])
                break
    return blocked


def expose(paths: list[str], policy: Policy) -> None:
    """As root, in the private mount namespace: make `paths` reachable by the tenant uid when a
    directory on the way is closed to it (a Python under /root, mode 0700). The closed directory
    is covered with an empty tmpfs holding only the entries needed, bound back from the
    original; everything else in it (another home, keys) is not even there."""
    uid = policy.uid
    assert uid is not None
    hold = str(Path(policy.scratch).parent / "hold")
    os.makedirs(hold, mode=0o700, exist_ok=True)
    _libc.mount("tmpfs", hold, "tmpfs", _libc.MS_NOSUID | _libc.MS_NODEV, "mode=0700")
    for round_ in range(8):  # each round opens one more level
        blocked = _blocking([p for p in paths if os.path.exists(p)], uid)
        if not blocked:
            return
        for directory, names in sorted(blocked.items()):
            for name in sorted(names):
                _bind_into(os.path.join(directory, name), os.path.join(hold, f"{round_}-{name}"))
            _libc.mount("tmpfs", directory, "tmpfs", _libc.MS_NOSUID | _libc.MS_NODEV, "mode=0755")
            for name in sorted(names):
                _bind_into(os.path.join(hold, f"{round_}-{name}"), os.path.join(directory, name))


def _bind_into(source: str, target: str) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        with open(target, "a"):
            pass
    _libc.mount(source, target, None, _libc.MS_BIND | _libc.MS_REC, None)


def granted_paths(policy: Policy) -> list[tuple[str, int]]:
    """Every path this process may use and how; never one that contains $COLDBREW_HOME."""
    read_only = [*SYSTEM_PATHS, sys.prefix, sys.base_prefix, sys.exec_prefix]
    read_only += [entry for entry in sys.path if entry and os.path.isabs(entry)]
    home = os.path.realpath(policy.home)
    paths: dict[str, int] = {}
    for path in read_only:
        real = os.path.realpath(path)
        if _contains(real, home) or _contains(home, real):
            continue  # the home itself, an ancestor (a repo checkout), or inside it
        paths[real] = landlock.READ
    for path in _environment_paths(home):
        paths[path] = landlock.READ
    paths[os.path.realpath(policy.workdir)] = landlock.READ
    paths[os.path.realpath(policy.scratch)] = landlock.WRITE
    paths["/dev/null"] = landlock.WRITE
    if policy.scratch_mb and (policy.uid is not None or policy.userns):
        paths[SHM] = landlock.WRITE  # its own tmpfs (`_mounts`)
    for device in policy.devices:
        paths[device] = landlock.DEVICE
    return sorted(paths.items())


def _environment_paths(home: str) -> list[str]:
    """A process of a per-version environment (`backends/envs.py`) reads its venv, which lies in
    `$COLDBREW_HOME/envs/`, and the coldbrew package its path links to. The venv is where the
    interpreter was started from (the gateway chose it; no tenant code has run yet)."""
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    if not os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        return []
    real = os.path.realpath(venv)
    if not _contains(os.path.join(home, "envs"), real):
        return []  # the server's own venv is granted as sys.prefix; no other in the home
    package = os.path.dirname(os.path.realpath(_libc.__file__))  # coldbrew/runtime/sandbox
    return [real, os.path.dirname(os.path.dirname(package))]


def _contains(parent: str, child: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def _open_rules(policy: Policy) -> list[tuple[int, int]]:
    rules = []
    for path, access in granted_paths(policy):
        with contextlib.suppress(OSError):  # absent on this machine
            rules.append((os.open(path, os.O_PATH | os.O_CLOEXEC), access))
    return rules


def _drop_to(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _rlimits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        kind = getattr(resource, f"RLIMIT_{name}")
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, value))
