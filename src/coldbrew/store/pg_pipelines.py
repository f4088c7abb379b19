"""PostgreSQL side of the pipelines part: definitions, runs, and one row per stage of a run.

JSON values are stored as bytes written by orjson (as the queue stores inputs and outputs), so
both stores read back exactly what was written. A definition's revision is bumped with one
conditional upsert, so two gateways defining the same pipeline at once both see a consistent
revision.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from coldbrew.store.models import JobStatus
from coldbrew.store.pg_db import Migration, Part, PostgresDatabase
from coldbrew.store.pipelines import PipelineDef, PipelineRun, PipelineStore, StageRecord

PART = Part(
    "pipelines",
    (
        Migration(
            "pipeline definitions, runs and stage results",
            (
                "CREATE TABLE pipelines (account TEXT NOT NULL, name TEXT NOT NULL, "
                "definition BYTEA NOT NULL, revision INTEGER NOT NULL, "
                "created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, "
                "PRIMARY KEY (account, name))",
                "CREATE TABLE pipeline_runs (id TEXT PRIMARY KEY, account TEXT NOT NULL, "
                "pipeline TEXT NOT NULL, definition BYTEA NOT NULL, input BYTEA NOT NULL, "
                "status TEXT NOT NULL, attempt INTEGER NOT NULL, output BYTEA, error BYTEA, "
                "created_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION, "
                "webhook_url TEXT)",
                "CREATE INDEX pipeline_runs_open ON pipeline_runs (status) "
                "WHERE status IN ('IN_QUEUE', 'IN_PROGRESS')",
                "CREATE TABLE pipeline_stages (run_id TEXT NOT NULL "
                "REFERENCES pipeline_runs (id) ON DELETE CASCADE, key TEXT NOT NULL, "
                "seq BIGSERIAL, step TEXT NOT NULL, endpoint TEXT NOT NULL, "
                "job_id TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL, "
                "output BYTEA, error BYTEA, created_at DOUBLE PRECISION NOT NULL, "
                "started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, "
                "cold_start BOOLEAN NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, "
                "earlier_cost_usd DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, key))",
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
_DEF_COLUMNS = "account, name, definition, revision, created_at, updated_at"


def _dump(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def _load(blob: bytes | None) -> Any:
    return None if blob is None else orjson.loads(blob)


def _run(r: asyncpg.Record) -> PipelineRun:
    return PipelineRun(
        r[0], r[1], r[2], _load(r[3]), _load(r[4]), JobStatus(r[5]), r[6], r[7],
        _load(r[8]), _load(r[9]), r[10], r[11],
    )  # fmt: skip


def _definition(r: asyncpg.Record) -> PipelineDef:
    return PipelineDef(r[0], r[1], _load(r[2]), r[3], r[4], r[5])


def _stage(r: asyncpg.Record) -> StageRecord:
    return StageRecord(
        r[0], r[1], r[2], r[3], r[4], r[5], JobStatus(r[6]), r[7], _load(r[8]), _load(r[9]),
        r[10], r[11], r[12], r[13], r[14],
    )  # fmt: skip


class PostgresPipelines(PostgresDatabase, PipelineStore):
    """`PipelineStore` on PostgreSQL."""

    async def put_pipeline(
        self, account: str, name: str, definition: dict[str, Any], now: float
    ) -> tuple[PipelineDef, bool]:
        blob = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
        async with self._transaction():
            row = await self._one(
                "SELECT revision, created_at, definition FROM pipelines "
                "WHERE account=$1 AND name=$2 FOR UPDATE",
                account,
                name,
            )
            if row is not None and bytes(row[2]) == blob:
                return PipelineDef(account, name, definition, row[0], row[1], now), False
            revision, created = (1, now) if row is None else (row[0] + 1, row[1])
            await self._exec(
                f"INSERT INTO pipelines ({_DEF_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (account, name) DO UPDATE SET definition=excluded.definition, "
                "revision=excluded.revision, updated_at=excluded.updated_at",
                account,
                name,
                blob,
                revision,
                created,
                now,
            )
        return PipelineDef(account, name, definition, revision, created, now), True

    async def get_pipeline(self, account: str, name: str) -> PipelineDef | None:
        row = await self._one(
            f"SELECT {_DEF_COLUMNS} FROM pipelines WHERE account=$1 AND name=$2", account, name
        )
        return None if row is None else _definition(row)

    async def list_pipelines(self, account: str) -> list[PipelineDef]:
        rows = await self._all(
            f"SELECT {_DEF_COLUMNS} FROM pipelines WHERE account=$1 ORDER BY name", account
        )
        return [_definition(r) for r in rows]

    async def delete_pipeline(self, account: str, name: str) -> bool:
        deleted = await self._exec(
            "DELETE FROM pipelines WHERE account=$1 AND name=$2", account, name
        )
        return deleted > 0

    async def create_run(self, run: PipelineRun) -> None:
        await self._exec(
            f"INSERT INTO pipeline_runs ({_RUN_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            run.id, run.account, run.pipeline, _dump(run.definition), _dump(run.input),
            run.status.value, run.created_at, run.attempt, _dump(run.output), _dump(run.error),
            run.finished_at, run.webhook_url,
        )  # fmt: skip

    async def get_run(self, run_id: str, account: str | None = None) -> PipelineRun | None:
        row = await self._one(
            f"SELECT {_RUN_COLUMNS} FROM pipeline_runs "
            "WHERE id=$1 AND ($2::text IS NULL OR account=$2)",
            run_id,
            account,
        )
        return None if row is None else _run(row)

    async def unfinished_runs(self) -> list[PipelineRun]:
        rows = await self._all(
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
        await self._exec(
            "UPDATE pipeline_runs SET status=$1, output=$2, error=$3, finished_at=$4, "
            "attempt=COALESCE($5, attempt) WHERE id=$6",
            status.value,
            _dump(output),
            _dump(error),
            finished_at,
            attempt,
            run_id,
        )

    async def purge_runs(self, finished_before: float) -> int:
        ended = (
            "SELECT id FROM pipeline_runs WHERE finished_at < $1 AND status IN "
            "('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT')"
        )
        async with self._transaction():
            await self._exec(
                f"DELETE FROM pipeline_stages WHERE run_id IN ({ended})", finished_before
            )
            return await self._exec(
                f"DELETE FROM pipeline_runs WHERE id IN ({ended})", finished_before
            )

    async def put_stage(self, stage: StageRecord) -> None:
        await self._exec(
            f"INSERT INTO pipeline_stages ({_STAGE_COLUMNS}) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) "
            "ON CONFLICT (run_id, key) DO UPDATE SET step=excluded.step, "
            "endpoint=excluded.endpoint, job_id=excluded.job_id, attempt=excluded.attempt, "
            "status=excluded.status, created_at=excluded.created_at, output=excluded.output, "
            "error=excluded.error, started_at=excluded.started_at, "
            "finished_at=excluded.finished_at, cold_start=excluded.cold_start, "
            "cost_usd=excluded.cost_usd, earlier_cost_usd=excluded.earlier_cost_usd",
            stage.run_id, stage.key, stage.step, stage.endpoint, stage.job_id, stage.attempt,
            stage.status.value, stage.created_at, _dump(stage.output), _dump(stage.error),
            stage.started_at, stage.finished_at, stage.cold_start, stage.cost_usd,
            stage.earlier_cost_usd,
        )  # fmt: skip

    async def stages(self, run_id: str) -> list[StageRecord]:
        rows = await self._all(
            f"SELECT {_STAGE_COLUMNS} FROM pipeline_stages WHERE run_id=$1 ORDER BY seq", run_id
        )
        return [_stage(r) for r in rows]
