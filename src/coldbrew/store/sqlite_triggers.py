"""SQLite side of the triggers part: definitions, cursors, counters, in-flight rows, dead letters.

JSON values (configs, cursors, bodies, errors) are stored as text. Counters live on the
trigger's row and change in the same transaction as the in-flight rows they account for, so a
crash never leaves a message both counted and still in flight.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from coldbrew.errors import Conflict
from coldbrew.store.sqlite_db import Migration, Part, SQLiteDatabase, ddl
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
                ddl(
                    "CREATE TABLE IF NOT EXISTS triggers (id TEXT PRIMARY KEY, "
                    "account TEXT NOT NULL, name TEXT NOT NULL, source_kind TEXT NOT NULL, "
                    "source TEXT NOT NULL, target_kind TEXT NOT NULL, target TEXT NOT NULL, "
                    "sink_kind TEXT, sink TEXT, batch_size INTEGER NOT NULL, "
                    "batch_window_ms INTEGER NOT NULL, max_in_flight INTEGER NOT NULL, "
                    "max_attempts INTEGER NOT NULL, secret TEXT NOT NULL, state TEXT NOT NULL, "
                    "created_at REAL NOT NULL, cursor TEXT, received INTEGER NOT NULL DEFAULT 0, "
                    "completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, "
                    "dead_lettered INTEGER NOT NULL DEFAULT 0, last_error TEXT, "
                    "last_error_at REAL, UNIQUE (account, name))",
                    "CREATE TABLE IF NOT EXISTS trigger_in_flight (trigger_id TEXT NOT NULL "
                    "REFERENCES triggers(id) ON DELETE CASCADE, message_key TEXT NOT NULL, "
                    "job_id TEXT NOT NULL, attempt INTEGER NOT NULL, body TEXT NOT NULL, "
                    "received_at REAL NOT NULL, PRIMARY KEY (trigger_id, message_key))",
                    "CREATE TABLE IF NOT EXISTS trigger_dead_letters (trigger_id TEXT NOT NULL "
                    "REFERENCES triggers(id) ON DELETE CASCADE, message_key TEXT NOT NULL, "
                    "body TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, "
                    "at REAL NOT NULL, PRIMARY KEY (trigger_id, message_key))",
                ),
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


def _definition(r: sqlite3.Row) -> TriggerDef:
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


class SQLiteTriggers(SQLiteDatabase, TriggerStore):
    """`TriggerStore` on the store's database."""

    # definitions
    async def create_trigger(self, trigger: TriggerDef) -> None:
        t = trigger
        try:
            self._db.execute(
                f"INSERT INTO triggers ({_DEF_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
                ),
            )
        except sqlite3.IntegrityError:
            raise Conflict(
                f"account {t.account!r} already has a trigger named {t.name!r}",
                hint="pick another --name, or delete the old trigger first",
            ) from None

    async def get_trigger(self, trigger_id: str) -> TriggerDef | None:
        row = self._one(f"SELECT {_DEF_COLUMNS} FROM triggers WHERE id=?", [trigger_id])
        return None if row is None else _definition(row)

    async def list_triggers(self, account: str | None) -> list[TriggerDef]:
        sql = f"SELECT {_DEF_COLUMNS} FROM triggers"
        params: list[Any] = []
        if account is not None:
            sql += " WHERE account=?"
            params.append(account)
        return [_definition(r) for r in self._all(sql + " ORDER BY created_at, id", params)]

    async def set_trigger_state(self, trigger_id: str, state: TriggerState) -> bool:
        cursor = self._db.execute(
            "UPDATE triggers SET state=? WHERE id=?", (state.value, trigger_id)
        )
        return cursor.rowcount == 1

    async def delete_trigger(self, trigger_id: str) -> bool:
        with self._transaction():
            self._db.execute("DELETE FROM trigger_in_flight WHERE trigger_id=?", (trigger_id,))
            self._db.execute("DELETE FROM trigger_dead_letters WHERE trigger_id=?", (trigger_id,))
            cursor = self._db.execute("DELETE FROM triggers WHERE id=?", (trigger_id,))
        return cursor.rowcount == 1

    # cursor
    async def load_cursor(self, trigger_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT cursor FROM triggers WHERE id=?", [trigger_id])
        return None if row is None else _loads(row[0])

    async def save_cursor(self, trigger_id: str, cursor: dict[str, Any]) -> None:
        self._db.execute("UPDATE triggers SET cursor=? WHERE id=?", (_dumps(cursor), trigger_id))

    # counters
    async def counters(self, trigger_id: str) -> TriggerCounters:
        row = self._one(
            "SELECT received, completed, failed, dead_lettered, last_error, last_error_at "
            "FROM triggers WHERE id=?",
            [trigger_id],
        )
        if row is None:
            return TriggerCounters()
        return TriggerCounters(row[0], row[1], row[2], row[3], _loads(row[4]), row[5])

    async def count_received(self, trigger_id: str, n: int) -> None:
        self._db.execute("UPDATE triggers SET received = received + ? WHERE id=?", (n, trigger_id))

    async def record_error(self, trigger_id: str, error: dict[str, Any], at: float) -> None:
        self._db.execute(
            "UPDATE triggers SET last_error=?, last_error_at=? WHERE id=?",
            (_dumps(error), at, trigger_id),
        )

    # in flight
    async def put_in_flight(self, rows: list[InFlight], received: int = 0) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO trigger_in_flight (trigger_id, message_key, job_id, "
                "attempt, body, received_at) VALUES (?, ?, ?, ?, ?, ?)",
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
                self._db.execute(
                    "UPDATE triggers SET received = received + ? WHERE id=?",
                    (received, rows[0].trigger_id),
                )

    async def in_flight(self, trigger_id: str) -> list[InFlight]:
        rows = self._all(
            "SELECT trigger_id, message_key, job_id, attempt, body, received_at "
            "FROM trigger_in_flight WHERE trigger_id=? ORDER BY received_at, message_key",
            [trigger_id],
        )
        return [InFlight(r[0], r[1], r[2], r[3], orjson.loads(r[4]), r[5]) for r in rows]

    async def finish_messages(self, trigger_id: str, outcome: Outcome) -> None:
        o = outcome
        with self._transaction():
            self._db.executemany(
                "DELETE FROM trigger_in_flight WHERE trigger_id=? AND message_key=?",
                [(trigger_id, key) for key in o.done],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO trigger_dead_letters (trigger_id, message_key, body, "
                "error, attempts, at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (trigger_id, d.message_key, _dumps(d.body), _dumps(d.error), d.attempts, d.at)
                    for d in o.dead
                ],
            )
            self._db.execute(
                "UPDATE triggers SET completed = completed + ?, failed = failed + ?, "
                "dead_lettered = dead_lettered + ?, "
                "last_error = COALESCE(?, last_error), "
                "last_error_at = CASE WHEN ? IS NULL THEN last_error_at ELSE ? END WHERE id=?",
                (
                    o.completed,
                    o.failed,
                    len(o.dead),
                    None if o.last_error is None else _dumps(o.last_error),
                    None if o.last_error is None else 1,
                    o.at,
                    trigger_id,
                ),
            )

    # dead letters
    async def dead_letters(self, trigger_id: str, limit: int) -> list[DeadLetter]:
        rows = self._all(
            "SELECT trigger_id, message_key, body, error, attempts, at FROM trigger_dead_letters "
            "WHERE trigger_id=? ORDER BY at DESC, message_key LIMIT ?",
            [trigger_id, limit],
        )
        return [
            DeadLetter(r[0], r[1], orjson.loads(r[2]), orjson.loads(r[3]), r[4], r[5]) for r in rows
        ]
