"""The embedded job store: one SQLite file in WAL mode.

Durability: every accepted job is committed before the client hears back. With WAL and
`synchronous=NORMAL` a committed transaction survives a crash or `kill -9` of the server; only a
power loss can drop the last few. Every call runs on the store's own thread (`store/guard.py`),
never on the event loop: a lock held elsewhere or a stalled disk must not freeze the gateway.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from coldbrew.crypto import Sealer
from coldbrew.errors import InvalidInput
from coldbrew.store import sqlite_queue
from coldbrew.store.base import Store
from coldbrew.store.guard import BUSY_TIMEOUT_MS, on_store_thread, store_executor
from coldbrew.store.models import (
    Account,
    Budget,
    Endpoint,
    Job,
    JobStatus,
    JobTiming,
    QueueStat,
    UsageKind,
    UsageRow,
    Version,
    WebhookState,
)
from coldbrew.store.sqlite_credentials import SQLiteCredentials, webhook_context

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY, webhook_secret TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts(name),
    admin INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, name TEXT NOT NULL,
    current_version_id INTEGER, created_at REAL NOT NULL, deleted_at REAL);
CREATE UNIQUE INDEX IF NOT EXISTS endpoints_live ON endpoints(account, name)
    WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint_id INTEGER NOT NULL REFERENCES endpoints(id),
    number INTEGER NOT NULL, artifact_sha TEXT NOT NULL, module TEXT NOT NULL,
    class_name TEXT NOT NULL, spec TEXT NOT NULL, input_schema TEXT NOT NULL,
    created_at REAL NOT NULL, source TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, endpoint_id INTEGER NOT NULL,
    endpoint TEXT NOT NULL, version_id INTEGER NOT NULL, status TEXT NOT NULL,
    input BLOB NOT NULL, output BLOB, error BLOB, attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL, created_at REAL NOT NULL, started_at REAL,
    finished_at REAL, expires_at REAL NOT NULL, timeout_s REAL NOT NULL, worker_id TEXT,
    cold_start INTEGER NOT NULL DEFAULT 0, cold_start_detail BLOB,
    cost_usd REAL NOT NULL DEFAULT 0, webhook_url TEXT, webhook_state TEXT,
    cached INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(status, version_id, created_at);
CREATE INDEX IF NOT EXISTS jobs_endpoint ON jobs(endpoint_id, status);
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs(expires_at);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_at);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    account TEXT NOT NULL, key TEXT NOT NULL, job_id TEXT NOT NULL, PRIMARY KEY (account, key));
CREATE INDEX IF NOT EXISTS idempotency_keys_job ON idempotency_keys(job_id);
CREATE TABLE IF NOT EXISTS job_logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, ts REAL NOT NULL,
    stream TEXT NOT NULL, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS job_logs_job ON job_logs(job_id, seq);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    job_id TEXT NOT NULL, attempt INTEGER NOT NULL, at REAL NOT NULL, status_code INTEGER,
    error TEXT, PRIMARY KEY (job_id, attempt));
CREATE TABLE IF NOT EXISTS usage (
    worker_id TEXT NOT NULL, account TEXT NOT NULL, endpoint TEXT NOT NULL,
    version_id INTEGER NOT NULL, hardware TEXT NOT NULL, kind TEXT NOT NULL,
    hour_start REAL NOT NULL, seconds REAL NOT NULL,
    PRIMARY KEY (worker_id, kind, hour_start));
CREATE INDEX IF NOT EXISTS usage_hour ON usage(hour_start);
CREATE TABLE IF NOT EXISTS budgets (
    account TEXT NOT NULL, endpoint TEXT NOT NULL, monthly_usd REAL NOT NULL,
    alerts_pct TEXT NOT NULL, hard_stop INTEGER NOT NULL, webhook_url TEXT,
    created_at REAL NOT NULL, PRIMARY KEY (account, endpoint));
CREATE TABLE IF NOT EXISTS budget_alerts (
    account TEXT NOT NULL, endpoint TEXT NOT NULL, period TEXT NOT NULL,
    threshold INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (account, endpoint, period, threshold));
CREATE TABLE IF NOT EXISTS traffic (
    endpoint_id INTEGER NOT NULL, day INTEGER NOT NULL, bucket INTEGER NOT NULL,
    count INTEGER NOT NULL, PRIMARY KEY (endpoint_id, day, bucket));
"""

_JOB_COLUMNS = (
    "id, account, endpoint_id, endpoint, version_id, status, input, output, error, attempts, "
    "max_attempts, created_at, started_at, finished_at, expires_at, timeout_s, worker_id, "
    "cold_start, cold_start_detail, cost_usd, webhook_url, webhook_state, cached"
)
_JOB_UPSERT = ", ".join(f"{c.strip()}=excluded.{c.strip()}" for c in _JOB_COLUMNS.split(",")[1:])
_IDS_PER_QUERY = 500  # well under SQLite's limit on bound parameters
_VERSION_COLUMNS = (
    "v.id, v.endpoint_id, e.account, e.name, v.number, v.artifact_sha, v.module, v.class_name, "
    "v.spec, v.input_schema, v.created_at, v.source"
)


def _loads(blob: bytes | str | None) -> Any:
    return None if blob is None else orjson.loads(blob)


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        account=row["account"],
        endpoint_id=row["endpoint_id"],
        endpoint=row["endpoint"],
        version_id=row["version_id"],
        status=JobStatus(row["status"]),
        input=_loads(row["input"]),
        output=_loads(row["output"]),
        error=_loads(row["error"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        expires_at=row["expires_at"],
        timeout_s=row["timeout_s"],
        worker_id=row["worker_id"],
        cold_start=bool(row["cold_start"]),
        cold_start_detail=_loads(row["cold_start_detail"]),
        cost_usd=row["cost_usd"],
        webhook_url=row["webhook_url"],
        webhook_state=WebhookState(row["webhook_state"]) if row["webhook_state"] else None,
        cached=bool(row["cached"]),
    )


def _version(row: sqlite3.Row) -> Version:
    return Version(
        id=row[0],
        endpoint_id=row[1],
        account=row[2],
        endpoint=row[3],
        number=row[4],
        artifact_sha=row[5],
        module=row[6],
        class_name=row[7],
        spec=orjson.loads(row[8]),
        input_schema=orjson.loads(row[9]),
        created_at=row[10],
        source=orjson.loads(row[11]) if row[11] else {},
    )


def _endpoint(row: sqlite3.Row) -> Endpoint:
    return Endpoint(
        id=row["id"],
        account=row["account"],
        name=row["name"],
        current_version_id=row["current_version_id"],
        created_at=row["created_at"],
    )


@on_store_thread
class SQLiteStore(SQLiteCredentials, Store):
    """`Store` on one SQLite database file (or `:memory:` for unit tests), used from one thread.

    With a `sealer`, secrets are sealed at rest (`coldbrew.crypto`); see `SQLiteCredentials`.
    """

    def __init__(self, path: Path | str, sealer: Sealer | None = None) -> None:
        self._executor = store_executor()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_size_limit = 67108864")  # a big job's WAL shrinks back
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
        if "cached" not in columns:  # databases made before the result cache
            self._db.execute("ALTER TABLE jobs ADD COLUMN cached INTEGER NOT NULL DEFAULT 0")
        self._init_credentials(sealer)
        sqlite_queue.install(self._db)  # account weights, queue counters kept by triggers
        if "source" not in {r[1] for r in self._db.execute("PRAGMA table_info(versions)")}:
            self._db.execute("ALTER TABLE versions ADD COLUMN source TEXT")  # before issue 12
        self._db.execute("CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at REAL)")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        self._db.execute("COMMIT")

    def _rollback(self) -> None:
        """Roll back, unless SQLite already did (it does on a full disk or an I/O error)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    async def probe(self, now: float) -> None:
        """One small write: raises `StorageUnavailable` while the storage cannot take writes,
        and clears the fault when it can again (the scheduler calls it while one lasts)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # frees a full disk's WAL if it can
        self._db.execute("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (now,))

    def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(sql, tuple(params)).fetchone()
        return row

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(self._db.execute(sql, tuple(params)).fetchall())

    # accounts and keys
    async def create_account(self, name: str, webhook_secret: str, now: float) -> Account:
        self._db.execute(
            "INSERT OR IGNORE INTO accounts (name, webhook_secret, created_at) VALUES (?, ?, ?)",
            (name, self._seal(webhook_secret, webhook_context(name)), now),
        )
        account = await self.get_account(name)
        assert account is not None
        return account

    async def get_account(self, name: str) -> Account | None:
        row = self._one(f"{sqlite_queue.ACCOUNT_SELECT} WHERE name=?", [name])
        return self._account(row) if row else None

    def _account(self, row: sqlite3.Row) -> Account:
        return sqlite_queue.account(row, self._open(row[1], webhook_context(row[0])))

    async def list_accounts(self) -> list[Account]:
        return [self._account(r) for r in self._all(sqlite_queue.ACCOUNT_SELECT)]

    async def update_account(
        self,
        name: str,
        *,
        weight: float | None = None,
        max_queued_jobs: int | None = None,
        clear_max_queued_jobs: bool = False,
    ) -> Account | None:
        row = sqlite_queue.update_account(
            self._db, name, weight, max_queued_jobs, clear_max_queued_jobs
        )
        return self._account(row) if row else None

    async def count_accounts(self) -> int:
        row = self._one("SELECT COUNT(*) FROM accounts")
        return int(row[0]) if row else 0

    # endpoints and versions
    async def add_version(
        self,
        account: str,
        endpoint: str,
        artifact_sha: str,
        module: str,
        class_name: str,
        spec: dict[str, Any],
        input_schema: dict[str, Any],
        now: float,
        source: dict[str, Any] | None = None,
    ) -> tuple[Version, bool]:
        spec_json = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode()
        schema_json = orjson.dumps(input_schema, option=orjson.OPT_SORT_KEYS).decode()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            existing = await self.get_endpoint(account, endpoint)
            if existing is None:
                cursor = self._db.execute(
                    "INSERT INTO endpoints (account, name, created_at) VALUES (?, ?, ?)",
                    (account, endpoint, now),
                )
                endpoint_id = int(cursor.lastrowid or 0)
            else:
                endpoint_id = existing.id
                current = await self.get_version(existing.current_version_id)
                same = (current.artifact_sha, current.module, current.class_name) == (
                    artifact_sha,
                    module,
                    class_name,
                ) and (current.spec, current.input_schema) == (spec, input_schema)
                if same:
                    self._db.execute("COMMIT")
                    return current, False
            row = self._one(
                "SELECT COALESCE(MAX(number), 0) FROM versions WHERE endpoint_id=?", [endpoint_id]
            )
            number = int(row[0]) + 1 if row else 1
            cursor = self._db.execute(
                "INSERT INTO versions (endpoint_id, number, artifact_sha, module, class_name, "
                "spec, input_schema, created_at, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    endpoint_id,
                    number,
                    artifact_sha,
                    module,
                    class_name,
                    spec_json,
                    schema_json,
                    now,
                    orjson.dumps(source).decode() if source else None,
                ),
            )
            version_id = int(cursor.lastrowid or 0)
            self._db.execute(
                "UPDATE endpoints SET current_version_id=? WHERE id=?", (version_id, endpoint_id)
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return await self.get_version(version_id), True

    async def get_endpoint(self, account: str, name: str) -> Endpoint | None:
        row = self._one(
            "SELECT * FROM endpoints WHERE account=? AND name=? AND deleted_at IS NULL",
            [account, name],
        )
        return _endpoint(row) if row else None

    async def list_endpoints(self, account: str | None) -> list[Endpoint]:
        if account is None:
            rows = self._all("SELECT * FROM endpoints WHERE deleted_at IS NULL ORDER BY name")
        else:
            rows = self._all(
                "SELECT * FROM endpoints WHERE account=? AND deleted_at IS NULL ORDER BY name",
                [account],
            )
        return [_endpoint(r) for r in rows]

    async def delete_endpoint(self, account: str, name: str, now: float) -> Endpoint | None:
        endpoint = await self.get_endpoint(account, name)
        if endpoint is None:
            return None
        self._db.execute("UPDATE endpoints SET deleted_at=? WHERE id=?", (now, endpoint.id))
        await self.purge_queue(endpoint.id, now)
        return endpoint

    async def get_version(self, version_id: int) -> Version:
        row = self._one(
            f"SELECT {_VERSION_COLUMNS} FROM versions v JOIN endpoints e ON e.id = v.endpoint_id "
            "WHERE v.id=?",
            [version_id],
        )
        if row is None:
            raise KeyError(version_id)
        return _version(row)

    async def list_versions(self, endpoint_id: int) -> list[Version]:
        rows = self._db.execute(
            f"SELECT {_VERSION_COLUMNS} FROM versions v JOIN endpoints e ON e.id = v.endpoint_id "
            "WHERE v.endpoint_id=? ORDER BY v.number DESC",
            [endpoint_id],
        ).fetchall()
        return [_version(row) for row in rows]

    # jobs
    async def create_job(self, job: Job) -> None:
        self._db.execute(
            f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 23)})", _job_values(job)
        )

    async def save_jobs(self, jobs: list[Job]) -> None:
        with self._transaction():
            self._db.executemany(
                f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 23)}) "
                f"ON CONFLICT (id) DO UPDATE SET {_JOB_UPSERT}",
                [_job_values(job) for job in jobs],
            )

    async def get_job(self, job_id: str, account: str | None = None) -> Job | None:
        row = self._one(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", [job_id])
        if row is None or (account is not None and row["account"] != account):
            return None
        return _job(row)

    async def account_jobs(
        self, account: str | None, limit: int, before: float | None = None
    ) -> list[Job]:
        rows = self._all(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE (? IS NULL OR account=?) "
            "AND (? IS NULL OR created_at < ?) ORDER BY created_at DESC, rowid DESC LIMIT ?",
            [account, account, before, before, limit],
        )
        return [_job(row) for row in rows]

    async def get_jobs(self, job_ids: Sequence[str], account: str | None = None) -> list[Job]:
        wanted = list(dict.fromkeys(job_ids))
        found: dict[str, Job] = {}
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            chunk = wanted[start : start + _IDS_PER_QUERY]
            sql = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})"
            params: list[Any] = list(chunk)
            if account is not None:
                sql += " AND account=?"
                params.append(account)
            found.update((row["id"], _job(row)) for row in self._all(sql, params))
        return [found[i] for i in wanted if i in found]

    async def job_for_key(self, account: str, key: str) -> Job | None:
        row = self._one(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = (SELECT job_id FROM "
            "idempotency_keys WHERE account=? AND key=?)",
            [account, key],
        )
        return None if row is None else _job(row)

    async def create_job_once(self, job: Job, key: str) -> Job:
        with self._transaction():
            row = self._one(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = (SELECT job_id FROM "
                "idempotency_keys WHERE account=? AND key=?)",
                [job.account, key],
            )
            if row is not None:
                return _job(row)
            self._db.execute(
                "INSERT OR REPLACE INTO idempotency_keys (account, key, job_id) VALUES (?, ?, ?)",
                (job.account, key, job.id),
            )
            await self.create_job(job)  # inline statements: no other coroutine runs in between
        return job

    async def claim(self, version_id: int, worker_id: str, now: float) -> Job | None:
        row = self._one(
            "UPDATE jobs SET status='IN_PROGRESS', attempts=attempts+1, started_at=?, "
            "worker_id=? WHERE id = (SELECT id FROM jobs WHERE status='IN_QUEUE' AND "
            "version_id=? ORDER BY created_at, rowid LIMIT 1) AND status='IN_QUEUE' "
            f"RETURNING {_JOB_COLUMNS}",
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
                f"RETURNING {_JOB_COLUMNS}",
                [now, worker_id, *ids],
            )
        order = {job_id: i for i, job_id in enumerate(ids)}
        return sorted((_job(r) for r in rows), key=lambda j: order[j.id])

    async def claim_job(self, job_id: str, worker_id: str, now: float) -> Job | None:
        row = self._one(
            "UPDATE jobs SET status='IN_PROGRESS', attempts=attempts+1, started_at=?, "
            f"worker_id=? WHERE id=? AND status='IN_QUEUE' RETURNING {_JOB_COLUMNS}",
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
    ) -> Job | None:
        allowed = [s.value for s in from_statuses]
        row = self._one(
            "UPDATE jobs SET status=?, output=?, error=?, finished_at=?, cost_usd=?, "
            "webhook_state=CASE WHEN webhook_url IS NULL THEN NULL ELSE 'pending' END "
            f"WHERE id=? AND status IN ({', '.join('?' * len(allowed))}) "
            f"RETURNING {_JOB_COLUMNS}",
            [
                status.value,
                None if output is None else orjson.dumps(output, option=orjson.OPT_SERIALIZE_NUMPY),
                None if error is None else orjson.dumps(error),
                now,
                cost_usd,
                job_id,
                *allowed,
            ],
        )
        return _job(row) if row else None

    async def requeue(self, job_id: str) -> bool:
        cursor = self._db.execute(
            "UPDATE jobs SET status='IN_QUEUE', worker_id=NULL WHERE id=? AND status='IN_PROGRESS'",
            (job_id,),
        )
        return cursor.rowcount == 1

    async def retry(self, job_id: str, account: str, now: float, ttl_s: float) -> Job | None:
        self._db.execute(
            "DELETE FROM webhook_deliveries WHERE job_id IN (SELECT id FROM jobs WHERE id=? "
            "AND account=? AND status IN ('FAILED', 'TIMED_OUT'))",
            (job_id, account),
        )
        row = self._one(
            "UPDATE jobs SET status='IN_QUEUE', attempts=0, output=NULL, error=NULL, "
            "started_at=NULL, finished_at=NULL, worker_id=NULL, cost_usd=0, cold_start=0, "
            "cold_start_detail=NULL, webhook_state=NULL, created_at=?, expires_at=? "
            "WHERE id=? AND account=? AND status IN ('FAILED', 'TIMED_OUT') "
            f"RETURNING {_JOB_COLUMNS}",
            [now, now + ttl_s, job_id, account],
        )
        return _job(row) if row else None

    async def mark_cold_start(self, job_id: str, detail: dict[str, float]) -> None:
        self._db.execute(
            "UPDATE jobs SET cold_start=1, cold_start_detail=? WHERE id=?",
            (orjson.dumps(detail), job_id),
        )

    async def purge_queue(self, endpoint_id: int, now: float) -> list[Job]:
        rows = self._all(
            "UPDATE jobs SET status='CANCELLED', finished_at=?, "
            "webhook_state=CASE WHEN webhook_url IS NULL THEN NULL ELSE 'pending' END "
            f"WHERE endpoint_id=? AND status='IN_QUEUE' RETURNING {_JOB_COLUMNS}",
            [now, endpoint_id],
        )
        return [_job(r) for r in rows]

    async def fail_queued(self, version_id: int, error: dict[str, Any], now: float) -> list[Job]:
        rows = self._all(
            "UPDATE jobs SET status='FAILED', finished_at=?, error=?, "
            "webhook_state=CASE WHEN webhook_url IS NULL THEN NULL ELSE 'pending' END "
            f"WHERE version_id=? AND status='IN_QUEUE' RETURNING {_JOB_COLUMNS}",
            [now, orjson.dumps(error), version_id],
        )
        return [_job(r) for r in rows]

    async def queue_stats(self) -> dict[int, QueueStat]:
        return sqlite_queue.queue_stats(self._db)  # counters: no scan of the queue

    async def in_progress(self) -> list[Job]:
        rows = self._all(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status='IN_PROGRESS'")
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

    async def recent_jobs(self, endpoint_id: int, limit: int) -> list[Job]:
        rows = self._all(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE endpoint_id=? "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?",
            [endpoint_id, limit],
        )
        return [_job(r) for r in rows]

    async def job_timings(
        self, since: float, account: str | None, endpoint_id: int | None = None
    ) -> list[JobTiming]:
        sql = (
            "SELECT endpoint, status, created_at, started_at, finished_at, cold_start, cached "
            "FROM jobs WHERE finished_at >= ?"
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
            JobTiming(r[0], JobStatus(r[1]), r[2], r[3], r[4], bool(r[5]), bool(r[6])) for r in rows
        ]

    async def purge_expired(self, now: float) -> int:
        expired = (
            "SELECT id FROM jobs WHERE expires_at < ? AND status IN "
            "('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT') "
            "AND (webhook_state IS NULL OR webhook_state != 'pending')"
        )
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(f"DELETE FROM job_logs WHERE job_id IN ({expired})", (now,))
            self._db.execute(f"DELETE FROM webhook_deliveries WHERE job_id IN ({expired})", (now,))
            self._db.execute(f"DELETE FROM idempotency_keys WHERE job_id IN ({expired})", (now,))
            cursor = self._db.execute(f"DELETE FROM jobs WHERE id IN ({expired})", (now,))
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return cursor.rowcount

    # logs and webhooks
    async def append_logs(self, rows: list[tuple[str, float, str, str]]) -> None:
        self._db.executemany(
            "INSERT INTO job_logs (job_id, ts, stream, line) VALUES (?, ?, ?, ?)", rows
        )

    async def job_logs(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT ts, stream, line FROM job_logs WHERE job_id=? ORDER BY seq", [job_id]
        )
        return [{"ts": r[0], "stream": r[1], "line": r[2]} for r in rows]

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
            if state is not None:
                self._db.execute(
                    "UPDATE jobs SET webhook_state=? WHERE id=?", (state.value, job_id)
                )

    async def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT attempt, at, status_code, error FROM webhook_deliveries WHERE job_id=? "
            "ORDER BY attempt",
            [job_id],
        )
        return [{"attempt": r[0], "at": r[1], "statusCode": r[2], "error": r[3]} for r in rows]

    async def pending_webhooks(self) -> list[Job]:
        rows = self._all(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE webhook_state='pending'")
        return [_job(r) for r in rows]

    # traffic history
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

    async def cold_starts(self, endpoint_id: int, since: float) -> int:
        row = self._one(
            "SELECT COUNT(*) FROM jobs WHERE endpoint_id=? AND created_at >= ? AND cold_start=1",
            [endpoint_id, since],
        )
        return int(row[0]) if row else 0

    # budgets ('' stands for the whole account in the key columns)
    async def set_budget(self, budget: Budget) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO budgets (account, endpoint, monthly_usd, alerts_pct, "
            "hard_stop, webhook_url, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                budget.account,
                budget.endpoint or "",
                budget.monthly_usd,
                orjson.dumps(budget.alerts_pct).decode(),
                int(budget.hard_stop),
                budget.webhook_url,
                budget.created_at,
            ),
        )

    async def budgets(self, account: str | None) -> list[Budget]:
        sql = "SELECT * FROM budgets" + (" WHERE account=?" if account else "")
        rows = self._all(sql + " ORDER BY account, endpoint", [account] if account else [])
        return [
            Budget(
                r["account"],
                r["endpoint"] or None,
                r["monthly_usd"],
                orjson.loads(r["alerts_pct"]),
                bool(r["hard_stop"]),
                r["webhook_url"],
                r["created_at"],
            )
            for r in rows
        ]

    async def record_alert(
        self, account: str, endpoint: str | None, period: str, threshold: int, at: float
    ) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO budget_alerts (account, endpoint, period, threshold, at) "
            "VALUES (?, ?, ?, ?, ?)",
            (account, endpoint or "", period, threshold, at),
        )
        return cursor.rowcount == 1

    async def alerts(self, account: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT endpoint, period, threshold, at FROM budget_alerts WHERE account=? ORDER BY at",
            [account],
        )
        return [
            {"endpoint": r[0] or None, "period": r[1], "thresholdPct": r[2], "at": r[3]}
            for r in rows
        ]

    # usage
    async def add_usage(self, rows: list[UsageRow]) -> None:
        self._db.executemany(
            "INSERT INTO usage (worker_id, account, endpoint, version_id, hardware, kind, "
            "hour_start, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (worker_id, kind, hour_start) DO UPDATE SET "
            "seconds = seconds + excluded.seconds",
            [
                (
                    r.worker_id,
                    r.account,
                    r.endpoint,
                    r.version_id,
                    r.hardware,
                    r.kind.value,
                    r.hour_start,
                    r.seconds,
                )
                for r in rows
            ],
        )

    async def usage(self, since: float, account: str | None) -> list[UsageRow]:
        sql = (
            "SELECT worker_id, account, endpoint, version_id, hardware, kind, hour_start, seconds "
            "FROM usage WHERE hour_start >= ?"
        )
        params: list[Any] = [since]
        if account is not None:
            sql += " AND account = ?"
            params.append(account)
        return [
            UsageRow(r[0], r[1], r[2], r[3], r[4], UsageKind(r[5]), r[6], r[7])
            for r in self._all(sql + " ORDER BY hour_start", params)
        ]

    async def close(self) -> None:
        self.fault = None  # nothing more to report on a closed store
        self._db.close()
        self._executor.shutdown(wait=False)


def _input_json(value: Any) -> bytes:
    """A job's input as stored; what orjson cannot write (nested past 254 levels) is refused
    as the caller's error before the job is acknowledged."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        raise InvalidInput(
            f"the input cannot be stored: {exc}",
            hint="send plain JSON nested less than 254 levels deep",
        ) from None


def _job_values(job: Job) -> tuple[Any, ...]:
    """A job as the values of _JOB_COLUMNS, in order."""
    return (
        job.id,
        job.account,
        job.endpoint_id,
        job.endpoint,
        job.version_id,
        job.status.value,
        _input_json(job.input),
        None if job.output is None else orjson.dumps(job.output, option=orjson.OPT_SERIALIZE_NUMPY),
        None if job.error is None else orjson.dumps(job.error),
        job.attempts,
        job.max_attempts,
        job.created_at,
        job.started_at,
        job.finished_at,
        job.expires_at,
        job.timeout_s,
        job.worker_id,
        int(job.cold_start),
        None if job.cold_start_detail is None else orjson.dumps(job.cold_start_detail),
        job.cost_usd,
        job.webhook_url,
        job.webhook_state.value if job.webhook_state else None,
        int(job.cached),
    )
