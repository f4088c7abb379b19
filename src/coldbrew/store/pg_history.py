"""PostgreSQL side of the history: log lines, webhook delivery attempts, traffic, and the timing
and webhook columns of final jobs (read from the queue's `jobs` table).

Appends come in batches from the scheduler's buffered writer (`executemany`, one round trip
per batch); deleting a job's history when it expires or is retried is the queue's.
"""

from __future__ import annotations

from typing import Any

from coldbrew.store.history import History
from coldbrew.store.models import Job, JobStatus, JobTiming, WebhookState
from coldbrew.store.pg_db import Migration, Part, PostgresDatabase
from coldbrew.store.sqlite_job_rows import JOB_COLUMNS
from coldbrew.store.sqlite_job_rows import job as _job

PART = Part(
    "history",
    (
        Migration(
            "job logs, webhook deliveries and traffic",
            (
                "CREATE TABLE job_logs (seq BIGSERIAL PRIMARY KEY, job_id TEXT NOT NULL, "
                "ts DOUBLE PRECISION NOT NULL, stream TEXT NOT NULL, line TEXT NOT NULL)",
                "CREATE INDEX job_logs_job ON job_logs (job_id, seq)",
                "CREATE TABLE webhook_deliveries (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, "
                "at DOUBLE PRECISION NOT NULL, status_code INTEGER, error TEXT, "
                "PRIMARY KEY (job_id, attempt))",
                "CREATE TABLE traffic (endpoint_id BIGINT NOT NULL, day INTEGER NOT NULL, "
                "bucket INTEGER NOT NULL, count BIGINT NOT NULL, "
                "PRIMARY KEY (endpoint_id, day, bucket))",
            ),
        ),
    ),
)


class PostgresHistory(PostgresDatabase, History):
    """`History` on PostgreSQL."""

    async def job_timings(
        self, since: float, account: str | None, endpoint_id: int | None = None
    ) -> list[JobTiming]:
        rows = await self._all(
            "SELECT endpoint, status, created_at, started_at, finished_at, cold_start, cached, "
            "version_id FROM jobs WHERE finished_at >= $1 AND ($2::text IS NULL OR account=$2) "
            "AND ($3::bigint IS NULL OR endpoint_id=$3) ORDER BY finished_at, seq",
            since,
            account,
            endpoint_id,
        )
        return [
            JobTiming(r[0], JobStatus(r[1]), r[2], r[3], r[4], bool(r[5]), bool(r[6]), r[7])
            for r in rows
        ]

    async def cold_starts(self, endpoint_id: int, since: float) -> int:
        count = await self._value(
            "SELECT COUNT(*) FROM jobs WHERE endpoint_id=$1 AND created_at >= $2 AND cold_start=1",
            endpoint_id,
            since,
        )
        return int(count)

    # logs
    async def append_logs(self, rows: list[tuple[str, float, str, str]]) -> None:
        await self._many(
            "INSERT INTO job_logs (job_id, ts, stream, line) VALUES ($1, $2, $3, $4)", rows
        )

    async def job_logs(self, job_id: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT ts, stream, line FROM job_logs WHERE job_id=$1 ORDER BY seq", job_id
        )
        return [{"ts": r[0], "stream": r[1], "line": r[2]} for r in rows]

    # webhooks
    async def record_delivery(
        self,
        job_id: str,
        attempt: int,
        at: float,
        status_code: int | None,
        error: str | None,
        state: WebhookState | None,
    ) -> None:
        async with self._transaction():  # the attempt and the state land together
            await self._exec(
                "INSERT INTO webhook_deliveries (job_id, attempt, at, status_code, error) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, attempt) DO UPDATE SET "
                "at = excluded.at, status_code = excluded.status_code, error = excluded.error",
                job_id,
                attempt,
                at,
                status_code,
                error,
            )
            if state is not None:
                await self._exec(
                    "UPDATE jobs SET webhook_state=$1 WHERE id=$2", state.value, job_id
                )

    async def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT attempt, at, status_code, error FROM webhook_deliveries WHERE job_id=$1 "
            "ORDER BY attempt",
            job_id,
        )
        return [{"attempt": r[0], "at": r[1], "statusCode": r[2], "error": r[3]} for r in rows]

    async def pending_webhooks(self) -> list[Job]:
        rows = await self._all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE webhook_state='pending' ORDER BY seq"
        )
        return [_job(r) for r in rows]

    # traffic
    async def record_arrivals(self, counts: list[tuple[int, int, int, int]]) -> None:
        async with self._transaction():
            await self._many(
                "INSERT INTO traffic (endpoint_id, day, bucket, count) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (endpoint_id, day, bucket) "
                "DO UPDATE SET count = traffic.count + excluded.count",
                counts,
            )

    async def traffic(self, endpoint_id: int, since_day: int) -> list[tuple[int, int, int]]:
        rows = await self._all(
            "SELECT day, bucket, count FROM traffic WHERE endpoint_id=$1 AND day >= $2 "
            "ORDER BY day, bucket",
            endpoint_id,
            since_day,
        )
        return [(r[0], r[1], int(r[2])) for r in rows]
