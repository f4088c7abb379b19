"""The gateway-to-gateway routes: a waiting job forwarded to its endpoint's owner, and what this
gateway owns (`GET /v1/cluster`, for operators and tests).

A forwarded job comes with the caller's own `Authorization` header, checked here as on any
request, and must be the caller's account's; the gateway that forwarded it has already admitted
it (input, budget, queue limit), so this one only runs it, and never forwards it again. So that
no client skips admission by posting a job here itself, the hop carries a token sealed with the
cluster's shared secrets key over the body's hash and the time (`Cluster.hop_token`).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from coldbrew.api.auth import KeyCache, require_admin
from coldbrew.api.responses import json_response
from coldbrew.control.jobs import JobService
from coldbrew.control.routing import (
    FORWARDED_HEADER,
    HOP_TOKEN_HEADER,
    job_from_wire,
    job_to_wire,
)
from coldbrew.errors import Forbidden, InvalidRequest
from coldbrew.platform import Platform
from coldbrew.store.models import Job

#: Request headers a relayed stream carries to the owner.
_RELAYED = ("authorization", "accept")


async def relay_stream(platform: Platform, job: Job, request: Request) -> Response | None:
    """A `/stream` request for a job another gateway runs: relay the owner's answer (chunks
    live in the memory of the gateway whose worker sends them). None: answer here (this
    gateway owns the endpoint, it was relayed already, or the owner is unreachable)."""
    cluster = platform.cluster
    if cluster is None or FORWARDED_HEADER in request.headers:
        return None
    owner = cluster.stream_owner(job)
    if owner is None:
        return None
    url = owner + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    headers = {k: v for k in _RELAYED if (v := request.headers.get(k)) is not None}
    upstream = await cluster.open_stream(url, headers)
    if upstream is None:
        return None
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type"),
        headers={"cache-control": "no-cache"},
        background=BackgroundTask(upstream.aclose),
    )


def router(platform: Platform, keys: KeyCache, jobs: JobService) -> APIRouter:
    routes = APIRouter(prefix="/v1/cluster", tags=["cluster"])

    @routes.post("/jobs", include_in_schema=False)  # between gateways only
    async def forwarded(request: Request) -> Response:
        principal = await keys.resolve(request)
        raw = await request.body()
        cluster = platform.cluster
        if cluster is None or not cluster.hop_ok(raw, request.headers.get(HOP_TOKEN_HEADER)):
            raise Forbidden(
                "only another gateway of this cluster may forward a job here",
                hint="send the request to /v2/{endpoint}/runsync instead",
            )
        try:
            body = orjson.loads(raw)
            job = job_from_wire(body["job"])
            wait_s = float(body["wait_s"])
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            raise InvalidRequest(f"not a forwarded job: {exc}") from None
        done = await jobs.run_forwarded(principal.account, job, wait_s)
        return json_response({"job": job_to_wire(done)})

    @routes.post("/cancel/{job_id}", include_in_schema=False)  # between gateways only
    async def cancel_here(job_id: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        return json_response({"job": job_to_wire(await jobs.cancel_here(principal, job_id))})

    @routes.get("", summary="This gateway, its peers, the endpoints it owns (admin)")
    async def status(request: Request) -> Response:
        require_admin(await keys.resolve(request))
        if platform.cluster is None:
            return json_response({"gateway": platform.settings.gateway_id, "shared": False})
        return json_response(platform.cluster.status())

    return routes
