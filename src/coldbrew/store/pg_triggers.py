"""PostgreSQL side of the triggers part: definitions, cursors, counters, in-flight rows, dead
letters.

The same tables as SQLite's, with JSON as text (what the runner reads back is what it wrote).
Counters change in the same transaction as the in-flight rows they account for. A name already
taken in the account is found with `ON CONFLICT DO NOTHING` rather than a caught unique
violation, so the statement never aborts a surrounding transaction.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from coldbrew.errors import Conflict
from coldbrew.store.pg_db import Migration, Part, PostgresDatabase
from coldbrew.store.triggers import (
    DeadLetter,
    InFlight,
    Outcome,
    TriggerCounters,
    TriggerDef,
    TriggerState,
    TriggerStore,
)

PART = Part(
    "triggers",
    (
        Migration(
            "triggers, their cursors, counters, in-flight messages and dead letters",
            (
                "CREATE TABLE triggers (id TEXT PRIMARY KEY, account TEXT NOT NULL, "
                "name TEXT NOT NULL, source_kind TEXT NOT NULL, source TEXT NOT NULL, "
                "target_kind TEXT NOT NULL, target TEXT NOT NULL, sink_kind TEXT, sink TEXT, "
                "batch_size INTEGER NOT NULL, batch_window_ms INTEGER NOT NULL, "
                "max_in_flight INTEGER NOT NULL, max_attempts INTEGER NOT NULL, "
                "secret TEXT NOT NULL, state TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, "
                "cursor TEXT, received BIGINT NOT NULL DEFAULT 0, "
                "completed BIGINT NOT NULL DEFAULT 0, failed BIGINT NOT NULL DEFAULT 0, "
                "dead_lettered BIGINT NOT NULL DEFAULT 0, last_error TEXT, "
                "last_error_at DOUBLE PRECISION, UNIQUE (account, name))",
                "CREATE TABLE trigger_in_flight (trigger_id TEXT NOT NULL "
                "REFERENCES triggers(id) ON DELETE CASCADE, message_key TEXT NOT NULL, "
                "job_id TEXT NOT NULL, attempt INTEGER NOT NULL, body TEXT NOT NULL, "
                "received_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (trigger_id, message_key))",
                "CREATE TABLE trigger_dead_letters (trigger_id TEXT NOT NULL "
                "REFERENCES triggers(id) ON DELETE CASCADE, message_key TEXT NOT NULL, "
                "body TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, "
                "at DOUBLE PRECISION NOT NULL, PRIMARY KEY (trigger_id, message_key))",
            ),
        ),
    ),
)

_DEF_COLUMNS = (
    "id, account, name, source_kind, source, target_kind, target, sink_kind, sink, batch_size, "
    "batch_window_ms, max_in_flight, max_attempts, secret, state, created_at"
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _definition(r: asyncpg.Record) -> TriggerDef:
    return TriggerDef(
        r["id"],
        r["account"],
        r["name"],
        r["source_kind"],
        orjson.loads(r["source"]),
        r["target_kind"],
        r["target"],
        r["sink_kind"],
        _loads(r["sink"]),
        r["batch_size"],
        r["batch_window_ms"],
        r["max_in_flight"],
        r["max_attempts"],
        r["secret"],
        TriggerState(r["state"]),
        r["created_at"],
    )


class PostgresTriggers(PostgresDatabase, TriggerStore):
    """`TriggerStore` on PostgreSQL."""

    # definitions
    async def create_trigger(self, trigger: TriggerDef) -> None:
        t = trigger
        added = await self._exec(
            f"INSERT INTO triggers ({_DEF_COLUMNS}) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) "
            "ON CONFLICT DO NOTHING",
            t.id,
            t.account,
            t.name,
            t.source_kind,
            _dumps(t.source),
            t.target_kind,
            t.target,
            t.sink_kind,
            None if t.sink is None else _dumps(t.sink),
            t.batch_size,
            t.batch_window_ms,
            t.max_in_flight,
            t.max_attempts,
            t.secret,
            t.state.value,
            t.created_at,
        )
        if added != 1:
            raise Conflict(
                f"account {t.account!r} already has a trigger named {t.name!r}",
                hint="pick another --name, or delete the old trigger first",
            )

    async def get_trigger(self, trigger_id: str) -> TriggerDef | None:
        row = await self._one(f"SELECT {_DEF_COLUMNS} FROM triggers WHERE id=$1", trigger_id)
        return None if row is None else _definition(row)

    async def list_triggers(self, account: str | None) -> list[TriggerDef]:
        rows = await self._all(
            f"SELECT {_DEF_COLUMNS} FROM triggers WHERE ($1::text IS NULL OR account=$1) "
            'ORDER BY created_at, id COLLATE "C"',
            account,
        )
        return [_definition(r) for r in rows]

    async def set_trigger_state(self, trigger_id: str, state: TriggerState) -> bool:
        changed = await self._exec(
            "UPDATE triggers SET state=$1 WHERE id=$2", state.value, trigger_id
        )
        return changed == 1

    async def delete_trigger(self, trigger_id: str) -> bool:
        # in-flight rows and dead letters go with it (ON DELETE CASCADE)
        return await self._exec("DELETE FROM triggers WHERE id=$1", trigger_id) == 1

    # cursor
    async def load_cursor(self, trigger_id: str) -> dict[str, Any] | None:
        value = await self._value("SELECT cursor FROM triggers WHERE id=$1", trigger_id)
        return _loads(value)  # type: ignore[no-any-return]

    async def save_cursor(self, trigger_id: str, cursor: dict[str, Any]) -> None:
        await self._exec("UPDATE triggers SET cursor=$1 WHERE id=$2", _dumps(cursor), trigger_id)

    # counters
    async def counters(self, trigger_id: str) -> TriggerCounters:
        row = await self._one(
            "SELECT received, completed, failed, dead_lettered, last_error, last_error_at "
            "FROM triggers WHERE id=$1",
            trigger_id,
        )
        if row is None:
            return TriggerCounters()
        return TriggerCounters(row[0], row[1], row[2], row[3], _loads(row[4]), row[5])

    async def count_received(self, trigger_id: str, n: int) -> None:
        await self._exec("UPDATE triggers SET received = received + $1 WHERE id=$2", n, trigger_id)

    async def record_error(self, trigger_id: str, error: dict[str, Any], at: float) -> None:
        await self._exec(
            "UPDATE triggers SET last_error=$1, last_error_at=$2 WHERE id=$3",
            _dumps(error),
            at,
            trigger_id,
        )

    # in flight
    async def put_in_flight(self, rows: list[InFlight], received: int = 0) -> None:
        async with self._transaction():
            await self._many(
                "INSERT INTO trigger_in_flight (trigger_id, message_key, job_id, attempt, body, "
                "received_at) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (trigger_id, message_key) DO UPDATE SET job_id = excluded.job_id, "
                "attempt = excluded.attempt, body = excluded.body, "
                "received_at = excluded.received_at",
                [
                    (
                        r.trigger_id,
                        r.message_key,
                        r.job_id,
                        r.attempt,
                        _dumps(r.body),
                        r.received_at,
                    )
                    for r in rows
                ],
            )
            if received and rows:
                await self._exec(
                    "UPDATE triggers SET received = received + $1 WHERE id=$2",
                    received,
                    rows[0].trigger_id,
                )

    async def in_flight(self, trigger_id: str) -> list[InFlight]:
        rows = await self._all(
            "SELECT trigger_id, message_key, job_id, attempt, body, received_at FROM "
            "trigger_in_flight WHERE trigger_id=$1 "
            'ORDER BY received_at, message_key COLLATE "C"',
            trigger_id,
        )
        return [InFlight(r[0], r[1], r[2], r[3], orjson.loads(r[4]), r[5]) for r in rows]

    async def finish_messages(self, trigger_id: str, outcome: Outcome) -> None:
        o = outcome
        async with self._transaction():
            await self._exec(
                "DELETE FROM trigger_in_flight WHERE trigger_id=$1 AND message_key = ANY($2)",
                trigger_id,
                o.done,
            )
            await self._many(
                "INSERT INTO trigger_dead_letters (trigger_id, message_key, body, error, "
                "attempts, at) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (trigger_id, message_key) DO UPDATE SET body = excluded.body, "
                "error = excluded.error, attempts = excluded.attempts, at = excluded.at",
                [
                    (trigger_id, d.message_key, _dumps(d.body), _dumps(d.error), d.attempts, d.at)
                    for d in o.dead
                ],
            )
            await self._exec(
                "UPDATE triggers SET completed = completed + $1, failed = failed + $2, "
                "dead_lettered = dead_lettered + $3, last_error = COALESCE($4, last_error), "
                "last_error_at = CASE WHEN $4::text IS NULL THEN last_error_at ELSE $5 END "
                "WHERE id=$6",
                o.completed,
                o.failed,
                len(o.dead),
                None if o.last_error is None else _dumps(o.last_error),
                o.at,
                trigger_id,
            )

    # dead letters
    async def dead_letters(self, trigger_id: str, limit: int) -> list[DeadLetter]:
        rows = await self._all(
            "SELECT trigger_id, message_key, body, error, attempts, at FROM trigger_dead_letters "
            'WHERE trigger_id=$1 ORDER BY at DESC, message_key COLLATE "C" LIMIT $2',
            trigger_id,
            limit,
        )
        return [
            DeadLetter(r[0], r[1], orjson.loads(r[2]), orjson.loads(r[3]), r[4], r[5]) for r in rows
        ]
