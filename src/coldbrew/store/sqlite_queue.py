"""SQLite side of the queue: the `jobs` table, idempotency keys, and queue counters kept by
triggers.

Counting a deep queue on every scheduler tick (`COUNT(*) … GROUP BY version_id`) cost time in
proportion to the queue: 17,000 queued jobs drained at ~60 jobs/s. Triggers on `jobs` keep one
counter row per version instead, in the same transaction as the change, whichever statement
moves a job in or out of `IN_QUEUE` (create, claim, cancel, requeue, retry, purge, expiry), so
the counts cannot drift from the rows; the oldest queued job is one index seek per version.
The counters are rebuilt from the rows once when the database is opened (`count_queue`: a
database written by an older coldbrew, or edited by hand, is counted correctly from then on).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from coldbrew.store.models import Job, JobStatus, QueueStat
from coldbrew.store.queue import JobQueue
from coldbrew.store.sqlite_db import Migration, Part, SQLiteDatabase, add_columns, ddl
from coldbrew.store.sqlite_job_rows import (
    JOB_COLUMNS,
    JOB_PLACEHOLDERS,
    SAVE_JOBS,
    job_values,
    jobs_json,
    output_json,
)
from coldbrew.store.sqlite_job_rows import job as _job

_COUNTER_IN = (
    "INSERT INTO queue_counts (version_id, account, queued) "
    "VALUES (new.version_id, new.account, 1) "
    "ON CONFLICT (version_id) DO UPDATE SET queued = queued + 1;"
)
_COUNTER_OUT = "UPDATE queue_counts SET queued = queued - 1 WHERE version_id = old.version_id;"


def _trigger(name: str, event: str, when: str, body: str) -> str:
    return f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON jobs WHEN {when} BEGIN {body} END"


PART = Part(
    "queue",
    (
        Migration(
            "jobs and idempotency keys as of 0.x (older databases gain jobs.cached), and the "
            "queue counters with their triggers",
            (
                ddl(
                    "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, account TEXT NOT NULL, "
                    "endpoint_id INTEGER NOT NULL, endpoint TEXT NOT NULL, "
                    "version_id INTEGER NOT NULL, status TEXT NOT NULL, input BLOB NOT NULL, "
                    "output BLOB, error BLOB, attempts INTEGER NOT NULL DEFAULT 0, "
                    "max_attempts INTEGER NOT NULL, created_at REAL NOT NULL, started_at REAL, "
                    "finished_at REAL, expires_at REAL NOT NULL, timeout_s REAL NOT NULL, "
                    "worker_id TEXT, cold_start INTEGER NOT NULL DEFAULT 0, "
                    "cold_start_detail BLOB, cost_usd REAL NOT NULL DEFAULT 0, "
                    "webhook_url TEXT, webhook_state TEXT, cached INTEGER NOT NULL DEFAULT 0)",
                    "CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(status, version_id, created_at)",
                    "CREATE INDEX IF NOT EXISTS jobs_endpoint ON jobs(endpoint_id, status)",
                    "CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs(expires_at)",
                    "CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_at)",
                    "CREATE TABLE IF NOT EXISTS idempotency_keys (account TEXT NOT NULL, "
                    "key TEXT NOT NULL, job_id TEXT NOT NULL, PRIMARY KEY (account, key))",
                    "CREATE INDEX IF NOT EXISTS idempotency_keys_job ON idempotency_keys(job_id)",
                ),
                add_columns("jobs", {"cached": "INTEGER NOT NULL DEFAULT 0"}),  # result cache
                ddl(
                    "CREATE TABLE IF NOT EXISTS queue_counts (version_id INTEGER PRIMARY KEY, "
                    "account TEXT NOT NULL, queued INTEGER NOT NULL)",
                    _trigger(
                        "queue_counts_insert", "INSERT", "new.status = 'IN_QUEUE'", _COUNTER_IN
                    ),
                    _trigger(
                        "queue_counts_enter",
                        "UPDATE OF status",
                        "new.status = 'IN_QUEUE' AND old.status != 'IN_QUEUE'",
                        _COUNTER_IN,
                    ),
                    _trigger(
                        "queue_counts_leave",
                        "UPDATE OF status",
                        "old.status = 'IN_QUEUE' AND new.status != 'IN_QUEUE'",
                        _COUNTER_OUT,
                    ),
                    _trigger(
                        "queue_counts_delete", "DELETE", "old.status = 'IN_QUEUE'", _COUNTER_OUT
                    ),
                ),
            ),
        ),
    ),
)

_REBUILD = (
    "INSERT INTO queue_counts (version_id, account, queued) "
    "SELECT version_id, MIN(account), COUNT(*) FROM jobs WHERE status = 'IN_QUEUE' "
    "GROUP BY version_id"
)

# the oldest queued job per version: a seek on jobs_queue(status, version_id, created_at)
QUEUE_STATS = (
    "SELECT q.version_id, q.queued, (SELECT MIN(created_at) FROM jobs "
    "WHERE status = 'IN_QUEUE' AND version_id = q.version_id) "
    "FROM queue_counts q WHERE q.queued > 0"
)
_OWNED = "(? IS NULL OR worker_id = ?)"  # owner-matched when a worker id is given
_IDS_PER_QUERY = 500  # well under SQLite's limit on bound parameters
_PENDING_IF_HOOKED = "webhook_state=CASE WHEN webhook_url IS NULL THEN NULL ELSE 'pending' END"
_BY_KEY = (
    f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = (SELECT job_id FROM idempotency_keys "
    "WHERE account=? AND key=?)"
)


def count_queue(db: sqlite3.Connection) -> None:
    """Count the queue from the rows once, when the database opens."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("DELETE FROM queue_counts")
        db.execute(_REBUILD)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def cancel_queued(db: sqlite3.Connection, endpoint_id: int, now: float) -> list[Job]:
    """Cancel every queued job of the endpoint (also what deleting the endpoint does)."""
    rows = db.execute(
        f"UPDATE jobs SET status='CANCELLED', finished_at=?, {_PENDING_IF_HOOKED} "
        f"WHERE endpoint_id=? AND status='IN_QUEUE' RETURNING {JOB_COLUMNS}",
        (now, endpoint_id),
    ).fetchall()
    return [_job(r) for r in rows]


class SQLiteQueue(SQLiteDatabase, JobQueue):
    """`JobQueue` on the store's database: each state change is one conditional statement."""

    # create and read
    async def create_job(self, job: Job) -> None:
        self._db.execute(
            f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({JOB_PLACEHOLDERS})", job_values(job)
        )

    async def save_jobs(self, jobs: list[Job]) -> None:
        with self._transaction():
            self._db.execute(SAVE_JOBS, (jobs_json(jobs),))

    async def create_job_once(self, job: Job, key: str) -> Job:
        with self._transaction():
            row = self._one(_BY_KEY, [job.account, key])
            if row is not None:
                return _job(row)
            self._db.execute(
                "INSERT OR REPLACE INTO idempotency_keys (account, key, job_id) VALUES (?, ?, ?)",
                (job.account, key, job.id),
            )
            await self.create_job(job)  # inline statements: no other coroutine runs in between
        return job

    async def job_for_key(self, account: str, key: str) -> Job | None:
        row = self._one(_BY_KEY, [account, key])
        return None if row is None else _job(row)

    async def get_job(self, job_id: str, account: str | None = None) -> Job | None:
        row = self._one(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=?", [job_id])
        if row is None or (account is not None and row["account"] != account):
            return None
        return _job(row)

    async def get_jobs(self, job_ids: Sequence[str], account: str | None = None) -> list[Job]:
        wanted = list(dict.fromkeys(job_ids))
        found: dict[str, Job] = {}
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            chunk = wanted[start : start + _IDS_PER_QUERY]
            sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})"
            params: list[Any] = list(chunk)
            if account is not None:
                sql += " AND account=?"
                params.append(account)
            found.update((row["id"], _job(row)) for row in self._all(sql, params))
        return [found[i] for i in wanted if i in found]

    async def account_jobs(
        self, account: str | None, limit: int, before: float | None = None
    ) -> list[Job]:
        rows = self._all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE (? IS NULL OR account=?) "
            "AND (? IS NULL OR created_at < ?) ORDER BY created_at DESC, rowid DESC LIMIT ?",
            [account, account, before, before, limit],
        )
        return [_job(row) for row in rows]

    async def recent_jobs(self, endpoint_id: int, limit: int) -> list[Job]:
        rows = self._all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE endpoint_id=? "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?",
            [endpoint_id, limit],
        )
        return [_job(r) for r in rows]

    # state changes
    async def claim(self, version_id: int, worker_id: str, now: float) -> Job | None:
        row = self._one(
            "UPDATE jobs SET status='IN_PROGRESS', attempts=attempts+1, started_at=?, "
            "worker_id=? WHERE id = (SELECT id FROM jobs WHERE status='IN_QUEUE' AND "
            "version_id=? ORDER BY created_at, rowid LIMIT 1) AND status='IN_QUEUE' "
            f"RETURNING {JOB_COLUMNS}",
            [now, worker_id, version_id],
        )
        return _job(row) if row else None

    async def claim_many(
        self, version_id: int, worker_id: str, now: float, limit: int
    ) -> list[Job]:
        with self._transaction():
            ids = [
                r[0]
                for r in self._all(
                    "SELECT id FROM jobs WHERE status='IN_QUEUE' AND version_id=? "
                    "ORDER BY created_at, rowid LIMIT ?",
                    [version_id, limit],
                )
            ]
            if not ids:
                return []
            rows = self._all(
                "UPDATE jobs SET status='IN_PROGRESS', attempts=attempts+1, started_at=?, "
                f"worker_id=? WHERE id IN ({', '.join('?' * len(ids))}) AND status='IN_QUEUE' "
                f"RETURNING {JOB_COLUMNS}",
                [now, worker_id, *ids],
            )
        order = {job_id: i for i, job_id in enumerate(ids)}
        return sorted((_job(r) for r in rows), key=lambda j: order[j.id])

    async def claim_job(self, job_id: str, worker_id: str, now: float) -> Job | None:
        row = self._one(
            "UPDATE jobs SET status='IN_PROGRESS', attempts=attempts+1, started_at=?, "
            f"worker_id=? WHERE id=? AND status='IN_QUEUE' RETURNING {JOB_COLUMNS}",
            [now, worker_id, job_id],
        )
        return _job(row) if row else None

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
        allowed = [s.value for s in from_statuses]
        row = self._one(
            f"UPDATE jobs SET status=?, output=?, error=?, finished_at=?, cost_usd=?, "
            f"{_PENDING_IF_HOOKED} WHERE id=? AND status IN ({', '.join('?' * len(allowed))}) "
            f"AND {_OWNED} RETURNING {JOB_COLUMNS}",
            [
                status.value,
                output_json(output),
                None if error is None else orjson.dumps(error),
                now,
                cost_usd,
                job_id,
                *allowed,
                worker_id,
                worker_id,
            ],
        )
        return _job(row) if row else None

    async def requeue(self, job_id: str, *, worker_id: str | None = None) -> bool:
        cursor = self._db.execute(
            "UPDATE jobs SET status='IN_QUEUE', worker_id=NULL WHERE id=? AND status='IN_PROGRESS' "
            f"AND {_OWNED}",
            (job_id, worker_id, worker_id),
        )
        return cursor.rowcount == 1

    async def retry(self, job_id: str, account: str, now: float, ttl_s: float) -> Job | None:
        self._db.execute(  # the history of its earlier run goes: a new run, new deliveries
            "DELETE FROM webhook_deliveries WHERE job_id IN (SELECT id FROM jobs WHERE id=? "
            "AND account=? AND status IN ('FAILED', 'TIMED_OUT'))",
            (job_id, account),
        )
        row = self._one(
            "UPDATE jobs SET status='IN_QUEUE', attempts=0, output=NULL, error=NULL, "
            "started_at=NULL, finished_at=NULL, worker_id=NULL, cost_usd=0, cold_start=0, "
            "cold_start_detail=NULL, webhook_state=NULL, created_at=?, expires_at=? "
            "WHERE id=? AND account=? AND status IN ('FAILED', 'TIMED_OUT') "
            f"RETURNING {JOB_COLUMNS}",
            [now, now + ttl_s, job_id, account],
        )
        return _job(row) if row else None

    async def mark_cold_start(self, job_id: str, detail: dict[str, float]) -> None:
        self._db.execute(
            "UPDATE jobs SET cold_start=1, cold_start_detail=? WHERE id=?",
            (orjson.dumps(detail), job_id),
        )

    async def purge_queue(self, endpoint_id: int, now: float) -> list[Job]:
        return cancel_queued(self._db, endpoint_id, now)

    async def fail_queued(self, version_id: int, error: dict[str, Any], now: float) -> list[Job]:
        rows = self._all(
            f"UPDATE jobs SET status='FAILED', finished_at=?, error=?, {_PENDING_IF_HOOKED} "
            f"WHERE version_id=? AND status='IN_QUEUE' RETURNING {JOB_COLUMNS}",
            [now, orjson.dumps(error), version_id],
        )
        return [_job(r) for r in rows]

    async def purge_expired(self, now: float) -> int:
        expired = (
            "SELECT id FROM jobs WHERE expires_at < ? AND status IN "
            "('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT') "
            "AND (webhook_state IS NULL OR webhook_state != 'pending')"
        )
        with self._transaction():  # a job goes with its history and its idempotency key
            self._db.execute(f"DELETE FROM job_logs WHERE job_id IN ({expired})", (now,))
            self._db.execute(f"DELETE FROM webhook_deliveries WHERE job_id IN ({expired})", (now,))
            self._db.execute(f"DELETE FROM idempotency_keys WHERE job_id IN ({expired})", (now,))
            cursor = self._db.execute(f"DELETE FROM jobs WHERE id IN ({expired})", (now,))
        return cursor.rowcount

    # counters
    async def queue_stats(self) -> dict[int, QueueStat]:
        return {  # from the counters: no scan of the queue
            r[0]: QueueStat(queued=r[1], oldest_created_at=r[2])
            for r in self._all(QUEUE_STATS)
            if r[2] is not None
        }

    async def in_progress(self) -> list[Job]:
        rows = self._all(f"SELECT {JOB_COLUMNS} FROM jobs WHERE status='IN_PROGRESS'")
        return [_job(r) for r in rows]

    async def health(self, endpoint_id: int) -> dict[str, int]:
        rows = self._all(
            "SELECT status, COUNT(*), SUM(attempts > 1) FROM jobs WHERE endpoint_id=? "
            "GROUP BY status",
            [endpoint_id],
        )
        counts = {r[0]: r[1] for r in rows}
        return {
            "completed": counts.get("COMPLETED", 0),
            "failed": counts.get("FAILED", 0) + counts.get("TIMED_OUT", 0),
            "inProgress": counts.get("IN_PROGRESS", 0),
            "inQueue": counts.get("IN_QUEUE", 0),
            "retried": sum(int(r[2] or 0) for r in rows),
        }
