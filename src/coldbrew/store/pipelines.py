"""The store's pipelines concern: pipeline definitions, their runs and each stage's result.

A run's stages are durable so that a restart or a `/retry` resumes a run without running a
finished stage again: the driver (`control/pipelines.py`) writes a stage's job id as soon as the
job exists, and its output, timings and cost once the job is final. The stage jobs themselves
are ordinary jobs in the queue (`JobQueue`); this part only points at them.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

from coldbrew.store.models import JobStatus


@dataclass
class PipelineDef:
    """A named pipeline of an account: its checked JSON definition, revised on each change."""

    account: str
    name: str
    definition: dict[str, Any]
    revision: int
    created_at: float
    updated_at: float


@dataclass
class PipelineRun:
    """One run of a pipeline: one id for the whole run, as a job has.

    `definition` is the pipeline as it was when the run started (a later change does not alter
    a run in flight). `attempt` counts `/retry`s: a stage job is submitted once per attempt.
    """

    id: str
    account: str
    pipeline: str
    definition: dict[str, Any]
    input: dict[str, Any]
    status: JobStatus
    created_at: float
    attempt: int = 1
    output: Any = None
    error: dict[str, Any] | None = None
    finished_at: float | None = None
    webhook_url: str | None = None  # where the run's final status is posted, signed


@dataclass
class StageRecord:
    """One stage of a run: the job that ran it and, once final, what it gave and cost."""

    run_id: str
    key: str  # unique in the run: the step name, `each[2]/one` inside a map
    step: str
    endpoint: str
    job_id: str
    attempt: int
    status: JobStatus
    created_at: float
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cold_start: bool = False
    cost_usd: float = 0.0  # this attempt's job
    earlier_cost_usd: float = 0.0  # the jobs of this stage's earlier attempts (billed too)


class PipelineStore(Protocol):
    """Pipeline definitions, runs and stage results."""

    @abstractmethod
    async def put_pipeline(
        self, account: str, name: str, definition: dict[str, Any], now: float
    ) -> tuple[PipelineDef, bool]:
        """Create or replace a definition; (it, whether it changed). Unchanged keeps revision."""

    @abstractmethod
    async def get_pipeline(self, account: str, name: str) -> PipelineDef | None: ...

    @abstractmethod
    async def list_pipelines(self, account: str) -> list[PipelineDef]:
        """The account's pipelines by name."""

    @abstractmethod
    async def delete_pipeline(self, account: str, name: str) -> bool:
        """Remove a definition (its runs stay readable); whether there was one."""

    @abstractmethod
    async def create_run(self, run: PipelineRun) -> None: ...

    @abstractmethod
    async def get_run(self, run_id: str, account: str | None = None) -> PipelineRun | None:
        """The run (the account's, when given)."""

    @abstractmethod
    async def unfinished_runs(self) -> list[PipelineRun]:
        """Runs not yet final, oldest first: what a starting server resumes."""

    @abstractmethod
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
        """Move a run to `status` with its output or error (a retry also gives `attempt`)."""

    @abstractmethod
    async def purge_runs(self, finished_before: float) -> int:
        """Delete the final runs that ended before `finished_before`, with their stages; how
        many runs went (the stage jobs themselves expire with the queue's retention)."""

    @abstractmethod
    async def put_stage(self, stage: StageRecord) -> None:
        """Create or replace the run's stage with this key."""

    @abstractmethod
    async def stages(self, run_id: str) -> list[StageRecord]:
        """The run's stages in the order they were first created."""
