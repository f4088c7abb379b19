"""The embedded state store: one SQLite file of its own (`state.db` in the home), on its own
thread, so a model writing its chat history never waits behind the job queue's writes.

Each namespace's byte total is kept in `state_usage` and changed in the same transaction as the
entry, so the quota check is one read. Expired entries are invisible at once and removed by
`purge_expired` (and by any write to their key).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from coldbrew.errors import PayloadTooLarge
from coldbrew.store.guard import on_store_thread
from coldbrew.store.sqlite_db import Migration, Part, SQLiteDatabase, ddl
from coldbrew.store.state import (
    Entry,
    Namespace,
    StateStore,
    appended,
    check_size,
    checked,
    incremented,
)

PART = Part(
    "state",
    (
        Migration(
            "entries with versions and expiry; a byte total per namespace",
            (
                ddl(
                    """CREATE TABLE IF NOT EXISTS state_entries (
                        account TEXT NOT NULL, endpoint TEXT NOT NULL, key TEXT NOT NULL,
                        value TEXT NOT NULL, version INTEGER NOT NULL, size INTEGER NOT NULL,
                        updated_at REAL NOT NULL, expires_at REAL,
                        PRIMARY KEY (account, endpoint, key))""",
                    """CREATE INDEX IF NOT EXISTS state_expiry ON state_entries (expires_at)
                        WHERE expires_at IS NOT NULL""",
                    """CREATE TABLE IF NOT EXISTS state_usage (
                        account TEXT NOT NULL, endpoint TEXT NOT NULL, bytes INTEGER NOT NULL,
                        PRIMARY KEY (account, endpoint))""",
                ),
            ),
        ),
    ),
)

_COLUMNS = "key, value, version, size, updated_at, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        row["key"],
        orjson.loads(row["value"]),
        int(row["version"]),
        int(row["size"]),
        float(row["updated_at"]),
        None if row["expires_at"] is None else float(row["expires_at"]),
    )


@on_store_thread
class SQLiteState(SQLiteDatabase, StateStore):
    """`StateStore` on its own SQLite file (`:memory:` in unit tests)."""

    def __init__(self, path: Path | str, quota_bytes: int, value_max_bytes: int) -> None:
        self._open_database(path, (PART,))
        self.quota_bytes = quota_bytes
        self.value_max_bytes = value_max_bytes

    async def get(self, ns: Namespace, key: str, now: float) -> Entry | None:
        row = self._one(
            f"SELECT {_COLUMNS} FROM state_entries WHERE account = ? AND endpoint = ? "
            f"AND key = ? AND {_LIVE}",
            (ns.account, ns.endpoint, key, now),
        )
        return None if row is None else _entry(row)

    async def set(
        self,
        ns: Namespace,
        key: str,
        value: Any,
        now: float,
        *,
        ttl_s: float | None = None,
        if_version: int | None = None,
    ) -> Entry:
        with self._transaction():
            current = await self.get(ns, key, now)
            checked(key, current, if_version)
            expires_at = now + ttl_s if ttl_s is not None else None
            return self._write(ns, key, value, current, now, expires_at)

    async def append(
        self,
        ns: Namespace,
        key: str,
        items: list[Any],
        now: float,
        *,
        max_items: int | None = None,
        ttl_s: float | None = None,
    ) -> Entry:
        with self._transaction():
            current = await self.get(ns, key, now)
            value = appended(key, current, items, max_items)
            return self._write(ns, key, value, current, now, self._expiry(current, now, ttl_s))

    async def incr(
        self, ns: Namespace, key: str, by: float, now: float, *, ttl_s: float | None = None
    ) -> Entry:
        with self._transaction():
            current = await self.get(ns, key, now)
            total = incremented(key, current, by)
            return self._write(ns, key, total, current, now, self._expiry(current, now, ttl_s))

    async def delete(self, ns: Namespace, key: str, now: float) -> bool:
        with self._transaction():
            current = await self.get(ns, key, now)
            self._drop(ns, key)
        return current is not None

    async def entries(
        self, ns: Namespace, now: float, *, prefix: str = "", after: str = "", limit: int = 100
    ) -> list[Entry]:
        rows = self._all(
            f"SELECT {_COLUMNS} FROM state_entries WHERE account = ? AND endpoint = ? "
            f"AND key > ? AND substr(key, 1, ?) = ? AND {_LIVE} ORDER BY key LIMIT ?",
            (ns.account, ns.endpoint, after, len(prefix), prefix, now, limit),
        )
        return [_entry(r) for r in rows]

    async def clear(self, ns: Namespace, now: float) -> int:
        with self._transaction():
            live = self._one(
                f"SELECT COUNT(*) AS n FROM state_entries WHERE account = ? AND endpoint = ? "
                f"AND {_LIVE}",
                (ns.account, ns.endpoint, now),
            )
            self._db.execute(
                "DELETE FROM state_entries WHERE account = ? AND endpoint = ?",
                (ns.account, ns.endpoint),
            )
            self._db.execute(
                "DELETE FROM state_usage WHERE account = ? AND endpoint = ?",
                (ns.account, ns.endpoint),
            )
        return int(live["n"]) if live else 0

    async def purge_expired(self, now: float) -> int:
        with self._transaction():
            gone = self._all(
                "SELECT account, endpoint, SUM(size) AS bytes, COUNT(*) AS n FROM state_entries "
                "WHERE expires_at IS NOT NULL AND expires_at <= ? GROUP BY account, endpoint",
                (now,),
            )
            self._db.execute(
                "DELETE FROM state_entries WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            )
            for row in gone:
                self._add_usage(Namespace(row["account"], row["endpoint"]), -int(row["bytes"]))
        return sum(int(row["n"]) for row in gone)

    def _expiry(self, current: Entry | None, now: float, ttl_s: float | None) -> float | None:
        """A new ttl restarts the clock; without one the entry keeps the expiry it had."""
        if ttl_s is not None:
            return now + ttl_s
        return None if current is None else current.expires_at

    def _write(
        self,
        ns: Namespace,
        key: str,
        value: Any,
        current: Entry | None,
        now: float,
        expires_at: float | None,
    ) -> Entry:
        text = orjson.dumps(value)
        check_size(key, len(text), self.value_max_bytes)
        self._drop(ns, key)  # an expired row still counts until it is dropped
        used = self._usage(ns)
        if used + len(text) > self.quota_bytes:
            raise PayloadTooLarge(
                f"endpoint {ns.endpoint!r} would hold {used + len(text)} bytes of state, more "
                f"than its quota of {self.quota_bytes}",
                hint="delete keys you no longer need, give entries a ttl_s, or raise "
                "COLDBREW_STATE_QUOTA_MB",
            )
        version = (current.version if current else 0) + 1
        self._db.execute(
            "INSERT INTO state_entries (account, endpoint, key, value, version, size, updated_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ns.account, ns.endpoint, key, text.decode(), version, len(text), now, expires_at),
        )
        self._add_usage(ns, len(text))
        return Entry(key, orjson.loads(text), version, len(text), now, expires_at)

    def _drop(self, ns: Namespace, key: str) -> int:
        """Delete the row (live or expired); the bytes it freed."""
        row = self._one(
            "DELETE FROM state_entries WHERE account = ? AND endpoint = ? AND key = ? "
            "RETURNING size",
            (ns.account, ns.endpoint, key),
        )
        size = 0 if row is None else int(row["size"])
        if size:
            self._add_usage(ns, -size)
        return size

    def _usage(self, ns: Namespace) -> int:
        row = self._one(
            "SELECT bytes FROM state_usage WHERE account = ? AND endpoint = ?",
            (ns.account, ns.endpoint),
        )
        return 0 if row is None else int(row["bytes"])

    def _add_usage(self, ns: Namespace, delta: int) -> None:
        self._db.execute(
            "INSERT INTO state_usage (account, endpoint, bytes) VALUES (?, ?, ?) "
            "ON CONFLICT (account, endpoint) DO UPDATE SET bytes = bytes + excluded.bytes",
            (ns.account, ns.endpoint, delta),
        )
