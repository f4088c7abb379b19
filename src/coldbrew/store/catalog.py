"""The store's catalog concern: accounts, endpoints and their versions.

What is deployed and for whom. It changes when someone deploys, deletes an endpoint or edits
an account, rarely and never on the request path of a warm job, so it is kept apart from the
queue: a second database can serve it (or cache it) without touching job traffic. The gateway
reads it to admit a request, the deployer writes it, the scheduler reads versions to launch.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Protocol

from coldbrew.store.models import Account, Endpoint, Version


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
