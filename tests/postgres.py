"""PostgreSQL for tests: a database of the test session's own, and a fresh schema per test.

The server is `COLDBREW_TEST_DATABASE_URL` (default: the loopback one, trust auth). A machine
without it skips the tests that need it; in CI (`CI` set) they fail instead, since CI always
has one. Each session creates its own database and drops it at the end; store tests share one
migrated schema (`search_path`) emptied before each test: a schema made and migrated per test
cost ~1 s of DDL on a busy machine, emptying one costs milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

ADMIN_URL = os.environ.get(
    "COLDBREW_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


async def _admin(sql: str, url: str = ADMIN_URL) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(prefix: str = "cb_test") -> str:
    """A new, empty database; its URL. Skips when PostgreSQL is unreachable, unless in CI."""
    pytest.importorskip("asyncpg")
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {ADMIN_URL} ({exc}; CI always has one)")
    return _with_database(ADMIN_URL, name)


def drop_database(url: str) -> None:
    name = url.partition("?")[0].rsplit("/", 1)[1]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def create_schema(url: str) -> str:
    """A new schema in the database at `url`; its name."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE SCHEMA "{name}"', url)
    return name


async def drop_schema(url: str, name: str) -> None:
    await _admin(f'DROP SCHEMA IF EXISTS "{name}" CASCADE', url)


#: empty every table of the schema but `schema_versions` (those with foreign keys first, the
#: queue counters that deleting jobs writes to last) and start its sequences over; DELETE, not
#: TRUNCATE: new files per table cost more than the rows
_RESET = """DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT t.tablename FROM pg_tables t WHERE t.schemaname = current_schema()
      AND t.tablename <> 'schema_versions'
      ORDER BY EXISTS (SELECT 1 FROM pg_constraint c WHERE c.contype = 'f'
        AND c.conrelid = format('%I', t.tablename)::regclass) DESC,
        t.tablename = 'queue_counts' LOOP
    EXECUTE format('DELETE FROM %I', r.tablename);
  END LOOP;
  FOR r IN SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema() LOOP
    PERFORM setval(format('%I', r.sequencename)::regclass, 1, false);
  END LOOP;
END $$"""
#: tests need no durability: a commit need not wait for its WAL flush (the server is shared)
FAST = "synchronous_commit=off"


def fast(url: str) -> str:
    """`url` with commits that do not wait for the disk (tests only)."""
    return url + ("&" if "?" in url else "?") + FAST


async def empty_schema(url: str, name: str) -> None:
    """Make a migrated schema as a new one (rows gone, ids from 1): cheaper than DDL."""
    import asyncpg

    conn = await asyncpg.connect(fast(url), timeout=5, server_settings={"search_path": name})
    try:
        await conn.execute(_RESET)
    finally:
        await conn.close()
