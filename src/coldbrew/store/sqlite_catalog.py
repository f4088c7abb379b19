"""SQLite side of the catalog: accounts (with fair-share settings), endpoints and versions.

An endpoint is deleted softly (`deleted_at`): its jobs and usage keep naming it in reports, and
a new endpoint may take the name. Versions are numbered per endpoint; a deploy identical to the
current version (artifact, module, class, spec and schema) makes no new one. A traffic split is
one row per endpoint (`traffic_splits`, weights as JSON pairs); a deploy that makes a new
version drops it, since a deploy means "send new jobs to this".
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from coldbrew.store import sqlite_queue
from coldbrew.store.catalog import Catalog
from coldbrew.store.models import Account, CanaryRule, Endpoint, TrafficSplit, Version
from coldbrew.store.sqlite_credentials import SQLiteSealing, webhook_context
from coldbrew.store.sqlite_db import Migration, Part, add_columns, ddl

PART = Part(
    "catalog",
    (
        Migration(
            "accounts, endpoints and versions as of 0.x; older databases gain fair-share "
            "settings (weight, queue limit) and versions.source",
            (
                ddl(
                    "CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, "
                    "webhook_secret TEXT NOT NULL, created_at REAL NOT NULL, "
                    "weight REAL NOT NULL DEFAULT 1.0, max_queued_jobs INTEGER)",
                    "CREATE TABLE IF NOT EXISTS endpoints (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                    "account TEXT NOT NULL, name TEXT NOT NULL, current_version_id INTEGER, "
                    "created_at REAL NOT NULL, deleted_at REAL)",
                    "CREATE UNIQUE INDEX IF NOT EXISTS endpoints_live ON endpoints(account, name) "
                    "WHERE deleted_at IS NULL",
                    "CREATE TABLE IF NOT EXISTS versions (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                    "endpoint_id INTEGER NOT NULL REFERENCES endpoints(id), "
                    "number INTEGER NOT NULL, artifact_sha TEXT NOT NULL, module TEXT NOT NULL, "
                    "class_name TEXT NOT NULL, spec TEXT NOT NULL, input_schema TEXT NOT NULL, "
                    "created_at REAL NOT NULL, source TEXT)",
                ),
                add_columns(
                    "accounts",
                    {"weight": "REAL NOT NULL DEFAULT 1.0", "max_queued_jobs": "INTEGER"},
                ),
                add_columns("versions", {"source": "TEXT"}),  # before issue 12
            ),
        ),
        Migration(
            "versions you can steer: a per-endpoint traffic split with its canary rule, and "
            "a version's rollback mark and reason",
            (
                ddl(
                    "ALTER TABLE versions ADD COLUMN rolled_back_at REAL",
                    "ALTER TABLE versions ADD COLUMN rollback_reason TEXT",
                    "CREATE TABLE traffic_splits (endpoint_id INTEGER PRIMARY KEY "
                    "REFERENCES endpoints(id), weights TEXT NOT NULL, rule TEXT, "
                    "updated_at REAL NOT NULL)",
                ),
            ),
        ),
    ),
)

_ACCOUNT_SELECT = "SELECT name, webhook_secret, created_at, weight, max_queued_jobs FROM accounts"
_VERSION_COLUMNS = (
    "v.id, v.endpoint_id, e.account, e.name, v.number, v.artifact_sha, v.module, v.class_name, "
    "v.spec, v.input_schema, v.created_at, v.source, v.rolled_back_at, v.rollback_reason"
)
_SPLIT_SELECT = (
    "SELECT s.endpoint_id, s.weights, s.rule, s.updated_at FROM traffic_splits s "
    "JOIN endpoints e ON e.id = s.endpoint_id WHERE e.deleted_at IS NULL"
)


def _version(row: sqlite3.Row) -> Version:
    return Version(
        id=row[0],
        endpoint_id=row[1],
        account=row[2],
        endpoint=row[3],
        number=row[4],
        artifact_sha=row[5],
        module=row[6],
        class_name=row[7],
        spec=orjson.loads(row[8]),
        input_schema=orjson.loads(row[9]),
        created_at=row[10],
        source=orjson.loads(row[11]) if row[11] else {},
        rolled_back_at=row[12],
        rollback_reason=row[13],
    )


def _split(row: sqlite3.Row) -> TrafficSplit:
    rule = orjson.loads(row[2]) if row[2] else None
    return TrafficSplit(
        endpoint_id=row[0],
        weights={int(v): int(pct) for v, pct in orjson.loads(row[1])},
        rule=CanaryRule(**rule) if rule is not None else None,
        updated_at=row[3],
    )


def _rule_json(rule: CanaryRule | None) -> str | None:
    return orjson.dumps(rule.__dict__).decode() if rule is not None else None


def _endpoint(row: sqlite3.Row) -> Endpoint:
    return Endpoint(
        id=row["id"],
        account=row["account"],
        name=row["name"],
        current_version_id=row["current_version_id"],
        created_at=row["created_at"],
    )


class SQLiteCatalog(SQLiteSealing, Catalog):
    """`Catalog` on the store's database; webhook secrets sealed with the store's key."""

    # accounts
    async def create_account(self, name: str, webhook_secret: str, now: float) -> Account:
        self._db.execute(
            "INSERT OR IGNORE INTO accounts (name, webhook_secret, created_at) VALUES (?, ?, ?)",
            (name, self._seal(webhook_secret, webhook_context(name)), now),
        )
        account = await self.get_account(name)
        assert account is not None
        return account

    async def get_account(self, name: str) -> Account | None:
        row = self._one(f"{_ACCOUNT_SELECT} WHERE name=?", [name])
        return self._account(row) if row else None

    def _account(self, row: sqlite3.Row) -> Account:
        name, secret, created_at, weight, max_queued = tuple(row)
        return Account(
            str(name),
            self._open(secret, webhook_context(name)),
            float(created_at),
            weight=float(weight),
            max_queued_jobs=max_queued if isinstance(max_queued, int) else None,
        )

    async def list_accounts(self) -> list[Account]:
        return [self._account(r) for r in self._all(_ACCOUNT_SELECT)]

    async def update_account(
        self,
        name: str,
        *,
        weight: float | None = None,
        max_queued_jobs: int | None = None,
        clear_max_queued_jobs: bool = False,
    ) -> Account | None:
        row = self._one(
            "UPDATE accounts SET weight = COALESCE(?, weight), max_queued_jobs = CASE "
            "WHEN ? THEN NULL WHEN ? IS NOT NULL THEN ? ELSE max_queued_jobs END WHERE name = ? "
            "RETURNING name, webhook_secret, created_at, weight, max_queued_jobs",
            (weight, clear_max_queued_jobs, max_queued_jobs, max_queued_jobs, name),
        )
        return self._account(row) if row else None

    async def count_accounts(self) -> int:
        row = self._one("SELECT COUNT(*) FROM accounts")
        return int(row[0]) if row else 0

    # endpoints and versions
    async def add_version(
        self,
        account: str,
        endpoint: str,
        artifact_sha: str,
        module: str,
        class_name: str,
        spec: dict[str, Any],
        input_schema: dict[str, Any],
        now: float,
        source: dict[str, Any] | None = None,
    ) -> tuple[Version, bool]:
        spec_json = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode()
        schema_json = orjson.dumps(input_schema, option=orjson.OPT_SORT_KEYS).decode()
        with self._transaction():
            existing = await self.get_endpoint(account, endpoint)
            if existing is None:
                cursor = self._db.execute(
                    "INSERT INTO endpoints (account, name, created_at) VALUES (?, ?, ?)",
                    (account, endpoint, now),
                )
                endpoint_id = int(cursor.lastrowid or 0)
            else:
                endpoint_id = existing.id
                current = await self.get_version(existing.current_version_id)
                same = (current.artifact_sha, current.module, current.class_name) == (
                    artifact_sha,
                    module,
                    class_name,
                ) and (current.spec, current.input_schema) == (spec, input_schema)
                if same:
                    return current, False
            row = self._one(
                "SELECT COALESCE(MAX(number), 0) FROM versions WHERE endpoint_id=?", [endpoint_id]
            )
            number = int(row[0]) + 1 if row else 1
            cursor = self._db.execute(
                "INSERT INTO versions (endpoint_id, number, artifact_sha, module, class_name, "
                "spec, input_schema, created_at, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    endpoint_id,
                    number,
                    artifact_sha,
                    module,
                    class_name,
                    spec_json,
                    schema_json,
                    now,
                    orjson.dumps(source).decode() if source else None,
                ),
            )
            version_id = int(cursor.lastrowid or 0)
            self._db.execute(
                "UPDATE endpoints SET current_version_id=? WHERE id=?", (version_id, endpoint_id)
            )
            self._db.execute("DELETE FROM traffic_splits WHERE endpoint_id=?", (endpoint_id,))
        return await self.get_version(version_id), True

    async def get_endpoint(self, account: str, name: str) -> Endpoint | None:
        row = self._one(
            "SELECT * FROM endpoints WHERE account=? AND name=? AND deleted_at IS NULL",
            [account, name],
        )
        return _endpoint(row) if row else None

    async def list_endpoints(self, account: str | None) -> list[Endpoint]:
        if account is None:
            rows = self._all("SELECT * FROM endpoints WHERE deleted_at IS NULL ORDER BY name")
        else:
            rows = self._all(
                "SELECT * FROM endpoints WHERE account=? AND deleted_at IS NULL ORDER BY name",
                [account],
            )
        return [_endpoint(r) for r in rows]

    async def delete_endpoint(self, account: str, name: str, now: float) -> Endpoint | None:
        endpoint = await self.get_endpoint(account, name)
        if endpoint is None:
            return None
        self._db.execute("UPDATE endpoints SET deleted_at=? WHERE id=?", (now, endpoint.id))
        sqlite_queue.cancel_queued(self._db, endpoint.id, now)  # the queue goes with it
        return endpoint

    async def get_version(self, version_id: int) -> Version:
        row = self._one(
            f"SELECT {_VERSION_COLUMNS} FROM versions v JOIN endpoints e ON e.id = v.endpoint_id "
            "WHERE v.id=?",
            [version_id],
        )
        if row is None:
            raise KeyError(version_id)
        return _version(row)

    async def list_versions(self, endpoint_id: int) -> list[Version]:
        rows = self._all(
            f"SELECT {_VERSION_COLUMNS} FROM versions v JOIN endpoints e ON e.id = v.endpoint_id "
            "WHERE v.endpoint_id=? ORDER BY v.number DESC",
            [endpoint_id],
        )
        return [_version(row) for row in rows]

    # which versions get new jobs
    async def get_split(self, endpoint_id: int) -> TrafficSplit | None:
        row = self._one(f"{_SPLIT_SELECT} AND s.endpoint_id=?", [endpoint_id])
        return _split(row) if row else None

    async def list_splits(self) -> list[TrafficSplit]:
        return [_split(r) for r in self._all(f"{_SPLIT_SELECT} ORDER BY s.endpoint_id")]

    async def set_split(
        self, endpoint_id: int, weights: dict[int, int], rule: CanaryRule | None, now: float
    ) -> TrafficSplit | None:
        with self._transaction():
            current = self._current_id(endpoint_id)
            top = max(weights.values())
            tied = [v for v, pct in weights.items() if pct == top]
            stable = current if current in tied else max(tied)
            self._db.execute(
                "UPDATE endpoints SET current_version_id=? WHERE id=?", (stable, endpoint_id)
            )
            for version_id, pct in weights.items():
                if pct > 0:
                    self._mark(version_id, None, None)
            if weights[stable] == 100:
                self._db.execute("DELETE FROM traffic_splits WHERE endpoint_id=?", (endpoint_id,))
                return None
            self._write_split(endpoint_id, weights, rule, now)
        return TrafficSplit(endpoint_id, dict(weights), rule, now)

    async def end_canary(self, endpoint_id: int, version_id: int, reason: str, now: float) -> bool:
        with self._transaction():
            current = self._current_id(endpoint_id)
            split = await self.get_split(endpoint_id)
            if split is None or split.weights.get(version_id, 0) == 0 or version_id == current:
                return False
            weights = dict(split.weights)
            weights[current] = weights.get(current, 0) + weights[version_id]
            weights[version_id] = 0
            if weights[current] == 100:
                self._db.execute("DELETE FROM traffic_splits WHERE endpoint_id=?", (endpoint_id,))
            else:
                self._write_split(endpoint_id, weights, split.rule, now)
            self._mark(version_id, now, reason)
        return True

    async def rollback(
        self, endpoint_id: int, to_version_id: int, reason: str, now: float
    ) -> Version:
        with self._transaction():
            current = self._current_id(endpoint_id)
            self._db.execute(
                "UPDATE endpoints SET current_version_id=? WHERE id=?", (to_version_id, endpoint_id)
            )
            self._db.execute("DELETE FROM traffic_splits WHERE endpoint_id=?", (endpoint_id,))
            self._mark(to_version_id, None, None)
            if current != to_version_id:
                self._mark(current, now, reason)
        return await self.get_version(to_version_id)

    def _current_id(self, endpoint_id: int) -> int:
        row = self._one(
            "SELECT current_version_id FROM endpoints WHERE id=? AND deleted_at IS NULL",
            [endpoint_id],
        )
        if row is None:
            raise KeyError(endpoint_id)
        return int(row[0])

    def _mark(self, version_id: int, at: float | None, reason: str | None) -> None:
        """Set (or, with None, clear) a version's rollback mark."""
        self._db.execute(
            "UPDATE versions SET rolled_back_at=?, rollback_reason=? WHERE id=?",
            (at, reason, version_id),
        )

    def _write_split(
        self, endpoint_id: int, weights: dict[int, int], rule: CanaryRule | None, now: float
    ) -> None:
        pairs = orjson.dumps(sorted(weights.items())).decode()
        self._db.execute(
            "INSERT OR REPLACE INTO traffic_splits (endpoint_id, weights, rule, updated_at) "
            "VALUES (?, ?, ?, ?)",
            (endpoint_id, pairs, _rule_json(rule), now),
        )
