"""The job service: the one entry point every protocol (RunPod, Replicate, Open Inference
Protocol, the dashboard and management routes) calls with plain values to create, wait for,
read and control jobs.

It alone chooses between the scheduler's in-memory sync lane and the durable queue, owns the
watch → enqueue → wait → unwatch sequence, and answers reads consistently: it writes what the
scheduler buffers (sync-lane jobs, usage) before it reads the store, so no route has to know
what the control plane keeps in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx

from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.control.cache import ResultCache
from coldbrew.control.reads import JobReads
from coldbrew.control.results import CachedResults
from coldbrew.control.routing import Router, wait_in_store
from coldbrew.control.scheduler import Scheduler
from coldbrew.control.validation import InputValidator
from coldbrew.control.versions import VersionControl
from coldbrew.errors import Conflict, Forbidden, InvalidRequest, NotFound, StorageUnavailable
from coldbrew.metering.budgets import BudgetKeeper
from coldbrew.spec import DeploymentSpec
from coldbrew.store.base import Store
from coldbrew.store.models import (
    Endpoint,
    Job,
    JobStatus,
    Principal,
    Version,
)

MAX_IDEMPOTENCY_KEY = 255
_MAX_CURRENT = 10_000  # (account, endpoint) entries cached before the cache starts over


def is_http_url(value: Any) -> bool:
    """Whether `value` is an absolute http(s) URL with a host (webhook targets)."""
    if not isinstance(value, str):
        return False
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError):
        return False
    valid_port = url.port is None or 0 < url.port < 65536
    return url.scheme in ("http", "https") and bool(url.host) and valid_port


@dataclass(frozen=True, slots=True)
class Policy:
    """A request's own limits, overriding the endpoint's: run time and time to live."""

    timeout_s: float | None = None
    ttl_s: float | None = None


class Submitted(NamedTuple):
    """What `submit` answers: the job as it stands, and whether an idempotency key replayed an
    earlier request (then `job` is that request's job)."""

    job: Job
    replayed: bool


#: Called with the new job before it is queued (and before a cached answer finishes it).
OnAccept = Callable[[Job], Awaitable[None]]


class JobService(JobReads):
    """Accepts, runs, waits for, reads and controls jobs for every protocol."""

    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        budgets: BudgetKeeper,
        cache: ResultCache,
        settings: Settings,
        clock: Clock,
        versions: VersionControl | None = None,
        router: Router | None = None,
    ) -> None:
        self.store = store
        self.router = router  # several gateways: who owns an endpoint, and the hop to it
        self.versions = versions
        self.scheduler = scheduler
        self.budgets = budgets
        self.cache = cache
        self.settings = settings
        self.clock = clock
        self.validator = InputValidator()
        self._current: dict[tuple[str, str], tuple[int, Endpoint, Version, DeploymentSpec]] = {}
        self.results = CachedResults(cache)
        scheduler.add_final_listener(self.results.remember)

    # -- endpoints
    async def endpoint(self, principal: Principal, name: str) -> Endpoint:
        """The principal's endpoint `name`; NotFound says how to list or create one."""
        endpoint = await self.store.get_endpoint(principal.account, name)
        if endpoint is None:
            raise NotFound(
                f"no endpoint {name!r} in account {principal.account!r}",
                hint="`coldbrew endpoints` lists yours; `coldbrew deploy DIR` creates one",
            )
        return endpoint

    async def current(
        self, principal: Principal, name: str
    ) -> tuple[Endpoint, Version, DeploymentSpec]:
        """The endpoint, its current version and spec; kept until a deploy or delete changes
        the scheduler's generation, so a request reads nothing from the store for them."""
        generation = self.scheduler.generation
        hit = self._current.get((principal.account, name))
        if hit is not None and hit[0] == generation:
            return hit[1], hit[2], hit[3]
        endpoint = await self.endpoint(principal, name)
        version = await self.store.get_version(endpoint.current_version_id)
        spec = DeploymentSpec(**version.spec)
        if len(self._current) > _MAX_CURRENT:
            self._current.clear()
        self._current[(principal.account, name)] = (generation, endpoint, version, spec)
        return endpoint, version, spec

    # -- creating and waiting
    async def submit(
        self,
        principal: Principal,
        endpoint: str,
        payload: dict[str, Any],
        *,
        policy: Policy | None = None,
        webhook: str | None = None,
        wait_s: float | None = None,
        idempotency_key: str | None = None,
        use_cache: bool = True,
        on_accept: OnAccept | None = None,
        pin: int | None = None,
    ) -> Submitted:
        """Validate and start one job; nothing is written when the request is invalid.

        Without `wait_s` the job is queued durably and answered at once. With it, the job
        runs in the sync lane while a worker is warm (in memory, written once when final) or
        else durably, and the call waits up to `wait_s` for it to end; a job still running
        then is made durable, so its id can be polled. An `idempotency_key` always takes the
        durable queue: a repeat of a request gets the first job back (`replayed`).

        The warm /runsync path runs inline here (no extra coroutine per request): it is the
        gateway's hottest code. `pin` runs the job on that version number.
        """
        found, version, spec = await self.current(principal, endpoint)
        job_id = str(uuid.uuid4())
        if self.versions is not None:  # the pin, else the split's pick, else the current one
            version, spec = await self.versions.route(found, version, spec, job_id, pin)
        job = self._new_job(principal, found, version, spec, payload, policy, webhook, job_id)
        if idempotency_key is not None:
            if spec.cache_ttl_s > 0:
                await self.results.look_up(job, spec.cache_ttl_s, use_cache)
            return await self._submit_once(job, idempotency_key, wait_s, on_accept)
        self.budgets.admit(principal.account, job.endpoint)  # 402 past a hard stop
        if spec.cache_ttl_s > 0:
            await self.results.look_up(job, spec.cache_ttl_s, use_cache)
        if not job.cached:
            self.scheduler.admit(principal.account)  # 429 past the queue limit
        if on_accept is not None:
            await on_accept(job)
        if wait_s is None or job.cached:
            await self._enqueue(job)
            return Submitted(job, False)
        return Submitted(await self._run_waiting(job, wait_s), False)

    async def run_forwarded(self, account: str, job: Job, wait_s: float) -> Job:
        """A waiting job that another gateway admitted and sent here, to its endpoint's owner:
        run it here, never forwarded again (one hop), and answer it as `submit` would."""
        if job.account != account:
            raise Forbidden("a forwarded job must belong to the caller's account")
        return await self._run_waiting(job, wait_s, hop=False)

    async def _run_waiting(self, job: Job, wait_s: float, hop: bool = True) -> Job:
        """Run an admitted job and wait up to `wait_s` for it: in the sync lane, durably here,
        or on the gateway that owns its endpoint."""
        if self.router is not None and not self.router.owns(job.endpoint_id):
            return await self._run_elsewhere(self.router, job, wait_s, hop)
        scheduler = self.scheduler
        future = await scheduler.run_sync(job)  # in memory while a worker is warm
        durable = future is None
        if future is None:
            future = scheduler.watch(job.id)  # registered before queueing: no end is missed
        try:
            if durable:
                await self._enqueue(job)
            with contextlib.suppress(TimeoutError):
                # the future is this wait's own (no shield: one callback hop less per request);
                # a timeout cancels it, and the job's end then skips it
                job = await self.clock.wait_for(future, wait_s)
        finally:
            scheduler.unwatch(job.id, future)
        return job if job.status.final else await self._settled(job)

    async def _run_elsewhere(self, router: Router, job: Job, wait_s: float, hop: bool) -> Job:
        """Another gateway owns the endpoint: forward the job to it (one hop); when it cannot
        be reached, queue the job durably (its owner, or the next one, runs it) and read it
        back from the store until it ends or the wait runs out."""
        stored = None
        if hop:
            answer = await router.forward(job, wait_s)
            if answer is not None:
                return answer
            stored = await self.store.get_job(job.id)  # queued there before the hop failed?
        future = self.scheduler.watch(job.id)
        try:
            if stored is None:
                await self._enqueue(job)
            job = await wait_in_store(self.store, self.clock, stored or job, future, wait_s)
        finally:
            self.scheduler.unwatch(job.id, future)
        return job if job.status.final else await self._settled(job)

    def _new_job(
        self,
        principal: Principal,
        endpoint: Endpoint,
        version: Version,
        spec: DeploymentSpec,
        payload: dict[str, Any],
        policy: Policy | None,
        webhook: str | None,
        job_id: str,
    ) -> Job:
        """The job a request describes, once its input fits the version's schema."""
        self.validator.validate(version, payload)
        if self.store.fault is not None:  # refuse new work; what was accepted is kept
            raise StorageUnavailable.because(self.store.fault)
        if webhook is not None and not is_http_url(webhook):
            raise InvalidRequest("webhook must be an http(s) URL", hint="or leave it out")
        timeout_s, ttl_s = spec.timeout_s, self.settings.job_ttl_s
        if policy is not None:
            timeout_s = policy.timeout_s or timeout_s
            ttl_s = policy.ttl_s or ttl_s
        now = self.clock.time()
        return Job(
            id=job_id,
            account=principal.account,
            endpoint_id=endpoint.id,
            endpoint=endpoint.name,
            version_id=version.id,
            status=JobStatus.IN_QUEUE,
            input=payload,
            created_at=now,
            expires_at=now + ttl_s,
            timeout_s=timeout_s,
            max_attempts=spec.retries + 1,
            webhook_url=webhook,
        )

    async def _enqueue(self, job: Job) -> None:
        """Write the job; queue it for a worker, or, answered from the cache, finish it."""
        await self.store.create_job(job)
        self._started(job)
        if not job.cached:
            await self.scheduler.dispatch_now(job)

    def _started(self, job: Job) -> None:
        self.scheduler.record_arrival(job)
        if job.cached:
            self.scheduler.announce_final(job)

    async def _settled(self, job: Job) -> Job:
        """A job whose wait ran out: made durable, and read back as it stands now."""
        if not job.durable:
            job = await self.scheduler.persist(job)
        return await self.scheduler.find_job(job.id) or job

    async def _submit_once(
        self, job: Job, key: str, wait_s: float | None, on_accept: OnAccept | None
    ) -> Submitted:
        """Create the job under an `Idempotency-Key`: a repeat gets the first job back.

        The key belongs to the account until the job is purged; reusing it for another
        endpoint or input is a 409. A replay is answered before the budget and queue limit are
        checked: it adds no work.
        """
        if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable()):
            raise InvalidRequest(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
                hint="a UUID is a good key",
            )
        earlier = await self.store.job_for_key(job.account, key)
        if earlier is not None:
            return Submitted(_replay(earlier, job, key), True)
        self.budgets.admit(job.account, job.endpoint)  # 402 past a hard stop
        if not job.cached:
            self.scheduler.admit(job.account)  # 429 past the queue limit
        if on_accept is not None:
            await on_accept(job)
        future = self.scheduler.watch(job.id) if wait_s is not None else None
        try:
            stored = await self.store.create_job_once(job, key)
            if stored.id != job.id:  # a concurrent request with the key won
                return Submitted(_replay(stored, job, key), True)
            self._started(job)
            if not job.cached:
                await self.scheduler.dispatch_now(job)
            if future is None or wait_s is None or job.cached:
                return Submitted(job, False)  # answered at once, as it was queued
            if self.router is not None and not self.router.owns(job.endpoint_id):
                job = await wait_in_store(self.store, self.clock, job, future, wait_s)
            else:
                with contextlib.suppress(TimeoutError):
                    job = await self.clock.wait_for(asyncio.shield(future), wait_s)
        finally:
            if future is not None:
                self.scheduler.unwatch(job.id, future)
        return Submitted(job if job.status.final else await self._settled(job), False)

    # -- control
    async def cancel(self, principal: Principal, job_id: str, endpoint: str | None = None) -> Job:
        """Cancel a queued or running job of the principal (of `endpoint`, when given); one
        running on another gateway's worker is cancelled there, so that worker lets it go."""
        job = await self.get(principal, job_id, endpoint)  # 404 unless it is theirs
        if self.router is not None and job.status is JobStatus.IN_PROGRESS:
            cancelled = await self.router.cancel_elsewhere(job)
            if cancelled is not None:
                return cancelled
        return await self.scheduler.cancel(job_id, principal.account)

    async def cancel_here(self, principal: Principal, job_id: str) -> Job:
        """A cancel another gateway sent here, where the job's worker runs: never sent on."""
        return await self.scheduler.cancel(job_id, principal.account)

    async def retry(self, principal: Principal, endpoint: str, job_id: str) -> Job:
        """Queue a FAILED or TIMED_OUT job again; a 409 for a job in any other state."""
        job = await self.scheduler.persist(await self.get(principal, job_id, endpoint))
        if job.status not in (JobStatus.FAILED, JobStatus.TIMED_OUT):
            raise Conflict(
                f"job {job_id} is {job.status.value}; only FAILED or TIMED_OUT jobs can be retried",
                hint="submit a new job with /run instead",
            )
        retried = await self.store.retry(
            job_id, principal.account, self.clock.time(), self.settings.job_ttl_s
        )
        if retried is None:
            raise Conflict(f"job {job_id} changed state meanwhile; fetch its status")
        self.scheduler.mark_queued(retried.version_id)
        return retried

    async def purge(self, principal: Principal, endpoint: str) -> int:
        """Cancel every queued job of the endpoint; how many were."""
        found = await self.endpoint(principal, endpoint)
        return await self.scheduler.purge_queue(found.id)


def _replay(stored: Job, job: Job, key: str) -> Job:
    """The job stored under `key`, when `job` repeats its request; a 409 when it does not."""
    if stored.endpoint != job.endpoint or stored.input != job.input:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for another request "
            f"(job {stored.id} on endpoint {stored.endpoint!r})",
            hint="use a new key for a new request",
        )
    return stored
