"""SQLite side of the pipelines part: definitions, runs, and one row per stage of a run."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from coldbrew.store.models import JobStatus
from coldbrew.store.pipelines import PipelineDef, PipelineRun, PipelineStore, StageRecord
from coldbrew.store.sqlite_db import Migration, Part, SQLiteDatabase, ddl

PART = Part(
    "pipelines",
    (
        Migration(
            "pipeline definitions, runs and stage results",
            (
                ddl(
                    "CREATE TABLE IF NOT EXISTS pipelines (account TEXT NOT NULL, "
                    "name TEXT NOT NULL, definition BLOB NOT NULL, revision INTEGER NOT NULL, "
                    "created_at REAL NOT NULL, updated_at REAL NOT NULL, "
                    "PRIMARY KEY (account, name))",
                    "CREATE TABLE IF NOT EXISTS pipeline_runs (id TEXT PRIMARY KEY, "
                    "account TEXT NOT NULL, pipeline TEXT NOT NULL, definition BLOB NOT NULL, "
                    "input BLOB NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL, "
                    "output BLOB, error BLOB, created_at REAL NOT NULL, finished_at REAL, "
                    "webhook_url TEXT)",
                    "CREATE INDEX IF NOT EXISTS pipeline_runs_open ON pipeline_runs(status) "
                    "WHERE status IN ('IN_QUEUE', 'IN_PROGRESS')",
                    "CREATE TABLE IF NOT EXISTS pipeline_stages (run_id TEXT NOT NULL "
                    "REFERENCES pipeline_runs(id) ON DELETE CASCADE, key TEXT NOT NULL, "
                    "seq INTEGER NOT NULL, step TEXT NOT NULL, endpoint TEXT NOT NULL, "
                    "job_id TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL, "
                    "output BLOB, error BLOB, created_at REAL NOT NULL, started_at REAL, "
                    "finished_at REAL, cold_start INTEGER NOT NULL, cost_usd REAL NOT NULL, "
                    "earlier_cost_usd REAL NOT NULL, PRIMARY KEY (run_id, key))",
                ),
            ),
        ),
    ),
)

_RUN_COLUMNS = (
    "id, account, pipeline, definition, input, status, created_at, attempt, output, error, "
    "finished_at, webhook_url"
)
_STAGE_COLUMNS = (
    "run_id, key, step, endpoint, job_id, attempt, status, created_at, output, error, "
    "started_at, finished_at, cold_start, cost_usd, earlier_cost_usd"
)


def _dump(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def _load(blob: bytes | None) -> Any:
    return None if blob is None else orjson.loads(blob)


def _run(r: sqlite3.Row) -> PipelineRun:
    return PipelineRun(
        r[0], r[1], r[2], _load(r[3]), _load(r[4]), JobStatus(r[5]), r[6], r[7],
        _load(r[8]), _load(r[9]), r[10], r[11],
    )  # fmt: skip


def _definition(r: sqlite3.Row) -> PipelineDef:
    return PipelineDef(r[0], r[1], _load(r[2]), r[3], r[4], r[5])


def _stage(r: sqlite3.Row) -> StageRecord:
    return StageRecord(
        r[0], r[1], r[2], r[3], r[4], r[5], JobStatus(r[6]), r[7], _load(r[8]), _load(r[9]),
        r[10], r[11], bool(r[12]), r[13], r[14],
    )  # fmt: skip


class SQLitePipelines(SQLiteDatabase, PipelineStore):
    """`PipelineStore` on the store's database."""

    async def put_pipeline(
        self, account: str, name: str, definition: dict[str, Any], now: float
    ) -> tuple[PipelineDef, bool]:
        blob = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
        with self._transaction():
            row = self._one(
                "SELECT definition, revision, created_at FROM pipelines WHERE account=? AND name=?",
                (account, name),
            )
            if row is not None and bytes(row[0]) == blob:
                return PipelineDef(account, name, definition, row[1], row[2], now), False
            revision, created = (1, now) if row is None else (row[1] + 1, row[2])
            self._db.execute(
                "INSERT OR REPLACE INTO pipelines (account, name, definition, revision, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (account, name, blob, revision, created, now),
            )
        return PipelineDef(account, name, definition, revision, created, now), True

    async def get_pipeline(self, account: str, name: str) -> PipelineDef | None:
        row = self._one(
            "SELECT account, name, definition, revision, created_at, updated_at FROM pipelines "
            "WHERE account=? AND name=?",
            (account, name),
        )
        return None if row is None else _definition(row)

    async def list_pipelines(self, account: str) -> list[PipelineDef]:
        rows = self._all(
            "SELECT account, name, definition, revision, created_at, updated_at FROM pipelines "
            "WHERE account=? ORDER BY name",
            (account,),
        )
        return [_definition(r) for r in rows]

    async def delete_pipeline(self, account: str, name: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM pipelines WHERE account=? AND name=?", (account, name)
        )
        return cursor.rowcount > 0

    async def create_run(self, run: PipelineRun) -> None:
        self._db.execute(
            f"INSERT INTO pipeline_runs ({_RUN_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.id, run.account, run.pipeline, _dump(run.definition), _dump(run.input),
                run.status.value, run.created_at, run.attempt, _dump(run.output),
                _dump(run.error), run.finished_at, run.webhook_url,
            ),
        )  # fmt: skip

    async def get_run(self, run_id: str, account: str | None = None) -> PipelineRun | None:
        row = self._one(f"SELECT {_RUN_COLUMNS} FROM pipeline_runs WHERE id=?", (run_id,))
        if row is None or (account is not None and row[1] != account):
            return None
        return _run(row)

    async def unfinished_runs(self) -> list[PipelineRun]:
        rows = self._all(
            f"SELECT {_RUN_COLUMNS} FROM pipeline_runs "
            "WHERE status IN ('IN_QUEUE', 'IN_PROGRESS') ORDER BY created_at"
        )
        return [_run(r) for r in rows]

    async def set_run(
        self,
        run_id: str,
        status: JobStatus,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        finished_at: float | None = None,
        attempt: int | None = None,
    ) -> None:
        self._db.execute(
            "UPDATE pipeline_runs SET status=?, output=?, error=?, finished_at=?, "
            "attempt=COALESCE(?, attempt) WHERE id=?",
            (status.value, _dump(output), _dump(error), finished_at, attempt, run_id),
        )

    async def purge_runs(self, finished_before: float) -> int:
        ended = (
            "SELECT id FROM pipeline_runs WHERE finished_at < ? AND status IN "
            "('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT')"
        )
        with self._transaction():
            self._db.execute(
                f"DELETE FROM pipeline_stages WHERE run_id IN ({ended})", (finished_before,)
            )
            cursor = self._db.execute(
                f"DELETE FROM pipeline_runs WHERE id IN ({ended})", (finished_before,)
            )
        return cursor.rowcount

    async def put_stage(self, stage: StageRecord) -> None:
        self._db.execute(
            f"INSERT INTO pipeline_stages ({_STAGE_COLUMNS}, seq) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "(SELECT COUNT(*) FROM pipeline_stages WHERE run_id=?)) "
            "ON CONFLICT (run_id, key) DO UPDATE SET step=excluded.step, "
            "endpoint=excluded.endpoint, job_id=excluded.job_id, attempt=excluded.attempt, "
            "status=excluded.status, created_at=excluded.created_at, output=excluded.output, "
            "error=excluded.error, started_at=excluded.started_at, "
            "finished_at=excluded.finished_at, cold_start=excluded.cold_start, "
            "cost_usd=excluded.cost_usd, earlier_cost_usd=excluded.earlier_cost_usd",
            (
                stage.run_id, stage.key, stage.step, stage.endpoint, stage.job_id, stage.attempt,
                stage.status.value, stage.created_at, _dump(stage.output), _dump(stage.error),
                stage.started_at, stage.finished_at, int(stage.cold_start), stage.cost_usd,
                stage.earlier_cost_usd, stage.run_id,
            ),
        )  # fmt: skip

    async def stages(self, run_id: str) -> list[StageRecord]:
        rows = self._all(
            f"SELECT {_STAGE_COLUMNS} FROM pipeline_stages WHERE run_id=? ORDER BY seq",
            (run_id,),
        )
        return [_stage(r) for r in rows]
