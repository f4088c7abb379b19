"""How a trigger runner reaches jobs: the `Submitter` it is handed (the job service, seen from
below), the idempotency key of one attempt at one message, and what counts as transient."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from coldbrew.errors import ClientError, ColdbrewError, NotFound
from coldbrew.store.models import Job, JobStatus
from coldbrew.store.triggers import InFlight, TriggerDef

OnAccept = Callable[[Job], Awaitable[None]]
_MAX_KEY = 200  # the job service takes 255; the rest is the prefix


class Submitter(Protocol):
    """How a runner makes and reads jobs: the job service, seen from below (wired in the api)."""

    async def submit(
        self, trigger: TriggerDef, payload: dict[str, Any], key: str, on_accept: OnAccept
    ) -> Job:
        """Start the job for one message attempt under idempotency `key` (a repeat gets the
        first job back); `on_accept` sees a new job before it is queued."""

    async def lookup(self, account: str, job_ids: list[str]) -> list[Job]:
        """The jobs that still exist, as they stand."""


def idempotency_key(trigger_id: str, message_key: str, attempt: int) -> str:
    """The job key of one attempt at one message: stable across redeliveries and restarts."""
    key = message_key
    if len(key) > _MAX_KEY or not (key.isascii() and key.isprintable()):
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return f"trigger:{trigger_id}:{attempt}:{key}"


def as_payload(body: Any) -> dict[str, Any]:
    """A message body as job input: an object as it is, anything else under "data"."""
    return body if isinstance(body, dict) else {"data": body}


def transient(exc: ColdbrewError) -> bool:
    """Errors that a later submit may not meet (full queue, budget, storage, endpoint not yet
    deployed): keep the message unacked and try again. Other client errors are the message's."""
    return (
        not isinstance(exc, ClientError)
        or isinstance(exc, NotFound)
        or exc.status_code
        in (
            402,
            429,
        )
    )


def lost_job(row: InFlight, trigger: TriggerDef, now: float) -> Job:
    """A stand-in for a job that no longer exists (purged): it counts as a failed attempt."""
    return Job(
        id=row.job_id,
        account=trigger.account,
        endpoint_id=0,
        endpoint=trigger.target,
        version_id=0,
        status=JobStatus.FAILED,
        input={},
        created_at=now,
        expires_at=now,
        timeout_s=0.0,
        max_attempts=1,
        error={"type": "job_lost", "message": f"job {row.job_id} no longer exists"},
        finished_at=now,
    )
