"""Landlock through ctypes: a process limits itself to the file hierarchies it was granted.

A ruleset handles every access right the running kernel knows (by ABI); each rule grants some of
them beneath one directory (or on one file). Once restricted, the process and everything it forks
or executes keeps the limits, and Landlock's scoping also stops it from reading another domain's
`/proc/<pid>/environ` or `/mem` (a ptrace check), signalling it, or reaching its abstract unix
sockets. The kernel here has ABI 7 (`syscall(444, NULL, 0, 1)`).
"""

from __future__ import annotations

import ctypes
import os
import stat

from coldbrew.runtime.sandbox import _libc

_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
_DIR_WRITE = sum(1 << bit for bit in range(4, 13))  # remove, make dir/reg/sock/fifo/sym/…
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

READ = EXECUTE | READ_FILE | READ_DIR
WRITE = READ | WRITE_FILE | _DIR_WRITE | REFER | TRUNCATE


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI, 0 when Landlock is unavailable."""
    result, _ = _libc.raw_syscall(
        _libc.SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION
    )
    return max(result, 0)


def _handled_fs(abi: int) -> int:
    handled = READ | WRITE_FILE | _DIR_WRITE
    if abi >= 2:
        handled |= REFER
    if abi >= 3:
        handled |= TRUNCATE
    if abi >= 5:
        handled |= IOCTL_DEV
    return handled


DEVICE = READ_FILE | WRITE_FILE | IOCTL_DEV


def restrict(rules: list[tuple[int, int]], deny_tcp: bool, abi: int | None = None) -> None:
    """Limit this process to `rules`: (O_PATH fd opened before privileges were dropped, access
    such as READ, WRITE or DEVICE) each; with `deny_tcp`, no TCP connect or bind at all (ABI 4)."""
    abi = abi_version() if abi is None else abi
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    handled = _handled_fs(abi)
    attr = _RulesetAttr(handled, 0, 0)
    if deny_tcp and abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL
    ruleset = _libc.syscall(
        _libc.SYS_LANDLOCK_CREATE_RULESET,
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
        0,
    )
    try:
        for fd, access in rules:
            allowed = access & handled
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                allowed &= _FILE_ONLY
            rule = _PathBeneath(allowed, fd)
            _libc.syscall(
                _libc.SYS_LANDLOCK_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0
            )
        _libc.syscall(_libc.SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
