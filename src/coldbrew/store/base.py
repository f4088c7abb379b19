"""The job store interface. SQLite implements it now; PostgreSQL (`FOR UPDATE SKIP LOCKED`) fits
the same methods: every state change is one conditional statement, so two gateways never both
claim or finish the same job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from coldbrew.store.credentials import CredentialStore
from coldbrew.store.models import (
    Account,
    Budget,
    Endpoint,
    Job,
    JobStatus,
    JobTiming,
    QueueStat,
    UsageRow,
    Version,
    WebhookState,
)


class Store(CredentialStore, ABC):
    """Durable state shared by the gateway, the scheduler and metering.

    Keys and endpoint secrets are declared in `store.credentials`.
    """

    fault: str | None = None  # why the storage cannot take writes now (disk full, locked, ...)

    @abstractmethod
    async def probe(self, now: float) -> None:
        """A small write that tells whether a storage fault has cleared (clears `fault`)."""

    # accounts and keys
    @abstractmethod
    async def create_account(self, name: str, webhook_secret: str, now: float) -> Account: ...

    @abstractmethod
    async def get_account(self, name: str) -> Account | None: ...

    @abstractmethod
    async def count_accounts(self) -> int: ...

    @abstractmethod
    async def list_accounts(self) -> list[Account]:
        """Every account with its fair-share settings (weight, queue limit)."""

    @abstractmethod
    async def update_account(
        self,
        name: str,
        *,
        weight: float | None = None,
        max_queued_jobs: int | None = None,
        clear_max_queued_jobs: bool = False,
    ) -> Account | None:
        """Change an account's fair-share weight or queue limit; None if there is no account."""

    # endpoints and versions
    @abstractmethod
    async def add_version(
        self,
        account: str,
        endpoint: str,
        artifact_sha: str,
        module: str,
        class_name: str,
        spec: dict[str, Any],
        input_schema: dict[str, Any],
        now: float,
        source: dict[str, Any] | None = None,
    ) -> tuple[Version, bool]:
        """Make a new current version unless the current one is identical.

        `source` records where the version came from (`{"kind", "directory", ...}`), so a later
        deploy can tell a new version of the same model from an unrelated one.

        Returns the current version and whether it was created.
        """

    @abstractmethod
    async def get_endpoint(self, account: str, name: str) -> Endpoint | None: ...

    @abstractmethod
    async def list_endpoints(self, account: str | None) -> list[Endpoint]: ...

    @abstractmethod
    async def delete_endpoint(self, account: str, name: str, now: float) -> Endpoint | None:
        """Remove the endpoint (its history stays for usage reports); cancel its queued jobs."""

    @abstractmethod
    async def get_version(self, version_id: int) -> Version: ...

    @abstractmethod
    async def list_versions(self, endpoint_id: int) -> list[Version]:
        """Every version of the endpoint, newest first."""

    # jobs
    @abstractmethod
    async def create_job(self, job: Job) -> None: ...

    @abstractmethod
    async def save_jobs(self, jobs: list[Job]) -> None:
        """Write whole jobs in one transaction, replacing rows with the same id."""

    @abstractmethod
    async def get_job(self, job_id: str, account: str | None = None) -> Job | None:
        """The job, or None when it does not exist or belongs to another account."""

    @abstractmethod
    async def account_jobs(
        self, account: str | None, limit: int, before: float | None = None
    ) -> list[Job]:
        """Jobs newest first (one account's, or all), created before `before` when given."""

    @abstractmethod
    async def get_jobs(self, job_ids: Sequence[str], account: str | None = None) -> list[Job]:
        """The jobs among `job_ids` that exist (and belong to `account`), in the order asked.

        Ids that are unknown, purged or another account's are simply left out.
        """

    @abstractmethod
    async def job_for_key(self, account: str, key: str) -> Job | None:
        """The job `account` created under the idempotency `key`, if it is still stored."""

    @abstractmethod
    async def create_job_once(self, job: Job, key: str) -> Job:
        """Create `job` unless its account already has a job under the idempotency `key`.

        Returns the job stored under the key: `job` itself, or the earlier one (a replay). The
        key is forgotten when that job is purged.
        """

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
    ) -> Job | None:
        """Make the job final if it is still in one of `from_statuses`; returns it, or None."""

    @abstractmethod
    async def requeue(self, job_id: str) -> bool:
        """Put an IN_PROGRESS job back in the queue (its worker died); False if it was not."""

    @abstractmethod
    async def retry(self, job_id: str, account: str, now: float, ttl_s: float) -> Job | None:
        """Queue a FAILED or TIMED_OUT job again with fresh attempts."""

    @abstractmethod
    async def mark_cold_start(self, job_id: str, detail: dict[str, float]) -> None: ...

    @abstractmethod
    async def purge_queue(self, endpoint_id: int, now: float) -> list[Job]:
        """Cancel every queued job of the endpoint; returns them."""

    @abstractmethod
    async def fail_queued(
        self, version_id: int, error: dict[str, Any], now: float
    ) -> list[Job]: ...

    @abstractmethod
    async def queue_stats(self) -> dict[int, QueueStat]:
        """Queued count and oldest enqueue time per version that has a queue."""

    @abstractmethod
    async def in_progress(self) -> list[Job]:
        """Jobs marked IN_PROGRESS (after a restart: those whose worker is gone)."""

    @abstractmethod
    async def health(self, endpoint_id: int) -> dict[str, int]: ...

    @abstractmethod
    async def purge_expired(self, now: float) -> int:
        """Delete final jobs past their ttl, with their logs and deliveries."""

    @abstractmethod
    async def recent_jobs(self, endpoint_id: int, limit: int) -> list[Job]:
        """The endpoint's newest jobs (any status), newest first."""

    @abstractmethod
    async def job_timings(
        self, since: float, account: str | None, endpoint_id: int | None = None
    ) -> list[JobTiming]:
        """Final jobs that finished at or after `since`, oldest first (for stats and charts)."""

    # logs and webhooks
    @abstractmethod
    async def append_logs(self, rows: list[tuple[str, float, str, str]]) -> None:
        """Add (job_id, ts, stream, line) rows."""

    @abstractmethod
    async def job_logs(self, job_id: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def record_delivery(
        self,
        job_id: str,
        attempt: int,
        at: float,
        status_code: int | None,
        error: str | None,
        state: WebhookState | None,
    ) -> None: ...

    @abstractmethod
    async def deliveries(self, job_id: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def pending_webhooks(self) -> list[Job]: ...

    # traffic history, for prewarming
    @abstractmethod
    async def record_arrivals(self, counts: list[tuple[int, int, int, int]]) -> None:
        """Add (endpoint_id, day, time-of-day bucket, arrivals) to the traffic history."""

    @abstractmethod
    async def traffic(self, endpoint_id: int, since_day: int) -> list[tuple[int, int, int]]:
        """(day, bucket, count) rows of the endpoint from `since_day` on."""

    @abstractmethod
    async def cold_starts(self, endpoint_id: int, since: float) -> int:
        """Jobs of the endpoint created since `since` that waited for a cold start."""

    # budgets
    @abstractmethod
    async def set_budget(self, budget: Budget) -> None:
        """Create or replace the budget of (account, endpoint)."""

    @abstractmethod
    async def budgets(self, account: str | None) -> list[Budget]: ...

    @abstractmethod
    async def record_alert(
        self, account: str, endpoint: str | None, period: str, threshold: int, at: float
    ) -> bool:
        """Remember that a threshold was crossed in a period; False if it already was."""

    @abstractmethod
    async def alerts(self, account: str) -> list[dict[str, Any]]: ...

    # usage
    @abstractmethod
    async def add_usage(self, rows: list[UsageRow]) -> None:
        """Add seconds to (worker, kind, hour) rows, creating them as needed."""

    @abstractmethod
    async def usage(self, since: float, account: str | None) -> list[UsageRow]: ...

    @abstractmethod
    async def close(self) -> None: ...
