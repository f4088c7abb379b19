"""The claim race: several processes claim from one store at once; every job is claimed exactly
once and finished once (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one writer at a time).

PostgreSQL runs 4 processes over 50,000 jobs (the issue's figure), filled with COPY and claimed
in batches of 16; SQLite, a cheap variant, 4 processes over 2,000 jobs in one file.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from coldbrew.store.base import Store
from coldbrew.store.models import Job, JobStatus, Version
from coldbrew.store.sqlite import SQLiteStore
from coldbrew.store.sqlite_job_rows import JOB_COLUMNS, job_values
from tests import postgres

ROOT = Path(__file__).resolve().parents[2]
CLAIMERS = 4
BATCH = 16
CLAIMER = [sys.executable, "-m", "tests.integration.claimer"]


def _jobs(version: Version, count: int) -> list[Job]:
    return [
        Job(
            id=f"j{i:06}",
            account=version.account,
            endpoint_id=version.endpoint_id,
            endpoint=version.endpoint,
            version_id=version.id,
            status=JobStatus.IN_QUEUE,
            input={"n": i},
            created_at=100.0 + i,
            expires_at=1e9,
            timeout_s=60.0,
            max_attempts=1,
        )
        for i in range(count)
    ]


async def _deploy(store: Store) -> Version:
    await store.create_account("acme", "whsec", 1.0)
    version, _ = await store.add_version("acme", "echo", "sha", "app", "Echo", {}, {}, 1.0)
    return version


def _race(kind: str, where: str, version_id: int, tmp: Path) -> list[str]:
    """Start the claimers, let them go at once, and return every id they finished."""
    go = tmp / "go"
    outs = [tmp / f"claimer-{i}.txt" for i in range(CLAIMERS)]
    procs = [
        subprocess.Popen(
            [*CLAIMER, kind, where, str(version_id), f"w{i}", str(BATCH), str(out), str(go)],
            cwd=ROOT,
        )
        for i, out in enumerate(outs)
    ]
    try:
        go.touch()
        codes = [p.wait(timeout=170) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0] * CLAIMERS
    per_claimer = [o.read_text().split() for o in outs]
    assert all(per_claimer), "every claimer took some jobs: it was a race"
    return [job_id for ids in per_claimer for job_id in ids]


def _assert_each_once(finished: list[str], jobs: list[Job], final: list[Job]) -> None:
    counts = Counter(finished)
    assert not [i for i, n in counts.items() if n > 1], "a job was claimed twice"
    assert set(counts) == {j.id for j in jobs}, "a job was never claimed"
    assert {(j.status, j.attempts) for j in final} == {(JobStatus.COMPLETED, 1)}
    assert all(j.output == {"by": j.worker_id} for j in final)  # finished by its claimer


@pytest.mark.slow
def test_four_processes_claim_50k_postgres_jobs_each_exactly_once(tmp_path: Path) -> None:
    from coldbrew.store.postgres import PostgresStore

    url = postgres.fast(postgres.create_database("cb_race"))
    try:

        async def fill() -> tuple[Version, list[Job]]:
            store = await PostgresStore.connect(url, pool_max=1)
            try:
                version = await _deploy(store)
                jobs = _jobs(version, 50_000)
                async with store._pool.acquire() as conn:  # COPY: 50k rows in one round trip
                    await conn.copy_records_to_table(
                        "jobs",
                        records=[job_values(j) for j in jobs],
                        columns=[c.strip() for c in JOB_COLUMNS.split(",")],
                    )
                return version, jobs
            finally:
                await store.close()

        version, jobs = asyncio.run(fill())
        finished = _race("postgres", url, version.id, tmp_path)

        async def read() -> list[Job]:
            store = await PostgresStore.connect(url, pool_max=1)
            try:
                assert await store.queue_stats() == {}
                return await store.get_jobs([j.id for j in jobs])
            finally:
                await store.close()

        _assert_each_once(finished, jobs, asyncio.run(read()))
    finally:
        postgres.drop_database(url.partition("?")[0])


def test_four_processes_claim_sqlite_jobs_each_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    async def fill() -> tuple[Version, list[Job]]:
        store = SQLiteStore(path)
        try:
            version = await _deploy(store)
            jobs = _jobs(version, 2_000)
            await store.save_jobs(jobs)
            return version, jobs
        finally:
            await store.close()

    version, jobs = asyncio.run(fill())
    finished = _race("sqlite", str(path), version.id, tmp_path)

    async def read() -> list[Job]:
        store = SQLiteStore(path)
        try:
            return await store.get_jobs([j.id for j in jobs])
        finally:
            await store.close()

    _assert_each_once(finished, jobs, asyncio.run(read()))
