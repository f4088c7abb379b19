"""Storage faults at the store's edge (issue 11): SQLite runs on its own thread, so a lock held
by another process never blocks the event loop; a fault (locked, read-only, full) becomes
`StorageUnavailable` and `Store.fault` says why until a write succeeds again; a value the store
cannot hold stays the caller's error and is not a fault."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from coldbrew.errors import StorageUnavailable
from coldbrew.store.guard import storage_fault
from coldbrew.store.sqlite import SQLiteStore


def test_a_lock_held_elsewhere_does_not_block_the_event_loop(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "db.sqlite")
        store._db.execute("PRAGMA busy_timeout = 1000")  # the store's lock wait, shortened
        locker = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        with pytest.raises(StorageUnavailable) as refused:
            await store.create_account("a", "whsec", 0.0)
        beat.cancel()
        assert ticks > 10  # the loop ran while the store waited for the lock
        assert "locked" in refused.value.message and store.fault is not None
        locker.execute("ROLLBACK")
        locker.close()
        await store.probe(1.0)
        assert store.fault is None  # the first write that lands clears the fault
        await store.create_account("a", "whsec", 0.0)
        assert await store.count_accounts() == 1

    asyncio.run(scenario())


def test_a_read_only_database_is_a_fault_that_clears(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "db.sqlite")
        store._db.execute("PRAGMA query_only = ON")  # as a read-only file or mount answers
        with pytest.raises(StorageUnavailable):
            await store.create_account("a", "whsec", 0.0)
        assert store.fault is not None and "read-only" in store.fault
        assert await store.count_accounts() == 0  # reads still work
        store._db.execute("PRAGMA query_only = OFF")
        await store.probe(1.0)
        assert store.fault is None

    asyncio.run(scenario())


def test_store_calls_run_on_one_thread_that_is_not_the_loop(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(":memory:")
        seen: set[int] = set()
        store._db.set_trace_callback(lambda sql: seen.add(threading.get_ident()))
        for _ in range(3):
            await store.count_accounts()
        assert len(seen) == 1 and threading.get_ident() not in seen

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        pytest.param(sqlite3.OperationalError("database is locked"), True, id="locked"),
        pytest.param(sqlite3.OperationalError("database or disk is full"), True, id="full"),
        pytest.param(
            sqlite3.OperationalError("attempt to write a readonly database"), True, id="readonly"
        ),
        pytest.param(sqlite3.DataError("string or blob too big"), False, id="too-big"),
        pytest.param(sqlite3.ProgrammingError("Error binding parameter 4"), False, id="binding"),
        pytest.param(TypeError("Recursion limit reached"), False, id="not-sqlite"),
    ],
)
def test_which_errors_are_storage_faults(error: Exception, fault: bool) -> None:
    assert (storage_fault(error) is not None) is fault
