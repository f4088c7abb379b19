"""The job store interface: the composition of the store's parts, one protocol per concern.

| part              | module           | owns                                                  |
|-------------------|------------------|-------------------------------------------------------|
| `Catalog`         | `catalog.py`     | accounts, endpoints, versions                         |
| `CredentialStore` | `credentials.py` | API keys, endpoint secrets                            |
| `JobQueue`        | `queue.py`       | jobs: create/claim/finish/requeue/retry/purge, counts |
| `History`         | `history.py`     | timings, logs, webhook deliveries, traffic            |
| `Ledger`          | `ledger.py`      | usage, budgets, budget alerts                         |
| `TriggerStore`    | `triggers.py`    | triggers, cursors, in-flight messages, dead letters   |
| `PipelineStore`   | `pipelines.py`   | pipeline definitions, runs, stage results             |

Each consumer is typed on the part it uses (the deployer on `Catalog`, the budget guard on
`Ledger`, ...), so a second database (PostgreSQL) can implement the parts one at a time and the
contract tests (`tests/unit/store_contract/`) run per part. `Store` is all of them on one
database, with its lifetime (`probe`, `close`) and storage `fault`: every state change is one
conditional statement, so two gateways never both claim or finish the same job.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Protocol

from coldbrew.store.catalog import Catalog
from coldbrew.store.credentials import CredentialStore
from coldbrew.store.history import History
from coldbrew.store.ledger import Ledger
from coldbrew.store.pipelines import PipelineStore
from coldbrew.store.queue import JobQueue
from coldbrew.store.triggers import TriggerStore

__all__ = [
    "Catalog",
    "CredentialStore",
    "History",
    "JobQueue",
    "Ledger",
    "PipelineStore",
    "Store",
    "TriggerStore",
]


class Store(
    Catalog, CredentialStore, JobQueue, History, Ledger, TriggerStore, PipelineStore, Protocol
):
    """Durable state shared by the gateway, the scheduler and metering: every part, one database."""

    fault: str | None = None  # why the storage cannot take writes now (disk full, locked, ...)

    @abstractmethod
    async def probe(self, now: float) -> None:
        """A small write that tells whether a storage fault has cleared (clears `fault`)."""

    @abstractmethod
    async def close(self) -> None: ...
