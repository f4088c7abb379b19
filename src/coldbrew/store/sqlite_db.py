"""What the SQLite parts of the store share: one connection, its thread, transactions, migrations.

Every SQLite part (`sqlite_catalog`, `sqlite_credentials`, `sqlite_queue`, `sqlite_history`,
`sqlite_ledger`) is a mix-in of `SQLiteDatabase`: they all use the one connection, which is used
from the store's one thread only (`store/guard.py`). Each part owns the DDL of its tables as a
numbered list of migrations (`Part`); `migrate` applies the ones a database has not seen yet,
each in its own transaction with the part's new version, and records them in `schema_versions`.

Version 1 of every part is the layout as it was before migrations were numbered: it creates
what is missing and adds the columns that earlier releases added by hand, so a database made by
any earlier coldbrew opens as before. Later changes are appended, never edited.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldbrew.store.guard import BUSY_TIMEOUT_MS, store_executor

#: One change to a part's tables, run inside the migration's transaction.
Step = Callable[[sqlite3.Connection], None]

_VERSIONS = """CREATE TABLE IF NOT EXISTS schema_versions (
    part TEXT PRIMARY KEY, version INTEGER NOT NULL)"""


@dataclass(frozen=True)
class Migration:
    """One numbered change to a part's tables: why, and the steps that make it."""

    why: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Part:
    """A part's name and its migrations; the list index + 1 is the version it brings."""

    name: str
    migrations: tuple[Migration, ...]

    @property
    def version(self) -> int:
        """The version a database has once every migration of the part ran."""
        return len(self.migrations)


def ddl(*statements: str) -> Step:
    """A step that runs these statements (one statement each; triggers included)."""

    def run(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    return run


def add_columns(table: str, columns: Mapping[str, str]) -> Step:
    """A step that adds each column the table lacks (databases made before it existed)."""

    def run(db: sqlite3.Connection) -> None:
        present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns.items():
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")

    return run


def schema_versions(db: sqlite3.Connection) -> dict[str, int]:
    """The version of each part the database has."""
    db.execute(_VERSIONS)
    return {str(r[0]): int(r[1]) for r in db.execute("SELECT part, version FROM schema_versions")}


def migrate(db: sqlite3.Connection, parts: Iterable[Part]) -> None:
    """Apply, part by part in the order given, the migrations the database has not seen."""
    seen = schema_versions(db)
    for part in parts:
        for version in range(seen.get(part.name, 0) + 1, part.version + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for step in part.migrations[version - 1].steps:
                    step(db)
                db.execute(
                    "INSERT OR REPLACE INTO schema_versions (part, version) VALUES (?, ?)",
                    (part.name, version),
                )
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


def connect(path: Path | str) -> sqlite3.Connection:
    """The store's connection: autocommit (transactions are explicit), WAL, foreign keys."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_size_limit = 67108864")  # a big job's WAL shrinks back
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at REAL)")
    return db


class SQLiteDatabase:
    """The connection and helpers every SQLite part uses; `on_store_thread` runs the parts'
    methods on `_executor`'s one thread."""

    _db: sqlite3.Connection
    _executor: ThreadPoolExecutor
    fault: str | None = None

    def _open_database(self, path: Path | str, parts: Iterable[Part]) -> None:
        self._executor = store_executor()
        self._db = connect(path)
        migrate(self._db, parts)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        self._db.execute("COMMIT")

    def _rollback(self) -> None:
        """Roll back, unless SQLite already did (it does on a full disk or an I/O error)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(sql, tuple(params)).fetchone()
        return row

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(self._db.execute(sql, tuple(params)).fetchall())

    async def probe(self, now: float) -> None:
        """One small write: raises `StorageUnavailable` while the storage cannot take writes,
        and clears the fault when it can again (the scheduler calls it while one lasts)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # frees a full disk's WAL if it can
        self._db.execute("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (now,))

    async def close(self) -> None:
        self.fault = None  # nothing more to report on a closed store
        self._db.close()
        self._executor.shutdown(wait=False)
