"""Management routes (`/v1/...`): deploys, endpoints, keys, jobs, logs, usage."""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api.auth import KeyCache, require_admin
from coldbrew.api.bodies import budget_from, camel_keys
from coldbrew.api.deploy_stream import NDJSON, deploy_stream
from coldbrew.api.responses import json_response
from coldbrew.control.jobs import JobService
from coldbrew.errors import InvalidRequest, NotFound
from coldbrew.metering.advisor import Traffic, advise, busy_intervals
from coldbrew.metering.report import GROUPINGS, usage_csv, usage_report
from coldbrew.platform import Platform
from coldbrew.spec import DeploymentSpec
from coldbrew.store.models import Endpoint, Principal, UsageKind
from coldbrew.store.state import Namespace
from coldbrew.wire import iso, status_json

MAX_LOOKUP_IDS = 1000
_SHA = re.compile(r"^[0-9a-f]{64}$")
_SINCE = re.compile(r"^(\d+)([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_SINCE_S = 3640 * 86_400  # 520 weeks: far past any usage kept, and within SQLite's integers


def parse_since(text: str) -> float:
    """'24h' → seconds; at most `MAX_SINCE_S`."""
    match = _SINCE.match(text)
    if not match:
        raise InvalidRequest(
            f"since={text!r} is not a duration", hint="use a number and m/h/d/w, e.g. 24h or 7d"
        )
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > MAX_SINCE_S:
        raise InvalidRequest(
            f"{text!r} is longer than {MAX_SINCE_S // 86_400} days, the longest window kept",
            hint="use a shorter duration, e.g. 520w or 30d",
        )
    return seconds


async def endpoint_json(
    platform: Platform, jobs: JobService, endpoint: Endpoint, detail: bool
) -> dict[str, Any]:
    version = await platform.store.get_version(endpoint.current_version_id)
    health = await jobs.health(endpoint.id)
    body: dict[str, Any] = {
        "name": endpoint.name,
        "version": version.number,
        "hardware": version.spec.get("hardware"),
        "workers": jobs.workers(endpoint.id),
        "queue": health["inQueue"],
        "running": health["inProgress"],
        "createdAt": iso(endpoint.created_at),
        "deployedAt": iso(version.created_at),
    }
    if detail:
        body["spec"] = version.spec
        body["inputSchema"] = version.input_schema
        body["artifact"] = version.artifact_sha
    return body


def router(platform: Platform, keys: KeyCache, jobs: JobService) -> APIRouter:  # noqa: C901
    """The /v1 routes; each handler is small, ruff counts them all as one function."""
    routes = APIRouter(prefix="/v1", tags=["manage"])

    @routes.head("/artifacts/{sha}", summary="Whether an artifact is already uploaded")
    async def has_artifact(sha: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        found = _SHA.match(sha) and platform.deployer.has_artifact(principal.account, sha)
        return Response(status_code=200 if found else 404)

    @routes.put("/artifacts/{sha}", summary="Upload a packaged model directory (a tar)")
    async def put_artifact(sha: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        if not _SHA.match(sha):
            raise InvalidRequest("the artifact id must be the sha256 of the tar, in hex")
        if not platform.deployer.has_artifact(principal.account, sha):
            await platform.deployer.store_artifact(principal.account, sha, request.stream())
        return json_response({"artifact": sha})

    @routes.post("/deployments", summary="Create versions from an uploaded artifact")
    async def deploy(request: Request) -> Response:
        principal = await keys.resolve(request)
        body = _json_body(await request.body())
        sha = body.get("artifact")
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise InvalidRequest("'artifact' must be the sha256 of an uploaded tar")
        directory = body.get("directory")
        if directory is not None and (not isinstance(directory, str) or len(directory) > 255):
            raise InvalidRequest("'directory' must be the deployed directory's name (a string)")
        name, replace = body.get("name"), body.get("replace", False)
        if name is not None and not isinstance(name, str):
            raise InvalidRequest("'name' must be the endpoint name to deploy under (a string)")
        if not isinstance(replace, bool):
            raise InvalidRequest("'replace' must be true or false")
        if NDJSON in request.headers.get("accept", ""):
            return deploy_stream(platform, principal.account, sha, directory, name, replace)
        endpoints = await platform.deploy(
            principal.account, sha, directory, name=name, replace=replace
        )
        return json_response({"endpoints": endpoints})

    @routes.get("/endpoints", summary="Your endpoints with versions, workers and queues")
    async def list_endpoints(request: Request) -> Response:
        principal = await keys.resolve(request)
        endpoints = await platform.store.list_endpoints(principal.account)
        return json_response(
            {"endpoints": [await endpoint_json(platform, jobs, e, False) for e in endpoints]}
        )

    @routes.get("/endpoints/{name}", summary="One endpoint with its spec and input schema")
    async def get_endpoint(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        endpoint = await jobs.endpoint(principal, name)
        return json_response(await endpoint_json(platform, jobs, endpoint, True))

    @routes.get("/endpoints/{name}/advice", summary="Serverless vs dedicated, and what to change")
    async def advice(name: str, request: Request, window: str = "7d") -> Response:
        principal = await keys.resolve(request)
        endpoint = await jobs.endpoint(principal, name)
        window_s = parse_since(window)
        now = platform.clock.time()
        rows = [
            r
            for r in await jobs.usage((now - window_s) // 3600 * 3600, principal.account)
            if r.endpoint == name
        ]
        seconds: dict[UsageKind, float] = {kind: 0.0 for kind in UsageKind}
        for row in rows:
            seconds[row.kind] += row.seconds
        since_day = int((now - window_s) // 86_400)
        requests = sum(c for _, _, c in await platform.store.traffic(endpoint.id, since_day))
        version = await platform.store.get_version(endpoint.current_version_id)
        spec = DeploymentSpec(**version.spec)
        traffic = Traffic(
            window_s=window_s,
            requests=requests,
            seconds=seconds,
            price_per_hour_usd=platform.settings.prices_per_hour_usd.get(spec.hardware, 0.0),
            hardware=spec.hardware,
            idle_timeout_s=spec.idle_timeout_s,
            min_workers=spec.min_workers,
            cold_starts=await platform.store.cold_starts(endpoint.id, now - window_s),
            busy_intervals=busy_intervals(
                await platform.store.job_timings(now - window_s, principal.account, endpoint.id)
            ),
            window_end=now,
            per_worker=spec.batch.max_size if spec.batch else spec.concurrency,
            reserved_discount=platform.settings.reserved_discount_for(spec.hardware),
            reserved_workers=spec.reserved_workers,
        )
        result = advise(traffic)
        if "reserved" in result:  # next to the verdict, in the API's casing too
            result["reserved"] = camel_keys(result["reserved"])
        return json_response({"endpoint": name, "window": window, **camel_keys(result)})

    @routes.delete("/endpoints/{name}", summary="Stop an endpoint's workers and remove it")
    async def delete_endpoint(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        await platform.scheduler.delete_endpoint(principal.account, name)
        await platform.deployer.collect_environments()  # its environments, if no one else's
        await platform.state.clear(Namespace(principal.account, name))  # a new one starts empty
        return json_response({"deleted": name})

    @routes.post("/budgets", summary="Set a monthly budget on your account or an endpoint")
    async def set_budget(request: Request) -> Response:
        principal = await keys.resolve(request)
        budget = budget_from(await request.body(), principal, platform.clock.time())
        if budget.account != principal.account:
            require_admin(principal)
        if budget.endpoint is not None:
            await jobs.endpoint(Principal(budget.account, principal.admin), budget.endpoint)
        return json_response(await jobs.set_budget(budget), 201)

    @routes.get("/budgets", summary="Your budgets: spend this month, forecast, alerts sent")
    async def list_budgets(request: Request) -> Response:
        principal = await keys.resolve(request)
        return json_response(
            {
                "budgets": await jobs.budgets_status(principal.account),
                "alerts": await platform.store.alerts(principal.account),
            }
        )

    @routes.get("/account", summary="Your account, with its webhook signing secret")
    async def account(request: Request) -> Response:
        principal = await keys.resolve(request)
        found = await platform.store.get_account(principal.account)
        assert found is not None
        return json_response(
            {"name": found.name, "admin": principal.admin, "webhookSecret": found.webhook_secret}
        )

    @routes.get("/jobs/{job_id}", summary="A job's status with its webhook deliveries")
    async def get_job(job_id: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        job = await jobs.find(principal.account, job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        body = status_json(job)
        body["input"] = job.input
        if job.webhook_url:
            body["webhook"] = {
                "url": job.webhook_url,
                "state": job.webhook_state.value if job.webhook_state else None,
                "deliveries": await platform.store.deliveries(job.id),
            }
        return json_response(body)

    @routes.post("/jobs/lookup", summary="Many jobs' status at once (yours; at most 1000 ids)")
    async def lookup_jobs(request: Request) -> Response:
        principal = await keys.resolve(request)
        ids = _json_body(await request.body()).get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InvalidRequest("'ids' must be a list of job ids", hint='send {"ids": ["…"]}')
        if len(ids) > MAX_LOOKUP_IDS:
            raise InvalidRequest(
                f"at most {MAX_LOOKUP_IDS} ids per lookup, got {len(ids)}",
                hint="split them over several requests",
            )
        found_jobs = await jobs.lookup(principal.account, ids)
        found = {job.id for job in found_jobs}
        return json_response(
            {
                "jobs": [status_json(job) for job in found_jobs],
                "notFound": [i for i in dict.fromkeys(ids) if i not in found],
            }
        )

    @routes.get("/jobs/{job_id}/logs", summary="What the worker printed while running the job")
    async def job_logs(job_id: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        if await jobs.find(principal.account, job_id) is None:
            raise NotFound(f"no job {job_id!r}")
        return json_response({"id": job_id, "logs": await jobs.logs(job_id)})

    @routes.get("/usage", summary="Billable seconds (cold start, busy, idle, reserved) and dollars")
    async def usage(
        request: Request, by: str = "endpoint", since: str = "24h", format: str = "json"
    ) -> Response:
        principal = await keys.resolve(request)
        if by not in GROUPINGS:
            raise InvalidRequest(f"by={by!r} is not a grouping", hint=f"use one of {GROUPINGS}")
        window_s = parse_since(since)
        # Rows are per hour; include the hour the window starts in.
        start = (platform.clock.time() - window_s) // 3600 * 3600
        scope = None if (principal.admin and by == "account") else principal.account
        rows = await jobs.usage(start, scope)
        prices = platform.settings.prices_per_hour_usd
        report = usage_report(rows, by, prices, platform.settings.reserved_discount)
        totals = {
            key: round(sum(line[key] for line in report), 9)
            for key in [f"{kind.value}_{unit}" for unit in ("s", "usd") for kind in UsageKind]
            + ["total_s", "total_usd"]
        }
        if format == "csv":
            return Response(
                usage_csv(by, report),
                media_type="text/csv",
                headers={"content-disposition": f'attachment; filename="usage-{by}-{since}.csv"'},
            )
        if format != "json":
            raise InvalidRequest(f"format={format!r} is not supported", hint="use json or csv")
        return json_response(
            {
                "by": by,
                "since": since,
                "rows": [camel_keys(row) for row in report],
                "total": camel_keys(totals),
                "pricesPerHourUsd": prices,
                # reserved seconds are priced at (1 - discount) x the hourly price
                "reservedDiscount": {
                    hw: platform.settings.reserved_discount_for(hw) for hw in sorted(prices)
                },
            }
        )

    return routes


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("the body must be a JSON object")
    return parsed
