"""Trigger routes: `POST/GET /v1/triggers`, `GET/DELETE /v1/triggers/{id}`, `POST
/v1/triggers/{id}/pause|resume`, `GET /v1/triggers/{id}/dead-letters`, and the object-store
event receiver `POST /v1/triggers/{id}/events?sig=…` (no API key: the signed URL is the
credential, as a bucket notification cannot carry one).

The job service reaches the trigger manager as its `Submitter`: the manager sits below the
control plane, so it is handed what it may call rather than importing it.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api.auth import KeyCache, require_admin
from coldbrew.api.responses import json_response
from coldbrew.control.jobs import JobService
from coldbrew.control.pipelines import Pipelines
from coldbrew.errors import InvalidRequest, NotFound, Unauthorized
from coldbrew.integrations.egress import EgressPolicy
from coldbrew.integrations.triggers.manager import TriggerManager, TriggerRequest
from coldbrew.integrations.triggers.push import s3_messages, sign, verify
from coldbrew.integrations.triggers.submit import OnAccept
from coldbrew.platform import Platform
from coldbrew.store.models import Job, Principal
from coldbrew.store.pipelines import PipelineRun
from coldbrew.store.triggers import TriggerDef, TriggerState
from coldbrew.wire import iso

#: Kinds any key may use: they connect nowhere the creator chooses (cron, pushed events) or
#: only where webhooks may go (the webhook sink, through the egress policy). Every other kind
#: (Redis, PostgreSQL, brokers) connects to a server named in its config: an admin key's call.
TENANT_SOURCES = frozenset({"cron", "s3"})
TENANT_SINKS = frozenset({None, "webhook"})


def run_as_job(run: PipelineRun) -> Job:
    """A pipeline run as the trigger runner watches it: a job whose id is the run's, ending
    as the run ends, with the run's output (the last stage's) for the sink."""
    return Job(
        id=run.id,
        account=run.account,
        endpoint_id=0,
        endpoint=run.pipeline,
        version_id=0,
        status=run.status,
        input=run.input,
        created_at=run.created_at,
        expires_at=run.created_at,
        timeout_s=0.0,
        max_attempts=1,
        output=run.output,
        error=run.error,
        finished_at=run.finished_at,
    )


class JobSubmitter:
    """The job service as the trigger runners see it: submit under a key, look jobs up. A
    trigger whose target is a pipeline starts a run per message attempt instead (the key
    makes a redelivery find the first run), watched as a job with the run's id."""

    def __init__(self, jobs: JobService, pipelines: Pipelines | None = None) -> None:
        self.jobs = jobs
        self.pipelines = pipelines

    async def submit(
        self, trigger: TriggerDef, payload: dict[str, Any], key: str, on_accept: OnAccept
    ) -> Job:
        principal = Principal(trigger.account, admin=False)
        if trigger.target_kind == "pipeline":
            return await self._run(principal, trigger, payload, key, on_accept)
        submitted = await self.jobs.submit(
            principal, trigger.target, payload, idempotency_key=key, on_accept=on_accept
        )
        return submitted.job

    async def _run(
        self,
        principal: Principal,
        trigger: TriggerDef,
        payload: dict[str, Any],
        key: str,
        on_accept: OnAccept,
    ) -> Job:
        if self.pipelines is None:
            raise InvalidRequest(f"trigger {trigger.name!r} targets a pipeline; none run here")
        found = await self.pipelines.get(principal, trigger.target)  # NotFound: retried later

        async def created(run: PipelineRun) -> None:
            await on_accept(run_as_job(run))

        run = await self.pipelines.submit(
            principal, found, payload, None, key=key, on_create=created
        )
        return run_as_job(run)

    async def lookup(self, account: str, job_ids: list[str]) -> list[Job]:
        jobs = await self.jobs.lookup(account, job_ids)
        if self.pipelines is not None and len(jobs) < len(job_ids):
            found = {j.id for j in jobs}
            for run_id in (i for i in job_ids if i not in found):
                run = await self.pipelines.store.get_run(run_id, account)
                if run is not None:
                    jobs.append(run_as_job(run))
        return jobs


def new_manager(
    platform: Platform, jobs: JobService, pipelines: Pipelines | None = None
) -> TriggerManager:
    """The gateway's trigger manager, told of every final job and pipeline run, and running
    the triggers whose lease this gateway holds."""
    consumer = f"coldbrew-{socket.gethostname()}-{platform.settings.port}"  # stable per gateway
    manager = TriggerManager(
        platform.store,
        JobSubmitter(jobs, pipelines),
        platform.clock,
        consumer,
        egress=EgressPolicy.from_settings(platform.settings),
    )
    platform.scheduler.add_final_listener(manager.on_final)
    if pipelines is not None:
        pipelines.end_listeners.append(lambda run: manager.on_final(run_as_job(run)))
    if platform.cluster is not None:
        ownership = platform.cluster.ownership
        manager.attach(ownership.claim, ownership.round)
        ownership.claimants.append(manager)
    return manager


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not JSON", hint="send a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _request(body: dict[str, Any]) -> TriggerRequest:
    """A create request from the JSON body (`source: {kind, ...}`, `sink: {kind, ...}`)."""
    raw_source, raw_sink = body.get("source") or {}, body.get("sink")
    if not isinstance(raw_source, dict) or not (raw_sink is None or isinstance(raw_sink, dict)):
        raise InvalidRequest("source and sink must be JSON objects with a kind")
    source, sink = dict(raw_source), None if not raw_sink else dict(raw_sink)
    target = body.get("endpoint") or body.get("pipeline")
    if not isinstance(target, str) or not source.get("kind") or not body.get("name"):
        raise InvalidRequest(
            "a trigger needs a name, a source with a kind, and an endpoint",
            hint='{"name": "orders", "source": {"kind": "redis", "stream": "s"}, '
            '"endpoint": "echo", "sink": {"kind": "postgres", "dsn": "…", "table": "r"}}',
        )
    limits = {
        k: body[k]
        for k in ("batch_size", "batch_window_ms", "max_in_flight", "max_attempts")
        if k in body
    }
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{name} must be a whole number")
    return TriggerRequest(
        name=str(body["name"]),
        source_kind=str(source.pop("kind")),
        source=source,
        target=target,
        target_kind="pipeline" if body.get("pipeline") else "endpoint",
        sink_kind=None if sink is None else str(sink.pop("kind", "")),
        sink=sink,
        **limits,
    )


def trigger_json(trigger: TriggerDef, request: Request) -> dict[str, Any]:
    """A trigger as the API shows it; the event URL (with its signature) for push sources."""
    line: dict[str, Any] = {
        "id": trigger.id,
        "name": trigger.name,
        "state": trigger.state.value,
        "source": {"kind": trigger.source_kind, **trigger.source},
        trigger.target_kind: trigger.target,
        "sink": None
        if trigger.sink_kind is None
        else {"kind": trigger.sink_kind, **(trigger.sink or {})},
        "batchSize": trigger.batch_size,
        "batchWindowMs": trigger.batch_window_ms,
        "maxInFlight": trigger.max_in_flight,
        "maxAttempts": trigger.max_attempts,
        "createdAt": iso(trigger.created_at),
    }
    if trigger.source_kind == "s3":
        base = str(request.base_url).rstrip("/")
        line["eventsUrl"] = (
            f"{base}/v1/triggers/{trigger.id}/events?sig={sign(trigger.id, trigger.secret)}"
        )
    return line


def router(platform: Platform, keys: KeyCache, manager: TriggerManager) -> APIRouter:
    """The trigger routes under /v1/triggers."""
    routes = APIRouter(prefix="/v1/triggers", tags=["triggers"])

    async def _mine(request: Request, trigger_id: str) -> TriggerDef:
        principal = await keys.resolve(request)
        return await manager.get(None if principal.admin else principal.account, trigger_id)

    async def _full(trigger: TriggerDef, request: Request) -> dict[str, Any]:
        return {**trigger_json(trigger, request), "stats": await manager.stats(trigger)}

    @routes.post("", summary="Create a trigger: source → endpoint → optional sink")
    async def create(request: Request) -> Response:
        principal = await keys.resolve(request)
        wanted = _request(_body(await request.body()))
        if wanted.source_kind not in TENANT_SOURCES or wanted.sink_kind not in TENANT_SINKS:
            require_admin(principal)  # it connects to a server the creator names
        trigger = await manager.create(principal.account, wanted)
        return json_response(await _full(trigger, request), 201)

    @routes.get("", summary="Triggers with their lag, throughput, failures and last error")
    async def list_triggers(request: Request) -> Response:
        principal = await keys.resolve(request)
        triggers = await manager.all(None if principal.admin else principal.account)
        return json_response({"triggers": [await _full(t, request) for t in triggers]})

    @routes.get("/{trigger_id}", summary="One trigger")
    async def get(trigger_id: str, request: Request) -> Response:
        return json_response(await _full(await _mine(request, trigger_id), request))

    @routes.delete("/{trigger_id}", summary="Stop and remove a trigger")
    async def delete(trigger_id: str, request: Request) -> Response:
        trigger = await _mine(request, trigger_id)
        await manager.delete(trigger)
        return json_response({"id": trigger.id, "deleted": True})

    @routes.post("/{trigger_id}/pause", summary="Stop fetching; the source keeps new messages")
    async def pause(trigger_id: str, request: Request) -> Response:
        trigger = await manager.set_state(await _mine(request, trigger_id), TriggerState.PAUSED)
        return json_response(await _full(trigger, request))

    @routes.post("/{trigger_id}/resume", summary="Fetch again from where the trigger stopped")
    async def resume(trigger_id: str, request: Request) -> Response:
        trigger = await manager.set_state(await _mine(request, trigger_id), TriggerState.ACTIVE)
        return json_response(await _full(trigger, request))

    _dead_letters_route(routes, platform, _mine)
    _events_route(routes, platform, manager)
    return routes


def _filters(trigger: TriggerDef) -> dict[str, str]:
    return {
        "prefix": str(trigger.source.get("prefix", "")),
        "suffix": str(trigger.source.get("suffix", "")),
    }


def _dead_letters_route(
    routes: APIRouter,
    platform: Platform,
    mine: Callable[[Request, str], Awaitable[TriggerDef]],
) -> None:
    @routes.get("/{trigger_id}/dead-letters", summary="Messages given up on, with their error")
    async def dead_letters(trigger_id: str, request: Request, limit: int = 100) -> Response:
        trigger = await mine(request, trigger_id)
        letters = await platform.store.dead_letters(trigger.id, max(1, min(limit, 1000)))
        return json_response(
            {
                "deadLetters": [
                    {
                        "key": d.message_key,
                        "input": d.body,
                        "error": d.error,
                        "attempts": d.attempts,
                        "at": iso(d.at),
                    }
                    for d in letters
                ]
            }
        )


def _events_route(routes: APIRouter, platform: Platform, manager: TriggerManager) -> None:
    @routes.post("/{trigger_id}/events", summary="S3/MinIO event notifications (signed URL)")
    async def events(trigger_id: str, request: Request, sig: str = "") -> Response:
        trigger = await platform.store.get_trigger(trigger_id)
        if trigger is None:
            raise NotFound(f"no trigger {trigger_id!r}")
        if not sig or not verify(trigger.id, trigger.secret, sig):
            raise Unauthorized("bad or missing sig", hint="use the trigger's eventsUrl as given")
        body = _body(await request.body())
        if body.get("Type") == "SubscriptionConfirmation":
            # no outbound calls: the operator confirms by opening SubscribeURL (docs/triggers.md)
            return json_response(
                {"subscribe": "confirm by opening SubscribeURL", "url": body.get("SubscribeURL")}
            )
        messages = s3_messages(body, platform.clock.time(), **_filters(trigger))
        if messages:
            await manager.push(trigger, messages)
        return json_response({"accepted": len(messages)})
