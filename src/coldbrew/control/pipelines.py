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

With several gateways a run is driven by the holder of its pipeline's lease,
`pipeline:<account>/<name>` (the cluster's ownership spreads them by rendezvous hashing and
calls `owned` every round): a run started on another gateway is picked up by the owner within
a round, and when the owner dies a survivor takes the lease and resumes its unfinished runs.
With no ownership attached (the tests, or one gateway) every run is driven where it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from coldbrew.clock import Clock
from coldbrew.control.graph import parse
from coldbrew.control.jobs import JobService, is_http_url
from coldbrew.control.pipeflow import Evaluator, RunFailed
from coldbrew.control.pipestages import StageRunner, with_job
from coldbrew.control.pipewaits import STAGE_POLL_S as STAGE_POLL_S  # where tests read it
from coldbrew.control.pipewaits import RunWaits
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
from coldbrew.store.models import JobStatus, Principal
from coldbrew.store.pipelines import PipelineDef, PipelineRun, StageRecord

log = logging.getLogger("coldbrew.pipelines")
PURGE_EVERY_S = 60.0  # ended runs past their retention are deleted this often
#: A gateway keeps asking for a pipeline's lease this long after it saw a run of it, so the
#: next run of a pipeline used now and then starts on its owner without waiting for a round.
KEEP_LEASE_S = 600.0
_LEASE = "pipeline:"
_RUN_IDS = uuid.UUID("6f1c2a4e-8d0b-4f55-9a51-3c2e7b9d0a11")  # uuid5 namespace of keyed runs


def pipeline_lease(account: str, name: str) -> str:
    """The lease whose holder drives the pipeline's unfinished runs."""
    return f"{_LEASE}{account}/{name}"


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
        self.waits = RunWaits(store, jobs, clock)
        self.final_job = self.waits.final_job  # a stage's wait for its job
        self._tasks: dict[str, asyncio.Task[None]] = {}  # run id → its evaluation
        self._claim: Callable[[str], Awaitable[bool]] | None = None
        self._round: Callable[[], Awaitable[None]] | None = None
        self._stopped = False  # drives no run after `stop`
        self._unfinished: list[PipelineRun] = []  # as the last `lease_names` read them
        self._seen: dict[str, float] = {}  # pipeline lease -> when a run of it was last seen
        #: told of every run that ended here (a trigger targeting the pipeline settles it)
        self.end_listeners: list[Callable[[PipelineRun], None]] = []
        jobs.scheduler.add_final_listener(self.waits.job_final)

    def attach(
        self, claim: Callable[[str], Awaitable[bool]], round_now: Callable[[], Awaitable[None]]
    ) -> None:
        """Drive only the runs of pipelines whose lease this gateway holds (before `resume`)."""
        self._claim, self._round = claim, round_now

    # -- the cluster's claimant protocol
    async def lease_names(self) -> set[str]:
        """A lease per pipeline with unfinished runs (and per one used here lately)."""
        self._unfinished = await self.store.unfinished_runs()
        now = self.clock.monotonic()
        for run in self._unfinished:
            self._seen[pipeline_lease(run.account, run.pipeline)] = now
        for name in [n for n, at in self._seen.items() if now - at > KEEP_LEASE_S]:
            del self._seen[name]
        return set(self._seen)

    async def owned(self, held: Mapping[str, int]) -> None:
        """Drive the unfinished runs of the pipelines whose lease is held; stop driving the
        others (their new owner resumes them from their stored stages)."""
        if self._stopped:
            return
        mine = {n for n in held if n.startswith(_LEASE)}
        by_id = {r.id: r for r in self._unfinished}
        for run_id, task in list(self._tasks.items()):
            run = by_id.get(run_id)
            if run is not None and pipeline_lease(run.account, run.pipeline) not in mine:
                task.cancel()
                self._tasks.pop(run_id, None)
        for run in self._unfinished:
            if pipeline_lease(run.account, run.pipeline) in mine and run.id not in self._tasks:
                current = await self.store.get_run(run.id)  # not ended or retried meanwhile
                if current is not None and not current.status.final and run.id not in self._tasks:
                    self._start(current)

    async def _drive_here(self, run: PipelineRun) -> None:
        """Start driving a run created or retried here, when this gateway owns its pipeline
        (else its owner picks it up at its next round)."""
        if self._claim is not None:
            lease = pipeline_lease(run.account, run.pipeline)
            self._seen[lease] = self.clock.monotonic()
            if not await self._claim(lease):
                return
        if run.id not in self._tasks:
            self._start(run)

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
        key: str | None = None,
        on_create: Callable[[PipelineRun], Awaitable[None]] | None = None,
    ) -> PipelineRun:
        """Start a run; with `wait_s`, wait up to that long for it to end. A `webhook` gets the
        run's final status, signed as a job's is. With an idempotency `key` a repeat gets the
        first run back (a trigger's redelivered message); `on_create` sees a new run before it
        is driven, so its end is not missed."""
        if webhook is not None and not is_http_url(webhook):
            raise InvalidRequest("webhook must be an http(s) URL", hint="or leave it out")
        run_id = str(
            uuid.uuid4() if key is None else uuid.uuid5(_RUN_IDS, f"{principal.account}:{key}")
        )
        if key is not None and (first := await self.store.get_run(run_id)) is not None:
            return first
        run = PipelineRun(
            id=run_id,
            account=principal.account,
            pipeline=found.name,
            definition=found.definition,
            input=payload,
            status=JobStatus.IN_PROGRESS,
            created_at=self.clock.time(),
            webhook_url=webhook,
        )
        await self.store.create_run(run)
        if on_create is not None:
            await on_create(run)
        ended = self.waits.watch_end(run.id) if wait_s is not None else None
        await self._drive_here(run)
        if ended is None or wait_s is None:
            return run
        return await self.waits.wait_end(run, ended, wait_s)

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
        if (old := self._tasks.pop(run_id, None)) is not None:
            old.cancel()  # an earlier attempt's driver, about to leave the run alone anyway
        await self._drive_here(run)
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
        """Start evaluating every run the store holds unfinished (after a restart); attached
        to the cluster, those of the pipelines this gateway owns."""
        self._stopped = False
        if self._round is not None:
            await self._round()  # the round calls `owned`, which starts them
            resumed = len(self._tasks)
        else:
            runs = await self.store.unfinished_runs()
            for run in runs:
                self._start(run)
            resumed = len(runs)
        if self._purger is None:
            self._purger = asyncio.get_running_loop().create_task(self._purge_loop())
        if resumed:
            log.info("resuming %d unfinished pipeline runs", resumed)
        return resumed

    async def stop(self) -> None:
        """Stop evaluating (runs stay unfinished in the store, resumed by the next start)."""
        self._stopped = True
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

        def _done(_: asyncio.Task[None]) -> None:
            if self._tasks.get(run.id) is task:
                del self._tasks[run.id]

        task.add_done_callback(_done)

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
        """Wake the run's /runsync waiters and end listeners; post its webhook, if any."""
        self.waits.announce_end(run_id)
        run = await self.store.get_run(run_id)
        if run is None:
            return
        for listener in self.end_listeners:
            listener(run)
        if run.webhook_url and self.on_end is not None:
            self.on_end(await self._view(run))
