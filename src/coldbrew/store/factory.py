"""Which store a gateway opens: SQLite in its home (the embedded default), or PostgreSQL when
`database_url` is set (several gateways sharing one database).

The PostgreSQL modules, and asyncpg with them, are imported only on that branch: the embedded
default never loads them (asyncpg is the optional `cluster` extra). A bad URL, an unreachable
server or a missing driver fails the start with what to fix, not with a traceback.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from coldbrew.config import Settings
from coldbrew.crypto import Sealer
from coldbrew.errors import StorageUnavailable
from coldbrew.store.base import Store
from coldbrew.store.sqlite import SQLiteStore

SCHEMES = ("postgresql", "postgres")
CONNECT_TIMEOUT_S = 10.0  # how long the start waits for the server before it gives up


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


async def open_store(settings: Settings, sealer: Sealer) -> Store:
    """The store `settings` ask for, opened, its tables up to date."""
    if settings.database_url is None:
        return SQLiteStore(settings.db_path, sealer)
    return await open_postgres(settings.database_url, sealer)


async def open_postgres(url: str, sealer: Sealer | None) -> Store:
    """A `PostgresStore` on `url`; `StorageUnavailable` saying what to fix when it cannot."""
    shown = redacted(url)
    try:
        import asyncpg

        from coldbrew.store.postgres import PostgresStore
    except ImportError as exc:
        raise StorageUnavailable(
            f"database_url is set but the PostgreSQL driver is missing ({exc})",
            hint="install the cluster extra: pip install 'coldbrew[cluster]'",
        ) from None
    try:
        return await PostgresStore.connect(url, sealer, timeout_s=CONNECT_TIMEOUT_S)
    except (
        OSError,
        TimeoutError,
        ValueError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        raise StorageUnavailable(
            f"cannot open the PostgreSQL database {shown}: {type(exc).__name__}: {exc}",
            hint="check that the server is running and reachable from this host, that the "
            "database exists (createdb NAME) and that the user may log in and create tables; "
            "or unset database_url (--database-url, COLDBREW_DATABASE_URL) to use SQLite",
        ) from None
