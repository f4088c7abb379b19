"""A `Job` as one row of the SQLite `jobs` table, both ways: shared by the queue, which owns the
table, and the history, which reads final jobs back (pending webhooks)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from coldbrew.errors import InvalidInput
from coldbrew.store.models import Job, JobStatus, WebhookState

JOB_COLUMNS = (
    "id, account, endpoint_id, endpoint, version_id, status, input, output, error, attempts, "
    "max_attempts, created_at, started_at, finished_at, expires_at, timeout_s, worker_id, "
    "cold_start, cold_start_detail, cost_usd, webhook_url, webhook_state, cached"
)
#: `INSERT INTO jobs (JOB_COLUMNS) VALUES (JOB_PLACEHOLDERS)`
JOB_PLACEHOLDERS = ", ".join("?" * len(JOB_COLUMNS.split(",")))
#: what `ON CONFLICT (id) DO UPDATE SET` replaces: every column but the id
JOB_UPSERT = ", ".join(f"{c.strip()}=excluded.{c.strip()}" for c in JOB_COLUMNS.split(",")[1:])

_NAMES = [c.strip() for c in JOB_COLUMNS.split(",")]
_BLOBS = {"input", "output", "error", "cold_start_detail"}  # JSON documents, stored as bytes


def _pick(i: int, name: str) -> str:
    value = f"max(value) FILTER (WHERE key % {len(_NAMES)} = {i})"
    return f"CAST({value} AS BLOB)" if name in _BLOBS else value


#: Upsert many jobs in one statement from `jobs_json(jobs)`: one flat JSON array, regrouped
#: into rows inside SQLite. `executemany` takes and drops the GIL around every row, and with
#: the event loop's thread busy each take waited for the interpreter's switch interval: a
#: write-back of 400 jobs held the store thread for 35-75 ms and stalled the loop behind it
#: (`json_each` keeps every number exact; rows come out in `key` order).
SAVE_JOBS = (
    f"INSERT INTO jobs ({JOB_COLUMNS}) "
    f"SELECT {', '.join(_pick(i, n) for i, n in enumerate(_NAMES))} FROM json_each(?) "
    f"WHERE true GROUP BY key / {len(_NAMES)} ON CONFLICT (id) DO UPDATE SET {JOB_UPSERT}"
)


def _loads(blob: bytes | str | None) -> Any:
    return None if blob is None else orjson.loads(blob)


def job(row: sqlite3.Row) -> Job:
    """The job in a row selected with `JOB_COLUMNS`."""
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


def output_json(value: Any) -> bytes | None:
    """A job's output as stored (numpy arrays as lists)."""
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def job_values(job: Job) -> tuple[Any, ...]:
    """A job as the values of JOB_COLUMNS, in order."""
    return (
        job.id,
        job.account,
        job.endpoint_id,
        job.endpoint,
        job.version_id,
        job.status.value,
        _input_json(job.input),
        output_json(job.output),
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


def jobs_json(jobs: list[Job]) -> bytes:
    """The jobs' `job_values`, one after another, as one JSON array (for `SAVE_JOBS`)."""
    return orjson.dumps(
        [v.decode() if isinstance(v, bytes) else v for j in jobs for v in job_values(j)]
    )
