"""The job status JSON, as RunPod's clients read it, plus coldbrew's additions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from coldbrew.store.models import Job


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def status_json(job: Job) -> dict[str, Any]:
    """`{id, status, delayTime, executionTime, output, error, workerId, ...}` (times in ms).

    `error` is a string, as RunPod's is; `errorDetail` carries its type, hint and traceback.
    """
    body: dict[str, Any] = {"id": job.id, "status": job.status.value}
    if job.delay_ms is not None:
        body["delayTime"] = job.delay_ms
    if job.execution_ms is not None:
        body["executionTime"] = job.execution_ms
    if job.output is not None:
        body["output"] = job.output
    if job.error is not None:
        body["error"] = job.error.get("message", "")
        body["errorDetail"] = job.error
    if job.worker_id is not None:
        body["workerId"] = job.worker_id
    body["endpoint"] = job.endpoint
    body["attempts"] = job.attempts
    body["coldStart"] = job.cold_start
    if job.cached:
        body["cached"] = True
    if job.cold_start_detail:
        detail = dict(job.cold_start_detail)
        if job.execution_ms is not None:
            detail["firstPredictMs"] = job.execution_ms
        body["coldStartDetail"] = detail
    body["costUsd"] = round(job.cost_usd, 9)
    body["createdAt"] = iso(job.created_at)
    if job.finished_at is not None:
        body["finishedAt"] = iso(job.finished_at)
    return body
