"""Sources and sinks the trigger e2e tests drive, one `Feeder` per source kind.

A feeder knows how to make a trigger's source config and how to publish JSON bodies into it;
`FEEDERS` maps a kind to its feeder, so a new source kind (nats, rabbitmq, mqtt) is one more
class here and one more id in the tests' parametrisation. Services are on loopback; a missing
one skips the test, except under `CI`, where it fails.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest

from tests.e2e.broker_feeders import BROKER_FEEDERS

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def unavailable(what: str, exc: BaseException) -> None:
    """Skip on a developer's machine without the service; fail in CI, which has it."""
    if os.environ.get("CI"):
        raise AssertionError(f"{what} is not reachable in CI: {exc}")
    pytest.skip(f"{what} unreachable: {exc}")


class PgDatabase:
    """A database of the test's own on the loopback PostgreSQL, dropped afterwards."""

    def __init__(self) -> None:
        self.name = "cb_triggers_" + uuid.uuid4().hex[:10]
        self.dsn = f"postgresql://postgres@127.0.0.1:5432/{self.name}"

    def __enter__(self) -> PgDatabase:
        try:
            self._admin(f'CREATE DATABASE "{self.name}"')
        except (OSError, ImportError) as exc:
            unavailable("PostgreSQL on 127.0.0.1:5432", exc)
        return self

    def __exit__(self, *exc: object) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        import asyncpg

        async def run() -> None:
            conn = await asyncpg.connect(PG_ADMIN_DSN)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    def query(self, sql: str, *args: Any) -> list[Any]:
        import asyncpg

        async def run() -> list[Any]:
            conn = await asyncpg.connect(self.dsn)
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(run())


class Feeder(Protocol):
    kind: str

    def source(self) -> dict[str, Any]: ...

    def publish(self, bodies: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class RedisFeeder:
    """A stream of the test's own (`XADD s * body <json>`)."""

    kind = "redis"

    def __init__(self, pg: PgDatabase) -> None:
        import redis

        self.client = redis.Redis.from_url(REDIS_URL)
        try:
            self.client.ping()
        except redis.ConnectionError as exc:
            unavailable("Redis on 127.0.0.1:6379", exc)
        self.stream = "cb-triggers-test-" + uuid.uuid4().hex[:10]

    def source(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "url": REDIS_URL,
            "stream": self.stream,
            "group": "g",
            "start": "0",
        }

    def publish(self, bodies: list[dict[str, Any]]) -> None:
        pipe = self.client.pipeline()
        for body in bodies:
            pipe.xadd(self.stream, {"body": orjson.dumps(body)})
        pipe.execute()

    def dead(self) -> list[dict[str, Any]]:
        return [
            {"body": orjson.loads(f[b"body"]), "error": orjson.loads(f[b"error"])}
            for _, f in self.client.xrange(self.stream + ":dead")
        ]

    def close(self) -> None:
        self.client.delete(self.stream, self.stream + ":dead")
        self.client.close()


class PostgresFeeder:
    """A table of the test's own database; each body is inserted as one row."""

    kind = "postgres"

    def __init__(self, pg: PgDatabase) -> None:
        self.pg = pg
        pg.query("CREATE TABLE events (id bigserial PRIMARY KEY, i int, fail text)")

    def source(self) -> dict[str, Any]:
        return {"kind": "postgres", "dsn": self.pg.dsn, "table": "events"}

    def publish(self, bodies: list[dict[str, Any]]) -> None:
        for start in range(0, len(bodies), 50):
            chunk = bodies[start : start + 50]
            self.pg.query(
                "INSERT INTO events (i, fail) SELECT * FROM unnest($1::int[], $2::text[])",
                [b.get("i") for b in chunk],
                [b.get("fail") for b in chunk],
            )

    def close(self) -> None:
        return None


FEEDERS: dict[str, type[Any]] = {
    "redis": RedisFeeder,
    "postgres": PostgresFeeder,
    **BROKER_FEEDERS,  # nats, rabbitmq, mqtt (tests/e2e/broker_feeders.py)
}


def jobs_per_input(home: Path, endpoint: str, field: str) -> Counter[Any]:
    """How many jobs the server made for each value of `field` in their input."""
    db = sqlite3.connect(home / "coldbrew.db")
    try:
        rows = db.execute("SELECT input FROM jobs WHERE endpoint=?", (endpoint,)).fetchall()
    finally:
        db.close()
    return Counter(orjson.loads(r[0]).get(field) for r in rows)
