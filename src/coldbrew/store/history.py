"""The store's history concern: what happened to jobs, kept for people and for prewarming.

Job timings, log lines, webhook delivery attempts and the per-endpoint traffic history. It is
append-mostly and read by dashboards, `/v1/jobs/{id}/logs`, the webhook sender and the
prewarmer, never by admission or dispatch; it is written in batches by the scheduler's buffered
writer. Kept apart so it can live where appends are cheap (or be trimmed) without touching the
queue's guarantees.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Protocol

from coldbrew.store.models import Job, JobTiming, WebhookState


class History(Protocol):
    """Timings, logs, webhook deliveries and traffic of jobs (the jobs themselves: `JobQueue`)."""

    @abstractmethod
    async def job_timings(
        self, since: float, account: str | None, endpoint_id: int | None = None
    ) -> list[JobTiming]:
        """Final jobs that finished at or after `since`, oldest first (for stats and charts)."""

    @abstractmethod
    async def cold_starts(self, endpoint_id: int, since: float) -> int:
        """Jobs of the endpoint created since `since` that waited for a cold start."""

    # logs
    @abstractmethod
    async def append_logs(self, rows: list[tuple[str, float, str, str]]) -> None:
        """Add (job_id, ts, stream, line) rows."""

    @abstractmethod
    async def job_logs(self, job_id: str) -> list[dict[str, Any]]:
        """The job's lines (`ts`, `stream`, `line`) in the order they were written."""

    # webhooks
    @abstractmethod
    async def record_delivery(
        self,
        job_id: str,
        attempt: int,
        at: float,
        status_code: int | None,
        error: str | None,
        state: WebhookState | None,
    ) -> None:
        """Record one delivery attempt and, when given, the job's new webhook state, together."""

    @abstractmethod
    async def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """The job's delivery attempts, first first."""

    @abstractmethod
    async def pending_webhooks(self) -> list[Job]:
        """Final jobs whose webhook is still to be delivered."""

    @abstractmethod
    async def claim_webhooks(
        self, owner: str, now: float, until: float, limit: int, job_id: str | None = None
    ) -> list[Job]:
        """Claim pending webhooks for `owner` until `until`: those nobody holds or whose claim
        lapsed (before `now`), and those `owner` already holds (a renewal), oldest final first,
        at most `limit`; with `job_id`, only that job. Two gateways never hold one at once
        (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one conditional update), so the gateway
        that owed a retry can die and another delivers it once the claim lapses."""

    @abstractmethod
    async def save_webhook_hook(self, job_id: str, hook: dict[str, Any]) -> None:
        """Keep how the job's webhook is to be sent (a body format and its settings: Replicate's
        prediction hooks) with the job, so whichever gateway delivers it sends the same."""

    @abstractmethod
    async def webhook_hook(self, job_id: str) -> dict[str, Any] | None:
        """What `save_webhook_hook` kept for the job, or None (RunPod's status body)."""

    # traffic, for prewarming
    @abstractmethod
    async def record_arrivals(self, counts: list[tuple[int, int, int, int]]) -> None:
        """Add (endpoint_id, day, time-of-day bucket, arrivals) to the traffic history."""

    @abstractmethod
    async def traffic(self, endpoint_id: int, since_day: int) -> list[tuple[int, int, int]]:
        """(day, bucket, count) rows of the endpoint from `since_day` on."""
