"""Invocation routes, wire-compatible with RunPod Serverless (`/v2/{endpoint}/...`).

This module reads RunPod's wire format (`{"input", "policy", "webhook"}`, `?wait=`,
`Idempotency-Key`, `Cache-Control: no-cache`, and coldbrew's version pin: `{endpoint}@N` in the
path or `X-Coldbrew-Version: N`) and writes RunPod's status JSON; the job service
(`control/jobs.py`) does everything in between.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from coldbrew.api.auth import KeyCache
from coldbrew.api.cluster import relay_stream
from coldbrew.api.limits import check_depth
from coldbrew.api.pipelines import accepted_json, run_json
from coldbrew.api.responses import json_response
from coldbrew.config import Settings
from coldbrew.control.graph import parse
from coldbrew.control.jobs import JobService, Policy
from coldbrew.control.pipelines import Pipelines
from coldbrew.control.traffic import PIN_HEADER, parse_pin
from coldbrew.errors import InvalidRequest, NotFound
from coldbrew.platform import Platform
from coldbrew.store.models import Job, JobStatus, Principal
from coldbrew.store.pipelines import PipelineRun
from coldbrew.wire import status_json

MAX_WAIT_MS = 300_000
STREAM_POLL_WAIT_S = 1.0  # a /stream poll waits this long for a new chunk before answering


class RunPod:
    """`/run` and `/runsync`: RunPod's request in, the job service's job out as RunPod JSON.
    The FastLane middleware calls these two methods directly."""

    def __init__(
        self,
        jobs: JobService,
        keys: KeyCache,
        settings: Settings,
        pipelines: Pipelines | None = None,
    ) -> None:
        self.jobs = jobs
        self.keys = keys
        self.settings = settings
        self.pipelines = pipelines

    async def _pipeline(
        self,
        principal: Principal,
        name: str,
        payload: dict[str, Any],
        wait_s: float | None,
        webhook: str | None,
    ) -> PipelineRun | None:
        """A run of the pipeline `name` (asked for only when no endpoint has that name: the
        endpoint path stays as fast as it was), or None when there is no such pipeline."""
        if self.pipelines is None:
            return None
        found = await self.pipelines.find(principal, name)
        if found is None:
            return None
        return await self.pipelines.submit(principal, found, payload, wait_s, webhook)

    def _request(
        self, http: Request, body: bytes
    ) -> tuple[dict[str, Any], Policy | None, str | None, bool]:
        """The input, policy and webhook of a RunPod request body, and whether the result
        cache may answer (not with `Cache-Control: no-cache`). One call: it is the hot path."""
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
        check_depth(request["input"], self.settings, "input")
        use_cache = "no-cache" not in http.headers.get("cache-control", "").lower()
        policy = request.get("policy")
        parsed = None if policy is None else _policy(policy)
        return request["input"], parsed, request.get("webhook"), use_cache

    async def run(self, name: str, request: Request) -> Response:
        """POST /v2/{name}/run: queue durably, answer with the id."""
        principal = await self.keys.resolve(request)
        key = request.headers.get("idempotency-key")
        name, pin = parse_pin(name, request.headers.get(PIN_HEADER))
        payload, policy, webhook, use_cache = self._request(request, await request.body())
        try:
            job, replayed = await self.jobs.submit(
                principal,
                name,
                payload,
                policy=policy,
                webhook=webhook,
                idempotency_key=key,
                use_cache=use_cache,
                pin=pin,
            )
        except NotFound:
            run = await self._pipeline(principal, name, payload, None, webhook)
            if run is None:
                raise
            return json_response(accepted_json(run))
        response = json_response({"id": job.id, "status": job.status.value})
        if replayed:
            response.headers["idempotent-replayed"] = "true"
        return response

    async def runsync(self, name: str, request: Request) -> Response:
        """POST /v2/{name}/runsync: run and wait up to ?wait= ms for the final status."""
        principal = await self.keys.resolve(request)
        wait_ms = _wait_ms(request, self.settings.runsync_wait_ms)
        name, pin = parse_pin(name, request.headers.get(PIN_HEADER))
        payload, policy, webhook, use_cache = self._request(request, await request.body())
        try:
            job, _ = await self.jobs.submit(
                principal,
                name,
                payload,
                policy=policy,
                webhook=webhook,
                wait_s=wait_ms / 1000,
                use_cache=use_cache,
                pin=pin,
            )
        except NotFound:
            run = await self._pipeline(principal, name, payload, wait_ms / 1000, webhook)
            if run is None or self.pipelines is None:
                raise
            return json_response(run_json(await self.pipelines.view(principal, name, run.id)))
        return json_response(status_json(job))


def _plain(endpoint: str) -> str:
    """The endpoint's name from a path that may pin a version (`echo@3` → `echo`): a client
    whose base URL pins a version polls, cancels and retries its jobs under the same base."""
    return parse_pin(endpoint)[0]


async def health_json(jobs: JobService, endpoint_id: int) -> dict[str, Any]:
    """RunPod's /health body: job counts by status and workers by state."""
    workers = jobs.workers(endpoint_id)
    return {
        "jobs": await jobs.health(endpoint_id),
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


def _policy(policy: Any) -> Policy:
    """RunPod's `policy` (milliseconds) as the job service's (seconds)."""
    if not isinstance(policy, dict):
        raise InvalidRequest("policy must be an object", hint='{"executionTimeout": 60000}')
    for key in ("executionTimeout", "ttl"):
        value = policy.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise InvalidRequest(f"policy.{key} must be a positive number of milliseconds")
    timeout_ms, ttl_ms = policy.get("executionTimeout"), policy.get("ttl")
    return Policy(
        timeout_s=timeout_ms / 1000 if timeout_ms else None,
        ttl_s=ttl_ms / 1000 if ttl_ms else None,
    )


async def _sse(jobs: JobService, job: Job) -> AsyncIterator[bytes]:
    """Server-sent events: one `chunk` event per chunk, then `done` with the final status."""
    async for kind, value in jobs.stream_events(job):
        data = status_json(value) if kind == "done" and value is not None else value
        yield (
            b"event: "
            + kind.encode()
            + b"\ndata: "
            + orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
            + b"\n\n"
        )


class _JobCalls:
    """/status, /stream, /cancel and /retry of a job, or, when the id is no job of an endpoint
    of that name, of a pipeline run (`/v2/{pipeline}/...`)."""

    def __init__(self, runpod: RunPod, platform: Platform) -> None:
        self.jobs, self.keys, self.pipelines = runpod.jobs, runpod.keys, runpod.pipelines
        self.platform = platform

    async def _run_of(self, principal: Principal, name: str, run_id: str) -> Pipelines:
        """The driver, once `run_id` is a run of the pipeline `name`; NotFound naming both."""
        if self.pipelines is not None:
            with contextlib.suppress(NotFound):
                await self.pipelines.view(principal, name, run_id)
                return self.pipelines
        raise NotFound(
            f"no job or pipeline run {run_id!r} on {name!r}", hint="check the id returned by /run"
        )

    async def status(self, endpoint: str, job_id: str, request: Request) -> Response:
        principal = await self.keys.resolve(request)
        try:
            job = await self.jobs.get(principal, job_id, _plain(endpoint))
        except NotFound:
            driver = await self._run_of(principal, endpoint, job_id)
            return json_response(run_json(await driver.view(principal, endpoint, job_id)))
        body = status_json(job)
        runpod = self.platform.runpod
        if job.status is JobStatus.IN_PROGRESS and runpod is not None:
            progress = runpod.progress(job.id)  # a RunPod handler's progress_update
            if progress is not None:
                body["output"] = progress
        return json_response(body)

    async def stream(self, endpoint: str, job_id: str, request: Request) -> Response:
        principal = await self.keys.resolve(request)
        try:
            job = await self.jobs.get(principal, job_id, _plain(endpoint))
        except NotFound:
            driver = await self._run_of(principal, endpoint, job_id)
            run, chunks = await driver.stream(principal, endpoint, job_id, STREAM_POLL_WAIT_S)
            return _chunks_json(run.id, run.status, chunks)
        relayed = await relay_stream(self.platform, job, request)  # its owner has the chunks
        if relayed is not None:
            return relayed
        if "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(
                _sse(self.jobs, job),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        job, chunks = await self.jobs.poll_stream(job, STREAM_POLL_WAIT_S)
        return _chunks_json(job.id, job.status, chunks)

    async def cancel(self, endpoint: str, job_id: str, request: Request) -> Response:
        principal = await self.keys.resolve(request)
        try:
            job = await self.jobs.cancel(principal, job_id, _plain(endpoint))
        except NotFound:
            driver = await self._run_of(principal, endpoint, job_id)
            return json_response(run_json(await driver.cancel(principal, endpoint, job_id)))
        return json_response(status_json(job))

    async def retry(self, endpoint: str, job_id: str, request: Request) -> Response:
        principal = await self.keys.resolve(request)
        try:
            retried = await self.jobs.retry(principal, _plain(endpoint), job_id)
        except NotFound:
            driver = await self._run_of(principal, endpoint, job_id)
            return json_response(accepted_json(await driver.retry(principal, endpoint, job_id)))
        return json_response({"id": retried.id, "status": retried.status.value})

    async def health(self, endpoint: str, request: Request) -> Response:
        """RunPod's /health; for a pipeline, its endpoints' jobs and workers added up."""
        principal = await self.keys.resolve(request)
        try:
            found = await self.jobs.endpoint(principal, _plain(endpoint))
        except NotFound:
            definition = (
                None if self.pipelines is None else await self.pipelines.find(principal, endpoint)
            )
            if definition is None:
                raise
            names = parse(definition.definition).endpoints
            bodies = [
                await health_json(self.jobs, (await self.jobs.endpoint(principal, n)).id)
                for n in names
            ]
            return json_response(_added_up(bodies))
        return json_response(await health_json(self.jobs, found.id))


def _added_up(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Several /health bodies as one: every count summed."""
    total: dict[str, Any] = {"jobs": {}, "workers": {}}
    for body in bodies:
        for part in ("jobs", "workers"):
            for key, count in body[part].items():
                total[part][key] = total[part].get(key, 0) + count
    return total


def _chunks_json(job_id: str, status: JobStatus, chunks: list[Any]) -> Response:
    return json_response(
        {"id": job_id, "status": status.value, "stream": [{"output": c} for c in chunks]}
    )


def router(runpod: RunPod, platform: Platform) -> APIRouter:
    """The /v2 routes; each handler is small, ruff counts them all as one function."""
    routes = APIRouter(prefix="/v2/{endpoint}", tags=["invoke"])
    jobs, keys = runpod.jobs, runpod.keys
    calls = _JobCalls(runpod, platform)

    @routes.post("/run", summary="Queue a job; poll /status/{id} or get a webhook")
    async def run(endpoint: str, request: Request) -> Response:
        return await runpod.run(endpoint, request)

    @routes.post("/runsync", summary="Run a job and wait up to ?wait= ms for its result")
    async def runsync(endpoint: str, request: Request, wait: int | None = None) -> Response:
        return await runpod.runsync(endpoint, request)

    @routes.get("/status/{job_id}", summary="A job's status, output and cost")
    async def status(endpoint: str, job_id: str, request: Request) -> Response:
        return await calls.status(endpoint, job_id, request)

    @routes.get("/stream/{job_id}", summary="New chunks of a streaming job (or server-sent events)")
    async def stream(endpoint: str, job_id: str, request: Request) -> Response:
        return await calls.stream(endpoint, job_id, request)

    @routes.post("/cancel/{job_id}", summary="Cancel a queued or running job")
    async def cancel(endpoint: str, job_id: str, request: Request) -> Response:
        return await calls.cancel(endpoint, job_id, request)

    @routes.post("/retry/{job_id}", summary="Queue a FAILED or TIMED_OUT job again")
    async def retry(endpoint: str, job_id: str, request: Request) -> Response:
        return await calls.retry(endpoint, job_id, request)

    @routes.get("/health", summary="Job counts and workers of the endpoint (or a pipeline's)")
    async def health(endpoint: str, request: Request) -> Response:
        return await calls.health(endpoint, request)

    @routes.post("/purge-queue", summary="Cancel every queued job of the endpoint")
    async def purge_queue(endpoint: str, request: Request) -> Response:
        removed = await jobs.purge(await keys.resolve(request), _plain(endpoint))
        return json_response({"removed": removed, "status": "completed"})

    return routes
