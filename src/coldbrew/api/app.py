"""The FastAPI application: routes, the one error handler, and per-account OpenAPI documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from coldbrew.api import (
    accounts,
    cluster,
    credentials,
    dashboard,
    invoke,
    kserve,
    manage,
    pipelines,
    replicate,
    runpod_worker,
    state,
    triggers,
    versions,
)
from coldbrew.api.auth import KeyCache
from coldbrew.api.contain import ContainErrors
from coldbrew.api.fastlane import FastLane
from coldbrew.api.limits import BodyLimits
from coldbrew.api.responses import error_body, error_response, json_response
from coldbrew.control.jobs import JobService
from coldbrew.control.pipelines import Pipelines
from coldbrew.errors import ColdbrewError
from coldbrew.observe.metrics import CONTENT_TYPE
from coldbrew.platform import Platform


def _error(status: int, kind: str, message: str, hint: str = "") -> Response:
    return json_response(error_body(kind, message, hint), status)


def account_openapi(
    base: dict[str, Any], endpoints: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """The OpenAPI document with a concrete run/runsync path per endpoint and its input schema."""
    doc = dict(base)
    paths = dict(doc.get("paths", {}))
    for name, schema in endpoints:
        body = {
            "type": "object",
            "required": ["input"],
            "properties": {
                "input": schema,
                "webhook": {"type": "string", "format": "uri"},
                "policy": {
                    "type": "object",
                    "properties": {
                        "executionTimeout": {"type": "integer", "description": "ms"},
                        "ttl": {"type": "integer", "description": "ms"},
                    },
                },
            },
        }
        for verb in ("run", "runsync"):
            paths[f"/v2/{name}/{verb}"] = {
                "post": {
                    "tags": [name],
                    "summary": f"{verb} on {name}",
                    "operationId": f"{name}_{verb}",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body}},
                    },
                    "responses": {"200": {"description": "job status"}},
                }
            }
    doc["paths"] = paths
    return doc


def create_app(platform: Platform, *, manage_lifecycle: bool = True) -> FastAPI:
    """The gateway for `platform`; with `manage_lifecycle` it starts and stops the platform."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            app.state.admin_key = await platform.start()
            await trigger_manager.start()  # after the scheduler: runners submit at once
            await driver.resume()  # runs a restart interrupted go on from their stored stages
        try:
            yield
        finally:
            await trigger_manager.stop()
            await replicator.hooks.close()
            await driver.stop()
            if manage_lifecycle:
                await platform.stop()

    app = FastAPI(
        title="coldbrew",
        version="0.1.0",
        description="Serverless inference: RunPod-compatible /v2 invocation, /v1 management.",
        lifespan=lifespan,
    )
    keys = KeyCache(platform)
    jobs = JobService(
        platform.store,
        platform.scheduler,
        platform.budgets,
        platform.cache,
        platform.settings,
        platform.clock,
        platform.versions,
        platform.cluster,
    )
    driver = Pipelines(
        platform.store,
        jobs,
        platform.clock,
        platform.settings.job_ttl_s,
        on_end=lambda view: pipelines.post_webhook(platform.webhooks, view),
    )
    app.state.pipelines = driver
    if platform.cluster is not None:  # unfinished runs go on where their pipeline's lease is
        ownership = platform.cluster.ownership
        driver.attach(ownership.claim, ownership.round)
        ownership.claimants.append(driver)
    runpod = invoke.RunPod(jobs, keys, platform.settings, driver)
    # before /v2/{endpoint}/...: its routes win
    app.include_router(kserve.router(jobs, keys, platform.settings))
    app.include_router(invoke.router(runpod, platform))
    app.add_middleware(FastLane, runpod=runpod)
    app.add_middleware(BodyLimits, settings=platform.settings)  # outside FastLane: bounds both
    app.add_middleware(ContainErrors)  # a 500 keeps the keep-alive connection
    app.include_router(manage.router(platform, keys, jobs))
    app.include_router(credentials.router(platform, keys))
    app.include_router(accounts.router(platform, keys))
    app.include_router(dashboard.router(platform, keys, jobs))
    app.include_router(versions.router(platform, keys, jobs))
    app.include_router(state.router(platform, keys, jobs))
    trigger_manager = triggers.new_manager(platform, jobs, driver)
    app.state.triggers = trigger_manager
    app.include_router(triggers.router(platform, keys, trigger_manager))
    app.include_router(pipelines.router(driver, keys))
    replicator = replicate.Replicate(jobs, keys, platform)  # Replicate's API over the same jobs
    app.include_router(replicate.router(replicator))
    app.include_router(runpod_worker.router(platform))
    app.include_router(cluster.router(platform, keys, jobs))

    @app.exception_handler(ColdbrewError)
    async def coldbrew_error(request: Request, exc: ColdbrewError) -> Response:
        return error_response(exc, request.method, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _error(400, "invalid_request", f"{where}: {first['msg']}", "fix the request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        hint = "see /docs for the routes" if exc.status_code == 404 else ""
        return _error(exc.status_code, "http_error", str(exc.detail), hint)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return error_response(exc, request.method, request.url.path)

    _ops_routes(app, platform, keys)
    dashboard.mount_ui(app)
    return app


def _ops_routes(app: FastAPI, platform: Platform, keys: KeyCache) -> None:
    """Health, readiness, metrics and the per-account OpenAPI document."""

    @app.get("/healthz", tags=["ops"], summary="The process is up")
    async def healthz() -> Response:
        body: dict[str, object] = {"status": "ok"}
        if platform.sandbox is not None:  # which protections tenant code runs under
            body["sandbox"] = platform.sandbox.report()
        return json_response(body)

    @app.get("/readyz", tags=["ops"], summary="The platform accepts jobs")
    async def readyz() -> Response:
        if platform.store.fault is not None:  # a probe write each tick clears it
            return json_response({"status": "not ready", "reason": platform.store.fault}, 503)
        await platform.store.count_accounts()
        return json_response({"status": "ready"})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics (your account's series)")
    async def metrics(request: Request) -> Response:
        principal = await keys.resolve(request)
        scope = None if principal.admin else principal.account
        return Response(platform.metrics.render(scope), media_type=CONTENT_TYPE)

    @app.get("/v1/openapi.json", tags=["manage"], summary="OpenAPI with your endpoints' inputs")
    async def openapi_for_account(request: Request) -> Response:
        principal = await keys.resolve(request)
        endpoints = []
        for endpoint in await platform.store.list_endpoints(principal.account):
            version = await platform.store.get_version(endpoint.current_version_id)
            endpoints.append((endpoint.name, version.input_schema))
        return json_response(account_openapi(app.openapi(), endpoints))
