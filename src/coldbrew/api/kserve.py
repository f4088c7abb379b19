"""The Open Inference Protocol (v2, as KServe and Triton clients speak it) over coldbrew endpoints.

`POST /v2/models/{name}/infer` turns typed tensors into `predict` arguments (`api/tensors.py`),
runs one job through the job service as `/runsync` does (the sync lane while a worker is warm),
and answers with
tensors. A KServe `Model` endpoint (`runtime/adapters/kserve.py`) gets the request as it is and
answers with its own `InferResponse`. Errors have the protocol's shape, `{"error": "..."}`.

These routes are registered before the RunPod-style `/v2/{endpoint}/...` ones, so they win where
both match; the one real overlap, `GET /v2/models/health` (RunPod health of an endpoint named
`models`), is answered as RunPod health when the account has an endpoint `models` and none named
`health`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api import tensors
from coldbrew.api.auth import KeyCache
from coldbrew.api.invoke import health_json
from coldbrew.api.limits import check_depth
from coldbrew.api.responses import json_response
from coldbrew.config import Settings
from coldbrew.control.jobs import JobService
from coldbrew.errors import ColdbrewError, InvalidRequest
from coldbrew.runtime.adapters.kserve import ADAPTER_MODULE
from coldbrew.store.models import Job, JobStatus, Principal, Version

Handler = Callable[..., Awaitable[Response]]


def _oip_errors(handler: Handler) -> Handler:
    """Answer coldbrew's errors in the protocol's shape, with the same status codes."""

    @functools.wraps(handler)
    async def wrapped(*args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(*args, **kwargs)
        except ColdbrewError as exc:
            message = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
            response = json_response({"error": message}, exc.status_code)
            response.headers.update(exc.headers())
            return response

    return wrapped


def _job_error(job: Job) -> Response:
    error = job.error or {}
    status_code = error.get("status_code")
    if isinstance(status_code, int) and 400 <= status_code < 600:
        # an HTTP error the model raised (FastAPI's HTTPException): its status and FastAPI's body
        return json_response({"detail": error.get("detail")}, status_code)
    message = f"{job.status.value}: {error.get('type', 'Error')}: {error.get('message', '')}"
    status = 400 if error.get("type") == "InvalidInput" else 500  # kserve.errors.InvalidInput
    if job.status is JobStatus.TIMED_OUT:
        status = 504
    return json_response({"error": message}, status)


class _Infer:
    """One infer request: tensors in, a job through the job service, tensors out."""

    def __init__(self, jobs: JobService, settings: Settings) -> None:
        self.jobs = jobs
        self.settings = settings

    async def __call__(
        self, principal: Principal, name: str, raw: bytes, json_length: str | None
    ) -> Response:
        _, version, _ = await self.jobs.current(principal, name)
        native = version.module == ADAPTER_MODULE
        try:
            if native:  # the model's own InferRequest decodes the bytes the client sent
                body = job_input = tensors.native_request(raw, json_length)
            else:
                body = tensors.decode_request(raw, json_length)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object with an 'inputs' list")
        if not native:
            job_input = tensors.arguments(body, version.input_schema)
        check_depth(job_input, self.settings, "input")
        wait_s = self.settings.runsync_wait_ms / 1000
        job, _ = await self.jobs.submit(principal, name, job_input, wait_s=wait_s)
        if not job.status.final:
            message = (
                f"job {job.id} is still {job.status.value}; "
                f"GET /v2/{name}/status/{job.id} gives its result"
            )
            return json_response({"error": message}, 504)
        if job.status is not JobStatus.COMPLETED:
            return _job_error(job)
        if job.version_id != version.id:  # a traffic split sent it to another version
            version = await self.jobs.store.get_version(job.version_id)
        return json_response(self._response(name, version, body, job, native))

    @staticmethod
    def _response(
        name: str, version: Version, body: dict[str, Any], job: Job, native: bool
    ) -> dict[str, Any]:
        output = job.output
        if native and isinstance(output, dict) and isinstance(output.get("outputs"), list):
            response = dict(output)
        else:
            response = {"outputs": tensors.output_tensors(output, body.get("outputs"))}
        response["model_name"] = name
        response["model_version"] = str(version.number)
        response["id"] = body.get("id") or job.id
        parameters = dict(response.get("parameters") or {})
        parameters.update(coldbrew_job_id=job.id, coldbrew_cost_usd=round(job.cost_usd, 9))
        response["parameters"] = parameters
        return response


def router(jobs: JobService, keys: KeyCache, settings: Settings) -> APIRouter:
    """The /v2 Open Inference Protocol routes (register before the RunPod-style ones)."""
    routes = APIRouter(prefix="/v2", tags=["open-inference"])
    store = jobs.store
    infer = _Infer(jobs, settings)

    @routes.get("", summary="OIP: server metadata")
    async def server_metadata() -> Response:
        return json_response(
            {"name": "coldbrew", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
        )

    @routes.get("/health/live", summary="OIP: the server is up")
    async def live() -> Response:
        return json_response({"live": True})

    @routes.get("/health/ready", summary="OIP: the server accepts inference requests")
    @_oip_errors
    async def ready() -> Response:
        await store.count_accounts()
        return json_response({"ready": True})

    @routes.get("/models/{name}", summary="OIP: model metadata (inputs from predict's arguments)")
    @_oip_errors
    async def metadata(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        if name == "health" and await store.get_endpoint(principal.account, "health") is None:
            models = await store.get_endpoint(principal.account, "models")
            if models is not None:  # RunPod's GET /v2/{endpoint}/health for endpoint "models"
                return json_response(await health_json(jobs, models.id))
        _, version, _ = await jobs.current(principal, name)
        return json_response(
            {
                "name": name,
                "versions": [str(version.number)],
                "platform": "coldbrew",
                "inputs": tensors.input_metadata(version.input_schema),
                "outputs": [],
            }
        )

    @routes.get("/models/{name}/ready", summary="OIP: the model accepts requests (wakes on one)")
    @_oip_errors
    async def model_ready(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        await jobs.endpoint(principal, name)
        return json_response({"name": name, "ready": True})

    @routes.post("/models/{name}/infer", summary="OIP: run the model on typed tensors")
    @_oip_errors
    async def infer_route(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        json_length = request.headers.get(tensors.BINARY_HEADER)
        return await infer(principal, name, await request.body(), json_length)

    return routes
