"""The store's catalog concern: accounts, endpoints and their versions.

What is deployed and for whom. It changes when someone deploys, deletes an endpoint or edits
an account, rarely and never on the request path of a warm job, so it is kept apart from the
queue: a second database can serve it (or cache it) without touching job traffic. The gateway
reads it to admit a request, the deployer writes it, the scheduler reads versions to launch.
Which versions get new jobs (the current one, or a weighted split with canaries) is catalog
state too: it changes by a command or a rollback, never per job.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Protocol

from coldbrew.store.models import Account, CanaryRule, Endpoint, TrafficSplit, Version


class Catalog(Protocol):
    """Accounts (with their fair-share settings), endpoints and versions."""

    # accounts
    @abstractmethod
    async def create_account(self, name: str, webhook_secret: str, now: float) -> Account:
        """Create the account unless it exists (an existing one keeps its secret)."""

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
        """Remove the endpoint (its history stays for usage reports); cancel its queued jobs.

        The one catalog call that reaches into the queue: the endpoint and its queue go
        together, in the same database.
        """

    @abstractmethod
    async def get_version(self, version_id: int) -> Version:
        """The version; `KeyError` when there is none with this id."""

    @abstractmethod
    async def list_versions(self, endpoint_id: int) -> list[Version]:
        """Every version of the endpoint, newest first."""

    # which versions get new jobs
    @abstractmethod
    async def get_split(self, endpoint_id: int) -> TrafficSplit | None:
        """The endpoint's traffic split; None when every new job goes to its current version."""

    @abstractmethod
    async def list_splits(self) -> list[TrafficSplit]:
        """The splits of every live endpoint: the scheduler's live set, the canary check."""

    @abstractmethod
    async def set_split(
        self, endpoint_id: int, weights: dict[int, int], rule: CanaryRule | None, now: float
    ) -> TrafficSplit | None:
        """Send these shares of new jobs (version id → percent; the caller checked that they
        name versions of this endpoint and sum to 100).

        The version with the largest share becomes current (a tie keeps the current one, else
        the newest); a version given a share loses its rolled-back mark. One version at 100%
        is no split: it becomes current and None is returned. `KeyError` if the endpoint is gone.
        """

    @abstractmethod
    async def end_canary(self, endpoint_id: int, version_id: int, reason: str, now: float) -> bool:
        """Take a canary back to 0%: its share moves to the current version, and the version
        is marked rolled back with `reason`. False (nothing changed) when it has no share or is
        the current version: another gateway, or an earlier check, already did it."""

    @abstractmethod
    async def rollback(
        self, endpoint_id: int, to_version_id: int, reason: str, now: float
    ) -> Version:
        """Make `to_version_id` current with no split; the version that was current is marked
        rolled back with `reason`. Returns the new current version."""
