"""One run's stages: answer a finished stage from the store, else submit its job (once per
attempt, through the job service) and wait for it; every change is written to the store at
once, so a restart or a `/retry` picks up exactly where the run stood (`control/pipelines.py`
drives the run, `control/pipeflow.py` walks its graph)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

from coldbrew.clock import Clock
from coldbrew.control.graph import Step
from coldbrew.control.jobs import JobService
from coldbrew.control.pipeflow import RunFailed
from coldbrew.errors import ColdbrewError, StageFailed, job_error
from coldbrew.store.base import Store
from coldbrew.store.models import Job, JobStatus, Principal
from coldbrew.store.pipelines import PipelineRun, StageRecord

#: Waits for a stage job to be final: (account, job id) → the job, or None when it is gone.
FinalJob = Callable[[str, str], Awaitable[Job | None]]


class StageRunner:
    """The stage function of one run's evaluation: a stored result, else the stage's job."""

    def __init__(
        self,
        run: PipelineRun,
        stages: dict[str, StageRecord],
        store: Store,
        jobs: JobService,
        clock: Clock,
        final_job: FinalJob,
    ) -> None:
        self.run = run
        self.stages = stages
        self.store = store
        self.jobs = jobs
        self.clock = clock
        self.final_job = final_job

    async def __call__(self, key: str, step: Step, payload: dict[str, Any]) -> Any:
        stage = self.stages.get(key)
        if stage is not None and stage.status is JobStatus.COMPLETED:
            return stage.output  # finished before a restart or in an earlier attempt
        if stage is None or stage.attempt != self.run.attempt:
            earlier = 0.0 if stage is None else stage.cost_usd + stage.earlier_cost_usd
            stage = await self._submit(key, step, payload, earlier)
        job = await self.final_job(self.run.account, stage.job_id)
        if job is None:
            raise RunFailed(key, _failure(stage, "its job is gone (purged)"))
        stage = with_job(stage, job)
        self.stages[key] = stage
        await self.store.put_stage(stage)
        if job.status is not JobStatus.COMPLETED:
            message = (job.error or {}).get("message") or job.status.value
            raise RunFailed(key, _failure(stage, message, job.error))
        return job.output

    async def _submit(
        self, key: str, step: Step, payload: dict[str, Any], earlier_cost_usd: float
    ) -> StageRecord:
        """Submit the stage's job (once per attempt: the idempotency key replays it)."""
        assert step.endpoint is not None
        run = self.run
        now = self.clock.time()
        try:
            submitted = await self.jobs.submit(
                Principal(run.account, admin=False),
                step.endpoint,
                payload,
                idempotency_key=f"pipeline:{run.id}:{run.attempt}:{key}",
            )
        except ColdbrewError as exc:
            stage = StageRecord(
                run.id, key, step.name, step.endpoint, "", run.attempt, JobStatus.FAILED, now
            )
            stage.error = {"type": exc.error_type, "message": exc.message, "hint": exc.hint}
            stage.finished_at, stage.earlier_cost_usd = now, earlier_cost_usd
            self.stages[key] = stage
            await self.store.put_stage(stage)
            raise RunFailed(key, _failure(stage, exc.message, stage.error)) from None
        stage = StageRecord(
            run.id, key, step.name, step.endpoint, submitted.job.id, run.attempt,
            submitted.job.status, now, earlier_cost_usd=earlier_cost_usd,
        )  # fmt: skip
        self.stages[key] = stage
        await self.store.put_stage(stage)
        return stage


def with_job(stage: StageRecord, job: Job) -> StageRecord:
    """The stage as its job stands now."""
    return replace(
        stage,
        status=job.status,
        output=job.output if job.status is JobStatus.COMPLETED else None,
        error=job.error,
        started_at=job.started_at,
        finished_at=job.finished_at,
        cold_start=job.cold_start,
        cost_usd=job.cost_usd,
    )


def _failure(
    stage: StageRecord, message: str, cause: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run's error record for a stage that did not complete: which stage, which job, why."""
    where = f"stage {stage.key!r} (endpoint {stage.endpoint!r}"
    where += f", job {stage.job_id})" if stage.job_id else ")"
    return job_error(
        StageFailed,
        f"{where} failed: {message}",
        hint="fix the cause, then POST /v2/PIPELINE/retry/RUN_ID resumes from this stage",
        stage=stage.key,
        endpoint=stage.endpoint,
        jobId=stage.job_id or None,
        cause=cause,
    )


def total_cost_usd(stages: Iterable[StageRecord]) -> float:
    """A run's cost: the sum of its stages' jobs (each billed on its own endpoint's hardware),
    the jobs of failed attempts that a `/retry` replaced included."""
    return sum(s.cost_usd + s.earlier_cost_usd for s in stages)
