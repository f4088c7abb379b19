"""The clustered job store: every part of `Store` on one PostgreSQL database, shared by gateways.

Each part lives in its own module (`pg_catalog`, `pg_credentials`, `pg_queue`, `pg_history`,
`pg_ledger`, `pg_triggers`, `pg_pipelines`) with its tables' migrations; the pool, the
transactions, the migration runner and the storage faults they share are `pg_db`. This class
only puts them together. asyncpg is imported here and in those modules only:
`coldbrew.store.factory` imports this module when a database URL is configured, so the
embedded default never loads it.
"""

from __future__ import annotations

from coldbrew.crypto import Sealer
from coldbrew.store import (
    pg_catalog,
    pg_credentials,
    pg_history,
    pg_ledger,
    pg_pipelines,
    pg_queue,
    pg_triggers,
)
from coldbrew.store.base import Store
from coldbrew.store.pg_catalog import PostgresCatalog
from coldbrew.store.pg_credentials import PostgresCredentials
from coldbrew.store.pg_db import Part, with_faults
from coldbrew.store.pg_history import PostgresHistory
from coldbrew.store.pg_ledger import PostgresLedger
from coldbrew.store.pg_pipelines import PostgresPipelines
from coldbrew.store.pg_queue import PostgresQueue
from coldbrew.store.pg_triggers import PostgresTriggers

#: Every part's migrations, in the order they run (api keys refer to accounts).
PARTS: tuple[Part, ...] = (
    pg_catalog.PART,
    pg_credentials.PART,
    pg_queue.PART,
    pg_history.PART,
    pg_ledger.PART,
    pg_triggers.PART,
    pg_pipelines.PART,
)

POOL_MAX = 10  # connections per gateway: PostgreSQL's default allows 100 in all


@with_faults
class PostgresStore(
    PostgresCatalog,
    PostgresCredentials,
    PostgresQueue,
    PostgresHistory,
    PostgresLedger,
    PostgresTriggers,
    PostgresPipelines,
    Store,
):
    """`Store` on a PostgreSQL database (or one schema of it); open it with `connect`.

    With a `sealer`, secrets are sealed at rest with the same key and contexts as SQLite's.
    """

    @classmethod
    async def connect(
        cls,
        url: str,
        sealer: Sealer | None = None,
        *,
        schema: str | None = None,
        pool_max: int = POOL_MAX,
        timeout_s: float = 60.0,
    ) -> PostgresStore:
        """Open a pool on `url`, bring the tables up to date, and check the sealed secrets.

        `schema` (default: the server's search_path) is where the tables live."""
        store = cls()
        await store._open_pool(url, PARTS, schema=schema, pool_max=pool_max, timeout_s=timeout_s)
        try:
            await store._init_sealing(sealer)
        except BaseException:
            await store.close()
            raise
        return store
