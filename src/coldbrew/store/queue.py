"""The store's queue concern: jobs from creation to their final state, and the queue counters.

This is the hot, contended part: every `run` writes here before it is acknowledged, and every
claim and finish is one conditional statement (`UPDATE … WHERE status IN …`), so two gateways
never both claim or finish the same job. It is kept apart because it is the part a second
database must get right first (PostgreSQL: `FOR UPDATE SKIP LOCKED`), and the one whose cost
per call the warm path feels.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from coldbrew.store.models import Job, JobStatus, QueueStat


class JobQueue(Protocol):
    """Create, claim, finish, requeue, retry and purge jobs; read them back; count the queue."""

    # create and read
    @abstractmethod
    async def create_job(self, job: Job) -> None: ...

    @abstractmethod
    async def save_jobs(self, jobs: list[Job]) -> None:
        """Write whole jobs in one transaction, replacing rows with the same id."""

    @abstractmethod
    async def create_job_once(self, job: Job, key: str) -> Job:
        """Create `job` unless its account already has a job under the idempotency `key`.

        Returns the job stored under the key: `job` itself, or the earlier one (a replay). The
        key is forgotten when that job is purged.
        """

    @abstractmethod
    async def job_for_key(self, account: str, key: str) -> Job | None:
        """The job `account` created under the idempotency `key`, if it is still stored."""

    @abstractmethod
    async def get_job(self, job_id: str, account: str | None = None) -> Job | None:
        """The job, or None when it does not exist or belongs to another account."""

    @abstractmethod
    async def get_jobs(self, job_ids: Sequence[str], account: str | None = None) -> list[Job]:
        """The jobs among `job_ids` that exist (and belong to `account`), in the order asked.

        Ids that are unknown, purged or another account's are simply left out.
        """

    @abstractmethod
    async def account_jobs(
        self, account: str | None, limit: int, before: float | None = None
    ) -> list[Job]:
        """Jobs newest first (one account's, or all), created before `before` when given."""

    @abstractmethod
    async def recent_jobs(self, endpoint_id: int, limit: int) -> list[Job]:
        """The endpoint's newest jobs (any status), newest first."""

    # state changes
    @abstractmethod
    async def claim(self, version_id: int, worker_id: str, now: float) -> Job | None:
        """Move the oldest queued job of the version to IN_PROGRESS on `worker_id`."""

    @abstractmethod
    async def claim_many(
        self, version_id: int, worker_id: str, now: float, limit: int
    ) -> list[Job]:
        """Move up to `limit` of the version's oldest queued jobs to IN_PROGRESS, oldest first."""

    @abstractmethod
    async def claim_job(self, job_id: str, worker_id: str, now: float) -> Job | None:
        """Move this queued job to IN_PROGRESS on `worker_id` (None if it is no longer queued)."""

    @abstractmethod
    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        now: float,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        cost_usd: float = 0.0,
        from_statuses: Iterable[JobStatus] = (JobStatus.IN_PROGRESS,),
        worker_id: str | None = None,
    ) -> Job | None:
        """Make the job final if it is still in one of `from_statuses`; returns it, or None.

        With `worker_id`, only while the job is still claimed by that worker: after a
        fail-over (its gateway lost, the job requeued and claimed again) a stale owner's
        result must not land. A final job with a webhook becomes pending delivery (see
        `History`)."""

    @abstractmethod
    async def requeue(self, job_id: str, *, worker_id: str | None = None) -> bool:
        """Put an IN_PROGRESS job back in the queue (its worker died); False if it was not
        (or, with `worker_id`, if another worker holds it now)."""

    @abstractmethod
    async def retry(self, job_id: str, account: str, now: float, ttl_s: float) -> Job | None:
        """Queue a FAILED or TIMED_OUT job again with fresh attempts (its old webhook
        deliveries are forgotten)."""

    @abstractmethod
    async def mark_cold_start(self, job_id: str, detail: dict[str, float]) -> None: ...

    @abstractmethod
    async def purge_queue(self, endpoint_id: int, now: float) -> list[Job]:
        """Cancel every queued job of the endpoint; returns them."""

    @abstractmethod
    async def fail_queued(self, version_id: int, error: dict[str, Any], now: float) -> list[Job]:
        """Fail every queued job of the version (it cannot start); returns them."""

    @abstractmethod
    async def purge_expired(self, now: float) -> int:
        """Delete final jobs past their ttl, with their logs, deliveries and idempotency keys."""

    # counters
    @abstractmethod
    async def queue_stats(self) -> dict[int, QueueStat]:
        """Queued count and oldest enqueue time per version that has a queue."""

    @abstractmethod
    async def in_progress(self) -> list[Job]:
        """Jobs marked IN_PROGRESS (after a restart: those whose worker is gone)."""

    @abstractmethod
    async def health(self, endpoint_id: int) -> dict[str, int]:
        """The endpoint's job counts by state, as RunPod's `/health` shows them."""
