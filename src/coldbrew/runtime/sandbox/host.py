"""The gateway's side of the sandbox: what this machine allows, and one `Box` per tenant process.

A box is the per-process part: a private scratch directory, a cgroup with the endpoint's limits
(as root), the clean environment and the `Policy` the process applies to itself. Boxes are
prepared before the process starts and closed after it exited, which kills whatever it left
behind and removes its groups.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coldbrew.errors import SandboxUnavailable
from coldbrew.runtime.sandbox import cgroups, landlock, seccomp
from coldbrew.runtime.sandbox.line import GatewayLine
from coldbrew.runtime.sandbox.policy import (
    POLICY_ENV,
    Capabilities,
    Layer,
    Policy,
    SandboxMode,
    account_uid,
)

log = logging.getLogger("coldbrew.sandbox")

#: What a tenant process inherits from the server's environment: where programs and the
#: platform's packages are, the locale, thread counts and offline switches; no secrets.
PASSED_ENV = (
    "PATH",
    "PYTHONPATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)
_USERNS_PROBE = (
    "import ctypes,sys;sys.exit(ctypes.CDLL(None,use_errno=True).unshare(0x10000000|0x40000000)!=0)"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def detect() -> Capabilities:
    """Probe the kernel once at start-up."""
    root = os.geteuid() == 0
    userns = False
    if not root:
        probe = subprocess.run([sys.executable, "-c", _USERNS_PROBE], check=False, timeout=10)
        userns = probe.returncode == 0
    return Capabilities(
        root=root,
        landlock_abi=landlock.abi_version(),
        userns=userns,
        cgroups=root and cgroups.available(),
        seccomp=seccomp.available(),
    )


@dataclass(frozen=True)
class BoxSpec:
    """What one tenant process is: whose, running what, with which limits."""

    name: str  # unique per process: a worker id, "template-…", "inspect-…"
    account: str
    artifact_dir: Path
    memory_mb: int
    network: bool = False  # the endpoint opted in to egress
    gpu: bool = False


class Box:
    """One tenant process's scratch, cgroup and policy."""

    def __init__(self, sandbox: Sandbox, spec: BoxSpec, policy: Policy | None) -> None:
        self.sandbox = sandbox
        self.spec = spec
        self.policy = policy
        self.cgroup: cgroups.Cgroup | None = None
        self.dir: Path | None = None
        self.line: GatewayLine | None = None  # its way to the gateway from its namespace

    @property
    def cwd(self) -> Path:
        """Where the process starts: its own empty box, not the artifact, so no tenant file can
        shadow a module the runtime imports before the sandbox is on (`python -m` puts the
        working directory first on sys.path); the policy moves it to `workdir`."""
        return self.dir if self.dir is not None else self.spec.artifact_dir

    @property
    def workdir(self) -> Path:
        return Path(self.policy.workdir) if self.policy else self.spec.artifact_dir

    def env(self, runtime: dict[str, str], secrets: dict[str, str]) -> dict[str, str]:
        """The process's whole environment: passed platform variables, what the runtime needs,
        the endpoint's secrets, and the policy. Off: the server's environment as before."""
        if self.policy is None:
            return {**os.environ, **runtime, **secrets}
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.update(HOME=self.policy.scratch, TMPDIR=self.policy.scratch)
        env.update(secrets)
        env.update(runtime)
        env[POLICY_ENV] = self.policy.to_env()
        gateway = self.sandbox.gateway
        if self.policy.netns and gateway is not None:
            self.line = self.line or GatewayLine(*gateway)
            env.update(self.line.env())
        return env

    @property
    def pass_fds(self) -> tuple[int, ...]:
        """Descriptors the process must inherit (its line), after `env()`."""
        if self.line is None or self.line.child_fd is None:
            return ()
        return (self.line.child_fd,)

    def started(self) -> None:
        """The process is running: the gateway drops its copy of the process's end."""
        if self.line is not None:
            self.line.started()

    def adopt(self, pid: int) -> None:
        """A forked worker: move it from its template's groups into its own."""
        if self.cgroup is not None:
            self.cgroup.adopt(pid)

    def exit_reason(self) -> str | None:
        """Why the process died, when a sandbox limit killed it."""
        if self.cgroup is not None and self.cgroup.oom_killed():
            return f"the worker exceeded its memory limit of {self.spec.memory_mb} MB"
        return None

    def kill_all(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill_all()

    def close(self) -> None:
        """Kill what the process left behind and remove its groups and scratch."""
        if self.line is not None:
            self.line.close()
            self.line = None
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class Sandbox:
    """Decides each tenant process's policy from the mode and the machine."""

    def __init__(
        self,
        mode: SandboxMode,
        home: Path,
        scratch_mb: int = 1024,
        pids_max: int = 512,
        open_files: int = 4096,
        caps: Capabilities | None = None,
        gateway: tuple[str, int] | None = None,
    ) -> None:
        self.mode = mode
        #: where sandboxed processes reach the gateway from their namespace (host, port)
        self.gateway = gateway
        self.home = home
        self.scratch_mb = scratch_mb
        self.pids_max = pids_max
        self.open_files = open_files
        if caps is None:  # probing starts a process: not for a sandbox that is off
            caps = (
                detect()
                if mode is not SandboxMode.OFF
                else Capabilities(False, 0, False, False, False)
            )
        self.caps = caps
        self.layers: list[Layer] = self.caps.layers(mode)
        # per home and per server process: a second server on the same home (one that fails
        # to bind, say) must not touch the first one's boxes
        self._home_tag = hashlib.sha256(str(home).encode()).hexdigest()[:10]
        self.tag = f"{self._home_tag}-{os.getpid()}"
        self.root = Path(tempfile.gettempdir()) / f"coldbrew-{self.tag}"
        self._artifacts_opened: set[Path] = set()
        if mode is SandboxMode.STRICT:
            missing = [layer for layer in self.layers if not layer.on]
            if missing:
                raise SandboxUnavailable(
                    "--sandbox strict: "
                    + "; ".join(
                        f"{layer.name} is unavailable ({layer.detail})" for layer in missing
                    ),
                    hint="run as root on a kernel with Landlock and cgroups, or use "
                    "--sandbox standard to run with what this machine allows",
                )
        if mode is not SandboxMode.OFF:
            self._reset_root()

    @property
    def on(self) -> bool:
        return self.mode is not SandboxMode.OFF

    @property
    def makes_groups(self) -> bool:
        """Whether a box comes with cgroups (made by writing to /sys/fs/cgroup: slow-ish)."""
        return self.on and self.caps.cgroups

    def report(self) -> dict[str, object]:
        """What `/healthz` shows: the mode and each protection."""
        return {
            "mode": str(self.mode),
            "protections": {layer.name: layer.on for layer in self.layers},
        }

    def log_layers(self) -> None:
        """One start-up line per protection: on, or off and why."""
        if self.mode is SandboxMode.OFF:
            log.warning("sandbox OFF (--sandbox off): tenant code runs as the server does")
        for layer in self.layers:
            (log.info if layer.on else log.warning)(layer.line())

    def close(self) -> None:
        """Remove this server's cgroups and box root once its processes are gone (at stop), so
        that servers which come and go (tests, restarts on other homes) leave nothing behind."""
        if self.on:
            self._remove(self.tag)

    def _remove(self, tag: str) -> None:
        """Remove a server's cgroups and box root (`coldbrew-<tag>`)."""
        if self.caps.cgroups:
            cgroups.remove_tree(tag)
        shutil.rmtree(self.root.parent / f"coldbrew-{tag}", ignore_errors=True)

    def _reset_root(self) -> None:
        """Remove what servers of this home that are gone left behind (a kill -9), then make
        this server's root."""
        prefix = f"{self._home_tag}-"
        stale = {
            p.name.removeprefix("coldbrew-") for p in self.root.parent.glob(f"coldbrew-{prefix}*")
        }
        if self.caps.cgroups:
            stale |= cgroups.tags(prefix)
        for tag in stale:
            pid = tag.removeprefix(prefix)
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            self._remove(tag)
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)

    def box(self, spec: BoxSpec) -> Box:
        """Prepare a process's box (call `close()` once the process is gone)."""
        if not self.on:
            return Box(self, spec, None)
        box = Box(self, spec, None)
        box.dir = self.root / spec.name
        shutil.rmtree(box.dir, ignore_errors=True)
        box.dir.mkdir()
        os.chmod(box.dir, 0o711 if self.caps.root else 0o700)  # whatever the umask (077)
        scratch = box.dir / "scratch"
        scratch.mkdir(mode=0o700)
        workdir = spec.artifact_dir
        uid = None
        if self.caps.root:
            uid = account_uid(spec.account)
            os.chown(scratch, uid, uid)
            workdir = box.dir / "app"
            workdir.mkdir()
            self._share_artifact(spec.artifact_dir, uid)
        if self.caps.cgroups:
            box.cgroup = cgroups.Cgroup(self.tag, spec.name)
            box.cgroup.create(spec.memory_mb, self.pids_max, 1024)
        box.policy = self._policy(spec, workdir, scratch, uid, box.cgroup)
        return box

    def fork_box(self, spec: BoxSpec) -> Box:
        """A forked worker's box: only its own cgroup (it inherits the rest from its template)."""
        box = Box(self, spec, None)
        if self.makes_groups:
            box.cgroup = cgroups.Cgroup(self.tag, spec.name)
            box.cgroup.create(spec.memory_mb, self.pids_max, 1024)
        return box

    def _share_artifact(self, artifact: Path, uid: int) -> None:
        """As root, the artifact belongs to its account's uid, readable by it and no other uid
        (mode 0700/0600: nothing under the home is open to group or others). Owning it gives
        the tenant nothing more: its view is a read-only bind mount and Landlock grants it
        read-only, so neither writes nor chmod can land."""
        if artifact in self._artifacts_opened or not artifact.is_dir():
            return
        for path in [artifact, *artifact.rglob("*")]:
            with contextlib.suppress(OSError):
                if path.is_symlink():
                    continue
                os.chown(path, uid, uid)
                mode = path.stat().st_mode & 0o700
                os.chmod(path, mode | (0o500 if path.is_dir() else 0o400))
        self._artifacts_opened.add(artifact)

    def _policy(
        self,
        spec: BoxSpec,
        workdir: Path,
        scratch: Path,
        uid: int | None,
        group: cgroups.Cgroup | None,
    ) -> Policy:
        caps = self.caps
        netns = not spec.network and (caps.root or caps.userns)
        rlimits = {"NOFILE": self.open_files, "CORE": 0}
        if group is None:  # no cgroup: the data-size rlimit bounds memory instead
            rlimits["DATA"] = spec.memory_mb << 20
        if not caps.root and not caps.userns:
            rlimits["FSIZE"] = self.scratch_mb << 20
        return Policy(
            workdir=str(workdir),
            scratch=str(scratch),
            home=str(self.home),
            strict=self.mode is SandboxMode.STRICT,
            uid=uid,
            userns=not caps.root and caps.userns,
            netns=netns,
            artifact=str(spec.artifact_dir) if uid is not None else None,
            scratch_mb=self.scratch_mb if uid is not None or caps.userns else 0,
            landlock=caps.landlock_abi > 0,
            deny_tcp=not spec.network and not netns,
            seccomp=caps.seccomp,
            deny_unix=not spec.network,
            devices=tuple(sorted(glob.glob("/dev/nvidia*") + glob.glob("/dev/dri/*")))
            if spec.gpu
            else (),
            rlimits=rlimits,
            cgroup_procs=group.procs if group else (),
            memory_mb=spec.memory_mb,
        )
