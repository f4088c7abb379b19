"""Management routes for versions: list them, split traffic between them, roll back.

`GET /v1/endpoints/{name}/versions`, `PUT /v1/endpoints/{name}/traffic`,
`POST /v1/endpoints/{name}/rollback`. Each parses its body here and calls `VersionControl`;
after a change the scheduler refreshes, so admission and the live set follow at once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api.auth import KeyCache
from coldbrew.api.dashboard import parse_duration
from coldbrew.api.responses import json_response
from coldbrew.control.jobs import JobService, is_http_url
from coldbrew.control.traffic import parse_weights, share_of, version_state
from coldbrew.control.workers import WorkerState
from coldbrew.errors import InvalidRequest
from coldbrew.observe.stats import summarize
from coldbrew.platform import Platform
from coldbrew.store.models import CanaryRule, Endpoint, JobTiming, Version
from coldbrew.wire import iso

_STATES = {
    WorkerState.IDLE: "idle",
    WorkerState.BUSY: "running",
    WorkerState.STARTING: "starting",
    WorkerState.LOADING: "starting",
}


def environment_of(version: Version) -> str:
    """The version's environment: its `environment` key where the deploy recorded one (in its
    source or spec), else "server" (the server's own virtualenv)."""
    for where in (version.source, version.spec):
        value = where.get("environment")
        if isinstance(value, dict):
            value = value.get("key") or value.get("id") or value.get("name")
        if value:
            return str(value)
    return "server"


def rule_json(rule: CanaryRule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {
        "windowS": rule.window_s,
        "maxErrorRate": rule.max_error_rate,
        "maxP99Ms": rule.max_p99_ms,
        "minJobs": rule.min_jobs,
        "webhook": rule.webhook_url,
    }


def _rule(body: dict[str, Any]) -> CanaryRule | None:
    """The canary rule from the traffic body; None when it sets no bound."""
    error_rate, p99_ms = body.get("maxErrorRate"), body.get("maxP99Ms")
    if error_rate is None and p99_ms is None:
        return None
    if error_rate is not None and (
        not isinstance(error_rate, int | float) or not 0 <= error_rate <= 1
    ):
        raise InvalidRequest(
            f"maxErrorRate={error_rate!r} is not a rate", hint="use 0 to 1, e.g. 0.05 for 5%"
        )
    if p99_ms is not None and (not isinstance(p99_ms, int | float) or p99_ms <= 0):
        raise InvalidRequest(f"maxP99Ms={p99_ms!r} is not a latency", hint="use ms, e.g. 500")
    min_jobs = body.get("minJobs", CanaryRule.min_jobs)
    if isinstance(min_jobs, bool) or not isinstance(min_jobs, int) or min_jobs < 1:
        raise InvalidRequest(f"minJobs={min_jobs!r} must be a whole number >= 1", hint="e.g. 20")
    webhook = body.get("webhook")
    if webhook is not None and not is_http_url(webhook):
        raise InvalidRequest("webhook must be an http(s) URL", hint="or leave it out")
    window = body.get("window", "60s")
    if not isinstance(window, str):
        raise InvalidRequest("window must be a duration such as 60s or 5m")
    window_s = parse_duration(window, "window")
    if window_s > 3600:
        raise InvalidRequest(f"window={window} is longer than 1h", hint="use 1h or less")
    return CanaryRule(
        window_s=window_s,
        max_error_rate=float(error_rate) if error_rate is not None else None,
        max_p99_ms=float(p99_ms) if p99_ms is not None else None,
        min_jobs=min_jobs,
        webhook_url=webhook,
    )


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not JSON", hint="send a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


async def versions_json(
    platform: Platform, jobs: JobService, endpoint: Endpoint, window_s: float
) -> dict[str, Any]:
    """Every version of the endpoint with its state, share, workers and recent stats."""
    store = platform.store
    versions = await store.list_versions(endpoint.id)
    split = await store.get_split(endpoint.id)
    workers: dict[int, Counter[str]] = defaultdict(Counter)
    for worker in platform.scheduler.workers.values():
        if worker.version.endpoint_id == endpoint.id and worker.state in _STATES:
            workers[worker.version.id][_STATES[worker.state]] += 1
    since = platform.clock.time() - window_s
    timings: dict[int, list[JobTiming]] = defaultdict(list)
    for timing in await jobs.timings(since, endpoint.account, endpoint.id):
        timings[timing.version_id].append(timing)
    lines = [
        {
            "version": v.number,
            "createdAt": iso(v.created_at),
            "artifact": v.artifact_sha,
            "environment": environment_of(v),
            "status": version_state(v, endpoint, split).value,
            "share": share_of(v, endpoint, split),
            "workers": {s: workers[v.id][s] for s in ("idle", "running", "starting")},
            "rolledBackAt": iso(v.rolled_back_at),
            "rollbackReason": v.rollback_reason,
            "stats": summarize(timings[v.id]),
        }
        for v in versions
    ]
    return {
        "endpoint": endpoint.name,
        "current": next(v.number for v in versions if v.id == endpoint.current_version_id),
        "rule": rule_json(split.rule if split else None),
        "windowS": window_s,
        "versions": lines,
    }


def router(platform: Platform, keys: KeyCache, jobs: JobService) -> APIRouter:
    """The version routes under /v1/endpoints/{name}."""
    routes = APIRouter(prefix="/v1/endpoints", tags=["versions"])

    @routes.get("/{name}/versions", summary="Versions: state, traffic share, workers, stats")
    async def list_versions(name: str, request: Request, window: str = "1h") -> Response:
        principal = await keys.resolve(request)
        endpoint = await jobs.endpoint(principal, name)
        window_s = parse_duration(window, "window")
        return json_response(await versions_json(platform, jobs, endpoint, window_s))

    @routes.put("/{name}/traffic", summary="Split new jobs between versions, with a canary rule")
    async def set_traffic(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        endpoint = await jobs.endpoint(principal, name)
        body = _body(await request.body())
        weights, rule = parse_weights(body.get("weights")), _rule(body)
        await platform.versions.set_traffic(endpoint, weights, rule)
        await platform.scheduler.refresh_endpoints()
        endpoint = await jobs.endpoint(principal, name)
        return json_response(await versions_json(platform, jobs, endpoint, 3600.0))

    @routes.post("/{name}/rollback", summary="Make an earlier (or any other) version current")
    async def rollback(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        endpoint = await jobs.endpoint(principal, name)
        to = _body(await request.body()).get("to")
        if to is not None and (isinstance(to, bool) or not isinstance(to, int)):
            raise InvalidRequest(f"'to' must be a version number, not {to!r}", hint="e.g. 3")
        done = await platform.versions.rollback(endpoint, to)
        await platform.scheduler.refresh_endpoints()
        return json_response(
            {
                "endpoint": done.endpoint,
                "from": done.from_version.number,
                "version": done.to_version.number,
            }
        )

    return routes
