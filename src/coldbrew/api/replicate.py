"""Replicate's HTTP API (`/v1/predictions`, `/v1/models/...`, `/v1/files`) over coldbrew's jobs.

A thin adapter: a prediction is a coldbrew job, created through the same job service
(`control/jobs.py`: validation, budgets, the sync lane or the durable queue, waiting) and run by
the same scheduler and workers. This module reads and writes Replicate's shapes only; webhooks
are in `replicate_hooks.py`, the JSON shapes in `replicate_wire.py`. Mapping:
`owner/name` is account/endpoint; a version id is 64 hex digits naming one endpoint version
(`GET /v1/models/{owner}/{name}` shows the current one). Errors are RFC 7807 problem documents
(`{type, title, status, detail}`), which the official client raises as `ReplicateError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute

from coldbrew.api import files
from coldbrew.api.auth import KeyCache
from coldbrew.api.files import FileStore, StoredFile
from coldbrew.api.limits import check_depth
from coldbrew.api.replicate_hooks import PredictionHooks, hook_from
from coldbrew.api.replicate_wire import prediction_json, problem, sse, version_json
from coldbrew.api.responses import json_response
from coldbrew.control.jobs import JobService
from coldbrew.errors import ColdbrewError, InvalidInput, InvalidRequest, NotFound
from coldbrew.platform import Platform
from coldbrew.runtime.adapters.cog import check_file_url
from coldbrew.store.models import Endpoint, Job, Principal, Version

MAX_WAIT_S = 60  # Replicate's bound for `Prefer: wait`
_PAGE = 100  # predictions per page of GET /v1/predictions
_PREFER_WAIT = re.compile(r"^\s*wait(?:\s*=\s*(\d+))?\s*$")
_FILE_PATH = re.compile(r"^/v1/files/([0-9a-f-]{36})$")


class _ProblemRoute(APIRoute):
    """Routes whose errors are problem documents, as Replicate's client expects."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except ColdbrewError as exc:
                response = problem(exc.status_code, exc.error_type, exc.message, exc.hint)
                response.headers.update(exc.headers())
                return response

        return wrapped


def version_id(version: Version) -> str:
    """A version's Replicate id: its row id (16 hex) and a digest of what it is (48 hex)."""
    what = f"{version.account}/{version.endpoint}/{version.number}/{version.artifact_sha}"
    return f"{version.id:016x}" + hashlib.sha256(what.encode()).hexdigest()[:48]


def _prefer_wait(request: Request) -> float | None:
    """Seconds to hold the request from `Prefer: wait` / `Prefer: wait=N`, or None."""
    for part in request.headers.get("prefer", "").split(","):
        match = _PREFER_WAIT.match(part)
        if match:
            seconds = int(match.group(1)) if match.group(1) else MAX_WAIT_S
            if not 1 <= seconds <= MAX_WAIT_S:
                raise InvalidRequest(f"Prefer: wait={seconds} must be between 1 and {MAX_WAIT_S}")
            return float(seconds)
    return None


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}", hint='send {"input": {...}}') from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", hint='send {"input": {...}}')
    if not isinstance(body.get("input", {}), dict):
        raise InvalidRequest("input must be an object", hint='send {"input": {"field": value}}')
    return body


def _file_fields(schema: dict[str, Any]) -> set[str]:
    """Inputs whose schema is a URI (cog.Path), directly, optionally or as list items."""
    found = set()
    for name, prop in schema.get("properties", {}).items():
        options = [prop, *prop.get("anyOf", [])]
        options += [o["items"] for o in options if isinstance(o.get("items"), dict)]
        if any(o.get("format") == "uri" for o in options):
            found.add(name)
    return found


class Replicate:
    """Predictions, models, files and webhooks in Replicate's shapes."""

    def __init__(self, jobs: JobService, keys: KeyCache, platform: Platform) -> None:
        self.jobs = jobs
        self.keys = keys
        self.platform = platform
        self.files = FileStore(platform.settings.files_dir, platform.sealer)
        self.hooks = PredictionHooks(jobs, platform.webhooks, platform.clock, self.describe)

    # -- names
    async def principal_for(self, principal: Principal, owner: str) -> Principal:
        """The caller acting on `owner`'s models: their own account, or any for an admin key."""
        if owner == principal.account:
            return principal
        if principal.admin and await self.platform.store.get_account(owner) is not None:
            return Principal(account=owner, admin=True)
        raise NotFound(
            f"no model owner {owner!r}",
            hint=f"models are named <account>/<endpoint>; your account is {principal.account!r}",
        )

    async def model(
        self, principal: Principal, owner: str, name: str
    ) -> tuple[Principal, Endpoint]:
        acting = await self.principal_for(principal, owner)
        endpoint = await self.platform.store.get_endpoint(acting.account, name)
        if endpoint is None:
            raise NotFound(
                f"no model {owner}/{name}",
                hint="`coldbrew endpoints` lists yours; `coldbrew deploy DIR` creates one",
            )
        return acting, endpoint

    async def version(self, principal: Principal, vid: str) -> Version:
        """The endpoint version a Replicate version id names, if the caller may use it."""
        version = None
        if isinstance(vid, str) and re.fullmatch(r"[0-9a-f]{64}", vid):
            with contextlib.suppress(KeyError):
                version = await self.platform.store.get_version(int(vid[:16], 16))
        if (
            version is None
            or version_id(version) != vid
            or not (principal.admin or version.account == principal.account)
        ):
            raise NotFound(
                f"no version {vid!r}",
                hint="use a model's latest_version.id (GET /v1/models/{owner}/{name}), "
                "or run the model by name",
            )
        return version

    async def describe(self, job: Job, base: str, output: Any = None) -> dict[str, Any]:
        version = await self.platform.store.get_version(job.version_id)
        logs = "\n".join(r["line"] for r in await self.jobs.logs(job.id))
        return prediction_json(job, version, version_id(version), base, logs, output)

    # -- creating predictions
    async def create(
        self, request: Request, principal: Principal, endpoint: str, pinned: Version | None
    ) -> Response:
        body = _body(await request.body())
        base = str(request.base_url).rstrip("/")
        hook = hook_from(body, principal, base)
        payload = self._resolve_files(body.get("input", {}), principal, base)
        check_depth(payload, self.platform.settings, "input")
        wait_s = _prefer_wait(request)
        _, version, _ = await self.jobs.current(principal, endpoint)
        self._check_urls(pinned or version, payload)
        on_accept = None if hook is None else self.hooks.on_accept(hook)
        pin = None if pinned is None else pinned.number  # a version id runs that version
        job, _ = await self.jobs.submit(
            principal, endpoint, payload, wait_s=wait_s, on_accept=on_accept, pin=pin
        )
        if not job.status.final:  # as it stands now: a worker may have taken it meanwhile
            job = await self.jobs.find(principal.account, job.id) or job
        return json_response(await self.describe(job, base), 201)

    def _resolve_files(self, payload: dict[str, Any], principal: Principal, base: str) -> Any:
        """Our own `/v1/files/{id}` URLs become signed download URLs a worker can fetch."""

        def resolve(field: str, value: Any) -> Any:
            if isinstance(value, list):
                return [resolve(field, v) for v in value]
            if not isinstance(value, str) or not value.startswith(("http://", "https://")):
                return value
            path = value.split("://", 1)[1].partition("/")[2]
            match = _FILE_PATH.match("/" + path.split("?", 1)[0])
            if match is None:
                return value
            stored = self.files.get(match.group(1), principal.account)
            if stored is None:
                raise InvalidInput(
                    f"input.{field}: no file {match.group(1)} in your account",
                    hint="upload it with POST /v1/files and pass its urls.get",
                    fields=[[field]],
                )
            return self._download_url(stored, base)

        return {k: resolve(k, v) for k, v in payload.items()}

    def _download_url(self, stored: StoredFile, base: str) -> str:
        expiry = int(self.platform.clock.time() + self.platform.settings.job_ttl_s)
        signature = self.files.signature(stored.id, expiry)
        name = urllib.parse.quote(stored.name, safe="")  # workers see the upload's file name
        query = f"expiry={expiry}&signature={signature}"
        return f"{base}/v1/files/{stored.id}/download/{name}?{query}"

    @staticmethod
    def _check_urls(version: Version, payload: dict[str, Any]) -> None:
        """File inputs must be data: URIs or loopback http URLs: refused here, before a job."""
        for field in _file_fields(version.input_schema) & payload.keys():
            value = payload[field]
            for one in value if isinstance(value, list) else [value]:
                try:
                    check_file_url(field, one)
                except ValueError as exc:
                    raise InvalidInput(
                        f"input.{exc}", hint="upload the file with POST /v1/files", fields=[[field]]
                    ) from None


def router(replicate: Replicate) -> APIRouter:  # noqa: C901
    """The Replicate-compatible routes; ruff counts the handlers as one function."""
    routes = APIRouter(prefix="/v1", tags=["replicate"], route_class=_ProblemRoute)
    keys, jobs = replicate.keys, replicate.jobs
    platform = replicate.platform

    async def own_job(request: Request, prediction_id: str) -> tuple[Principal, Job]:
        principal = await keys.resolve(request)
        job = await jobs.find(principal.account, prediction_id)
        if job is None:
            raise NotFound(f"no prediction {prediction_id!r}", hint="check the id you were given")
        return principal, job

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @routes.post("/predictions", summary="Create a prediction of a model version (Replicate)")
    async def create_prediction(request: Request) -> Response:
        principal = await keys.resolve(request)
        body = _body(await request.body())
        if not isinstance(body.get("version"), str):
            raise InvalidRequest(
                "version is required", hint='send {"version": "<id>", "input": {...}}'
            )
        vid = body["version"].rsplit(":", 1)[-1]
        version = await replicate.version(principal, vid)
        acting = await replicate.principal_for(principal, version.account)
        return await replicate.create(request, acting, version.endpoint, version)

    @routes.post("/models/{owner}/{name}/predictions", summary="Run a model's current version")
    async def create_model_prediction(owner: str, name: str, request: Request) -> Response:
        acting, endpoint = await replicate.model(await keys.resolve(request), owner, name)
        return await replicate.create(request, acting, endpoint.name, None)

    @routes.post("/deployments/{owner}/{name}/predictions", summary="Run a deployment")
    async def create_deployment_prediction(owner: str, name: str, request: Request) -> Response:
        acting, endpoint = await replicate.model(await keys.resolve(request), owner, name)
        return await replicate.create(request, acting, endpoint.name, None)

    @routes.get("/predictions", summary="Your predictions, newest first")
    async def list_predictions(request: Request, cursor: float | None = None) -> Response:
        principal = await keys.resolve(request)
        page = await jobs.account_jobs(principal.account, _PAGE, before=cursor)
        results = [await replicate.describe(job, base(request)) for job in page]
        after = None
        if len(page) == _PAGE:  # maybe more: the next page starts before the last one shown
            after = f"{base(request)}/v1/predictions?cursor={page[-1].created_at!r}"
        return json_response({"previous": None, "next": after, "results": results})

    @routes.get("/predictions/{prediction_id}", summary="A prediction's status and output")
    async def get_prediction(prediction_id: str, request: Request) -> Response:
        _, job = await own_job(request, prediction_id)
        return json_response(await replicate.describe(job, base(request)))

    @routes.post("/predictions/{prediction_id}/cancel", summary="Cancel a prediction")
    async def cancel_prediction(prediction_id: str, request: Request) -> Response:
        principal, job = await own_job(request, prediction_id)
        job = await jobs.cancel(principal, job.id)
        return json_response(await replicate.describe(job, base(request)))

    @routes.get("/predictions/{prediction_id}/stream", summary="Server-sent events of the output")
    async def stream_prediction(prediction_id: str, request: Request) -> Response:
        _, job = await own_job(request, prediction_id)
        events = sse(jobs.stream_events(job))
        headers = {"cache-control": "no-store"}
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    @routes.get("/models/{owner}/{name}", summary="A model and its latest version")
    async def get_model(owner: str, name: str, request: Request) -> Response:
        _, endpoint = await replicate.model(await keys.resolve(request), owner, name)
        version = await platform.store.get_version(endpoint.current_version_id)
        latest = version_json(version, version_id(version))
        return json_response(
            {
                "url": f"{base(request)}/v1/models/{owner}/{name}",
                "owner": owner,
                "name": name,
                "description": None,
                "visibility": "private",
                "github_url": None,
                "paper_url": None,
                "license_url": None,
                "run_count": 0,
                "cover_image_url": None,
                "default_example": None,
                "latest_version": latest,
            }
        )

    @routes.get("/models/{owner}/{name}/versions", summary="A model's versions, newest first")
    async def list_versions(owner: str, name: str, request: Request) -> Response:
        _, endpoint = await replicate.model(await keys.resolve(request), owner, name)
        versions = await platform.store.list_versions(endpoint.id)
        results = [version_json(v, version_id(v)) for v in versions]
        return json_response({"next": None, "previous": None, "results": results})

    @routes.get("/models/{owner}/{name}/versions/{vid}", summary="One version with its schema")
    async def get_version(owner: str, name: str, vid: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        version = await replicate.version(principal, vid)
        if (version.account, version.endpoint) != (owner, name):
            raise NotFound(f"model {owner}/{name} has no version {vid!r}")
        return json_response(version_json(version, vid))

    @routes.get("/webhooks/default/secret", summary="The key that signs your webhooks")
    async def webhook_secret(request: Request) -> Response:
        principal = await keys.resolve(request)
        account = await platform.store.get_account(principal.account)
        assert account is not None
        return json_response({"key": account.webhook_secret})

    files.add_routes(routes, replicate.files, keys, platform.clock)
    return routes
