"""The JSON shapes of Replicate's API: predictions, versions, files and problem documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi.responses import Response

from coldbrew.api.responses import json_response
from coldbrew.runtime.adapters.cog import OUTPUT_SCHEMA_KEY
from coldbrew.store.models import Job, JobStatus, Version
from coldbrew.wire import iso

#: Webhook events a prediction can ask for (`webhook_events_filter`).
EVENTS = frozenset({"start", "output", "logs", "completed"})

#: coldbrew job states as Replicate prediction statuses.
STATUSES = {
    JobStatus.IN_QUEUE: "starting",
    JobStatus.IN_PROGRESS: "processing",
    JobStatus.COMPLETED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.TIMED_OUT: "failed",
    JobStatus.CANCELLED: "canceled",
}


def problem(status: int, kind: str, detail: str, hint: str = "") -> Response:
    """An RFC 7807 problem document: the client raises it as `ReplicateError`."""
    body = {
        "type": f"https://coldbrew.dev/errors/{kind}",
        "title": kind.replace("_", " ").capitalize(),
        "status": status,
        "detail": f"{detail} ({hint})" if hint else detail,
    }
    response = json_response(body, status)
    response.headers["content-type"] = "application/problem+json"
    return response


def output_schema(version: Version) -> dict[str, Any]:
    """The output's schema: a Cog model's from its signature, otherwise any JSON value."""
    found = version.input_schema.get(OUTPUT_SCHEMA_KEY)
    return dict(found) if isinstance(found, dict) else {"title": "Output"}


def version_json(version: Version, vid: str) -> dict[str, Any]:
    """A version with the OpenAPI fragment the client reads (`components.schemas`)."""
    inputs = {k: v for k, v in version.input_schema.items() if k != OUTPUT_SCHEMA_KEY}
    return {
        "id": vid,
        "created_at": iso(version.created_at),
        "cog_version": "0.23.1" if OUTPUT_SCHEMA_KEY in version.input_schema else None,
        "openapi_schema": {
            "openapi": "3.0.2",
            "info": {"title": f"{version.account}/{version.endpoint}", "version": "1"},
            "components": {"schemas": {"Input": inputs, "Output": output_schema(version)}},
        },
    }


def prediction_json(
    job: Job, version: Version, vid: str, base: str, logs: str, output: Any = None
) -> dict[str, Any]:
    """A job as a Replicate prediction; `output` overrides the stored one (partial output)."""
    url = f"{base}/v1/predictions/{job.id}"
    error = None
    if job.error is not None:
        error = job.error.get("message") or job.error.get("type") or "the prediction failed"
    elif job.status is JobStatus.TIMED_OUT:
        error = f"the prediction ran past its timeout of {job.timeout_s:g} s"
    body: dict[str, Any] = {
        "id": job.id,
        "model": f"{version.account}/{version.endpoint}",
        "version": vid,
        "input": job.input,
        "output": job.output if output is None else output,
        "logs": logs,
        "error": error,
        "status": STATUSES[job.status],
        "source": "api",
        "data_removed": False,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.finished_at) if job.status.final else None,
        "urls": {"get": url, "cancel": f"{url}/cancel", "stream": f"{url}/stream"},
        "metrics": {},
    }
    if job.status.final and job.execution_ms is not None:
        body["metrics"] = {"predict_time": job.execution_ms / 1000}
    if job.cost_usd:
        body["metrics"]["cost_usd"] = round(job.cost_usd, 9)
    return body


def _event(kind: str, number: int, data: Any) -> bytes:
    if isinstance(data, str):
        text = data
    else:
        text = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    lines = "".join(f"data: {line}\n" for line in text.split("\n"))
    return f"event: {kind}\nid: {number}\n{lines}\n".encode()


async def sse(events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[bytes]:
    """Replicate's server-sent events from a job's (kind, value) events: `output` per item,
    then `error` or `done`."""
    number = 0
    streamed = False
    async for kind, value in events:
        number += 1
        if kind == "chunk":
            streamed = True
            yield _event("output", number, value)
            continue
        final: Job | None = value
        if final is not None and not streamed and final.output is not None:
            yield _event("output", number, final.output)
        if final is not None and final.error is not None:
            yield _event("error", number, {"detail": final.error.get("message")})
        canceled = final is not None and final.status is JobStatus.CANCELLED
        yield _event("done", number, {"reason": "canceled"} if canceled else {})
