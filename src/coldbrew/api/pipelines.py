"""Pipelines on the wire: `/v1/pipelines` (create, list, show, delete) and the run JSON that
`/v2/{pipeline}/run|runsync|status|stream|cancel|retry` answer, RunPod's job status shape with
the stages added, so RunPod's client reads a pipeline run as it reads a job."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api.auth import KeyCache
from coldbrew.api.responses import json_response
from coldbrew.control.graph import parse
from coldbrew.control.pipelines import Pipelines, RunView
from coldbrew.errors import InvalidRequest
from coldbrew.integrations.webhooks import WebhookSender
from coldbrew.store.pipelines import PipelineDef, PipelineRun, StageRecord
from coldbrew.wire import iso


def _ms(start: float | None, end: float | None) -> int | None:
    return None if start is None or end is None else round((end - start) * 1000)


def stage_json(stage: StageRecord) -> dict[str, Any]:
    """One stage: its job, status, timings (ms), cold start and cost."""
    body: dict[str, Any] = {
        "stage": stage.key,
        "endpoint": stage.endpoint,
        "id": stage.job_id or None,
        "status": stage.status.value,
        "attempt": stage.attempt,
    }
    delay_ms = _ms(stage.created_at, stage.started_at)
    if delay_ms is not None:
        body["delayTime"] = delay_ms
    execution_ms = _ms(stage.started_at, stage.finished_at)
    if execution_ms is not None:
        body["executionTime"] = execution_ms
    body["coldStart"] = stage.cold_start
    body["costUsd"] = round(stage.cost_usd, 9)
    if stage.earlier_cost_usd:  # this stage's failed attempts before a /retry
        body["earlierAttemptsCostUsd"] = round(stage.earlier_cost_usd, 9)
    if stage.error is not None:
        body["error"] = stage.error.get("message", "")
    return body


def run_json(view: RunView) -> dict[str, Any]:
    """RunPod's status JSON for the whole run: one id, the last step's output, the run's
    delay (until its first stage started) and execution time, the sum of the stages' costs."""
    run, stages = view.run, view.stages
    body: dict[str, Any] = {"id": run.id, "status": run.status.value}
    started = [s.started_at for s in stages if s.started_at is not None]
    first = min(started) if started else None
    delay_ms = _ms(run.created_at, first)
    if delay_ms is not None:
        body["delayTime"] = delay_ms
    execution_ms = _ms(first, run.finished_at)
    if execution_ms is not None:
        body["executionTime"] = execution_ms
    if run.output is not None:
        body["output"] = run.output
    if run.error is not None:
        body["error"] = run.error.get("message", "")
        body["errorDetail"] = run.error
    body["pipeline"] = run.pipeline
    body["attempt"] = run.attempt
    body["coldStart"] = any(s.cold_start for s in stages)
    # the sum of the stage costs as shown (earlier attempts too): the wire's numbers add up
    shown = [round(s.cost_usd, 9) + round(s.earlier_cost_usd, 9) for s in stages]
    body["costUsd"] = round(sum(shown), 9)
    body["createdAt"] = iso(run.created_at)
    if run.finished_at is not None:
        body["finishedAt"] = iso(run.finished_at)
    body["stages"] = [stage_json(s) for s in stages]
    return body


def post_webhook(webhooks: WebhookSender, view: RunView) -> None:
    """Post an ended run's status JSON to its webhook, signed with the account's secret and
    retried as a job's webhook is (`webhook-id` is the run id and its attempt)."""
    run = view.run
    if run.webhook_url:
        webhooks.send_event(run.account, run.webhook_url, f"{run.id}-{run.attempt}", run_json(view))


def accepted_json(run: PipelineRun) -> dict[str, Any]:
    """What /run answers: the run's id and status."""
    return {"id": run.id, "status": run.status.value}


def pipeline_json(found: PipelineDef) -> dict[str, Any]:
    graph = parse(found.definition)
    return {
        "name": found.name,
        "revision": found.revision,
        "steps": graph.summary(),
        "endpoints": graph.endpoints,
        "definition": found.definition,
        "createdAt": iso(found.created_at),
        "updatedAt": iso(found.updated_at),
    }


def router(pipelines: Pipelines, keys: KeyCache) -> APIRouter:
    """The /v1/pipelines routes."""
    routes = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])

    @routes.post("", summary="Create or replace a pipeline from its JSON definition")
    async def create(request: Request) -> Response:
        principal = await keys.resolve(request)
        try:
            definition = orjson.loads(await request.body() or b"null")
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"the body is not JSON: {exc}") from None
        found, changed = await pipelines.define(principal, definition)
        return json_response({**pipeline_json(found), "changed": changed}, 201 if changed else 200)

    @routes.get("", summary="Your pipelines")
    async def list_all(request: Request) -> Response:
        principal = await keys.resolve(request)
        found = await pipelines.store.list_pipelines(principal.account)
        return json_response({"pipelines": [pipeline_json(p) for p in found]})

    @routes.get("/{name}", summary="One pipeline with its definition")
    async def show(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        return json_response(pipeline_json(await pipelines.get(principal, name)))

    @routes.delete("/{name}", summary="Delete a pipeline (its runs stay readable)")
    async def delete(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        await pipelines.delete(principal, name)
        return json_response({"deleted": name})

    return routes
