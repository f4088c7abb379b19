"""Every store implementation the contract runs against, and the fixtures the suites share.

A new implementation is one more entry in `IMPLEMENTATIONS`, and every suite
(`test_<part>.py`, one per protocol) runs against it. PostgreSQL runs in a database made for
the test session, on one schema emptied before each test (`tests/postgres.py`); without a
server it skips, in CI it fails.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests import postgres
from tests.unit.store_contract.helpers import SyncStore, deploy

from coldbrew.store.base import Store
from coldbrew.store.models import Version
from coldbrew.store.sqlite import SQLiteStore


@dataclass
class Where:
    """Where a test's store lives: its temporary folder, and the session's database."""

    tmp: Path
    request: pytest.FixtureRequest

    def schema(self) -> tuple[str, str]:
        """The session's database URL and its migrated schema."""
        found: tuple[str, str] = self.request.getfixturevalue("pg_schema")
        return found


def open_postgres(where: Where) -> Awaitable[Store]:
    """A `PostgresStore` on the session's schema, emptied first (as a new one)."""
    from coldbrew.store.postgres import PostgresStore

    url, schema = where.schema()  # before the test's loop runs: the fixture makes the database

    async def opened() -> Store:
        await postgres.empty_schema(url, schema)
        return await PostgresStore.connect(postgres.fast(url), schema=schema, pool_max=2)

    return opened()


#: How to open each implementation for one test.
IMPLEMENTATIONS: list[Any] = [
    pytest.param(lambda at: SQLiteStore(":memory:"), id="sqlite-memory"),  # the unit-test store
    pytest.param(lambda at: SQLiteStore(at.tmp / "store.db"), id="sqlite-file"),  # WAL, as served
    pytest.param(open_postgres, id="postgres"),  # several gateways' store (issue 14)
]


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[tuple[str, str]]:
    """A database for this test session with one migrated schema (skips without PostgreSQL,
    fails in CI); dropped at the end."""
    from coldbrew.store.postgres import PostgresStore

    url = postgres.create_database("cb_contract")

    async def migrated() -> str:
        schema = await postgres.create_schema(url)
        await (await PostgresStore.connect(url, schema=schema, pool_max=1)).close()
        return schema

    try:
        yield url, asyncio.run(migrated())
    finally:
        postgres.drop_database(url)


@pytest.fixture(params=IMPLEMENTATIONS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh, empty store whose coroutine methods are called as plain functions (on one
    event loop for the whole test: a connection pool belongs to the loop that opened it)."""
    where = Where(tmp_path, request)
    with asyncio.Runner() as runner:
        opened = request.param(where)
        raw: Store = runner.run(opened) if inspect.isawaitable(opened) else opened
        try:
            yield SyncStore(raw, runner)
        finally:
            runner.run(raw.close())


@pytest.fixture
def version(store: Any) -> Version:
    """Accounts acme and beta, and acme's endpoint `echo` at version 1."""
    store.create_account("acme", "whsec_acme", 1.0)
    store.create_account("beta", "whsec_beta", 1.0)
    return deploy(store)
