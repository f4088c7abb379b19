"""Routing between gateways, as the job service sees it: which endpoints this gateway owns, how
a waiting request reaches the owner, and how a job is carried between gateways.

The job service knows only the `Router` protocol; `cluster/` implements it (ownership by lease,
forwarding over HTTP). With one gateway there is no router and nothing here runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from abc import abstractmethod
from contextvars import ContextVar
from typing import Any, Protocol

from coldbrew.clock import Clock
from coldbrew.store.models import Job, JobStatus, WebhookState
from coldbrew.store.queue import JobQueue

#: The `Authorization` header of the request being served: a request forwarded to the
#: endpoint's owner carries the caller's own credentials, checked again there.
CALLER_AUTHORIZATION: ContextVar[str | None] = ContextVar("coldbrew_caller_auth", default=None)

#: The header that marks a forwarded request: the receiving gateway runs it itself (one hop).
FORWARDED_HEADER = "x-coldbrew-forwarded"
#: The header that proves a forwarded job comes from a gateway of the cluster (it was admitted
#: there: input, budget, queue limit), not from a client that would skip admission.
HOP_TOKEN_HEADER = "x-coldbrew-hop"


class Router(Protocol):
    """Which gateway runs an endpoint, and the hop to it."""

    @abstractmethod
    def owns(self, endpoint_id: int) -> bool:
        """Whether this gateway runs the endpoint's sync lane, batches and workers now."""

    @abstractmethod
    async def forward(self, job: Job, wait_s: float) -> Job | None:
        """Run a waiting (runsync) job on the endpoint's owner and return it as the owner
        answered (final, or still running once `wait_s` ran out); None when no owner could be
        reached (the caller then queues it durably here and waits on the store)."""

    @abstractmethod
    async def cancel_elsewhere(self, job: Job) -> Job | None:
        """Cancel a running job on the gateway whose worker runs it (the cancelled job); None
        when that is this gateway, or it cannot be reached (then it is cancelled here)."""


def job_to_wire(job: Job) -> dict[str, Any]:
    """A job as JSON values (for the hop between gateways)."""
    body = dataclasses.asdict(job)
    body["status"] = job.status.value
    body["webhook_state"] = None if job.webhook_state is None else job.webhook_state.value
    return body


def job_from_wire(body: dict[str, Any]) -> Job:
    """The job `job_to_wire` wrote; unknown fields are refused (a newer peer must not be
    half-understood)."""
    fields = {f.name for f in dataclasses.fields(Job)}
    unknown = set(body) - fields
    if unknown:
        raise ValueError(f"unknown job fields {sorted(unknown)}")
    values = dict(body)
    values["status"] = JobStatus(values["status"])
    state = values.get("webhook_state")
    values["webhook_state"] = None if state is None else WebhookState(state)
    return Job(**values)


#: How often a gateway that does not run a job reads it back while a caller waits for it:
#: from the first step, doubling to the last (another gateway's worker ends it, so no local
#: event says when).
POLL_FIRST_S = 0.05
POLL_MAX_S = 0.5


async def wait_in_store(
    store: JobQueue, clock: Clock, job: Job, future: asyncio.Future[Job], wait_s: float
) -> Job:
    """Wait up to `wait_s` for a durable job that another gateway runs: a local end (a cancel
    through this gateway) resolves `future`; otherwise the store is read back, ever less often."""
    deadline = clock.monotonic() + wait_s
    step_s = POLL_FIRST_S
    while True:
        left_s = deadline - clock.monotonic()
        if left_s <= 0:
            return job
        with contextlib.suppress(TimeoutError):
            return await clock.wait_for(asyncio.shield(future), min(step_s, left_s))
        stored = await store.get_job(job.id)
        if stored is not None:
            job = stored
            if job.status.final:
                return job
        step_s = min(POLL_MAX_S, step_s * 2)
