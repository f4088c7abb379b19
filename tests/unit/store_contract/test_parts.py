"""The parts themselves: `Store` is exactly the union of the six protocols, no method belongs
to two, and each SQLite and PostgreSQL module implements its own protocol and nothing more,
with the same signatures (so a second database can take over one part without touching
another)."""

from __future__ import annotations

import inspect

import pytest

from coldbrew.store.base import (
    Catalog,
    CredentialStore,
    History,
    JobQueue,
    Ledger,
    PipelineStore,
    Store,
    TriggerStore,
)
from coldbrew.store.pg_catalog import PostgresCatalog
from coldbrew.store.pg_credentials import PostgresCredentials
from coldbrew.store.pg_history import PostgresHistory
from coldbrew.store.pg_ledger import PostgresLedger
from coldbrew.store.pg_pipelines import PostgresPipelines
from coldbrew.store.pg_queue import PostgresQueue
from coldbrew.store.pg_triggers import PostgresTriggers
from coldbrew.store.postgres import PostgresStore
from coldbrew.store.sqlite import SQLiteStore
from coldbrew.store.sqlite_catalog import SQLiteCatalog
from coldbrew.store.sqlite_credentials import SQLiteCredentials
from coldbrew.store.sqlite_history import SQLiteHistory
from coldbrew.store.sqlite_ledger import SQLiteLedger
from coldbrew.store.sqlite_pipelines import SQLitePipelines
from coldbrew.store.sqlite_queue import SQLiteQueue
from coldbrew.store.sqlite_triggers import SQLiteTriggers

PARTS: list[tuple[type, type]] = [
    (Catalog, SQLiteCatalog),
    (CredentialStore, SQLiteCredentials),
    (JobQueue, SQLiteQueue),
    (History, SQLiteHistory),
    (Ledger, SQLiteLedger),
    (TriggerStore, SQLiteTriggers),
    (PipelineStore, SQLitePipelines),
    (Catalog, PostgresCatalog),
    (CredentialStore, PostgresCredentials),
    (JobQueue, PostgresQueue),
    (History, PostgresHistory),
    (Ledger, PostgresLedger),
    (TriggerStore, PostgresTriggers),
    (PipelineStore, PostgresPipelines),
]


def methods(cls: type) -> set[str]:
    """The public methods `cls` itself declares."""
    return {n for n, v in vars(cls).items() if not n.startswith("_") and inspect.isfunction(v)}


def test_store_is_the_union_of_disjoint_parts() -> None:
    seen: set[str] = set()
    for protocol, _ in PARTS[:7]:
        assert not methods(protocol) & seen, protocol.__name__
        seen |= methods(protocol)
    assert seen | {"probe", "close"} == set(Store.__abstractmethods__)
    # the 57 methods `Store` had before the split, less probe and close, 5 for issue 15, 14 for
    # triggers and 11 for pipelines (issue 16), and 3 for issue 14's shared webhooks
    # (claim_webhooks, save_webhook_hook, webhook_hook)
    assert len(seen) == 88


@pytest.mark.parametrize(("protocol", "part"), PARTS, ids=lambda c: c.__name__)
def test_each_part_implements_its_protocol_and_nothing_more(protocol: type, part: type) -> None:
    assert protocol in part.__mro__
    assert methods(part) == methods(protocol)
    assert not getattr(part, "__abstractmethods__", None)  # complete on its own


@pytest.mark.parametrize(("protocol", "part"), PARTS, ids=lambda c: c.__name__)
def test_the_composed_store_keeps_each_parts_signatures(protocol: type, part: type) -> None:
    for name in methods(protocol):
        wanted = inspect.signature(getattr(protocol, name))
        assert inspect.signature(getattr(part, name)) == wanted, name
        assert inspect.signature(getattr(SQLiteStore, name)) == wanted, name  # through the guard
        assert inspect.signature(getattr(PostgresStore, name)) == wanted, name
