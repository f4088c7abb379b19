"""A small seccomp filter: no new namespaces, and (without network) no new unix sockets.

Landlock does not cover connecting to a unix socket by path, so a sandbox without network would
still reach a database's socket under /run (PostgreSQL, MariaDB, Redis). The filter refuses
`socket(AF_UNIX, …)` (a worker's channel is an inherited socket pair; `socketpair` stays allowed),
`unshare`, and `clone` with namespace flags (`clone3` answers ENOSYS so libc falls back to
`clone`), each with EPERM rather than a kill, so libraries see an ordinary error.

It also refuses syscalls that widen the kernel surface or step around the rules above, as
Docker's default profile does: io_uring (an `IORING_OP_SOCKET` request makes a unix socket
without the `socket` syscall, which reached PostgreSQL's socket in the hostile-tenant test),
`bpf`, `perf_event_open`, `userfaultfd`, the kernel keyring, `setns`, `mount`, `umount2`,
`pivot_root` and `open_by_handle_at`. Every mount the sandbox needs happens before the filter.
"""

from __future__ import annotations

import ctypes
import errno

from coldbrew.runtime.sandbox import _libc

_SECCOMP_MODE_FILTER = 2
_LD_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_AF_UNIX = 1
_X32 = 0x40000000
_NS_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET

#: machine -> (audit arch, socket, unshare, clone, clone3)
_SYSCALLS = {
    "x86_64": (0xC000003E, 41, 272, 56, 435),
    "aarch64": (0xC00000B7, 198, 97, 220, 435),
}

#: machine -> syscalls refused outright with EPERM: io_uring_setup/enter/register (425-427 on
#: both), bpf, perf_event_open, userfaultfd, add_key, request_key, keyctl, setns, mount,
#: umount2, pivot_root, open_by_handle_at
_DENIED = {
    "x86_64": (425, 426, 427, 321, 298, 323, 248, 249, 250, 308, 165, 166, 155, 304),
    "aarch64": (425, 426, 427, 280, 241, 282, 217, 218, 219, 268, 40, 39, 41, 265),
}


class _Filter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Filter))]


def available() -> bool:
    return _libc.MACHINE in _SYSCALLS


#: (code or label, jump-if-true, jump-if-false, k); jumps may name labels.
Line = tuple[int | str, int | str, int | str, int]


def program(deny_unix: bool) -> list[Line]:
    """The filter as (code, jump-if-true, jump-if-false, k); jumps name labels."""
    arch, sock, unshare, clone, clone3 = _SYSCALLS[_libc.MACHINE]
    return [
        (_LD_ABS, 0, 0, 4),  # arch
        (_JEQ, 0, "allow", arch),
        (_LD_ABS, 0, 0, 0),  # syscall number
        (_JGE, "eperm", 0, _X32),
        (_JEQ, "socket", 0, sock),
        (_JEQ, "eperm", 0, unshare),
        *[(_JEQ, "eperm", 0, number) for number in _DENIED[_libc.MACHINE]],
        (_JEQ, "enosys", 0, clone3),
        (_JEQ, "clone", "allow", clone),
        ("socket", 0, 0, 16),  # label: args[0] (low half)
        (_JEQ, "eperm" if deny_unix else "allow", "allow", _AF_UNIX),
        ("clone", 0, 0, 16),
        (_JSET, "eperm", "allow", _NS_FLAGS),
        ("allow", 0, 0, _ALLOW),
        ("eperm", 0, 0, _ERRNO | errno.EPERM),
        ("enosys", 0, 0, _ERRNO | errno.ENOSYS),
    ]


def _assemble(lines: list[Line]) -> list[tuple[int, int, int, int]]:
    """Resolve labels: a line whose code is a label name is that label's first instruction
    (a load of args[0] for `socket`/`clone`, a return for the others)."""
    labels = {line[0]: pc for pc, line in enumerate(lines) if isinstance(line[0], str)}
    out = []
    for pc, (code, jt, jf, k) in enumerate(lines):
        if isinstance(code, str):
            code = _LD_ABS if code in ("socket", "clone") else _RET
        jumps = [labels[j] - pc - 1 if isinstance(j, str) else j for j in (jt, jf)]
        out.append((int(code), int(jumps[0]), int(jumps[1]), k))
    return out


def install(deny_unix: bool) -> None:
    """Install the filter on this thread (after PR_SET_NO_NEW_PRIVS); forks inherit it."""
    code = _assemble(program(deny_unix))
    filters = (_Filter * len(code))(*[_Filter(*line) for line in code])
    prog = _Program(len(code), filters)
    _libc.prctl_ptr(_libc.PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog))
