"""The job service's reads: jobs, logs, health, streams, usage and budgets, each consistent with
what the scheduler holds in memory (it writes the sync lane's jobs and the running workers'
seconds before it reads the store), so no route has to know what the control plane buffers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from coldbrew.control.scheduler import Scheduler
from coldbrew.errors import NotFound
from coldbrew.metering.budgets import BudgetKeeper
from coldbrew.store.base import Store
from coldbrew.store.models import Budget, Job, JobTiming, Principal, UsageRow


class JobReads:
    """Reads for every protocol; `JobService` is one (split off to keep each module short)."""

    store: Store
    scheduler: Scheduler
    budgets: BudgetKeeper

    async def find(self, account: str, job_id: str) -> Job | None:
        """The account's job, wherever it is kept (sync lane or store)."""
        return await self.scheduler.find_job(job_id, account)

    async def get(self, principal: Principal, job_id: str, endpoint: str | None = None) -> Job:
        """The principal's job (of `endpoint`, when given); NotFound otherwise."""
        job = await self.scheduler.find_job(job_id, principal.account)
        if job is None or (endpoint is not None and job.endpoint != endpoint):
            where = "" if endpoint is None else f" on endpoint {endpoint!r}"
            raise NotFound(f"no job {job_id!r}{where}", hint="check the id returned by /run")
        return job

    async def lookup(self, account: str, ids: list[str]) -> list[Job]:
        """Many of the account's jobs at once (those that exist)."""
        await self.scheduler.write_back()  # sync-lane jobs not yet written
        return await self.store.get_jobs(ids, account)

    async def account_jobs(self, account: str, limit: int, before: float | None) -> list[Job]:
        """The account's jobs, newest first, created before `before` when given."""
        await self.scheduler.write_back()
        return await self.store.account_jobs(account, limit, before=before)

    async def recent_jobs(self, endpoint_id: int, limit: int) -> list[Job]:
        """The endpoint's newest jobs."""
        await self.scheduler.write_back()
        return await self.store.recent_jobs(endpoint_id, limit)

    async def timings(
        self, since: float, account: str, endpoint_id: int | None = None
    ) -> list[JobTiming]:
        """Timestamps of the final jobs since `since` (what the dashboard charts)."""
        await self.scheduler.write_back()
        return await self.store.job_timings(since, account, endpoint_id)

    async def logs(self, job_id: str) -> list[dict[str, Any]]:
        """What the worker printed while running the job, so far."""
        return await self.store.job_logs(job_id)

    async def health(self, endpoint_id: int) -> dict[str, int]:
        """The endpoint's job counts by status, in-memory jobs included."""
        return await self.scheduler.health(endpoint_id)

    def workers(self, endpoint_id: int) -> dict[str, int]:
        """The endpoint's workers by state: idle, running, starting."""
        return self.scheduler.worker_counts(endpoint_id)

    async def poll_stream(self, job: Job, wait_s: float) -> tuple[Job, list[Any]]:
        """Chunks of a streaming job not returned by an earlier poll."""
        return await self.scheduler.poll_stream(job, wait_s)

    def stream_events(self, job: Job) -> AsyncIterator[tuple[str, Any]]:
        """Every chunk of a job from the first, then ('done', final job)."""
        return self.scheduler.stream_events(job)

    # -- usage and budgets: read after the running workers' seconds are written
    async def usage(self, since: float, account: str | None) -> list[UsageRow]:
        """Usage rows from the hour `since` falls in, the current minute included."""
        await self.scheduler.flush_usage()
        return await self.store.usage(since, account)

    async def budgets_status(self, account: str | None) -> list[dict[str, Any]]:
        """Every budget with this month's spend so far."""
        await self.scheduler.flush_usage()
        return await self.budgets.status(account)

    async def set_budget(self, budget: Budget) -> dict[str, Any]:
        """Store a budget and answer its status; alerts and hard stops follow at once."""
        await self.store.set_budget(budget)
        await self.scheduler.flush_usage()
        await self.budgets.check()
        (line,) = [
            b for b in await self.budgets.status(budget.account) if b["endpoint"] == budget.endpoint
        ]
        return line
