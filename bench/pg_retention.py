"""What the PostgreSQL store's counters and retention cost: `queue_stats` against queue depth,
and a `purge_expired` pass over 20,000 jobs, with the dead tuples it leaves behind
(`n_dead_tup` and, since statistics lag, pgstattuple's count of the tuples really there).

    python bench/pg_retention.py     # COLDBREW_BENCH_DATABASE_URL as for bench/claims.py

`queue_stats` is computed from the partial index of queued jobs on every call (several gateways
write the queue, so no gateway can keep the counts in memory); the question is how its cost
grows with the queue. The purge deletes expired jobs in batches of `PURGE_BATCH` and, after a
pass of `VACUUM_AFTER` jobs or more, vacuums the tables it emptied; run with and without that
vacuum, it shows the dead tuples (`pg_stat_user_tables.n_dead_tup`) and table sizes left, with
autovacuum off as on the machine these numbers come from.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
from claims import ADMIN_URL, admin, jobs_for

from coldbrew.store import pg_queue
from coldbrew.store.models import JobStatus
from coldbrew.store.postgres import PostgresStore
from coldbrew.store.sqlite_job_rows import JOB_COLUMNS, job_values

COLUMNS = [c.strip() for c in JOB_COLUMNS.split(",")]
TABLES = ("jobs", "job_logs", "idempotency_keys")


async def fresh() -> tuple[str, str]:
    name = f"cb_bench_{uuid.uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{name}"')
    return name, ADMIN_URL.rsplit("/", 1)[0] + f"/{name}?synchronous_commit=off"


async def fill(store: PostgresStore, count: int, versions: int, status: JobStatus) -> list[Any]:
    """`count` jobs over `versions` versions, by COPY; final ones expired, with a log line and an
    idempotency key each."""
    await store.create_account("bench", "whsec", 0.0)
    made = []
    for v in range(versions):
        version, _ = await store.add_version("bench", f"e{v}", "sha", "m", "C", {}, {}, 0.0)
        made.extend(jobs_for(version, count // versions))
    for job in made:
        job.status, job.expires_at = status, 10.0
    async with store._pool.acquire() as conn:
        await conn.copy_records_to_table(
            "jobs", records=[job_values(j) for j in made], columns=COLUMNS
        )
        if status.final:
            await conn.copy_records_to_table(
                "job_logs",
                records=[(j.id, 1.0, "stdout", "a line of output") for j in made],
                columns=["job_id", "ts", "stream", "line"],
            )
            await conn.copy_records_to_table(
                "idempotency_keys",
                records=[(j.account, j.id, j.id) for j in made],
                columns=["account", "key", "job_id"],
            )
    return made


async def dead_tuples(url: str) -> dict[str, tuple[int, int, int]]:
    """Per table: n_dead_tup (the statistics), the dead tuples really there (pgstattuple), and
    the total size in kB, once every backend has flushed its statistics."""
    await asyncio.sleep(1.2)  # a backend flushes its table statistics at most once a second
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        rows = await conn.fetch(
            "SELECT relname, n_dead_tup, (pgstattuple(relid)).dead_tuple_count, "
            "pg_total_relation_size(relid) / 1024 FROM pg_stat_user_tables "
            "WHERE relname = ANY($1::text[])",
            list(TABLES),
        )
    finally:
        await conn.close()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


async def queue_stats_cost() -> None:
    print("queue_stats: ms per call against queued jobs (10 versions), autovacuum off")
    print("| queued | ms per call |")
    print("|-------:|------------:|")
    for count in (0, 1_000, 20_000, 50_000):
        name, url = await fresh()
        try:
            store = await PostgresStore.connect(url, pool_max=1)
            try:
                if count:
                    await fill(store, count, 10, JobStatus.IN_QUEUE)
                await store.queue_stats()
                started = time.perf_counter()
                for _ in range(20):
                    stats = await store.queue_stats()
                per_call_ms = (time.perf_counter() - started) / 20 * 1000
                assert sum(s.queued for s in stats.values()) == count
            finally:
                await store.close()
        finally:
            await admin(f'DROP DATABASE "{name}" WITH (FORCE)')
        print(f"| {count:>6,} | {per_call_ms:>11.2f} |")


async def purge_pass(vacuum: bool, count: int = 20_000) -> None:
    name, url = await fresh()
    pg_queue.VACUUM_AFTER = 1000 if vacuum else 10**12
    try:
        store = await PostgresStore.connect(url, pool_max=1)
        try:
            await fill(store, count, 1, JobStatus.COMPLETED)
            started = time.perf_counter()
            purged = await store.purge_expired(1000.0)
            elapsed_s = time.perf_counter() - started
        finally:
            await store.close()
        after = await dead_tuples(url)
    finally:
        await admin(f'DROP DATABASE "{name}" WITH (FORCE)')
    label = "batches + VACUUM" if vacuum else "batches, no VACUUM"
    cells = " | ".join(
        f"{after[t][0]:>6,} / {after[t][1]:>6,} / {after[t][2]:>5,} kB" for t in TABLES
    )
    print(f"| {label:<18} | {purged:>6,} | {elapsed_s:>5.2f} s | {cells} |")


async def main() -> None:
    await queue_stats_cost()
    print()
    print(f"purge_expired over 20,000 final jobs (batches of {pg_queue.PURGE_BATCH}), after it")
    print("per table: n_dead_tup (statistics) / dead tuples (pgstattuple) / total size")
    print(f"| {'pass':<18} | purged | time    | {' | '.join(f'{t:<24}' for t in TABLES)} |")
    print(f"|{'-' * 20}|-------:|--------:|{'|'.join('-' * 26 for _ in TABLES)}|")
    await purge_pass(vacuum=False)
    await purge_pass(vacuum=True)


if __name__ == "__main__":
    asyncio.run(main())
