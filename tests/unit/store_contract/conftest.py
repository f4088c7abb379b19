"""Every store implementation the contract runs against, and the fixtures the suites share.

A new implementation (PostgreSQL, issue 14) is one more entry in `IMPLEMENTATIONS`, and every
suite (`test_<part>.py`, one per protocol) runs against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.store_contract.helpers import SyncStore, deploy

from coldbrew.store.base import Store
from coldbrew.store.models import Version
from coldbrew.store.sqlite import SQLiteStore

#: How to open each implementation in a test's own temporary folder.
IMPLEMENTATIONS: list[Any] = [
    pytest.param(lambda tmp: SQLiteStore(":memory:"), id="sqlite-memory"),  # the unit-test store
    pytest.param(lambda tmp: SQLiteStore(tmp / "store.db"), id="sqlite-file"),  # WAL, as served
]


@pytest.fixture(params=IMPLEMENTATIONS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh, empty store whose coroutine methods are called as plain functions."""
    opener: Callable[[Path], Store] = request.param
    raw = opener(tmp_path)
    yield SyncStore(raw)
    asyncio.run(raw.close())


@pytest.fixture
def version(store: Any) -> Version:
    """Accounts acme and beta, and acme's endpoint `echo` at version 1."""
    store.create_account("acme", "whsec_acme", 1.0)
    store.create_account("beta", "whsec_beta", 1.0)
    return deploy(store)
