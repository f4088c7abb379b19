"""A fresh PostgreSQL database per test, dropped afterwards (`tests/postgres.py` makes it:
skipped on a machine without PostgreSQL, a failure under `CI`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.postgres import create_database, drop_database


@contextmanager
def fresh_database(prefix: str = "cb_cluster") -> Iterator[str]:
    """The URL of a new, empty database of this test's own."""
    url = create_database(prefix)
    try:
        yield url
    finally:
        drop_database(url)
