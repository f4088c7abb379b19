"""Replicate's HTTP API (`/v1/predictions`, `/v1/models/...`, `/v1/files`) over coldbrew's jobs.

A thin adapter: a prediction is a coldbrew job, created through the same `Invoker` (auth,
validation, budgets, durable enqueue) and run by the same scheduler and workers. Mapping:
`owner/name` is account/endpoint; a version id is 64 hex digits naming one endpoint version
(`GET /v1/models/{owner}/{name}` shows the current one). Errors are RFC 7807 problem documents
(`{type, title, status, detail}`), which the official client raises as `ReplicateError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute

from coldbrew.api import files
from coldbrew.api.files import FileStore, StoredFile
from coldbrew.api.invoke import Invoker, is_http_url, json_response
from coldbrew.api.replicate_wire import (
    EVENTS,
    prediction_json,
    problem,
    version_json,
)
from coldbrew.errors import ColdbrewError, Conflict, InvalidInput, InvalidRequest, NotFound
from coldbrew.runtime.adapters.cog import check_file_url
from coldbrew.store.models import Endpoint, Job, JobStatus, Principal, Version

MAX_WAIT_S = 60  # Replicate's bound for `Prefer: wait`
_PAGE = 100  # predictions per page of GET /v1/predictions
LOGS_EVERY_S = 0.5  # `logs` webhooks are throttled to this, as Replicate's are
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


@dataclass
class _Hook:
    """Where a prediction's webhook goes and which events it wants."""

    url: str
    events: frozenset[str]
    account: str
    base: str
    sent: int = 0
    #: the last event's delivery: each event is posted after the one before it has ended, so a
    #: receiver sees them in order even when one is retried (Replicate sends `completed` last)
    last: asyncio.Future[None] | None = None
    #: the tasks that send `output` and `logs` events; `completed` waits for them
    followers: list[asyncio.Future[None]] = dataclasses.field(default_factory=list)


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

    def __init__(self, invoker: Invoker) -> None:
        self.invoker = invoker
        self.platform = invoker.platform
        self.files = FileStore(self.platform.settings.home / "files", self.platform.sealer)
        self._hooks: dict[str, _Hook] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.platform.scheduler.add_final_listener(self._on_final)

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
        logs = "\n".join(r["line"] for r in await self.platform.store.job_logs(job.id))
        return prediction_json(job, version, version_id(version), base, logs, output)

    # -- creating predictions
    async def create(
        self, request: Request, principal: Principal, endpoint: str, pinned: Version | None
    ) -> Response:
        body = _body(await request.body())
        base = str(request.base_url).rstrip("/")
        hook = self._hook_from(body, principal, base)
        payload = self._resolve_files(body.get("input", {}), principal, base)
        if pinned is not None:
            found = await self.invoker.endpoint(principal, pinned.endpoint)
            if found.current_version_id != pinned.id:
                raise Conflict(
                    f"version {version_id(pinned)} of {pinned.account}/{pinned.endpoint} is not "
                    "the current one; coldbrew runs each model's current version",
                    hint="run the model by name, or pin its latest_version.id",
                )
        wait_s = _prefer_wait(request)
        version = await self._current(principal, endpoint)
        self._check_urls(version, payload)
        job = await self.invoker.submit(principal, endpoint, orjson.dumps({"input": payload}))
        future = self.platform.scheduler.watch(job.id) if wait_s else None
        try:
            if hook is not None:  # registered first: a cached answer completes inside enqueue
                self._hooks[job.id] = hook
                self._event(hook, job, "start", await self.describe(job, base))
            await self.invoker.enqueue(job)
            if hook is not None:
                if "output" in hook.events:
                    hook.followers.append(self._spawn(self._follow_output(job, hook)))
                if "logs" in hook.events:
                    hook.followers.append(self._spawn(self._follow_logs(job, hook)))
            if future is not None and wait_s is not None:
                with contextlib.suppress(TimeoutError):
                    job = await asyncio.wait_for(asyncio.shield(future), wait_s)
        finally:
            if future is not None:
                self.platform.scheduler.unwatch(job.id, future)
        current = await self.platform.scheduler.find_job(job.id) or job
        return json_response(await self.describe(current, base), 201)

    async def _current(self, principal: Principal, endpoint: str) -> Version:
        found = await self.invoker.endpoint(principal, endpoint)
        return await self.platform.store.get_version(found.current_version_id)

    def _hook_from(self, body: dict[str, Any], principal: Principal, base: str) -> _Hook | None:
        url = body.get("webhook") or body.get("webhook_completed")
        if url is None:
            return None
        if not is_http_url(url):
            raise InvalidRequest("webhook must be an http(s) URL", hint="or leave it out")
        events = body.get("webhook_events_filter")
        if body.get("webhook") is None:
            events = ["completed"]
        if events is None:
            events = sorted(EVENTS)
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) and e in EVENTS for e in events)
        ):
            raise InvalidRequest(
                f"webhook_events_filter must be a list drawn from {sorted(EVENTS)}",
                hint='e.g. ["start", "completed"]',
            )
        return _Hook(url, frozenset(events), principal.account, base)

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

    # -- webhooks
    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _event(self, hook: _Hook, job: Job, event: str, body: dict[str, Any]) -> None:
        if event in hook.events:
            hook.sent += 1
            msg_id = f"msg_{job.id}_{hook.sent}"
            hook.last = self._spawn(self._send_after(hook.last, hook, msg_id, body))

    async def _send_after(
        self, before: asyncio.Future[None] | None, hook: _Hook, msg_id: str, body: dict[str, Any]
    ) -> None:
        """Post one event once the previous one was delivered (or given up on)."""
        if before is not None:
            await asyncio.wait([before])
        await self.platform.webhooks.send_event(hook.account, hook.url, msg_id, body)

    async def _follow_output(self, job: Job, hook: _Hook) -> None:
        """An `output` event with each item a streaming prediction yields."""
        chunks: list[Any] = []
        async for kind, value in self.platform.scheduler.stream_events(job):
            if kind == "chunk":
                chunks.append(value)
                body = await self.describe(job, hook.base, output=list(chunks))
                body["status"] = "processing"
                self._event(hook, job, "output", body)

    async def _follow_logs(self, job: Job, hook: _Hook) -> None:
        """A `logs` event when new log lines appeared, at most every `LOGS_EVERY_S`."""
        seen = 0
        while True:
            current = await self.platform.scheduler.find_job(job.id)
            if current is None or current.status.final:
                return
            lines = len(await self.platform.store.job_logs(job.id))
            if lines > seen:
                seen = lines
                self._event(hook, current, "logs", await self.describe(current, hook.base))
            await self.platform.clock.sleep(LOGS_EVERY_S)

    def _on_final(self, job: Job) -> None:
        hook = self._hooks.pop(job.id, None)
        if hook is not None:
            self._spawn(self._completed(job, hook))

    async def _completed(self, job: Job, hook: _Hook) -> None:
        if hook.followers:  # their last `output` and `logs` events go first
            await asyncio.wait(hook.followers)
        self._event(hook, job, "completed", await self.describe(job, hook.base))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- streaming
    async def sse(self, job: Job) -> AsyncIterator[bytes]:
        """Replicate's server-sent events: `output` per item, then `error` or `done`."""
        number = 0
        streamed = False

        def event(kind: str, data: Any) -> bytes:
            data = (
                data
                if isinstance(data, str)
                else orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()
            )
            lines = "".join(f"data: {line}\n" for line in data.split("\n"))
            return f"event: {kind}\nid: {number}\n{lines}\n".encode()

        async for kind, value in self.platform.scheduler.stream_events(job):
            number += 1
            if kind == "chunk":
                streamed = True
                yield event("output", value)
                continue
            final: Job | None = value
            if final is not None and not streamed and final.output is not None:
                yield event("output", final.output)
            if final is not None and final.error is not None:
                yield event("error", {"detail": final.error.get("message")})
            canceled = final is not None and final.status is JobStatus.CANCELLED
            yield event("done", {"reason": "canceled"} if canceled else {})


def router(replicate: Replicate) -> APIRouter:  # noqa: C901
    """The Replicate-compatible routes; ruff counts the handlers as one function."""
    routes = APIRouter(prefix="/v1", tags=["replicate"], route_class=_ProblemRoute)
    keys = replicate.invoker.keys
    platform = replicate.platform

    async def own_job(request: Request, prediction_id: str) -> tuple[Principal, Job]:
        principal = await keys.resolve(request)
        job = await platform.scheduler.find_job(prediction_id, principal.account)
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
        await platform.scheduler.write_back()  # sync-lane jobs not yet written
        jobs = await platform.store.account_jobs(principal.account, _PAGE, before=cursor)
        results = [await replicate.describe(job, base(request)) for job in jobs]
        after = None
        if len(jobs) == _PAGE:  # maybe more: the next page starts before the last one shown
            after = f"{base(request)}/v1/predictions?cursor={jobs[-1].created_at!r}"
        return json_response({"previous": None, "next": after, "results": results})

    @routes.get("/predictions/{prediction_id}", summary="A prediction's status and output")
    async def get_prediction(prediction_id: str, request: Request) -> Response:
        _, job = await own_job(request, prediction_id)
        return json_response(await replicate.describe(job, base(request)))

    @routes.post("/predictions/{prediction_id}/cancel", summary="Cancel a prediction")
    async def cancel_prediction(prediction_id: str, request: Request) -> Response:
        _, job = await own_job(request, prediction_id)
        job = await platform.scheduler.cancel(job.id, job.account)
        return json_response(await replicate.describe(job, base(request)))

    @routes.get("/predictions/{prediction_id}/stream", summary="Server-sent events of the output")
    async def stream_prediction(prediction_id: str, request: Request) -> Response:
        _, job = await own_job(request, prediction_id)
        events = replicate.sse(job)
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
