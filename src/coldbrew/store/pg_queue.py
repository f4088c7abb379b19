"""PostgreSQL side of the queue: the `jobs` table, idempotency keys, and counts from the index.

Several gateways share the database, so every transition is one conditional
`UPDATE … WHERE status = … RETURNING`, and a claim locks the rows it takes with
`FOR UPDATE SKIP LOCKED`: two claimers never wait on each other nor take the same job. A job's
owner is its `worker_id`; a finish or requeue given `worker_id` lands only while the job is
still that worker's, so a stale owner's write after a fail-over is dropped.

Queued jobs have their own partial index (`WHERE status = 'IN_QUEUE'`): claims read its head.
The queue counters must come from the database, since several gateways write. Counting the
index on every scheduler tick cost 40 ms at 20,000 queued (docs/pgstore.md); one counter row
per version, as SQLite keeps, would serialise every enqueue and claim of a version on that
row's lock. So triggers append +1/-1 delta rows (insert-only: nothing waits), `queue_stats`
sums them, and folds them into one row per version once they pile up. Retention deletes in
bounded batches, then vacuums what a large pass left dead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from coldbrew.store.models import Job, JobStatus, QueueStat
from coldbrew.store.pg_db import Migration, Part, PostgresDatabase
from coldbrew.store.queue import JobQueue
from coldbrew.store.sqlite_job_rows import JOB_COLUMNS, job_values, output_json
from coldbrew.store.sqlite_job_rows import job as _job

PART = Part(
    "queue",
    (
        Migration(
            "jobs with an arrival sequence, a partial index on the queue, and idempotency keys",
            (
                "CREATE TABLE jobs (seq BIGSERIAL NOT NULL, id TEXT PRIMARY KEY, "
                "account TEXT NOT NULL, endpoint_id BIGINT NOT NULL, endpoint TEXT NOT NULL, "
                "version_id BIGINT NOT NULL, status TEXT NOT NULL, input BYTEA NOT NULL, "
                "output BYTEA, error BYTEA, attempts INTEGER NOT NULL DEFAULT 0, "
                "max_attempts INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL, "
                "started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, "
                "expires_at DOUBLE PRECISION NOT NULL, timeout_s DOUBLE PRECISION NOT NULL, "
                "worker_id TEXT, cold_start INTEGER NOT NULL DEFAULT 0, cold_start_detail BYTEA, "
                "cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0, webhook_url TEXT, "
                "webhook_state TEXT, cached INTEGER NOT NULL DEFAULT 0)",
                "CREATE INDEX jobs_queued ON jobs (version_id, created_at, seq) "
                "WHERE status = 'IN_QUEUE'",
                "CREATE INDEX jobs_running ON jobs (id) WHERE status = 'IN_PROGRESS'",
                "CREATE INDEX jobs_endpoint ON jobs (endpoint_id, status)",
                "CREATE INDEX jobs_account ON jobs (account, created_at)",
                "CREATE INDEX jobs_created ON jobs (created_at)",
                "CREATE INDEX jobs_expiry ON jobs (expires_at)",
                "CREATE INDEX jobs_finished ON jobs (finished_at)",
                "CREATE INDEX jobs_webhook_pending ON jobs (id) WHERE webhook_state = 'pending'",
                "CREATE TABLE idempotency_keys (account TEXT NOT NULL, key TEXT NOT NULL, "
                "job_id TEXT NOT NULL, PRIMARY KEY (account, key))",
                "CREATE INDEX idempotency_keys_job ON idempotency_keys (job_id)",
            ),
        ),
        Migration(
            "queue counters as insert-only deltas kept by row triggers (counting the index "
            "cost 40 ms a call at 20,000 queued), counted once from the rows",
            (
                "CREATE TABLE queue_counts (version_id BIGINT NOT NULL, queued BIGINT NOT NULL)",
                "CREATE FUNCTION coldbrew_queue_delta() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN "
                "IF TG_OP <> 'DELETE' AND NEW.status = 'IN_QUEUE' THEN "
                "INSERT INTO queue_counts VALUES (NEW.version_id, 1); END IF; "
                "IF TG_OP <> 'INSERT' AND OLD.status = 'IN_QUEUE' THEN "
                "INSERT INTO queue_counts VALUES (OLD.version_id, -1); END IF; "
                "RETURN NULL; END $$",
                "CREATE TRIGGER queue_counts_insert AFTER INSERT ON jobs FOR EACH ROW "
                "WHEN (NEW.status = 'IN_QUEUE') EXECUTE FUNCTION coldbrew_queue_delta()",
                "CREATE TRIGGER queue_counts_update AFTER UPDATE ON jobs FOR EACH ROW "
                "WHEN ((OLD.status = 'IN_QUEUE') IS DISTINCT FROM (NEW.status = 'IN_QUEUE') "
                "OR (NEW.status = 'IN_QUEUE' AND OLD.version_id <> NEW.version_id)) "
                "EXECUTE FUNCTION coldbrew_queue_delta()",
                "CREATE TRIGGER queue_counts_delete AFTER DELETE ON jobs FOR EACH ROW "
                "WHEN (OLD.status = 'IN_QUEUE') EXECUTE FUNCTION coldbrew_queue_delta()",
                "INSERT INTO queue_counts SELECT version_id, COUNT(*) FROM jobs "
                "WHERE status = 'IN_QUEUE' GROUP BY version_id",
            ),
        ),
    ),
)

_N = len(JOB_COLUMNS.split(","))
_INSERT = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join(f'${i + 1}' for i in range(_N))})"
_UPSERT = (
    _INSERT
    + " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c.strip()}=excluded.{c.strip()}" for c in JOB_COLUMNS.split(",")[1:])
)
_RETURNING = f"RETURNING {JOB_COLUMNS}, seq"
_PENDING_IF_HOOKED = "webhook_state=CASE WHEN webhook_url IS NULL THEN NULL ELSE 'pending' END"
_TAKE = "status='IN_PROGRESS', attempts=attempts+1, started_at=$1, worker_id=$2"
#: the oldest queued jobs of a version, locked; rows another claimer holds are skipped. A
#: materialized CTE joined on the primary key: a plain `id IN (SELECT … LIMIT n SKIP LOCKED)`
#: may be planned as a join that rescans the subquery (each rescan locks n more rows: it
#: claimed n + 1), and without statistics (autovacuum off) `id = ANY(ARRAY(…))` was planned as
#: a scan of the whole queue per claim (8x slower at 5,000 queued)
_HEAD = (
    "WITH head AS MATERIALIZED (SELECT id FROM jobs WHERE status='IN_QUEUE' AND version_id=$3 "
    "ORDER BY created_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED) "
)
_RETURNING_JOINED = "RETURNING " + ", ".join(
    f"jobs.{c.strip()}" for c in [*JOB_COLUMNS.split(","), "seq"]
)
_OWNED = "($2::text IS NULL OR worker_id = $2)"  # owner-matched when a worker id is given
_FINAL = "('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT')"
_EXPIRED = (
    f"SELECT id FROM jobs WHERE expires_at < $1 AND status IN {_FINAL} "
    "AND (webhook_state IS NULL OR webhook_state <> 'pending') LIMIT $2 FOR UPDATE SKIP LOCKED"
)
_PURGED_TABLES = ("jobs", "job_logs", "webhook_deliveries", "idempotency_keys")
PURGE_BATCH = 2000  # jobs deleted per transaction: short locks, bounded WAL per commit
VACUUM_AFTER = 1000  # a pass that deleted this many vacuums the tables it emptied
#: queued per version from the deltas (a short table: folded once it grows), the oldest queued
#: job one seek on the partial index each, and how many delta rows there are
_QUEUE_STATS = (
    "SELECT c.version_id, c.queued, (SELECT created_at FROM jobs WHERE status='IN_QUEUE' "
    "AND version_id=c.version_id ORDER BY created_at, seq LIMIT 1), c.deltas FROM "
    "(SELECT version_id, SUM(queued) AS queued, SUM(COUNT(*)) OVER () AS deltas "
    "FROM queue_counts GROUP BY version_id) c"
)
FOLD_AFTER = 256  # delta rows past which a reader sums them into one row per version
#: one statement: rows inserted meanwhile are not in its snapshot and stay; of two gateways
#: folding at once, the second waits and finds the first's rows gone
_FOLD = (
    "WITH gone AS (DELETE FROM queue_counts RETURNING version_id, queued) "
    "INSERT INTO queue_counts SELECT version_id, SUM(queued) FROM gone GROUP BY version_id "
    "HAVING SUM(queued) <> 0"
)
_BY_KEY = (
    f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = (SELECT job_id FROM idempotency_keys "
    "WHERE account=$1 AND key=$2)"
)


def _jobs(rows: Iterable[Any]) -> list[Job]:
    """Jobs of rows returned with `_RETURNING`, in arrival order (RETURNING has none)."""
    return [_job(r) for r in sorted(rows, key=lambda r: (r["created_at"], r["seq"]))]


async def cancel_queued(db: PostgresDatabase, endpoint_id: int, now: float) -> list[Job]:
    """Cancel every queued job of the endpoint (also what deleting the endpoint does)."""
    rows = await db._all(
        f"UPDATE jobs SET status='CANCELLED', finished_at=$1, {_PENDING_IF_HOOKED} "
        f"WHERE endpoint_id=$2 AND status='IN_QUEUE' {_RETURNING}",
        now,
        endpoint_id,
    )
    return _jobs(rows)


class PostgresQueue(PostgresDatabase, JobQueue):
    """`JobQueue` on PostgreSQL: each state change is one conditional statement."""

    # create and read
    async def create_job(self, job: Job) -> None:
        await self._exec(_INSERT, *job_values(job))

    async def save_jobs(self, jobs: list[Job]) -> None:
        async with self._transaction():
            await self._many(_UPSERT, [job_values(j) for j in jobs])

    async def create_job_once(self, job: Job, key: str) -> Job:
        async with self._transaction():
            # a key whose job is gone is taken over; a live one waits for its writer's commit
            taken = await self._value(
                "INSERT INTO idempotency_keys (account, key, job_id) VALUES ($1, $2, $3) "
                "ON CONFLICT (account, key) DO UPDATE SET job_id = excluded.job_id "
                "WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = idempotency_keys.job_id) "
                "RETURNING job_id",
                job.account,
                key,
                job.id,
            )
            if taken is None:
                row = await self._one(_BY_KEY, job.account, key)
                if row is not None:
                    return _job(row)
            await self.create_job(job)
        return job

    async def job_for_key(self, account: str, key: str) -> Job | None:
        row = await self._one(_BY_KEY, account, key)
        return None if row is None else _job(row)

    async def get_job(self, job_id: str, account: str | None = None) -> Job | None:
        row = await self._one(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=$1 AND ($2::text IS NULL OR account=$2)",
            job_id,
            account,
        )
        return None if row is None else _job(row)

    async def get_jobs(self, job_ids: Sequence[str], account: str | None = None) -> list[Job]:
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return []
        rows = await self._all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1::text[]) "
            "AND ($2::text IS NULL OR account=$2)",
            wanted,
            account,
        )
        found = {r["id"]: _job(r) for r in rows}
        return [found[i] for i in wanted if i in found]

    async def account_jobs(
        self, account: str | None, limit: int, before: float | None = None
    ) -> list[Job]:
        rows = await self._all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::text IS NULL OR account=$1) "
            "AND ($2::float8 IS NULL OR created_at < $2) ORDER BY created_at DESC, seq DESC "
            "LIMIT $3",
            account,
            before,
            limit,
        )
        return [_job(r) for r in rows]

    async def recent_jobs(self, endpoint_id: int, limit: int) -> list[Job]:
        rows = await self._all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE endpoint_id=$1 "
            "ORDER BY created_at DESC, seq DESC LIMIT $2",
            endpoint_id,
            limit,
        )
        return [_job(r) for r in rows]

    # state changes
    async def claim(self, version_id: int, worker_id: str, now: float) -> Job | None:
        jobs = await self.claim_many(version_id, worker_id, now, 1)
        return jobs[0] if jobs else None

    async def claim_many(
        self, version_id: int, worker_id: str, now: float, limit: int
    ) -> list[Job]:
        rows = await self._all(
            f"{_HEAD} UPDATE jobs SET {_TAKE} FROM head WHERE jobs.id = head.id "
            f"AND jobs.status='IN_QUEUE' {_RETURNING_JOINED}",
            now,
            worker_id,
            version_id,
            limit,
        )
        return _jobs(rows)

    async def claim_job(self, job_id: str, worker_id: str, now: float) -> Job | None:
        row = await self._one(
            f"UPDATE jobs SET {_TAKE} WHERE id=$3 AND status='IN_QUEUE' {_RETURNING}",
            now,
            worker_id,
            job_id,
        )
        return None if row is None else _job(row)

    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        now: float,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        cost_usd: float = 0.0,
        from_statuses: Iterable[JobStatus] = (JobStatus.IN_PROGRESS,),
        worker_id: str | None = None,
    ) -> Job | None:
        row = await self._one(
            f"UPDATE jobs SET status=$3, output=$4, error=$5, finished_at=$6, cost_usd=$7, "
            f"{_PENDING_IF_HOOKED} WHERE id=$1 AND status = ANY($8::text[]) AND {_OWNED} "
            f"{_RETURNING}",
            job_id,
            worker_id,
            status.value,
            output_json(output),
            None if error is None else orjson.dumps(error),
            now,
            cost_usd,
            [s.value for s in from_statuses],
        )
        return None if row is None else _job(row)

    async def requeue(self, job_id: str, *, worker_id: str | None = None) -> bool:
        changed = await self._exec(
            "UPDATE jobs SET status='IN_QUEUE', worker_id=NULL "
            f"WHERE id=$1 AND status='IN_PROGRESS' AND {_OWNED}",
            job_id,
            worker_id,
        )
        return changed == 1

    async def retry(self, job_id: str, account: str, now: float, ttl_s: float) -> Job | None:
        async with self._transaction():  # the history of its earlier run goes with it
            await self._exec(
                "DELETE FROM webhook_deliveries WHERE job_id IN (SELECT id FROM jobs "
                "WHERE id=$1 AND account=$2 AND status IN ('FAILED', 'TIMED_OUT'))",
                job_id,
                account,
            )
            row = await self._one(
                "UPDATE jobs SET status='IN_QUEUE', attempts=0, output=NULL, error=NULL, "
                "started_at=NULL, finished_at=NULL, worker_id=NULL, cost_usd=0, cold_start=0, "
                "cold_start_detail=NULL, webhook_state=NULL, created_at=$1, expires_at=$2 "
                "WHERE id=$3 AND account=$4 AND status IN ('FAILED', 'TIMED_OUT') "
                f"{_RETURNING}",
                now,
                now + ttl_s,
                job_id,
                account,
            )
        return None if row is None else _job(row)

    async def mark_cold_start(self, job_id: str, detail: dict[str, float]) -> None:
        await self._exec(
            "UPDATE jobs SET cold_start=1, cold_start_detail=$1 WHERE id=$2",
            orjson.dumps(detail),
            job_id,
        )

    async def purge_queue(self, endpoint_id: int, now: float) -> list[Job]:
        return await cancel_queued(self, endpoint_id, now)

    async def fail_queued(self, version_id: int, error: dict[str, Any], now: float) -> list[Job]:
        rows = await self._all(
            f"UPDATE jobs SET status='FAILED', finished_at=$1, error=$2, {_PENDING_IF_HOOKED} "
            f"WHERE version_id=$3 AND status='IN_QUEUE' {_RETURNING}",
            now,
            orjson.dumps(error),
            version_id,
        )
        return _jobs(rows)

    async def purge_expired(self, now: float) -> int:
        total = 0
        while True:
            deleted = await self._purge_batch(now)
            total += deleted
            if deleted < PURGE_BATCH:
                break
        if total >= VACUUM_AFTER:  # reclaim now: a big pass otherwise leaves bloat behind
            await self._exec(
                "VACUUM (ANALYZE) jobs, job_logs, webhook_deliveries, idempotency_keys"
            )
        return total

    async def _purge_batch(self, now: float) -> int:
        """Delete one batch of expired jobs with their history and idempotency keys."""
        async with self._transaction():
            ids = [r[0] for r in await self._all(_EXPIRED, now, PURGE_BATCH)]
            if ids:
                for table in ("job_logs", "webhook_deliveries", "idempotency_keys"):
                    await self._exec(f"DELETE FROM {table} WHERE job_id = ANY($1::text[])", ids)
                await self._exec("DELETE FROM jobs WHERE id = ANY($1::text[])", ids)
        return len(ids)

    # counters
    async def queue_stats(self) -> dict[int, QueueStat]:
        rows = await self._all(_QUEUE_STATS)
        if rows and int(rows[0]["deltas"]) > FOLD_AFTER:
            await self._exec(_FOLD)
        return {
            int(r[0]): QueueStat(queued=int(r[1]), oldest_created_at=r[2])
            for r in rows
            if r[1] > 0 and r[2] is not None
        }

    async def in_progress(self) -> list[Job]:
        rows = await self._all(f"SELECT {JOB_COLUMNS} FROM jobs WHERE status='IN_PROGRESS'")
        return [_job(r) for r in rows]

    async def health(self, endpoint_id: int) -> dict[str, int]:
        rows = await self._all(
            "SELECT status, COUNT(*), COUNT(*) FILTER (WHERE attempts > 1) FROM jobs "
            "WHERE endpoint_id=$1 GROUP BY status",
            endpoint_id,
        )
        counts = {r[0]: int(r[1]) for r in rows}
        return {
            "completed": counts.get("COMPLETED", 0),
            "failed": counts.get("FAILED", 0) + counts.get("TIMED_OUT", 0),
            "inProgress": counts.get("IN_PROGRESS", 0),
            "inQueue": counts.get("IN_QUEUE", 0),
            "retried": sum(int(r[2]) for r in rows),
        }
