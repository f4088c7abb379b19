"""RunPod's worker protocol, served to the handler processes coldbrew starts (`backends/runpod.py`).

The `runpod` SDK in a handler long-polls `job-take` for work, posts each stream chunk to
`job-stream`, progress and the final output or error to `job-done`, long-polls `job-stop` for jobs
it should abandon, and pings. Each URL carries the worker's own secret (`?token=`); the SDK also
sends it raw in `Authorization`. Bodies are JSON even where labelled form-urlencoded.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api.responses import json_response
from coldbrew.backends.runpod import ROUTE_PREFIX, HandlerWorker, RunPodBackend
from coldbrew.errors import InvalidRequest, NotFound
from coldbrew.platform import Platform

#: How long an empty job-take or job-stop poll is held open. Short, because the server waits
#: for open requests when it stops; a job handed over meanwhile answers the poll at once.
HOLD_S = 2.0
_MAX_BATCH = 1024


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _no_job(job_id: str) -> NotFound:
    return NotFound(f"job {job_id!r} is not running on this worker")


def router(platform: Platform) -> APIRouter:  # noqa: C901
    """The worker-protocol routes; each handler is small, ruff counts them all as one function."""
    routes = APIRouter(prefix=ROUTE_PREFIX, tags=["runpod-worker"], include_in_schema=False)
    backend: RunPodBackend | None = platform.runpod

    def worker(worker_id: str, request: Request) -> HandlerWorker:
        if backend is None:
            raise NotFound("this gateway runs no RunPod handler workers")
        token = request.query_params.get("token") or request.headers.get("authorization", "")
        return backend.authenticate(worker_id, token)

    @routes.get("/job-take/{worker_id}")
    async def job_take(worker_id: str, request: Request) -> Response:
        jobs = await worker(worker_id, request).take(1, HOLD_S)
        return json_response(jobs[0]) if jobs else Response(status_code=204)

    @routes.get("/job-take-batch/{worker_id}")
    async def job_take_batch(worker_id: str, request: Request, batch_size: int = 1) -> Response:
        size = max(1, min(batch_size, _MAX_BATCH))
        jobs = await worker(worker_id, request).take(size, HOLD_S)
        return json_response(jobs) if jobs else Response(status_code=204)

    @routes.get("/job-stop/{worker_id}")
    async def job_stop(worker_id: str, request: Request) -> Response:
        handler = worker(worker_id, request)
        finished = set()
        for job_id in list(handler.taken):
            job = await platform.scheduler.find_job(job_id)
            if job is None or job.status.final:
                finished.add(job_id)
        ids = await handler.stops(HOLD_S, finished)
        return json_response({"jobsToStop": ids}) if ids else Response(status_code=204)

    @routes.post("/job-stream/{worker_id}/{job_id}")
    async def job_stream(worker_id: str, job_id: str, request: Request) -> Response:
        handler = worker(worker_id, request)
        if not handler.stream(job_id, _body(await request.body())):
            raise _no_job(job_id)
        return json_response({})

    @routes.post("/job-done/{worker_id}/{job_id}")
    async def job_done(worker_id: str, job_id: str, request: Request) -> Response:
        handler = worker(worker_id, request)
        if not await handler.answer(job_id, _body(await request.body())):
            raise _no_job(job_id)
        return json_response({})

    @routes.get("/ping/{worker_id}")
    async def ping(worker_id: str, request: Request) -> Response:
        handler = worker(worker_id, request)
        handler.last_ping = platform.clock.time()
        if request.query_params.get("status") == "unhealthy":
            handler.tail.append(f"unhealthy: {request.query_params.get('reason', '')}")
        return json_response({})

    return routes
