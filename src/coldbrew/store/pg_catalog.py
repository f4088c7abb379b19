"""PostgreSQL side of the catalog: accounts, endpoints, versions and traffic splits.

The same rules as `sqlite_catalog` (soft-deleted endpoints, per-endpoint version numbers, a
deploy identical to the current version makes none, a new version drops the split). Two
gateways may deploy the same endpoint at once: a deploy locks the endpoint's row (or, for a new
endpoint, the live-name unique index decides) so version numbers never collide.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from coldbrew.store import pg_queue
from coldbrew.store.catalog import Catalog
from coldbrew.store.models import Account, CanaryRule, Endpoint, TrafficSplit, Version
from coldbrew.store.pg_credentials import PostgresSealing
from coldbrew.store.pg_db import Migration, Part
from coldbrew.store.sqlite_catalog import _rule_json, _split, _version
from coldbrew.store.sqlite_credentials import webhook_context

PART = Part(
    "catalog",
    (
        Migration(
            "accounts, endpoints, versions and traffic splits",
            (
                "CREATE TABLE accounts (name TEXT PRIMARY KEY, webhook_secret TEXT NOT NULL, "
                "created_at DOUBLE PRECISION NOT NULL, weight DOUBLE PRECISION NOT NULL "
                "DEFAULT 1.0, max_queued_jobs INTEGER)",
                "CREATE TABLE endpoints (id BIGSERIAL PRIMARY KEY, account TEXT NOT NULL, "
                "name TEXT NOT NULL, current_version_id BIGINT, "
                "created_at DOUBLE PRECISION NOT NULL, deleted_at DOUBLE PRECISION)",
                "CREATE UNIQUE INDEX endpoints_live ON endpoints (account, name) "
                "WHERE deleted_at IS NULL",
                "CREATE TABLE versions (id BIGSERIAL PRIMARY KEY, "
                "endpoint_id BIGINT NOT NULL REFERENCES endpoints(id), number INTEGER NOT NULL, "
                "artifact_sha TEXT NOT NULL, module TEXT NOT NULL, class_name TEXT NOT NULL, "
                "spec TEXT NOT NULL, input_schema TEXT NOT NULL, "
                "created_at DOUBLE PRECISION NOT NULL, source TEXT, "
                "rolled_back_at DOUBLE PRECISION, rollback_reason TEXT, "
                "UNIQUE (endpoint_id, number))",
                "CREATE TABLE traffic_splits (endpoint_id BIGINT PRIMARY KEY "
                "REFERENCES endpoints(id), weights TEXT NOT NULL, rule TEXT, "
                "updated_at DOUBLE PRECISION NOT NULL)",
            ),
        ),
    ),
)

_ACCOUNT_COLUMNS = "name, webhook_secret, created_at, weight, max_queued_jobs"
_VERSION_SELECT = (
    "SELECT v.id, v.endpoint_id, e.account, e.name, v.number, v.artifact_sha, v.module, "
    "v.class_name, v.spec, v.input_schema, v.created_at, v.source, v.rolled_back_at, "
    "v.rollback_reason FROM versions v JOIN endpoints e ON e.id = v.endpoint_id"
)
_SPLIT_SELECT = (
    "SELECT s.endpoint_id, s.weights, s.rule, s.updated_at FROM traffic_splits s "
    "JOIN endpoints e ON e.id = s.endpoint_id WHERE e.deleted_at IS NULL"
)
_ENDPOINT_COLUMNS = "id, account, name, current_version_id, created_at"


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return Endpoint(
        id=row["id"],
        account=row["account"],
        name=row["name"],
        current_version_id=row["current_version_id"],
        created_at=row["created_at"],
    )


class PostgresCatalog(PostgresSealing, Catalog):
    """`Catalog` on PostgreSQL; webhook secrets sealed with the store's key."""

    # accounts
    async def create_account(self, name: str, webhook_secret: str, now: float) -> Account:
        await self._exec(
            "INSERT INTO accounts (name, webhook_secret, created_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO NOTHING",
            name,
            self._seal(webhook_secret, webhook_context(name)),
            now,
        )
        account = await self.get_account(name)
        assert account is not None
        return account

    async def get_account(self, name: str) -> Account | None:
        row = await self._one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE name=$1", name)
        return None if row is None else self._account(row)

    def _account(self, row: asyncpg.Record) -> Account:
        name, secret, created_at, weight, max_queued = tuple(row)
        return Account(
            str(name),
            self._open(secret, webhook_context(name)),
            float(created_at),
            weight=float(weight),
            max_queued_jobs=max_queued,
        )

    async def list_accounts(self) -> list[Account]:
        return [
            self._account(r) for r in await self._all(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts")
        ]

    async def update_account(
        self,
        name: str,
        *,
        weight: float | None = None,
        max_queued_jobs: int | None = None,
        clear_max_queued_jobs: bool = False,
    ) -> Account | None:
        row = await self._one(
            "UPDATE accounts SET weight = COALESCE($1, weight), max_queued_jobs = CASE "
            "WHEN $2 THEN NULL WHEN $3::integer IS NOT NULL THEN $3 ELSE max_queued_jobs END "
            f"WHERE name = $4 RETURNING {_ACCOUNT_COLUMNS}",
            weight,
            clear_max_queued_jobs,
            max_queued_jobs,
            name,
        )
        return None if row is None else self._account(row)

    async def count_accounts(self) -> int:
        return int(await self._value("SELECT COUNT(*) FROM accounts"))

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
        async with self._transaction():
            # a new endpoint: the live-name index lets one deploy insert it; the row lock
            # then orders concurrent deploys of it
            await self._exec(
                "INSERT INTO endpoints (account, name, created_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (account, name) WHERE deleted_at IS NULL DO NOTHING",
                account,
                endpoint,
                now,
            )
            row = await self._one(
                "SELECT id, current_version_id FROM endpoints "
                "WHERE account=$1 AND name=$2 AND deleted_at IS NULL FOR UPDATE",
                account,
                endpoint,
            )
            assert row is not None
            endpoint_id, current_id = int(row[0]), row[1]
            if current_id is not None:
                current = await self.get_version(current_id)
                if (current.artifact_sha, current.module, current.class_name) == (
                    artifact_sha,
                    module,
                    class_name,
                ) and (current.spec, current.input_schema) == (spec, input_schema):
                    return current, False
            version_id = await self._value(
                "INSERT INTO versions (endpoint_id, number, artifact_sha, module, class_name, "
                "spec, input_schema, created_at, source) SELECT $1, COALESCE(MAX(number), 0) + 1, "
                "$2, $3, $4, $5, $6, $7, $8 FROM versions WHERE endpoint_id=$1 RETURNING id",
                endpoint_id,
                artifact_sha,
                module,
                class_name,
                orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode(),
                orjson.dumps(input_schema, option=orjson.OPT_SORT_KEYS).decode(),
                now,
                orjson.dumps(source).decode() if source else None,
            )
            await self._exec(
                "UPDATE endpoints SET current_version_id=$1 WHERE id=$2", version_id, endpoint_id
            )
            await self._exec("DELETE FROM traffic_splits WHERE endpoint_id=$1", endpoint_id)
        return await self.get_version(int(version_id)), True

    async def get_endpoint(self, account: str, name: str) -> Endpoint | None:
        row = await self._one(
            f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints "
            "WHERE account=$1 AND name=$2 AND deleted_at IS NULL",
            account,
            name,
        )
        return None if row is None else _endpoint(row)

    async def list_endpoints(self, account: str | None) -> list[Endpoint]:
        rows = await self._all(
            f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE deleted_at IS NULL "
            'AND ($1::text IS NULL OR account=$1) ORDER BY name COLLATE "C"',
            account,
        )
        return [_endpoint(r) for r in rows]

    async def delete_endpoint(self, account: str, name: str, now: float) -> Endpoint | None:
        async with self._transaction():
            endpoint = await self.get_endpoint(account, name)
            if endpoint is None:
                return None
            await self._exec("UPDATE endpoints SET deleted_at=$1 WHERE id=$2", now, endpoint.id)
            await pg_queue.cancel_queued(self, endpoint.id, now)  # the queue goes with it
        return endpoint

    async def get_version(self, version_id: int) -> Version:
        row = await self._one(f"{_VERSION_SELECT} WHERE v.id=$1", version_id)
        if row is None:
            raise KeyError(version_id)
        return _version(row)

    async def list_versions(self, endpoint_id: int) -> list[Version]:
        rows = await self._all(
            f"{_VERSION_SELECT} WHERE v.endpoint_id=$1 ORDER BY v.number DESC", endpoint_id
        )
        return [_version(row) for row in rows]

    # which versions get new jobs
    async def get_split(self, endpoint_id: int) -> TrafficSplit | None:
        row = await self._one(f"{_SPLIT_SELECT} AND s.endpoint_id=$1", endpoint_id)
        return None if row is None else _split(row)

    async def list_splits(self) -> list[TrafficSplit]:
        return [_split(r) for r in await self._all(f"{_SPLIT_SELECT} ORDER BY s.endpoint_id")]

    async def set_split(
        self, endpoint_id: int, weights: dict[int, int], rule: CanaryRule | None, now: float
    ) -> TrafficSplit | None:
        async with self._transaction():
            current = await self._current_id(endpoint_id)
            top = max(weights.values())
            tied = [v for v, pct in weights.items() if pct == top]
            stable = current if current in tied else max(tied)
            await self._exec(
                "UPDATE endpoints SET current_version_id=$1 WHERE id=$2", stable, endpoint_id
            )
            for version_id, pct in weights.items():
                if pct > 0:
                    await self._mark(version_id, None, None)
            if weights[stable] == 100:
                await self._exec("DELETE FROM traffic_splits WHERE endpoint_id=$1", endpoint_id)
                return None
            await self._write_split(endpoint_id, weights, rule, now)
        return TrafficSplit(endpoint_id, dict(weights), rule, now)

    async def end_canary(self, endpoint_id: int, version_id: int, reason: str, now: float) -> bool:
        async with self._transaction():
            current = await self._current_id(endpoint_id)
            split = await self.get_split(endpoint_id)
            if split is None or split.weights.get(version_id, 0) == 0 or version_id == current:
                return False
            weights = dict(split.weights)
            weights[current] = weights.get(current, 0) + weights[version_id]
            weights[version_id] = 0
            if weights[current] == 100:
                await self._exec("DELETE FROM traffic_splits WHERE endpoint_id=$1", endpoint_id)
            else:
                await self._write_split(endpoint_id, weights, split.rule, now)
            await self._mark(version_id, now, reason)
        return True

    async def rollback(
        self, endpoint_id: int, to_version_id: int, reason: str, now: float
    ) -> Version:
        async with self._transaction():
            current = await self._current_id(endpoint_id)
            await self._exec(
                "UPDATE endpoints SET current_version_id=$1 WHERE id=$2", to_version_id, endpoint_id
            )
            await self._exec("DELETE FROM traffic_splits WHERE endpoint_id=$1", endpoint_id)
            await self._mark(to_version_id, None, None)
            if current != to_version_id:
                await self._mark(current, now, reason)
        return await self.get_version(to_version_id)

    async def _current_id(self, endpoint_id: int) -> int:
        """The endpoint's current version, its row locked until the transaction ends."""
        row = await self._one(
            "SELECT current_version_id FROM endpoints WHERE id=$1 AND deleted_at IS NULL "
            "FOR UPDATE",
            endpoint_id,
        )
        if row is None:
            raise KeyError(endpoint_id)
        return int(row[0])

    async def _mark(self, version_id: int, at: float | None, reason: str | None) -> None:
        """Set (or, with None, clear) a version's rollback mark."""
        await self._exec(
            "UPDATE versions SET rolled_back_at=$1, rollback_reason=$2 WHERE id=$3",
            at,
            reason,
            version_id,
        )

    async def _write_split(
        self, endpoint_id: int, weights: dict[int, int], rule: CanaryRule | None, now: float
    ) -> None:
        await self._exec(
            "INSERT INTO traffic_splits (endpoint_id, weights, rule, updated_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (endpoint_id) DO UPDATE SET "
            "weights = excluded.weights, rule = excluded.rule, updated_at = excluded.updated_at",
            endpoint_id,
            orjson.dumps(sorted(weights.items())).decode(),
            _rule_json(rule),
            now,
        )
