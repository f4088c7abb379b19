"""The pipeline driver: defines pipelines, starts runs, and advances each run as its stage jobs
finish, so a pipeline is called like an endpoint (one id for the whole run).

Every stage is an ordinary job on its own endpoint, submitted through the job service (so it
scales, is billed and runs on that endpoint's hardware class), with an idempotency key made of
the run id, the run's attempt and the stage key: submitting it again after a crash gets the same
job back. A stage's job id is stored as soon as the job exists and its result once the job is
final (`store/pipelines.py`); evaluating a run again (`control/pipeflow.py`) answers finished
stages from the store. So a restarted server resumes every unfinished run without running a
finished stage again, and `/retry` of a failed run starts a new attempt that re-runs only the
stages that did not complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from coldbrew.clock import Clock
from coldbrew.control.graph import parse
from coldbrew.control.jobs import JobService, is_http_url
from coldbrew.control.pipeflow import Evaluator, RunFailed
from coldbrew.control.pipestages import StageRunner, with_job
from coldbrew.errors import (
    ColdbrewError,
    Conflict,
    InvalidPipeline,
    InvalidRequest,
    NotFound,
    StageFailed,
    job_error,
)
from coldbrew.store.base import Store
from coldbrew.store.models import Job, JobStatus, Principal
from coldbrew.store.pipelines import PipelineDef, PipelineRun, StageRecord

log = logging.getLogger("coldbrew.pipelines")
#: How often a waiting stage re-reads its job from the store as well as listening for its end:
#: with several gateways the job may end on another one, whose final listener this one never
#: hears (one store read per running stage per interval).
STAGE_POLL_S = 1.0
PURGE_EVERY_S = 60.0  # ended runs past their retention are deleted this often


@dataclass
class RunView:
    """A run as a status read shows it: the run, its stages, and the stages' jobs as they are now
    (a stage still running is read live from the job service)."""

    run: PipelineRun
    stages: list[StageRecord]


#: Told of every run that ended here with a webhook (the edge posts its status JSON).
OnRunEnd = Callable[[RunView], None]


class Pipelines:
    """Pipeline definitions and runs for every protocol; one per gateway process."""

    def __init__(
        self,
        store: Store,
        jobs: JobService,
        clock: Clock,
        retention_s: float = 86_400.0,
        on_end: OnRunEnd | None = None,
    ) -> None:
        self.on_end = on_end
        self.store = store
        self.jobs = jobs
        self.clock = clock
        self.retention_s = retention_s  # how long an ended run stays readable (as jobs do)
        self._purger: asyncio.Task[None] | None = None
        self._waiting: dict[str, list[asyncio.Future[Job]]] = {}  # stage job id → waiters
        self._ended: dict[str, list[asyncio.Future[None]]] = {}  # run id → runsync waiters
        self._tasks: dict[str, asyncio.Task[None]] = {}  # run id → its evaluation
        jobs.scheduler.add_final_listener(self._job_final)

    # -- definitions
    async def define(self, principal: Principal, definition: Any) -> tuple[PipelineDef, bool]:
        """Check and store a definition (create or replace); (it, whether it changed)."""
        endpoints = {e.name for e in await self.store.list_endpoints(principal.account)}
        graph = parse(definition, endpoints.__contains__)
        if graph.name in endpoints:
            raise InvalidPipeline(
                f"name: an endpoint is already named {graph.name!r}",
                hint="/v2/NAME calls either; give the pipeline another name",
            )
        return await self.store.put_pipeline(
            principal.account, graph.name, definition, self.clock.time()
        )

    async def get(self, principal: Principal, name: str) -> PipelineDef:
        found = await self.store.get_pipeline(principal.account, name)
        if found is None:
            raise NotFound(
                f"no pipeline {name!r} in account {principal.account!r}",
                hint="`coldbrew pipelines list` shows yours; POST /v1/pipelines creates one",
            )
        return found

    async def find(self, principal: Principal, name: str) -> PipelineDef | None:
        """The pipeline `name`, or None (then /v2/NAME is no pipeline)."""
        return await self.store.get_pipeline(principal.account, name)

    async def delete(self, principal: Principal, name: str) -> None:
        if not await self.store.delete_pipeline(principal.account, name):
            raise NotFound(f"no pipeline {name!r}", hint="`coldbrew pipelines list`")

    # -- runs
    async def submit(
        self,
        principal: Principal,
        found: PipelineDef,
        payload: dict[str, Any],
        wait_s: float | None,
        webhook: str | None = None,
    ) -> PipelineRun:
        """Start a run; with `wait_s`, wait up to that long for it to end. A `webhook` gets the
        run's final status, signed as a job's is."""
        if webhook is not None and not is_http_url(webhook):
            raise InvalidRequest("webhook must be an http(s) URL", hint="or leave it out")
        run = PipelineRun(
            id=str(uuid.uuid4()),
            account=principal.account,
            pipeline=found.name,
            definition=found.definition,
            input=payload,
            status=JobStatus.IN_PROGRESS,
            created_at=self.clock.time(),
            webhook_url=webhook,
        )
        await self.store.create_run(run)
        ended = self._watch_end(run.id) if wait_s is not None else None
        self._start(run)
        if ended is None or wait_s is None:
            return run
        with contextlib.suppress(TimeoutError):
            await self.clock.wait_for(asyncio.shield(ended), wait_s)
        return await self.store.get_run(run.id) or run

    async def view(self, principal: Principal, name: str, run_id: str) -> RunView:
        """The run with its stages, stage jobs still running read as they are now."""
        run = await self.store.get_run(run_id, principal.account)
        if run is None or run.pipeline != name:
            raise NotFound(f"no run {run_id!r} of pipeline {name!r}", hint="check the id /run gave")
        return await self._view(run)

    async def _view(self, run: PipelineRun) -> RunView:
        stages = await self.store.stages(run.id)
        live = []
        for stage in stages:
            if not stage.status.final and stage.job_id:
                job = await self.jobs.find(run.account, stage.job_id)
                if job is not None:
                    stage = with_job(stage, job)
            live.append(stage)
        return RunView(run, live)

    async def cancel(self, principal: Principal, name: str, run_id: str) -> RunView:
        """Cancel a run that has not ended, and every stage job of it still queued or running."""
        view = await self.view(principal, name, run_id)
        if view.run.status.final:
            return view
        task = self._tasks.pop(run_id, None)
        if task is not None:
            task.cancel()
        for stage in view.stages:
            if not stage.status.final and stage.job_id:
                with contextlib.suppress(ColdbrewError):
                    await self.jobs.cancel(principal, stage.job_id)
        await self.store.set_run(run_id, JobStatus.CANCELLED, finished_at=self.clock.time())
        await self._finished(run_id)
        return await self.view(principal, name, run_id)

    async def retry(self, principal: Principal, name: str, run_id: str) -> PipelineRun:
        """Resume a FAILED run from the stages that did not complete (a new attempt)."""
        view = await self.view(principal, name, run_id)
        run = view.run
        if run.status is not JobStatus.FAILED:
            raise Conflict(
                f"run {run_id} is {run.status.value}; only a FAILED run can be retried",
                hint="start a new run with /run instead",
            )
        attempt = run.attempt + 1
        await self.store.set_run(run_id, JobStatus.IN_PROGRESS, attempt=attempt)
        run = replace(run, status=JobStatus.IN_PROGRESS, attempt=attempt, error=None)
        self._start(run)
        return run

    async def stream(
        self, principal: Principal, name: str, run_id: str, wait_s: float
    ) -> tuple[PipelineRun, list[Any]]:
        """New chunks of the stage whose output is the run's (the last one), once it runs."""
        view = await self.view(principal, name, run_id)
        finals = parse(view.run.definition).final_tasks
        last = [s for s in view.stages if s.step in finals and s.job_id]
        if not last:
            if not view.run.status.final:
                await self.clock.sleep(min(wait_s, 0.25))  # nothing to stream yet
            return view.run, []
        job = await self.jobs.find(view.run.account, last[-1].job_id)
        if job is None:
            return view.run, []
        _, chunks = await self.jobs.poll_stream(job, wait_s)
        return await self.store.get_run(run_id) or view.run, chunks

    # -- the driver
    async def resume(self) -> int:
        """Start evaluating every run the store holds unfinished (after a restart)."""
        runs = await self.store.unfinished_runs()
        for run in runs:
            self._start(run)
        if self._purger is None:
            self._purger = asyncio.get_running_loop().create_task(self._purge_loop())
        if runs:
            log.info("resuming %d unfinished pipeline runs", len(runs))
        return len(runs)

    async def stop(self) -> None:
        """Stop evaluating (runs stay unfinished in the store, resumed by the next start)."""
        tasks = list(self._tasks.values())
        if self._purger is not None:
            tasks.append(self._purger)
            self._purger = None
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def purge(self) -> int:
        """Delete the runs that ended more than `retention_s` ago; how many went."""
        return await self.store.purge_runs(self.clock.time() - self.retention_s)

    async def _purge_loop(self) -> None:
        while True:
            await self.clock.sleep(PURGE_EVERY_S)
            try:
                await self.purge()
            except Exception:
                log.exception("purging old pipeline runs failed")

    def _start(self, run: PipelineRun) -> None:
        task = asyncio.get_running_loop().create_task(self._drive(run))
        self._tasks[run.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run.id, None))

    async def _drive(self, run: PipelineRun) -> None:
        """Evaluate the run to its end and store how it ended."""
        try:
            graph = parse(run.definition)
            stages = {s.key: s for s in await self.store.stages(run.id)}
            runner = StageRunner(run, stages, self.store, self.jobs, self.clock, self.final_job)
            output = await Evaluator(graph, run.id, runner).evaluate(run.input)
            status, error = JobStatus.COMPLETED, None
        except asyncio.CancelledError:
            raise
        except RunFailed as exc:
            status, output, error = JobStatus.FAILED, None, exc.error
        except Exception as exc:
            log.exception("pipeline run %s failed", run.id)
            status, output = JobStatus.FAILED, None
            error = job_error(StageFailed, f"the pipeline driver failed: {exc}")
        current = await self.store.get_run(run.id)
        if current is None or current.status.final or current.attempt != run.attempt:
            return  # cancelled, or driven to its end by another gateway: its ending stands
        await self.store.set_run(
            run.id, status, output=output, error=error, finished_at=self.clock.time()
        )
        await self._finished(run.id)

    async def _finished(self, run_id: str) -> None:
        """Wake the run's /runsync waiters; post its webhook, if it has one."""
        self._announce_end(run_id)
        run = await self.store.get_run(run_id)
        if run is not None and run.webhook_url and self.on_end is not None:
            self.on_end(await self._view(run))

    def _watch_end(self, run_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ended.setdefault(run_id, []).append(future)
        return future

    def _announce_end(self, run_id: str) -> None:
        for future in self._ended.pop(run_id, ()):
            if not future.done():
                future.set_result(None)

    def _job_final(self, job: Job) -> None:
        """The scheduler's final listener: wake the run waiting for this stage job."""
        for future in self._waiting.pop(job.id, ()):
            if not future.done():
                future.set_result(job)

    async def final_job(self, account: str, job_id: str) -> Job | None:
        """The stage job once it is final (None when it is gone from the store)."""
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(future)
        try:
            while True:
                job = await self.jobs.find(account, job_id)  # after registering: none missed
                if job is None or job.status.final:
                    return job
                with contextlib.suppress(TimeoutError):
                    return await self.clock.wait_for(asyncio.shield(future), STAGE_POLL_S)
        finally:
            waiters = self._waiting.get(job_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiting.pop(job_id, None)
