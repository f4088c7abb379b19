"""The dashboard: its static single-page app at `/ui`, and the JSON it needs beyond `/v1`'s other
routes: per-endpoint stats, time series and recent jobs. Every route is scoped to the key's own
account, as `/v1/endpoints` and `/v1/usage` are."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from coldbrew.api.auth import KeyCache
from coldbrew.api.responses import json_response
from coldbrew.control.jobs import JobService
from coldbrew.errors import InvalidRequest
from coldbrew.observe.stats import (
    MAX_BUCKETS,
    buckets,
    by_version,
    cost_series,
    job_series,
    summarize,
)
from coldbrew.platform import Platform
from coldbrew.store.models import JobTiming
from coldbrew.wire import iso, status_json

UI_DIR = Path(__file__).parent / "ui"
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_WINDOW_S = 31 * 86400
_MIN_STEP_S = 5
_MAX_JOBS = 200


def parse_duration(text: str, name: str) -> float:
    """'5m' → 300.0; a bad value says what to send instead."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise InvalidRequest(
            f"{name}={text!r} is not a duration",
            hint="use a positive number and s/m/h/d/w, e.g. 30s, 5m, 24h or 7d",
        )
    return float(int(match.group(1)) * _UNIT_S[match.group(2)])


def _window_and_step(window: str, step: str) -> tuple[float, float]:
    window_s, step_s = parse_duration(window, "window"), parse_duration(step, "step")
    if window_s > _MAX_WINDOW_S:
        raise InvalidRequest(f"window={window!r} is longer than 31 days", hint="use 31d or less")
    if step_s < _MIN_STEP_S:
        raise InvalidRequest(f"step={step!r} is shorter than 5 s", hint="use 5s or more")
    if window_s / step_s > MAX_BUCKETS:
        raise InvalidRequest(
            f"window={window} in steps of {step} makes more than {MAX_BUCKETS} points",
            hint=f"use a step of at least {window_s / MAX_BUCKETS:g} s",
        )
    return window_s, step_s


def router(platform: Platform, keys: KeyCache, jobs: JobService) -> APIRouter:
    """`/v1/stats`, `/v1/endpoints/{name}/timeseries` and `/v1/endpoints/{name}/jobs`."""
    routes = APIRouter(prefix="/v1", tags=["dashboard"])

    @routes.get("/stats", summary="Per endpoint: invocations, latency, cold starts (final jobs)")
    async def stats(request: Request, window: str = "24h") -> Response:
        principal = await keys.resolve(request)
        window_s = parse_duration(window, "window")
        since = platform.clock.time() - window_s
        per_endpoint: dict[str, list[JobTiming]] = defaultdict(list)
        for timing in await jobs.timings(since, principal.account):
            per_endpoint[timing.endpoint].append(timing)
        number = platform.versions.number
        lines = [
            {"endpoint": endpoint.name, **summarize(per_endpoint[endpoint.name])}
            | {"versions": by_version(per_endpoint[endpoint.name], number)}
            for endpoint in await platform.store.list_endpoints(principal.account)
        ]
        return json_response(
            {"window": window, "since": since, "jobTtlS": platform.settings.job_ttl_s}
            | {"endpoints": lines}
        )

    @routes.get("/endpoints/{name}/timeseries", summary="Charts: jobs, workers and cost over time")
    async def timeseries(
        name: str, request: Request, window: str = "1h", step: str = "1m"
    ) -> Response:
        principal = await keys.resolve(request)
        endpoint = await jobs.endpoint(principal, name)
        window_s, step_s = _window_and_step(window, step)
        now = platform.clock.time()
        times = buckets(now, window_s, step_s)
        timings = await jobs.timings(times[0], principal.account, endpoint.id)
        usage = [
            r
            for r in await jobs.usage(times[0] // 3600 * 3600, principal.account)
            if r.endpoint == name
        ]
        body: dict[str, Any] = {
            "endpoint": name,
            "window": window,
            "step": step,
            "stepS": step_s,
            "now": now,
            "t": times,
            **job_series(timings, times, step_s),
            "workers": platform.scheduler.samples.series(principal.account, name, times, step_s),
            "costUsdPerHour": cost_series(
                usage,
                times[0],
                now,
                platform.settings.prices_per_hour_usd,
                platform.settings.reserved_discount,
            ),
            "summary": summarize(timings),
        }
        return json_response(body)

    @routes.get("/endpoints/{name}/jobs", summary="The endpoint's newest jobs, without outputs")
    async def recent_jobs(name: str, request: Request, limit: int = 20) -> Response:
        principal = await keys.resolve(request)
        endpoint = await jobs.endpoint(principal, name)
        if not 1 <= limit <= _MAX_JOBS:
            raise InvalidRequest(f"limit={limit} is out of range", hint=f"use 1 to {_MAX_JOBS}")
        lines = []
        for job in await jobs.recent_jobs(endpoint.id, limit):
            line = status_json(job)
            line.pop("output", None)
            line["startedAt"] = iso(job.started_at)
            lines.append(line)
        return json_response({"endpoint": name, "jobs": lines})

    return routes


def mount_ui(app: FastAPI) -> None:
    """Serve the dashboard's files (no build step: plain ES modules and a vendored uPlot)."""

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> Response:
        return RedirectResponse("/ui/")

    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
