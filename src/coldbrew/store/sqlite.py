"""The embedded job store: one SQLite file in WAL mode, every part of `Store` on it.

Durability: every accepted job is committed before the client hears back. With WAL and
`synchronous=NORMAL` a committed transaction survives a crash or `kill -9` of the server; only a
power loss can drop the last few. Every call runs on the store's own thread (`store/guard.py`),
never on the event loop: a lock held elsewhere or a stalled disk must not freeze the gateway.

Each part lives in its own module (`sqlite_catalog`, `sqlite_credentials`, `sqlite_queue`,
`sqlite_history`, `sqlite_ledger`, `sqlite_triggers`, `sqlite_pipelines`) with its tables'
migrations; the connection, the thread and the migration runner they share are `sqlite_db`.
This class only puts them together.
"""

from __future__ import annotations

from pathlib import Path

from coldbrew.crypto import Sealer
from coldbrew.store import (
    sqlite_catalog,
    sqlite_credentials,
    sqlite_history,
    sqlite_ledger,
    sqlite_pipelines,
    sqlite_queue,
    sqlite_triggers,
)
from coldbrew.store.base import Store
from coldbrew.store.guard import on_store_thread
from coldbrew.store.sqlite_catalog import SQLiteCatalog
from coldbrew.store.sqlite_credentials import SQLiteCredentials
from coldbrew.store.sqlite_db import Part
from coldbrew.store.sqlite_history import SQLiteHistory
from coldbrew.store.sqlite_ledger import SQLiteLedger
from coldbrew.store.sqlite_pipelines import SQLitePipelines
from coldbrew.store.sqlite_queue import SQLiteQueue
from coldbrew.store.sqlite_triggers import SQLiteTriggers

#: Every part's migrations, in the order they run: a part's tables may refer to an earlier
#: part's (api keys to accounts; the history reads jobs).
PARTS: tuple[Part, ...] = (
    sqlite_catalog.PART,
    sqlite_credentials.PART,
    sqlite_queue.PART,
    sqlite_history.PART,
    sqlite_ledger.PART,
    sqlite_triggers.PART,
    sqlite_pipelines.PART,
)


@on_store_thread
class SQLiteStore(
    SQLiteCatalog,
    SQLiteCredentials,
    SQLiteQueue,
    SQLiteHistory,
    SQLiteLedger,
    SQLiteTriggers,
    SQLitePipelines,
    Store,
):
    """`Store` on one SQLite database file (or `:memory:` for unit tests), used from one thread.

    With a `sealer`, secrets are sealed at rest (`coldbrew.crypto`); see `SQLiteSealing`.
    """

    def __init__(self, path: Path | str, sealer: Sealer | None = None) -> None:
        self._open_database(path, PARTS)
        self._init_sealing(sealer)
        sqlite_queue.count_queue(self._db)  # the queue counters, from the rows
