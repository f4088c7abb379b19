"""The few Linux system calls the sandbox needs, through ctypes (Python 3.11 has no os.unshare)."""

from __future__ import annotations

import ctypes
import os
import platform

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

#: x86_64 and aarch64 share the Landlock numbers (new syscalls have one number everywhere).
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
MACHINE = platform.machine()


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def prctl(option: int, arg: int, arg3: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), 0, 0), "prctl")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def syscall(number: int, *args: object) -> int:
    return _check(int(_libc.syscall(number, *args)), f"syscall {number}")


def raw_syscall(number: int, *args: object) -> tuple[int, int]:
    """(result, errno) without raising: for probes."""
    result = int(_libc.syscall(number, *args))
    return result, ctypes.get_errno() if result < 0 else 0


def prctl_ptr(option: int, arg: int, pointer: int) -> None:
    """prctl with a pointer third argument (PR_SET_SECCOMP)."""
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_void_p(pointer), 0, 0), "prctl")
