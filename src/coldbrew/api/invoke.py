"""Invocation routes, wire-compatible with RunPod Serverless (`/v2/{endpoint}/...`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from jsonschema import Draft202012Validator
from starlette.types import ASGIApp, Receive, Scope, Send

from coldbrew.api.auth import KeyCache
from coldbrew.api.cache import cache_key
from coldbrew.api.limits import check_depth
from coldbrew.api.wire import status_json
from coldbrew.errors import (
    ColdbrewError,
    Conflict,
    InvalidInput,
    InvalidRequest,
    NotFound,
    StorageUnavailable,
)
from coldbrew.platform import Platform
from coldbrew.sdk.spec import DeploymentSpec
from coldbrew.store.models import Endpoint, Job, JobStatus, Principal, Version, WebhookState

log = logging.getLogger("coldbrew.api")

MAX_WAIT_MS = 300_000
MAX_IDEMPOTENCY_KEY = 255
STREAM_POLL_WAIT_S = 1.0  # a /stream poll waits this long for a new chunk before answering
#: Schema keywords whose bound is worth echoing next to jsonschema's message.
_SHOWN_CONSTRAINTS = frozenset(
    {
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
    }
)


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
    )


def _field_path(path: Any) -> str:
    return "input" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


class Invoker:
    """Accepts jobs: auth, validation against the version's schema, durable enqueue."""

    def __init__(self, platform: Platform, keys: KeyCache) -> None:
        self.platform = platform
        self.keys = keys
        self._validators: dict[int, Draft202012Validator] = {}
        self._cache_ttl: dict[int, float] = {}
        self._current: dict[tuple[str, str], tuple[int, Endpoint, Version, DeploymentSpec]] = {}
        self.cache = platform.cache
        self._tasks: set[asyncio.Task[None]] = set()
        platform.scheduler.add_final_listener(self.remember)

    async def endpoint(self, principal: Principal, name: str) -> Endpoint:
        endpoint = await self.platform.store.get_endpoint(principal.account, name)
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
        generation = self.platform.scheduler.generation
        hit = self._current.get((principal.account, name))
        if hit is not None and hit[0] == generation:
            return hit[1], hit[2], hit[3]
        endpoint = await self.endpoint(principal, name)
        version = await self.platform.store.get_version(endpoint.current_version_id)
        spec = DeploymentSpec(**version.spec)
        if len(self._current) > 10_000:
            self._current.clear()
        self._current[(principal.account, name)] = (generation, endpoint, version, spec)
        return endpoint, version, spec

    async def job(self, principal: Principal, endpoint: str, job_id: str) -> Job:
        job = await self.platform.scheduler.find_job(job_id, principal.account)
        if job is None or job.endpoint != endpoint:
            raise NotFound(f"no job {job_id!r} on endpoint {endpoint!r}")
        return job

    def validate(self, version: Version, payload: Any) -> None:
        validator = self._validators.get(version.id)
        if validator is None:
            validator = Draft202012Validator(version.input_schema)
            self._validators[version.id] = validator
        errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
        if errors:
            problems = [
                f"{_field_path(e.absolute_path)}: {e.message} ({e.validator}: {e.validator_value})"
                if e.validator in _SHOWN_CONSTRAINTS
                else f"{_field_path(e.absolute_path)}: {e.message}"
                for e in errors[:5]
            ]
            props = version.input_schema.get("properties", {})
            expected = (
                ", ".join(f"{k} ({v.get('type', 'any')})" for k, v in props.items()) or "no fields"
            )
            raise InvalidInput(
                "; ".join(problems),
                hint=f"endpoint {version.endpoint!r} takes: {expected}",
                fields=[list(e.absolute_path) for e in errors[:5]],
            )

    async def submit(
        self,
        principal: Principal,
        name: str,
        body: bytes,
        use_cache: bool = True,
        admit: bool = True,
    ) -> Job:
        """Validate and durably queue a job; nothing is written when the request is invalid.

        `admit=False` leaves the budget's hard stop and the queue limit to the caller: a
        replayed `Idempotency-Key` gets its first job back even past them (`enqueue_once`).
        """
        try:
            request = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(
                f"the body is not JSON: {exc}", hint='send {"input": {...}}'
            ) from None
        if not isinstance(request, dict) or not isinstance(request.get("input"), dict):
            raise InvalidRequest(
                "the body needs an 'input' object", hint='send {"input": {"field": value}}'
            )
        check_depth(request["input"], self.platform.settings, "input")
        endpoint, version, spec = await self.current(principal, name)
        self.validate(version, request["input"])
        if self.platform.store.fault is not None:  # refuse new work; what was accepted is kept
            raise StorageUnavailable.because(self.platform.store.fault)
        if admit:
            self.platform.budgets.admit(principal.account, endpoint.name)  # 402 past a hard stop
        timeout_s, ttl_s = _policy(
            request.get("policy"), spec.timeout_s, self.platform.settings.job_ttl_s
        )
        webhook = request.get("webhook")
        if webhook is not None and not is_http_url(webhook):
            raise InvalidRequest("webhook must be an http(s) URL", hint="or leave it out")
        now = self.platform.clock.time()
        job = Job(
            id=str(uuid.uuid4()),
            account=principal.account,
            endpoint_id=endpoint.id,
            endpoint=endpoint.name,
            version_id=version.id,
            status=JobStatus.IN_QUEUE,
            input=request["input"],
            created_at=now,
            expires_at=now + ttl_s,
            timeout_s=timeout_s,
            max_attempts=spec.retries + 1,
            webhook_url=webhook,
        )
        if spec.cache_ttl_s > 0:
            self._cache_ttl[version.id] = spec.cache_ttl_s
            if use_cache:
                try:
                    hit, output = await self.cache.get(cache_key(version.id, job.input))
                except Exception:  # a cache that is down costs hits, never jobs
                    log.warning("result cache lookup failed", exc_info=True)
                    hit, output = False, None
                if hit:
                    job.status, job.output, job.cached = JobStatus.COMPLETED, output, True
                    job.started_at = job.finished_at = now
                    job.webhook_state = WebhookState.PENDING if webhook else None
        if admit and not job.cached:
            self.platform.scheduler.admit(principal.account)  # 429 past the queue limit
        return job

    async def enqueue(self, job: Job) -> None:
        """Write the job; queue it for a worker, or, answered from the cache, finish it."""
        await self.platform.store.create_job(job)
        self.platform.scheduler.record_arrival(job)
        if job.cached:
            self.platform.scheduler.announce_final(job)
        else:
            await self.platform.scheduler.dispatch_now(job)

    async def run(self, name: str, request: Request) -> Response:
        """POST /v2/{name}/run: queue durably, answer with the id."""
        principal = await self.keys.resolve(request)
        key = request.headers.get("idempotency-key")
        body = await request.body()
        job = await self.submit(principal, name, body, _use_cache(request), admit=key is None)
        if key is None:
            await self.enqueue(job)
            return json_response({"id": job.id, "status": job.status.value})
        job, replayed = await self.enqueue_once(job, key)
        response = json_response({"id": job.id, "status": job.status.value})
        if replayed:
            response.headers["idempotent-replayed"] = "true"
        return response

    async def runsync(self, name: str, request: Request) -> Response:
        """POST /v2/{name}/runsync: run and wait up to ?wait= ms for the final status."""
        principal = await self.keys.resolve(request)
        wait_ms = _wait_ms(request, self.platform.settings.runsync_wait_ms)
        job = await self.submit(principal, name, await request.body(), _use_cache(request))
        scheduler = self.platform.scheduler
        if job.cached:
            await self.enqueue(job)
            return json_response(status_json(job))
        future = await scheduler.run_sync(job)  # in memory while a worker is warm
        durable = future is None
        if future is None:
            future = scheduler.watch(job.id)
        try:
            if durable:
                await self.enqueue(job)
            with contextlib.suppress(TimeoutError):
                job = await asyncio.wait_for(asyncio.shield(future), wait_ms / 1000)
        finally:
            scheduler.unwatch(job.id, future)
        if not job.status.final:
            if not job.durable:
                job = await scheduler.persist(job)
            job = await self.job(principal, name, job.id)
        return json_response(status_json(job))

    async def enqueue_once(self, job: Job, key: str) -> tuple[Job, bool]:
        """`enqueue` under an `Idempotency-Key`: a repeat of a request gets the first job back.

        Returns the job and whether it is a replay. The key belongs to the account until the job
        is purged; reusing it for another endpoint or input is a 409.
        """
        if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable()):
            raise InvalidRequest(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
                hint="a UUID is a good key",
            )
        store = self.platform.store
        earlier = await store.job_for_key(job.account, key)
        if earlier is not None:  # a replay is answered before the queue limit is checked
            return _replay(earlier, job, key), True
        self.platform.budgets.admit(job.account, job.endpoint)  # 402 past a hard stop
        if not job.cached:
            self.platform.scheduler.admit(job.account)  # 429 past the queue limit
        stored = await store.create_job_once(job, key)
        if stored.id != job.id:  # a concurrent request with the key won
            return _replay(stored, job, key), True
        self.platform.scheduler.record_arrival(job)  # the rest is as in enqueue()
        if job.cached:
            self.platform.scheduler.announce_final(job)
        else:
            await self.platform.scheduler.dispatch_now(job)
        return job, False

    def remember(self, job: Job) -> None:
        """A final-job listener: keep completed outputs of caching endpoints."""
        ttl_s = self._cache_ttl.get(job.version_id)
        if ttl_s and job.status is JobStatus.COMPLETED and not job.cached:
            task = asyncio.create_task(self._put(job, ttl_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _put(self, job: Job, ttl_s: float) -> None:
        try:
            await self.cache.put(cache_key(job.version_id, job.input), job.output, ttl_s)
        except Exception:  # a cache that is down costs hits, never jobs
            log.warning("could not store job %s in the result cache", job.id, exc_info=True)


def _replay(stored: Job, job: Job, key: str) -> Job:
    """The job stored under `key`, when `job` repeats its request; a 409 when it does not."""
    if stored.endpoint != job.endpoint or stored.input != job.input:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for another request "
            f"(job {stored.id} on endpoint {stored.endpoint!r})",
            hint="use a new key for a new request",
        )
    return stored


async def health_json(platform: Platform, endpoint_id: int) -> dict[str, Any]:
    """RunPod's /health body: job counts by status and workers by state."""
    workers = platform.scheduler.worker_counts(endpoint_id)
    return {
        "jobs": await platform.scheduler.health(endpoint_id),
        "workers": {
            "idle": workers["idle"],
            "running": workers["running"],
            "initializing": workers["starting"],
        },
    }


def _wait_ms(request: Request, default: int) -> int:
    raw = request.query_params.get("wait")
    try:
        wait_ms = default if raw is None else int(raw)
    except ValueError:
        raise InvalidRequest(
            f"wait must be a whole number of milliseconds, not {raw!r}", hint="?wait=30000"
        ) from None
    if not 0 <= wait_ms <= MAX_WAIT_MS:
        raise InvalidRequest(f"wait must be between 0 and {MAX_WAIT_MS} ms")
    return wait_ms


def _use_cache(request: Request) -> bool:
    return "no-cache" not in request.headers.get("cache-control", "").lower()


def is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError):
        return False
    valid_port = url.port is None or 0 < url.port < 65536
    return url.scheme in ("http", "https") and bool(url.host) and valid_port


def _policy(policy: Any, timeout_s: float, ttl_s: float) -> tuple[float, float]:
    if policy is None:
        return timeout_s, ttl_s
    if not isinstance(policy, dict):
        raise InvalidRequest("policy must be an object", hint='{"executionTimeout": 60000}')
    for key in ("executionTimeout", "ttl"):
        value = policy.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise InvalidRequest(f"policy.{key} must be a positive number of milliseconds")
    if policy.get("executionTimeout"):
        timeout_s = policy["executionTimeout"] / 1000
    if policy.get("ttl"):
        ttl_s = policy["ttl"] / 1000
    return timeout_s, ttl_s


async def _sse(platform: Platform, job: Job) -> AsyncIterator[bytes]:
    """Server-sent events: one `chunk` event per chunk, then `done` with the final status."""
    async for kind, value in platform.scheduler.stream_events(job):
        data = status_json(value) if kind == "done" and value is not None else value
        yield (
            b"event: "
            + kind.encode()
            + b"\ndata: "
            + orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
            + b"\n\n"
        )


def router(invoker: Invoker) -> APIRouter:  # noqa: C901
    """The /v2 routes; each handler is small, ruff counts them all as one function."""
    routes = APIRouter(prefix="/v2/{endpoint}", tags=["invoke"])
    platform = invoker.platform
    keys = invoker.keys

    @routes.post("/run", summary="Queue a job; poll /status/{id} or get a webhook")
    async def run(endpoint: str, request: Request) -> Response:
        return await invoker.run(endpoint, request)

    @routes.post("/runsync", summary="Run a job and wait up to ?wait= ms for its result")
    async def runsync(endpoint: str, request: Request, wait: int | None = None) -> Response:
        return await invoker.runsync(endpoint, request)

    @routes.get("/status/{job_id}", summary="A job's status, output and cost")
    async def status(endpoint: str, job_id: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        job = await invoker.job(principal, endpoint, job_id)
        body = status_json(job)
        if job.status is JobStatus.IN_PROGRESS and platform.runpod is not None:
            progress = platform.runpod.progress(job.id)  # a RunPod handler's progress_update
            if progress is not None:
                body["output"] = progress
        return json_response(body)

    @routes.get("/stream/{job_id}", summary="New chunks of a streaming job (or server-sent events)")
    async def stream(endpoint: str, job_id: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        job = await invoker.job(principal, endpoint, job_id)
        if "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(
                _sse(platform, job),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        job, chunks = await platform.scheduler.poll_stream(job, STREAM_POLL_WAIT_S)
        return json_response(
            {"id": job.id, "status": job.status.value, "stream": [{"output": c} for c in chunks]}
        )

    @routes.post("/cancel/{job_id}", summary="Cancel a queued or running job")
    async def cancel(endpoint: str, job_id: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        await invoker.job(principal, endpoint, job_id)  # 404 unless it is this endpoint's
        job = await platform.scheduler.cancel(job_id, principal.account)
        return json_response(status_json(job))

    @routes.post("/retry/{job_id}", summary="Queue a FAILED or TIMED_OUT job again")
    async def retry(endpoint: str, job_id: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        job = await platform.scheduler.persist(await invoker.job(principal, endpoint, job_id))
        if job.status not in (JobStatus.FAILED, JobStatus.TIMED_OUT):
            raise Conflict(
                f"job {job_id} is {job.status.value}; only FAILED or TIMED_OUT jobs can be retried",
                hint="submit a new job with /run instead",
            )
        retried = await platform.store.retry(
            job_id, principal.account, platform.clock.time(), platform.settings.job_ttl_s
        )
        if retried is None:
            raise Conflict(f"job {job_id} changed state meanwhile; fetch its status")
        platform.scheduler.mark_queued(retried.version_id)
        return json_response({"id": retried.id, "status": retried.status.value})

    @routes.get("/health", summary="Job counts and workers of the endpoint")
    async def health(endpoint: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        ep = await invoker.endpoint(principal, endpoint)
        return json_response(await health_json(platform, ep.id))

    @routes.post("/purge-queue", summary="Cancel every queued job of the endpoint")
    async def purge_queue(endpoint: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        ep = await invoker.endpoint(principal, endpoint)
        removed = await platform.scheduler.purge_queue(ep.id)
        return json_response({"removed": removed, "status": "completed"})

    return routes


class FastLane:
    """ASGI middleware for the two hottest routes: `POST /v2/{endpoint}/run` and `/runsync` go
    straight to the Invoker (the code the routes run) without FastAPI's routing, dependency
    solving and parameter parsing, about a fifth of the gateway's time per request. Everything
    else, and the OpenAPI documents, stay with FastAPI."""

    def __init__(self, app: ASGIApp, invoker: Invoker) -> None:
        self.app = app
        self.verbs = {"run": invoker.run, "runsync": invoker.runsync}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            verb = self.verbs.get(parts[3]) if len(parts) == 4 else None
            if verb is not None and parts[1] == "v2" and parts[2]:
                try:
                    response = await verb(parts[2], Request(scope, receive))
                except ColdbrewError as exc:
                    response = json_response(exc.to_json(), exc.status_code)
                    response.headers.update(exc.headers())
                except Exception as exc:
                    log.exception("unhandled error on POST %s", scope["path"])
                    response = json_response(
                        {
                            "error": {
                                "type": "internal_error",
                                "message": f"{type(exc).__name__}: {exc}",
                                "hint": "see the server log",
                            }
                        },
                        500,
                    )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
