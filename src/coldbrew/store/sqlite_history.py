"""SQLite side of the history: log lines, webhook delivery attempts, traffic, and the timing
and webhook columns of final jobs (read from the queue's `jobs` table, in the same database).

Appends come in batches from the scheduler's buffered writer, one transaction each; deleting a
job's history when the job expires or is retried is the queue's (it owns when a job goes).
"""

from __future__ import annotations

from typing import Any

import orjson

from coldbrew.store.history import History
from coldbrew.store.models import Job, JobStatus, JobTiming, WebhookState
from coldbrew.store.sqlite_db import Migration, Part, SQLiteDatabase, add_columns, ddl
from coldbrew.store.sqlite_job_rows import JOB_COLUMNS
from coldbrew.store.sqlite_job_rows import job as _job

PART = Part(
    "history",
    (
        Migration(
            "job logs, webhook deliveries and traffic as of 0.x",
            (
                ddl(
                    "CREATE TABLE IF NOT EXISTS job_logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                    "job_id TEXT NOT NULL, ts REAL NOT NULL, stream TEXT NOT NULL, "
                    "line TEXT NOT NULL)",
                    "CREATE INDEX IF NOT EXISTS job_logs_job ON job_logs(job_id, seq)",
                    "CREATE TABLE IF NOT EXISTS webhook_deliveries (job_id TEXT NOT NULL, "
                    "attempt INTEGER NOT NULL, at REAL NOT NULL, status_code INTEGER, "
                    "error TEXT, PRIMARY KEY (job_id, attempt))",
                    "CREATE TABLE IF NOT EXISTS traffic (endpoint_id INTEGER NOT NULL, "
                    "day INTEGER NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL, "
                    "PRIMARY KEY (endpoint_id, day, bucket))",
                ),
            ),
        ),
        Migration(
            "webhook deliveries as an outbox: a gateway claims a pending webhook for a while "
            "(claimed_by, claimed_until), so another delivers it if that gateway dies",
            (
                add_columns(
                    "jobs", {"webhook_claimed_by": "TEXT", "webhook_claimed_until": "REAL"}
                ),
                ddl(
                    "CREATE INDEX IF NOT EXISTS jobs_webhooks_pending ON jobs(finished_at) "
                    "WHERE webhook_state = 'pending'",
                    "CREATE TABLE IF NOT EXISTS webhook_hooks (job_id TEXT PRIMARY KEY, "
                    "hook BLOB NOT NULL)",
                    # a job's hook goes with it (expiry, purge), whoever deletes it
                    "CREATE TRIGGER IF NOT EXISTS webhook_hooks_gone AFTER DELETE ON jobs "
                    "BEGIN DELETE FROM webhook_hooks WHERE job_id = old.id; END",
                ),
            ),
        ),
    ),
)

_CLAIM = (
    "UPDATE jobs SET webhook_claimed_by=?, webhook_claimed_until=? WHERE id IN ("
    "SELECT id FROM jobs WHERE webhook_state='pending' AND (webhook_claimed_until IS NULL "
    "OR webhook_claimed_until < ? OR webhook_claimed_by = ?){only} ORDER BY finished_at, id LIMIT ?"
    f") RETURNING {JOB_COLUMNS}"
)


class SQLiteHistory(SQLiteDatabase, History):
    """`History` on the store's database."""

    async def job_timings(
        self, since: float, account: str | None, endpoint_id: int | None = None
    ) -> list[JobTiming]:
        sql = (
            "SELECT endpoint, status, created_at, started_at, finished_at, cold_start, cached, "
            "version_id FROM jobs WHERE finished_at >= ?"
        )
        params: list[Any] = [since]
        if account is not None:
            sql += " AND account=?"
            params.append(account)
        if endpoint_id is not None:
            sql += " AND endpoint_id=?"
            params.append(endpoint_id)
        rows = self._all(sql + " ORDER BY finished_at", params)
        return [
            JobTiming(r[0], JobStatus(r[1]), r[2], r[3], r[4], bool(r[5]), bool(r[6]), r[7])
            for r in rows
        ]

    async def cold_starts(self, endpoint_id: int, since: float) -> int:
        row = self._one(
            "SELECT COUNT(*) FROM jobs WHERE endpoint_id=? AND created_at >= ? AND cold_start=1",
            [endpoint_id, since],
        )
        return int(row[0]) if row else 0

    # logs
    async def append_logs(self, rows: list[tuple[str, float, str, str]]) -> None:
        self._db.executemany(
            "INSERT INTO job_logs (job_id, ts, stream, line) VALUES (?, ?, ?, ?)", rows
        )

    async def job_logs(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT ts, stream, line FROM job_logs WHERE job_id=? ORDER BY seq", [job_id]
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
        with self._transaction():  # the attempt and the state land together
            self._db.execute(
                "INSERT OR REPLACE INTO webhook_deliveries "
                "(job_id, attempt, at, status_code, error) VALUES (?, ?, ?, ?, ?)",
                (job_id, attempt, at, status_code, error),
            )
            if state is not None:  # delivered or given up: nobody holds it any more
                self._db.execute(
                    "UPDATE jobs SET webhook_state=?, webhook_claimed_by=NULL, "
                    "webhook_claimed_until=NULL WHERE id=?",
                    (state.value, job_id),
                )

    async def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT attempt, at, status_code, error FROM webhook_deliveries WHERE job_id=? "
            "ORDER BY attempt",
            [job_id],
        )
        return [{"attempt": r[0], "at": r[1], "statusCode": r[2], "error": r[3]} for r in rows]

    async def pending_webhooks(self) -> list[Job]:
        rows = self._all(f"SELECT {JOB_COLUMNS} FROM jobs WHERE webhook_state='pending'")
        return [_job(r) for r in rows]

    async def claim_webhooks(
        self, owner: str, now: float, until: float, limit: int, job_id: str | None = None
    ) -> list[Job]:
        params: list[Any] = [owner, until, now, owner]
        only = ""
        if job_id is not None:
            only, params = " AND id = ?", [*params, job_id]
        with self._transaction():
            rows = self._all(_CLAIM.format(only=only), [*params, limit])
        return sorted((_job(r) for r in rows), key=lambda j: (j.finished_at or 0.0, j.id))

    async def save_webhook_hook(self, job_id: str, hook: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO webhook_hooks (job_id, hook) VALUES (?, ?)",
            (job_id, orjson.dumps(hook)),
        )

    async def webhook_hook(self, job_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT hook FROM webhook_hooks WHERE job_id=?", [job_id])
        return None if row is None else dict(orjson.loads(row[0]))

    # traffic
    async def record_arrivals(self, counts: list[tuple[int, int, int, int]]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT INTO traffic (endpoint_id, day, bucket, count) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (endpoint_id, day, bucket) "
                "DO UPDATE SET count = count + excluded.count",
                counts,
            )

    async def traffic(self, endpoint_id: int, since_day: int) -> list[tuple[int, int, int]]:
        rows = self._all(
            "SELECT day, bucket, count FROM traffic WHERE endpoint_id=? AND day >= ?",
            [endpoint_id, since_day],
        )
        return [(r[0], r[1], r[2]) for r in rows]
