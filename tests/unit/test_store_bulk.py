"""What `coldbrew map` needs from the store: many jobs in one query, and idempotent creation."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from coldbrew.store.models import Job, JobStatus, Version
from coldbrew.store.sqlite import SQLiteStore


class SyncStore:
    """The store's coroutine methods as plain calls (as in test_store.py)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        return lambda *args, **kwargs: asyncio.run(method(*args, **kwargs))


@pytest.fixture
def store() -> Iterator[Any]:
    raw = SQLiteStore(":memory:")
    yield SyncStore(raw)
    asyncio.run(raw.close())


def deploy(store: Any, account: str = "acme") -> Version:
    version, _ = store.add_version(
        account, "echo", "sha-1", "app", "Echo", {"hardware": "cpu"}, {"type": "object"}, 10.0
    )
    return version


@pytest.fixture
def version(store: Any) -> Version:
    store.create_account("acme", "whsec_acme", 1.0)
    store.create_account("beta", "whsec_beta", 1.0)
    return deploy(store)


def queued(version: Version, job_id: str, **fields: Any) -> Job:
    job = Job(
        id=job_id,
        account=version.account,
        endpoint_id=version.endpoint_id,
        endpoint=version.endpoint,
        version_id=version.id,
        status=JobStatus.IN_QUEUE,
        input={"text": job_id},
        created_at=100.0,
        expires_at=500.0,
        timeout_s=60.0,
        max_attempts=1,
    )
    return dataclasses.replace(job, **fields)


def new_job(store: Any, version: Version, job_id: str) -> Job:
    job = queued(version, job_id, expires_at=10_000.0)
    store.create_job(job)
    return job


def finished_job(store: Any, version: Version, job_id: str, status: JobStatus) -> Job:
    new_job(store, version, job_id)
    assert store.claim(version.id, "w1", 200.0).id == job_id
    done: Job = store.finish(job_id, status, 201.0)
    return done


def test_get_jobs_returns_the_ones_asked_in_that_order(store: Any, version: Version) -> None:
    finished_job(store, version, "d", JobStatus.COMPLETED)
    for job_id in ("a", "b", "c"):
        new_job(store, version, job_id)

    jobs = store.get_jobs(["d", "missing", "a", "c", "a"])

    assert [j.id for j in jobs] == ["d", "a", "c"]
    assert jobs[0].status is JobStatus.COMPLETED
    assert jobs[0] == store.get_job("d")
    assert store.get_jobs([]) == []


def test_get_jobs_leaves_out_other_accounts_jobs(store: Any, version: Version) -> None:
    theirs = deploy(store, account="beta")
    new_job(store, version, "mine")
    new_job(store, theirs, "theirs")

    assert [j.id for j in store.get_jobs(["mine", "theirs"], "acme")] == ["mine"]
    assert [j.id for j in store.get_jobs(["mine", "theirs"], "beta")] == ["theirs"]
    assert [j.id for j in store.get_jobs(["mine", "theirs"])] == ["mine", "theirs"]


def test_get_jobs_fetches_more_ids_than_one_query_holds(store: Any, version: Version) -> None:
    ids = [f"j{i:04}" for i in range(1203)]
    for job_id in ids:
        new_job(store, version, job_id)
    asked = list(reversed(ids))
    assert [j.id for j in store.get_jobs(asked, "acme")] == asked


def test_create_job_once_replays_the_first_job_under_a_key(store: Any, version: Version) -> None:
    first = store.create_job_once(queued(version, "first"), "key-1")
    again = store.create_job_once(queued(version, "second", input={"other": 1}), "key-1")
    other_key = store.create_job_once(queued(version, "third"), "key-2")

    assert first.id == again.id == "first"
    assert again.input == {"text": "first"}
    assert other_key.id == "third"
    assert store.get_job("second") is None
    assert store.health(version.endpoint_id)["inQueue"] == 2


def test_idempotency_keys_belong_to_one_account(store: Any, version: Version) -> None:
    theirs = deploy(store, account="beta")
    mine = store.create_job_once(queued(version, "mine"), "shared-key")
    other = store.create_job_once(queued(theirs, "theirs"), "shared-key")
    assert (mine.id, other.id) == ("mine", "theirs")


def test_a_purged_job_frees_its_key(store: Any, version: Version) -> None:
    store.create_job_once(queued(version, "old"), "key-1")
    assert store.claim(version.id, "w1", 200.0) is not None
    store.finish("old", JobStatus.COMPLETED, 201.0)

    assert store.purge_expired(1000.0) == 1

    fresh = store.create_job_once(queued(version, "new", expires_at=5000.0), "key-1")
    assert fresh.id == "new"
    assert store.get_job("new") is not None
