"""The store thread and storage faults: SQLite off the event loop, and a fault that says why.

SQLite calls block: a lock held by another process waits up to the busy timeout, a full disk
or a slow fsync stalls the caller. On the event loop's thread that froze every request, health
checks included. `on_store_thread` runs each store call on one dedicated thread (one
connection, one thread: statements stay serialised as before, in the order they were issued).

The store's async methods never await anything real: their bodies run straight through. So the
class decorator drives each coroutine to completion on the store thread (`coro.send(None)` until
`StopIteration`); a store method that calls another store method runs it inline there. Methods
added later get the same treatment for free.

Errors are sorted at this boundary. A storage fault (disk full, read-only file, locked, I/O
error) becomes `StorageUnavailable` and puts the store in a fault state (`Store.fault` says why;
`/readyz` and admission read it) with a short busy timeout, so calls fail fast while it lasts;
the first statement that changes the database again clears it. Anything else (a value that
cannot be stored) stays the caller's error, for that one job only.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from coldbrew.errors import StorageUnavailable

log = logging.getLogger("coldbrew.store")

BUSY_TIMEOUT_MS = 5000  # a writer waits this long for another writer's lock
FAULT_BUSY_TIMEOUT_MS = 100  # while a fault lasts, fail fast instead of queueing behind it

# SQLite's primary result codes that mean "the storage cannot take writes right now"
_FAULT_CODES = {
    "SQLITE_BUSY": "the database is locked by another process",
    "SQLITE_LOCKED": "the database is locked",
    "SQLITE_FULL": "the disk is full",
    "SQLITE_READONLY": "the database is read-only",
    "SQLITE_IOERR": "the disk reported an I/O error",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
    "SQLITE_PROTOCOL": "the database's lock protocol failed",
    "SQLITE_NOTADB": "the database file is damaged",
    "SQLITE_CORRUPT": "the database file is damaged",
}

C = TypeVar("C", bound=type)
_local = threading.local()


class Guarded(Protocol):
    """What `on_store_thread` needs from the class it decorates."""

    _db: sqlite3.Connection
    _executor: ThreadPoolExecutor
    fault: str | None


def storage_fault(exc: BaseException) -> str | None:
    """Why `exc` means the storage is unavailable, or None when it is about the data."""
    if not isinstance(exc, sqlite3.Error):
        return None
    name = getattr(exc, "sqlite_errorname", "") or ""
    reason = _FAULT_CODES.get("_".join(name.split("_")[:2]))
    if reason is None and isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()  # errors raised without a result code (closed, no transaction)
        for needle, why in (("locked", "the database is locked"), ("full", "the disk is full")):
            if needle in text:
                reason = why
        if "readonly" in text or "read-only" in text:
            reason = "the database is read-only"
        if "disk i/o" in text:
            reason = "the disk reported an I/O error"
    return None if reason is None else f"{reason} ({exc})"


def _drive(fn: Callable[..., Coroutine[Any, Any, Any]], store: Guarded, args: Any, kw: Any) -> Any:
    """Run one store coroutine to its end on the store thread; it must never suspend."""
    _local.inside = True
    before = store._db.total_changes
    try:
        coro = fn(store, *args, **kw)
        try:
            coro.send(None)
        except StopIteration as stop:
            result = stop.value
        else:
            coro.close()
            raise RuntimeError(f"store method {fn.__name__} awaited: store methods must not")
    except sqlite3.Error as exc:
        reason = storage_fault(exc)
        if reason is None:
            raise
        _enter_fault(store, reason)
        raise StorageUnavailable.because(reason) from exc
    finally:
        _local.inside = False
    if store.fault is not None and store._db.total_changes != before:  # a write landed
        _leave_fault(store)
    return result


def _enter_fault(store: Guarded, reason: str) -> None:
    if store.fault is None:
        log.error("storage fault: %s; new jobs are refused until it clears", reason)
        store._db.execute(f"PRAGMA busy_timeout = {FAULT_BUSY_TIMEOUT_MS}")
    store.fault = reason


def _leave_fault(store: Guarded) -> None:
    log.warning("storage recovered (was: %s)", store.fault)
    store.fault = None
    store._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _threaded(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def run(self: Guarded, *args: Any, **kw: Any) -> Any:
        if getattr(_local, "inside", False):  # a store method calling another: inline
            return await fn(self, *args, **kw)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _drive, fn, self, args, kw)

    return run


def on_store_thread(cls: C) -> C:
    """Run every async method of `cls` (its own and its mixins') on the instance's single
    store thread; the most derived definition of each name wins, abstract ones are skipped."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, member in vars(klass).items():
            if name in seen or name.startswith("__") or not inspect.iscoroutinefunction(member):
                continue
            seen.add(name)
            if not getattr(member, "__isabstractmethod__", False):
                setattr(cls, name, _threaded(member))
    return cls


def store_executor() -> ThreadPoolExecutor:
    """The one thread a store's connection is used from."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="coldbrew-store")
