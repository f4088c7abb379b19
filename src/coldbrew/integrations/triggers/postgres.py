"""The `postgres` source (rows inserted into a table) and the `postgres` sink (a results table).

Source. On open the trigger installs what it needs on the watched table: a column
`coldbrew_txid xid8 DEFAULT pg_current_xact_id()` with an index, and an `AFTER INSERT … FOR
EACH STATEMENT` trigger that `NOTIFY`s a channel of its own. The cursor (saved in coldbrew's
store on ack) is the durability; NOTIFY is only the wake-up. Rows are read in (txid, id) order,
and only rows of transactions older than every transaction still running
(`coldbrew_txid < pg_snapshot_xmin(pg_current_snapshot())`): a plain `id > last_id` cursor
skips a row whose transaction took a smaller id but committed later, this one cannot. The
row's id is the message key; the row as JSON, without the txid column and without NULL
columns (so the model's defaults apply to them), is the job input.

Sink. `INSERT … ON CONFLICT (trigger_id, message_key) DO UPDATE` into a table it creates if
missing, so a write repeated after a crash leaves one row per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import field_validator

from coldbrew.integrations.triggers.base import (
    Kind,
    KindConfig,
    Message,
    Sink,
    SinkRecord,
    Source,
    TriggerContext,
    register_sink,
    register_source,
)

if TYPE_CHECKING:
    import asyncpg

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


def _ident(value: str) -> str:
    if importlib.util.find_spec("asyncpg") is None:  # imported on open, never at start-up
        raise ValueError("the postgres kinds need asyncpg: pip install 'coldbrew[cluster]'")
    if not _IDENT.match(value):
        raise ValueError(f"{value!r} is not a plain SQL name (letters, digits, _; schema.table)")
    return value


def _quote(name: str) -> str:
    return ".".join(f'"{part}"' for part in name.split("."))


class PostgresSourceConfig(KindConfig):
    """The table whose inserts run jobs, and its id column (unique, any orderable type)."""

    dsn: str
    table: str
    id_column: str = "id"
    backfill: bool = False  # also run the rows already in the table

    @field_validator("table", "id_column")
    @classmethod
    def _names(cls, value: str) -> str:
        return _ident(value)


class PostgresSource(Source):
    def __init__(self, config: PostgresSourceConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.ctx = ctx
        self.conn: asyncpg.Connection | None = None
        self.channel = "coldbrew_" + re.sub(r"[^a-z0-9_]", "_", ctx.trigger_id.lower())
        self._wake = asyncio.Event()
        self._cursor: tuple[int, str] = (0, "")  # (txid, id as text) of the last row acked
        self._read: tuple[int, str] = (0, "")  # of the last row fetched

    async def open(self) -> None:
        import asyncpg

        c = self.config
        self.conn = await asyncpg.connect(c.dsn)
        table, fn = _quote(c.table), f"{self.channel}_notify"
        async with self.conn.transaction():
            await self.conn.execute(
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS coldbrew_txid xid8 "
                "NOT NULL DEFAULT pg_current_xact_id()"
            )
            await self.conn.execute(
                f"CREATE INDEX IF NOT EXISTS {c.table.split('.')[-1]}_coldbrew_txid "
                f'ON {table} (coldbrew_txid, "{c.id_column}")'
            )
            await self.conn.execute(
                f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN PERFORM pg_notify('{self.channel}', ''); RETURN NULL; END $$"
            )
            await self.conn.execute(f"DROP TRIGGER IF EXISTS {self.channel} ON {table}")
            await self.conn.execute(
                f"CREATE TRIGGER {self.channel} AFTER INSERT ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
            )
        await self.conn.add_listener(self.channel, self._notified)
        saved = await self.ctx.cursor.load()
        if saved is None:
            start = 0 if c.backfill else await self._horizon()
            saved = {"txid": start, "id": ""}
            await self.ctx.cursor.save(saved)
        self._cursor = self._read = (int(saved["txid"]), str(saved["id"]))

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _horizon(self) -> int:
        """Every transaction below this txid has ended: rows under it are complete."""
        assert self.conn is not None
        value = await self.conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        return int(value)

    async def _rows(self, limit: int) -> list[Message]:
        assert self.conn is not None
        c = self.config
        txid, last_id = self._read
        rows = await self.conn.fetch(
            f'SELECT coldbrew_txid::text AS t, "{c.id_column}"::text AS k, '
            f"json_strip_nulls(row_to_json(r))::text AS j FROM {_quote(c.table)} r "
            "WHERE coldbrew_txid < pg_snapshot_xmin(pg_current_snapshot()) "
            "AND (coldbrew_txid > $1::text::xid8 OR "
            f'(coldbrew_txid = $1::text::xid8 AND "{c.id_column}"::text > $2)) '
            f'ORDER BY coldbrew_txid, "{c.id_column}"::text LIMIT $3',
            str(txid),
            last_id,
            limit,
        )
        out = []
        now = self.ctx.clock.time()
        for row in rows:
            body = orjson.loads(row["j"])
            body.pop("coldbrew_txid", None)
            position = (int(row["t"]), row["k"])
            out.append(Message(row["k"], body, now, position))
        if out:
            self._read = out[-1].handle
        return out

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        self._wake.clear()
        found = await self._rows(max_messages)
        if found:
            return found
        # a NOTIFY, or the wait's end (a row of a then-running transaction may be ready)
        with contextlib.suppress(TimeoutError):
            await self.ctx.clock.wait_for(self._wake.wait(), wait_s)
        return await self._rows(max_messages)

    async def ack(self, messages: Sequence[Message]) -> None:
        positions = [m.handle for m in messages if m.handle is not None]
        if positions:
            self._cursor = max(max(positions), self._cursor)
            await self.ctx.cursor.save({"txid": self._cursor[0], "id": self._cursor[1]})

    async def dead_letter(self, message: Message, error: dict[str, Any]) -> None:
        return None  # the runner's own table keeps it

    async def lag(self) -> int | None:
        assert self.conn is not None
        c = self.config
        txid, last_id = self._read
        count = await self.conn.fetchval(
            f"SELECT count(*) FROM {_quote(c.table)} WHERE coldbrew_txid > $1::text::xid8 OR "
            f'(coldbrew_txid = $1::text::xid8 AND "{c.id_column}"::text > $2)',
            str(txid),
            last_id,
        )
        return int(count)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None


class PostgresSinkConfig(KindConfig):
    """A results table (created if missing): one row per message, upserted by message key."""

    dsn: str
    table: str

    @field_validator("table")
    @classmethod
    def _names(cls, value: str) -> str:
        return _ident(value)


class PostgresSink(Sink):
    def __init__(self, config: PostgresSinkConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(self.config.dsn, min_size=1, max_size=2)
        await self.pool.execute(
            f"CREATE TABLE IF NOT EXISTS {_quote(self.config.table)} (trigger_id text NOT NULL, "
            "message_key text NOT NULL, job_id text NOT NULL, status text NOT NULL, "
            "output jsonb, error jsonb, finished_at timestamptz NOT NULL, "
            "PRIMARY KEY (trigger_id, message_key))"
        )

    async def write(self, records: Sequence[SinkRecord]) -> None:
        assert self.pool is not None
        await self.pool.executemany(
            f"INSERT INTO {_quote(self.config.table)} (trigger_id, message_key, job_id, status, "
            "output, error, finished_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, "
            "to_timestamp($7)) ON CONFLICT (trigger_id, message_key) DO UPDATE SET "
            "job_id = excluded.job_id, status = excluded.status, output = excluded.output, "
            "error = excluded.error, finished_at = excluded.finished_at",
            [
                (
                    r.trigger_id,
                    r.message_key,
                    r.job_id,
                    r.status,
                    orjson.dumps(r.output).decode(),
                    None if r.error is None else orjson.dumps(r.error).decode(),
                    r.finished_at,
                )
                for r in records
            ],
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None


register_source(
    Kind("postgres", PostgresSourceConfig, PostgresSource, "dsn='postgresql://…', table='orders'")
)
register_sink(Kind("postgres", PostgresSinkConfig, PostgresSink, "dsn='postgresql://…', table"))
