"""What a sandboxed process applies to itself, and the report of which protections are on.

The gateway decides a `Policy` per process from the sandbox mode, what this machine allows
(`Capabilities`) and the endpoint's spec; the process applies it at start-up, before any tenant
code runs (`enter.py`). The policy crosses the exec as JSON in `COLDBREW_SANDBOX_POLICY`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum

POLICY_ENV = "COLDBREW_SANDBOX_POLICY"

#: Per-account uids (and gids of the same number) are taken from this range when the server
#: runs as root: far above any uid a distribution hands out, so no /etc/passwd entry is needed.
UID_BASE = 1_600_000_000
UID_SPAN = 100_000_000


class SandboxMode(StrEnum):
    """How hard the server insists on isolation (`coldbrew serve --sandbox`)."""

    STRICT = "strict"  # refuse to start when any protection is unavailable
    STANDARD = "standard"  # apply what the kernel allows; report the rest as off
    OFF = "off"  # tenant code runs as the server does (an explicit choice, with a warning)


@dataclass(frozen=True)
class Layer:
    """One protection in the start-up report: on, or off and why."""

    name: str
    on: bool
    detail: str

    def line(self) -> str:
        return f"sandbox: {self.name}: {'on' if self.on else 'OFF'} ({self.detail})"


@dataclass(frozen=True)
class Capabilities:
    """What this machine lets the server do for tenant processes."""

    root: bool
    landlock_abi: int
    userns: bool  # unprivileged user + network namespaces (non-root runs)
    cgroups: bool  # writable cgroup v1 memory, pids and cpu hierarchies
    seccomp: bool

    def layers(self, mode: SandboxMode) -> list[Layer]:
        """The protections tenant processes get, in the order the start-up log prints them."""
        if mode is SandboxMode.OFF:
            why = "--sandbox off: tenant code runs with the server's user, files and network"
            return [Layer(name, False, why) for name in LAYER_NAMES]
        not_root = "the server does not run as root"
        no_cg = "no writable cgroup v1 memory/pids/cpu hierarchy" if self.root else not_root
        netns = self.root or self.userns
        return [
            Layer("environment", True, "only platform variables and the endpoint's secrets"),
            Layer(
                "uid",
                self.root,
                "one unprivileged uid per account; /proc shows only its own processes"
                if self.root
                else not_root,
            ),
            Layer(
                "filesystem",
                self.landlock_abi > 0,
                f"Landlock ABI {self.landlock_abi}: read-only system and artifact, own scratch"
                if self.landlock_abi
                else "Landlock is not available in this kernel",
            ),
            Layer(
                "network",
                netns,
                "own network namespace with only loopback (egress per endpoint)"
                if netns
                else "no user/network namespaces allowed",
            ),
            Layer(
                "unix-sockets",
                self.seccomp,
                "seccomp: no new unix sockets or namespaces" if self.seccomp else "no seccomp",
            ),
            Layer(
                "memory",
                True,
                "cgroup memory limit per worker" if self.cgroups else "rlimit on data size",
            ),
            Layer("processes", self.cgroups, "cgroup pids limit" if self.cgroups else no_cg),
            Layer("open-files", True, "RLIMIT_NOFILE"),
            Layer("cpu-share", self.cgroups, "cgroup cpu shares" if self.cgroups else no_cg),
            Layer(
                "kill-all",
                self.cgroups,
                "every process in the worker's cgroup dies with it"
                if self.cgroups
                else f"{no_cg}; process group and parent-death signal only",
            ),
            Layer(
                "scratch-size",
                self.root or self.userns,
                "private tmpfs scratch and /dev/shm with a size bound"
                if self.root or self.userns
                else "no mount namespace; per-file size rlimit only",
            ),
            Layer("no-new-privs", True, "PR_SET_NO_NEW_PRIVS and PR_SET_PDEATHSIG"),
        ]


LAYER_NAMES = (
    "environment",
    "uid",
    "filesystem",
    "network",
    "unix-sockets",
    "memory",
    "processes",
    "open-files",
    "cpu-share",
    "kill-all",
    "scratch-size",
    "no-new-privs",
)


def account_uid(account: str) -> int:
    """The account's own uid (and gid), the same on every start and every node."""
    digest = int.from_bytes(hashlib.sha256(account.encode()).digest()[:8], "big")
    return UID_BASE + digest % UID_SPAN


@dataclass(frozen=True)
class Policy:
    """What one process applies to itself before running tenant code."""

    workdir: str  # where it runs: its artifact (or, as root, a read-only view of it)
    scratch: str  # its private writable directory (HOME, TMPDIR)
    home: str  # $COLDBREW_HOME: never granted, even when a system path contains it
    strict: bool = False  # a layer that fails to apply is fatal
    uid: int | None = None  # root: drop to this uid/gid
    userns: bool = False  # non-root: a user namespace (needed for the network namespace)
    netns: bool = False
    artifact: str | None = None  # root: bind this read-only onto workdir (private mount ns)
    scratch_mb: int = 0  # root: a tmpfs of this size on scratch
    landlock: bool = False
    deny_tcp: bool = False  # no network namespace: Landlock refuses TCP connect/bind
    seccomp: bool = False
    deny_unix: bool = False
    devices: tuple[str, ...] = ()  # GPU device files, read/write/ioctl
    rlimits: dict[str, int] = field(default_factory=dict)  # RLIMIT_* name without prefix
    cgroup_procs: tuple[str, ...] = ()  # root: join these cgroups first
    memory_mb: int = 0  # for the error message when the limit is hit

    def to_env(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_env(cls, text: str) -> Policy:
        raw = json.loads(text)
        raw["devices"] = tuple(raw.get("devices", ()))
        raw["cgroup_procs"] = tuple(raw.get("cgroup_procs", ()))
        return cls(**raw)
