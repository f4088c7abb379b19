"""SQLite side of the credentials concern: API keys, endpoint secrets, and sealing at rest.

Its tables are the `credentials` part's migrations. Sealing (`SQLiteSealing`) is shared with
the catalog, whose accounts carry a webhook secret: when the store opens with a key, secrets
stored in plaintext by an older coldbrew are sealed in place, and sealed ones must open.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping

from coldbrew.crypto import Sealer, is_sealed
from coldbrew.errors import SecretUnreadable
from coldbrew.store.credentials import (
    KEY_ID_CHARS,
    ApiKey,
    CredentialStore,
    SecretName,
    key_id,
)
from coldbrew.store.models import Principal
from coldbrew.store.sqlite_db import Migration, Part, SQLiteDatabase, add_columns, ddl

PART = Part(
    "credentials",
    (
        Migration(
            "API keys and endpoint secrets as of 0.x; older key tables gain the prefix, "
            "expiry, revocation and last-use columns",
            (
                ddl(
                    "CREATE TABLE IF NOT EXISTS api_keys (key_hash TEXT PRIMARY KEY, "
                    "account TEXT NOT NULL REFERENCES accounts(name), admin INTEGER NOT NULL, "
                    "created_at REAL NOT NULL, prefix TEXT NOT NULL DEFAULT '', "
                    "expires_at REAL, revoked_at REAL, last_used_at REAL)",
                    "CREATE TABLE IF NOT EXISTS endpoint_secrets (account TEXT NOT NULL, "
                    "endpoint TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, "
                    "updated_at REAL NOT NULL, PRIMARY KEY (account, endpoint, name))",
                ),
                add_columns(  # added after 0.1
                    "api_keys",
                    {
                        "prefix": "TEXT NOT NULL DEFAULT ''",
                        "expires_at": "REAL",
                        "revoked_at": "REAL",
                        "last_used_at": "REAL",
                    },
                ),
            ),
        ),
    ),
)

_KEY_ID = re.compile(f"[0-9a-f]{{{KEY_ID_CHARS}}}")
_KEY_SELECT = (
    "SELECT key_hash, account, admin, prefix, created_at, expires_at, revoked_at, last_used_at "
    "FROM api_keys"
)


def webhook_context(account: str) -> str:
    return f"webhook secret of account {account}"


def secret_context(account: str, endpoint: str, name: str) -> str:
    return f"secret {name} of endpoint {account}/{endpoint}"


def _api_key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=key_id(row[0]),
        account=row[1],
        admin=bool(row[2]),
        prefix=row[3],
        created_at=row[4],
        expires_at=row[5],
        revoked_at=row[6],
        last_used_at=row[7],
    )


class SQLiteSealing(SQLiteDatabase):
    """Secrets sealed with `_sealer` at rest.

    Without a sealer (the in-memory store of unit tests) values are kept as given: nothing of
    such a store is at rest.
    """

    _sealer: Sealer | None = None

    def _init_sealing(self, sealer: Sealer | None) -> None:
        self._sealer = sealer
        if sealer is not None:
            self._seal_plaintext(sealer)

    def _seal_plaintext(self, sealer: Sealer) -> None:
        """Seal webhook secrets stored before encryption at rest, and check that the sealed
        ones open: a replaced key file fails the start, not the first webhook."""
        rows = self._db.execute("SELECT name, webhook_secret FROM accounts").fetchall()
        with self._transaction():
            for name, secret in rows:
                if is_sealed(secret):
                    sealer.open(secret, webhook_context(name))
                else:
                    self._db.execute(
                        "UPDATE accounts SET webhook_secret=? WHERE name=?",
                        (sealer.seal(secret, webhook_context(name)), name),
                    )

    def _seal(self, plaintext: str, context: str) -> str:
        return plaintext if self._sealer is None else self._sealer.seal(plaintext, context)

    def _open(self, stored: str, context: str) -> str:
        if not is_sealed(stored):
            return stored
        if self._sealer is None:
            raise SecretUnreadable(f"the {context} is sealed and this store has no key")
        return self._sealer.open(stored, context)


class SQLiteCredentials(SQLiteSealing, CredentialStore):
    """`CredentialStore` on the store's database; endpoint secrets sealed with `_sealer`."""

    # keys
    async def add_key(
        self,
        key_hash: str,
        account: str,
        admin: bool,
        now: float,
        *,
        expires_at: float | None = None,
        prefix: str = "",
    ) -> ApiKey:
        self._db.execute(
            "INSERT INTO api_keys (key_hash, account, admin, created_at, expires_at, prefix) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key_hash, account, int(admin), now, expires_at, prefix),
        )
        return ApiKey(key_id(key_hash), account, admin, prefix, now, expires_at)

    async def principal(self, key_hash: str) -> Principal | None:
        row = self._db.execute(
            "SELECT account, admin, expires_at FROM api_keys "
            "WHERE key_hash=? AND revoked_at IS NULL",
            (key_hash,),
        ).fetchone()
        if row is None:
            return None
        return Principal(row[0], bool(row[1]), key_id=key_id(key_hash), expires_at=row[2])

    async def list_keys(self, account: str | None) -> list[ApiKey]:
        sql = _KEY_SELECT + (" WHERE account=?" if account is not None else "")
        params = [account] if account is not None else []
        rows = self._db.execute(sql + " ORDER BY created_at, key_hash", params).fetchall()
        return [_api_key(r) for r in rows]

    async def revoke_key(self, key_id: str, account: str | None, now: float) -> ApiKey | None:
        if not _KEY_ID.fullmatch(key_id):
            return None
        sql, params = " WHERE substr(key_hash, 1, ?)=?", [KEY_ID_CHARS, key_id]
        if account is not None:
            sql, params = sql + " AND account=?", [*params, account]
        row = self._db.execute(_KEY_SELECT + sql, params).fetchone()
        if row is None:
            return None
        self._db.execute(
            "UPDATE api_keys SET revoked_at=? WHERE key_hash=? AND revoked_at IS NULL",
            (now, row[0]),
        )
        row = self._db.execute(_KEY_SELECT + " WHERE key_hash=?", (row[0],)).fetchone()
        return _api_key(row)

    async def touch_key(self, key_hash: str, now: float) -> None:
        self._db.execute("UPDATE api_keys SET last_used_at=? WHERE key_hash=?", (now, key_hash))

    # endpoint secrets
    async def set_secrets(
        self, account: str, endpoint: str, changes: Mapping[str, str | None], now: float
    ) -> None:
        with self._transaction():
            for name, value in changes.items():
                if value is None:
                    self._db.execute(
                        "DELETE FROM endpoint_secrets WHERE account=? AND endpoint=? AND name=?",
                        (account, endpoint, name),
                    )
                    continue
                sealed = self._seal(value, secret_context(account, endpoint, name))
                self._db.execute(
                    "INSERT OR REPLACE INTO endpoint_secrets "
                    "(account, endpoint, name, value, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (account, endpoint, name, sealed, now),
                )

    async def secret_names(self, account: str, endpoint: str) -> list[SecretName]:
        rows = self._db.execute(
            "SELECT name, updated_at FROM endpoint_secrets WHERE account=? AND endpoint=? "
            "ORDER BY name",
            (account, endpoint),
        ).fetchall()
        return [SecretName(r[0], r[1]) for r in rows]

    async def all_secrets(self) -> dict[tuple[str, str], dict[str, str]]:
        found: dict[tuple[str, str], dict[str, str]] = {}
        for account, endpoint, name, value in self._db.execute(
            "SELECT account, endpoint, name, value FROM endpoint_secrets"
        ):
            context = secret_context(account, endpoint, name)
            found.setdefault((account, endpoint), {})[name] = self._open(value, context)
        return found
