"""The SQLite store's numbered migrations: each part's version is recorded, a database from
before the numbering opens and gains the columns added since, and a failed step changes nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from coldbrew.store.sqlite import PARTS, SQLiteStore
from coldbrew.store.sqlite_db import Migration, Part, add_columns, ddl, migrate, schema_versions

# The layout of a database made by coldbrew 0.1 (before fair sharing, key expiry, the result
# cache and version sources), with one account, key, endpoint, version and queued job in it.
OLD_LAYOUT = """
CREATE TABLE accounts (name TEXT PRIMARY KEY, webhook_secret TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts(name),
    admin INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE endpoints (id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL,
    name TEXT NOT NULL, current_version_id INTEGER, created_at REAL NOT NULL, deleted_at REAL);
CREATE TABLE versions (id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint_id INTEGER NOT NULL,
    number INTEGER NOT NULL, artifact_sha TEXT NOT NULL, module TEXT NOT NULL,
    class_name TEXT NOT NULL, spec TEXT NOT NULL, input_schema TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE jobs (id TEXT PRIMARY KEY, account TEXT NOT NULL, endpoint_id INTEGER NOT NULL,
    endpoint TEXT NOT NULL, version_id INTEGER NOT NULL, status TEXT NOT NULL,
    input BLOB NOT NULL, output BLOB, error BLOB, attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL, created_at REAL NOT NULL, started_at REAL,
    finished_at REAL, expires_at REAL NOT NULL, timeout_s REAL NOT NULL, worker_id TEXT,
    cold_start INTEGER NOT NULL DEFAULT 0, cold_start_detail BLOB,
    cost_usd REAL NOT NULL DEFAULT 0, webhook_url TEXT, webhook_state TEXT);
INSERT INTO accounts VALUES ('acme', 'whsec_acme', 1.0);
INSERT INTO api_keys VALUES ('aaaa', 'acme', 1, 1.0);
INSERT INTO endpoints VALUES (1, 'acme', 'echo', 1, 2.0, NULL);
INSERT INTO versions VALUES (1, 1, 1, 'sha', 'app', 'Echo', '{}', '{}', 2.0);
INSERT INTO jobs (id, account, endpoint_id, endpoint, version_id, status, input, max_attempts,
    created_at, expires_at, timeout_s) VALUES ('j1', 'acme', 1, 'echo', 1, 'IN_QUEUE', '{}',
    3, 5.0, 1000.0, 60.0);
"""


def versions_in(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return schema_versions(db)


def test_a_new_database_records_every_part_at_its_latest_version(tmp_path: Path) -> None:
    asyncio.run(SQLiteStore(tmp_path / "store.db").close())
    assert versions_in(tmp_path / "store.db") == {p.name: p.version for p in PARTS}
    assert [p.name for p in PARTS] == [
        "catalog",
        "credentials",
        "queue",
        "history",
        "ledger",
        "triggers",
        "pipelines",
    ]


def test_a_database_from_before_the_numbering_opens_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_LAYOUT)
    store = SQLiteStore(path)

    async def read() -> None:
        account = await store.get_account("acme")
        assert account is not None and account.weight == 1.0  # fair-share column added
        keys = await store.list_keys("acme")
        assert [(k.prefix, k.expires_at, k.revoked_at) for k in keys] == [("", None, None)]
        assert (await store.get_version(1)).source == {}
        job = await store.get_job("j1")
        assert job is not None and job.cached is False
        assert (await store.queue_stats())[1].queued == 1  # counters built from the rows
        await store.close()

    asyncio.run(read())
    assert versions_in(path) == {p.name: p.version for p in PARTS}


def test_only_the_migrations_a_database_lacks_run(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    first = Migration("a table", (ddl("CREATE TABLE t (a INTEGER)"),))
    migrate(db, [Part("demo", (first,))])
    db.execute("INSERT INTO t VALUES (1)")
    second = Migration("a column", (add_columns("t", {"b": "TEXT DEFAULT 'x'"}),))
    migrate(db, [Part("demo", (first, second))])  # the CREATE would fail if it ran again
    migrate(db, [Part("demo", (first, second))])

    assert list(db.execute("SELECT a, b FROM t")) == [(1, "x")]
    assert schema_versions(db) == {"demo": 2}


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    broken = Migration(
        "half a change", (ddl("CREATE TABLE t (a INTEGER)", "CREATE TABLE t (a INTEGER)"),)
    )
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, [Part("demo", (broken,))])

    assert schema_versions(db) == {}
    assert list(db.execute("SELECT name FROM sqlite_master WHERE name='t'")) == []
