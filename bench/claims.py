"""Claims and finishes per second of the job store: SQLite against PostgreSQL, one claimer.

    python bench/claims.py                  # 2,000 jobs per cell; --jobs N to change
    COLDBREW_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/claims.py

Each cell fills a fresh store with queued jobs, then one claimer takes them one at a time
(`claim`) or 16 at a time (`claim_many`) and finishes each (`finish`, owner-matched), as the
dispatcher does; the rate is jobs claimed and finished per second, wall time. PostgreSQL runs
twice: with durable commits (`synchronous_commit=on`, the server default: each commit waits for
its WAL flush) and with `synchronous_commit=off` (what SQLite's WAL + `synchronous=NORMAL`
gives: a crash of the machine may lose the last commits, never corrupts). The PostgreSQL
database is made for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from coldbrew.store.base import Store
from coldbrew.store.models import Job, JobStatus, Version
from coldbrew.store.sqlite import SQLiteStore

ADMIN_URL = os.environ.get(
    "COLDBREW_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def jobs_for(version: Version, count: int) -> list[Job]:
    return [
        Job(
            id=uuid.uuid4().hex,
            account=version.account,
            endpoint_id=version.endpoint_id,
            endpoint=version.endpoint,
            version_id=version.id,
            status=JobStatus.IN_QUEUE,
            input={"text": "hello", "n": i},
            created_at=float(i),
            expires_at=1e12,
            timeout_s=60.0,
            max_attempts=1,
        )
        for i in range(count)
    ]


async def run_cell(store: Store, count: int, batch: int) -> float:
    """Fill `store`, drain it; claims+finishes per second."""
    await store.create_account("bench", "whsec", 0.0)
    version, _ = await store.add_version("bench", f"e{batch}", "sha", "app", "E", {}, {}, 0.0)
    await store.save_jobs(jobs_for(version, count))
    started = time.perf_counter()
    done = 0
    while True:
        if batch == 1:
            one = await store.claim(version.id, "w1", 1.0)
            jobs = [] if one is None else [one]
        else:
            jobs = await store.claim_many(version.id, "w1", 1.0, batch)
        if not jobs:
            break
        for job in jobs:
            await store.finish(job.id, JobStatus.COMPLETED, 2.0, output={"ok": 1}, worker_id="w1")
            done += 1
    elapsed = time.perf_counter() - started
    assert done == count, (done, count)
    return done / elapsed


async def admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def with_postgres(settings: str, cell: Callable[[Store], Awaitable[float]]) -> float:
    from coldbrew.store.postgres import PostgresStore

    name = f"cb_bench_{uuid.uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}?{settings}"
    try:
        store = await PostgresStore.connect(url, pool_max=2)
        try:
            return await cell(store)
        finally:
            await store.close()
    finally:
        await admin(f'DROP DATABASE "{name}" WITH (FORCE)')


async def with_sqlite(cell: Callable[[Store], Awaitable[float]]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        try:
            return await cell(store)
        finally:
            await store.close()


async def main(count: int) -> None:
    rows: list[tuple[str, float, float]] = []
    stores: list[tuple[str, Callable[[Callable[[Store], Awaitable[float]]], Awaitable[float]]]] = [
        ("SQLite (WAL, synchronous=NORMAL)", with_sqlite),
        ("PostgreSQL (synchronous_commit=on)", lambda c: with_postgres("synchronous_commit=on", c)),
        (
            "PostgreSQL (synchronous_commit=off)",
            lambda c: with_postgres("synchronous_commit=off", c),
        ),
    ]
    for label, opener in stores:
        single = await opener(lambda s: run_cell(s, count, 1))
        batched = await opener(lambda s: run_cell(s, count, 16))
        rows.append((label, single, batched))
    print(f"claims+finishes per second, one claimer, {count} jobs per cell")
    print(f"| {'store':<36} | {'claim (1)':>10} | {'claim_many (16)':>15} |")
    print(f"|{'-' * 38}|{'-' * 12}|{'-' * 17}|")
    for label, single, batched in rows:
        print(f"| {label:<36} | {single:>10,.0f} | {batched:>15,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per cell")
    asyncio.run(main(parser.parse_args().jobs))
