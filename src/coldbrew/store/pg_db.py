"""What the PostgreSQL parts of the store share: one asyncpg pool, transactions, migrations, faults.

Every PostgreSQL part (`pg_catalog`, `pg_credentials`, `pg_queue`, `pg_history`, `pg_ledger`)
is a mix-in of `PostgresDatabase`. asyncpg is natively async, so unlike SQLite there is no store
thread: a call borrows a connection from the pool for one statement, or for the length of a
`_transaction()` block; statements issued inside the block (also by another store method it
awaits) run on the block's connection, found through a context variable.

Each part owns the DDL of its tables as numbered `Migration`s (`Part`), recorded per part in
`schema_versions` as the SQLite store does. Several gateways may start at once against one
database: each migration runs in its own transaction under a transaction-scoped advisory lock
(keyed by the schema), re-reads the version under the lock, and so runs exactly once.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from coldbrew.errors import StorageUnavailable

log = logging.getLogger("coldbrew.store")

_VERSIONS = """CREATE TABLE IF NOT EXISTS schema_versions (
    part TEXT PRIMARY KEY, version INTEGER NOT NULL)"""
_PROBE = "CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at DOUBLE PRECISION)"
#: one lock per schema: two schemas of one database (tests, tenants) migrate independently
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('coldbrew.migrate:' || current_schema()))"

#: SQLSTATE classes (first two characters) and codes that mean "the database cannot take work
#: now", not "this value is wrong": connection lost, out of disk or memory, shutting down.
_FAULT_STATES = {
    "08": "the connection to PostgreSQL failed",
    "53": "PostgreSQL is out of resources (disk, memory or connections)",
    "57": "PostgreSQL is shutting down or refuses connections",
    "58": "PostgreSQL reported an I/O error",
    "25006": "the database is read-only (a standby?)",
}

C = TypeVar("C", bound=type)
_conn: ContextVar[asyncpg.Connection | None] = ContextVar("coldbrew_pg_conn", default=None)


@dataclass(frozen=True)
class Migration:
    """One numbered change to a part's tables: why, and the statements that make it."""

    why: str
    statements: tuple[str, ...]


@dataclass(frozen=True)
class Part:
    """A part's name and its migrations; the list index + 1 is the version it brings."""

    name: str
    migrations: tuple[Migration, ...]

    @property
    def version(self) -> int:
        return len(self.migrations)


async def schema_versions(conn: asyncpg.Connection) -> dict[str, int]:
    """The version of each part the schema has (none before the first start)."""
    if await conn.fetchval("SELECT to_regclass('schema_versions')") is None:
        return {}
    rows = await conn.fetch("SELECT part, version FROM schema_versions")
    return {str(r[0]): int(r[1]) for r in rows}


async def migrate(conn: asyncpg.Connection, parts: Iterable[Part]) -> None:
    """Apply, part by part, the migrations the database has not seen, each in a transaction
    under the schema's advisory lock (the version is read again under the lock, so of two
    gateways starting at once one migrates and the other finds it done)."""
    seen = await schema_versions(conn)
    for part in parts:
        for version in range(seen.get(part.name, 0) + 1, part.version + 1):
            async with conn.transaction():
                await conn.execute(_LOCK)
                await conn.execute(_VERSIONS)
                now_at = await conn.fetchval(
                    "SELECT version FROM schema_versions WHERE part=$1", part.name
                )
                if now_at is not None and now_at >= version:
                    continue  # another gateway ran it while this one waited for the lock
                for statement in part.migrations[version - 1].statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_versions (part, version) VALUES ($1, $2) "
                    "ON CONFLICT (part) DO UPDATE SET version = excluded.version",
                    part.name,
                    version,
                )


def storage_fault(exc: BaseException) -> str | None:
    """Why `exc` means the database is unavailable, or None when it is about the data."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        reason = _FAULT_STATES.get(state) or _FAULT_STATES.get(state[:2])
        return None if reason is None else f"{reason} ({exc})"
    if isinstance(
        exc, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    ):
        return f"PostgreSQL cannot be reached ({type(exc).__name__}: {exc})"
    return None


def _guarded(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def run(self: PostgresDatabase, *args: Any, **kw: Any) -> Any:
        try:
            return await fn(self, *args, **kw)
        except StorageUnavailable:
            raise
        except Exception as exc:
            reason = storage_fault(exc)
            if reason is None:
                raise
            if self.fault is None:
                log.error("storage fault: %s; new jobs are refused until it clears", reason)
            self.fault = reason
            raise StorageUnavailable.because(reason) from exc

    return run


def with_faults(cls: C) -> C:
    """Turn a lost connection (or a full disk) in any async method of `cls` into
    `StorageUnavailable` and the store's `fault`; the scheduler's `probe` clears it."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, member in vars(klass).items():
            if name in seen or name.startswith("_") or not inspect.iscoroutinefunction(member):
                continue
            seen.add(name)
            if not getattr(member, "__isabstractmethod__", False) and name != "close":
                setattr(cls, name, _guarded(member))
    return cls


class PostgresDatabase:
    """The pool and the helpers every PostgreSQL part uses."""

    _pool: asyncpg.Pool
    fault: str | None = None

    async def _open_pool(
        self,
        url: str,
        parts: Iterable[Part],
        *,
        schema: str | None,
        pool_max: int,
        timeout_s: float,
    ) -> None:
        settings = {"search_path": schema} if schema else None
        self._pool = await asyncpg.create_pool(
            url, min_size=1, max_size=pool_max, server_settings=settings, timeout=timeout_s
        )
        async with self._pool.acquire() as conn:
            await migrate(conn, parts)
            async with conn.transaction():  # IF NOT EXISTS alone races another gateway's start
                await conn.execute(_LOCK)
                await conn.execute(_PROBE)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction; statements of this task inside the block run in it (nested blocks
        join the outer one)."""
        outer = _conn.get()
        if outer is not None:
            yield outer
            return
        async with self._pool.acquire() as conn, conn.transaction():
            token = _conn.set(conn)
            try:
                yield conn
            finally:
                _conn.reset(token)

    def _on(self) -> Any:
        """Where a statement runs: the current transaction's connection, or the pool."""
        conn = _conn.get()
        return self._pool if conn is None else conn

    async def _one(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._on().fetchrow(sql, *args)
        return row

    async def _all(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self._on().fetch(sql, *args))

    async def _value(self, sql: str, *args: Any) -> Any:
        return await self._on().fetchval(sql, *args)

    async def _exec(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it changed."""
        status: str = await self._on().execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._on().executemany(sql, rows)

    async def probe(self, now: float) -> None:
        """One small write: raises `StorageUnavailable` while the database cannot take it,
        and clears the fault when it can again (the scheduler calls it while one lasts)."""
        await self._exec(
            "INSERT INTO probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = $1",
            now,
        )
        if self.fault is not None:
            log.warning("storage recovered (was: %s)", self.fault)
            self.fault = None

    async def close(self) -> None:
        self.fault = None
        await self._pool.close()
