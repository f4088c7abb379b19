"""The store's ledger concern: metered usage, budgets and the budget alerts already sent.

Money, in seconds of hardware per worker and hour. It is written by metering's flush (many
rows per transaction) and read by reports and the budget guard, never by the queue. Kept apart
because it is the part with the longest retention and its own consumers (billing export), and a
second database can take it over without the queue's locking rules.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Protocol

from coldbrew.store.models import Budget, UsageRow


class Ledger(Protocol):
    """Usage rows, budgets and budget alerts."""

    # usage
    @abstractmethod
    async def add_usage(self, rows: list[UsageRow]) -> None:
        """Add seconds to (worker, kind, hour) rows, creating them as needed."""

    @abstractmethod
    async def usage(self, since: float, account: str | None) -> list[UsageRow]:
        """Usage rows of hours starting at or after `since` (one account's, or all)."""

    # budgets
    @abstractmethod
    async def set_budget(self, budget: Budget) -> None:
        """Create or replace the budget of (account, endpoint)."""

    @abstractmethod
    async def budgets(self, account: str | None) -> list[Budget]:
        """Budgets (one account's, or all), by account then endpoint."""

    @abstractmethod
    async def record_alert(
        self, account: str, endpoint: str | None, period: str, threshold: int, at: float
    ) -> bool:
        """Remember that a threshold was crossed in a period; False if it already was."""

    @abstractmethod
    async def alerts(self, account: str) -> list[dict[str, Any]]:
        """The account's alerts sent, oldest first."""
