"""Queue statistics come from counters the database keeps, never from a scan of the queue, and
the counters match the rows after every kind of change; account settings round-trip."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.store_contract.helpers import SyncStore, deploy, new_job

from coldbrew.store.models import JobStatus, QueueStat, Version
from coldbrew.store.sqlite import SQLiteStore
from coldbrew.store.sqlite_queue import QUEUE_STATS


@pytest.fixture
def store() -> Iterator[Any]:
    raw = SQLiteStore(":memory:")
    yield SyncStore(raw)
    asyncio.run(raw.close())


@pytest.fixture
def version(store: Any) -> Version:
    store.create_account("acme", "whsec_acme", 1.0)
    store.create_account("beta", "whsec_beta", 1.0)
    return deploy(store)


def counted(store: Any) -> dict[int, int]:
    return {vid: stat.queued for vid, stat in store.queue_stats().items()}


def scanned(store: Any) -> dict[int, int]:
    rows = store._store._all(
        "SELECT version_id, COUNT(*) FROM jobs WHERE status='IN_QUEUE' GROUP BY version_id"
    )
    return {r[0]: r[1] for r in rows}


def test_counters_follow_every_way_in_and_out_of_the_queue(store: Any, version: Version) -> None:
    other = deploy(store, endpoint="other", account="beta")
    for i in range(6):
        new_job(store, version, f"a{i}", created_at=100.0 + i)
    new_job(store, other, "b0")
    steps = [
        lambda: store.claim(version.id, "w1", 200.0),  # out: claimed
        lambda: store.claim_many(version.id, "w1", 200.0, 2),  # out: a batch
        lambda: store.requeue("a0"),  # in: its worker died
        lambda: store.claim_job("a3", "w1", 200.0),  # out: dispatched at once
        lambda: store.finish("a4", JobStatus.CANCELLED, 201.0, from_statuses=[JobStatus.IN_QUEUE]),
        lambda: store.finish("a3", JobStatus.FAILED, 202.0),  # not queued: no change
        lambda: store.retry("a3", "acme", 203.0, 10_000.0),  # in: retried
        lambda: store.fail_queued(other.id, {"type": "setup_failed", "message": "m"}, 204.0),
        lambda: store.purge_queue(version.endpoint_id, 205.0),  # out: all of them
    ]
    assert counted(store) == scanned(store) == {version.id: 6, other.id: 1}
    for step in steps:
        step()
        assert {v: n for v, n in counted(store).items() if n} == scanned(store)
    assert counted(store) == {}


def test_the_sync_lanes_bulk_writes_count_too(store: Any, version: Version) -> None:
    job = new_job(store, version, "j1")
    job.status = JobStatus.COMPLETED
    store.save_jobs([job])  # an upsert that takes a queued job out
    queued = new_job(store, version, "j2")
    queued.id = "j3"
    store.save_jobs([queued])  # a sync-lane job spilled into the queue
    assert counted(store) == scanned(store) == {version.id: 2}
    assert store.queue_stats()[version.id] == QueueStat(queued=2, oldest_created_at=100.0)


def test_counters_are_rebuilt_from_the_rows_when_the_database_opens(tmp_path: Path) -> None:
    path = tmp_path / "coldbrew.db"
    first = SyncStore(SQLiteStore(path))
    first.create_account("acme", "s", 1.0)
    version = deploy(first)
    for i in range(3):
        new_job(first, version, f"j{i}")
    first.close()
    raw = sqlite3.connect(path)  # as if an older coldbrew had changed the rows
    raw.execute("DROP TRIGGER queue_counts_leave")
    raw.execute("UPDATE jobs SET status='CANCELLED' WHERE id='j0'")
    raw.commit()
    raw.close()
    again = SyncStore(SQLiteStore(path))
    assert counted(again) == {version.id: 2}
    again.close()


def test_queue_stats_never_scan_the_queue(store: Any, version: Version) -> None:
    raw: SQLiteStore = store._store
    plan = " ".join(str(r[3]) for r in raw._all(f"EXPLAIN QUERY PLAN {QUEUE_STATS}"))
    assert "SCAN jobs" not in plan and "SEARCH jobs USING COVERING INDEX jobs_queue" in plan


def test_account_settings_round_trip(store: Any) -> None:
    store.create_account("acme", "s", 1.0)
    account = store.get_account("acme")
    assert (account.weight, account.max_queued_jobs) == (1.0, None)
    changed = store.update_account("acme", weight=2.5, max_queued_jobs=7)
    assert (changed.weight, changed.max_queued_jobs) == (2.5, 7)
    kept = store.update_account("acme", weight=3.0)
    assert (kept.weight, kept.max_queued_jobs) == (3.0, 7)
    cleared = store.update_account("acme", clear_max_queued_jobs=True)
    assert (cleared.weight, cleared.max_queued_jobs) == (3.0, None)
    assert store.update_account("nobody", weight=2.0) is None
    assert [a.name for a in store.list_accounts()] == ["acme"]


def test_counters_follow_idempotent_creates_deletes_and_expiry(
    store: Any, version: Version
) -> None:
    """The paths the first table leaves out: a replayed idempotent create, a deleted endpoint,
    a purge of expired jobs, and a job requeued at restart (recovery)."""
    other = deploy(store, endpoint="other", account="beta")
    seed = new_job(store, other, "seed")
    first = dataclasses.replace(seed, id="o1")
    assert store.create_job_once(first, "key-1").id == "o1"  # a new job under the key
    assert store.create_job_once(first, "key-1").id == "o1"  # a replay: nothing added
    assert counted(store)[other.id] == 2
    running = store.claim(other.id, "w1", 150.0)  # the oldest runs...
    store.requeue(running.id)  # ...and is requeued as at restart
    new_job(store, version, "a1", expires_at=50.0)
    store.finish("a1", JobStatus.COMPLETED, 60.0, from_statuses=[JobStatus.IN_QUEUE])
    store.purge_expired(10_000.0)  # deletes a final job: no change to the counters
    new_job(store, version, "a2")
    assert counted(store) == scanned(store)
    store.delete_endpoint("acme", "echo", 300.0)  # cancels a2
    store.delete_endpoint("beta", "other", 300.0)  # cancels seed and o1
    assert {v: n for v, n in counted(store).items() if n} == scanned(store) == {}
