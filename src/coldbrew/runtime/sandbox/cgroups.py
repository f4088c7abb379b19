"""coldbrew's own cgroup v1 groups: limits per worker, and killing everything a worker started.

Each sandboxed process (or forked worker) gets a group named after it under
`/sys/fs/cgroup/{memory,pids,cpu}/coldbrew-<tag>/`, where `<tag>` names this server's home, so
two servers on one machine never touch each other's groups. Processes stay in their group
whatever they do (`setsid`, double forks), so `kill_all` reaches a detached grandchild too. Only
groups this module created are written or removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
_KILL_ROUNDS = 50


def available() -> bool:
    """Whether the v1 memory, pids and cpu hierarchies are mounted and writable here."""
    return all(os.access(CGROUP_ROOT / c / "cgroup.procs", os.W_OK) for c in CONTROLLERS)


class Cgroup:
    """One process's groups in the memory, pids and cpu hierarchies."""

    def __init__(self, tag: str, name: str) -> None:
        self.paths = [CGROUP_ROOT / c / f"coldbrew-{tag}" / name for c in CONTROLLERS]
        self.memory_mb = 0

    @property
    def procs(self) -> tuple[str, ...]:
        return tuple(str(path / "cgroup.procs") for path in self.paths)

    def create(self, memory_mb: int, pids: int, cpu_shares: int) -> None:
        """Make the groups and set their limits (memory without swap, as Lambda's is)."""
        for path in self.paths:
            path.mkdir(parents=True, exist_ok=True)
        memory, pid_group, cpu = self.paths
        if memory_mb:
            self.memory_mb = memory_mb
            (memory / "memory.limit_in_bytes").write_text(str(memory_mb << 20))
            with contextlib.suppress(OSError):  # no swap accounting on this kernel
                (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_mb << 20))
            with contextlib.suppress(OSError):
                (memory / "memory.swappiness").write_text("0")
        (pid_group / "pids.max").write_text(str(pids))
        (cpu / "cpu.shares").write_text(str(cpu_shares))

    def adopt(self, pid: int) -> None:
        """Move a running process in (a forked worker, from the gateway side)."""
        for procs in self.procs:
            with contextlib.suppress(OSError), open(procs, "w") as out:  # gone: nothing to move
                out.write(str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs:
            with contextlib.suppress(OSError):
                found.update(int(line) for line in Path(procs).read_text().split())
        return found

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process here for passing the memory limit."""
        try:
            text = (self.paths[0] / "memory.oom_control").read_text()
        except OSError:
            return False
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        if counts.get("oom_kill", "0") != "0":
            return True
        with contextlib.suppress(OSError, ValueError):
            return (
                int((self.paths[0] / "memory.failcnt").read_text()) > 0
                and counts.get("under_oom", "0") != "0"
            )
        return False

    def kill_all(self) -> None:
        """SIGKILL every process in the groups until none is left (new forks included)."""
        for _ in range(_KILL_ROUNDS):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Kill what is left and remove the groups (a group with processes cannot go)."""
        self.kill_all()
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError, OSError):
                path.rmdir()


def tags(prefix: str) -> set[str]:
    """The tags of groups under `coldbrew-<prefix>…` (this home's servers, past and present)."""
    found = set()
    for controller in CONTROLLERS:
        for top in (CGROUP_ROOT / controller).glob(f"coldbrew-{prefix}*"):
            found.add(top.name.removeprefix("coldbrew-"))
    return found


def remove_tree(tag: str) -> None:
    """Remove this server's leftover groups (a previous run that was killed)."""
    for controller in CONTROLLERS:
        top = CGROUP_ROOT / controller / f"coldbrew-{tag}"
        if not top.is_dir():
            continue
        for child in top.iterdir():
            if child.is_dir():
                group = Cgroup(tag, child.name)
                group.remove()
        with contextlib.suppress(OSError):
            top.rmdir()
