"""Processes that die with their parent: templates and workers a Ray node agent started.

A worker forked on a Ray node must not outlive the agent that forked it: when the node is lost
(its raylet and agent killed), an orphaned worker would still hold its socket to the gateway and
answer jobs that the gateway has already requeued elsewhere (measured: it did). So a process
started with `DIE_WITH_PARENT_ENV` set asks the kernel for SIGKILL when its parent exits
(`PR_SET_PDEATHSIG`), and a template passes the same to every child it forks. The sandbox sets
it too (`sandbox/enter.py`); this covers processes that run unsandboxed.
"""

from __future__ import annotations

import os
import signal
import sys

#: Set to "1" in a template's or worker's environment: it dies when its parent does.
DIE_WITH_PARENT_ENV = "COLDBREW_DIE_WITH_PARENT"
#: The pid the process expects as its parent: if that one is gone before the request is made
#: (a race the kernel cannot see), the process exits at once.
PARENT_PID_ENV = "COLDBREW_PARENT_PID"


def wanted() -> bool:
    """Whether this process was asked to die with its parent."""
    return os.environ.get(DIE_WITH_PARENT_ENV) == "1"


def die_with_parent(parent_pid: int | None = None) -> None:
    """SIGKILL this process when its parent exits; exit now if `parent_pid` (else the one in
    `PARENT_PID_ENV`) is no longer the parent."""
    if not sys.platform.startswith("linux"):
        return
    from coldbrew.runtime.sandbox import _libc

    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid is None:
        raw = os.environ.get(PARENT_PID_ENV, "")
        parent_pid = int(raw) if raw.isdigit() else None
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def from_env() -> None:
    """At the start of a template or worker: die with the parent when asked to."""
    if wanted():
        die_with_parent()
