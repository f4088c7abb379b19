"""PostgreSQL side of the credentials concern: API keys, endpoint secrets, sealing at rest.

The same tables and rules as `sqlite_credentials`: secrets are sealed with the store's `Sealer`
(the same key file, the same contexts), so a secret sealed by one gateway opens on another.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from coldbrew.crypto import Sealer, is_sealed
from coldbrew.errors import SecretUnreadable
from coldbrew.store.credentials import KEY_ID_CHARS, ApiKey, CredentialStore, SecretName, key_id
from coldbrew.store.models import Principal
from coldbrew.store.pg_db import Migration, Part, PostgresDatabase
from coldbrew.store.sqlite_credentials import _KEY_ID, secret_context, webhook_context

PART = Part(
    "credentials",
    (
        Migration(
            "API keys and endpoint secrets",
            (
                "CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, "
                "account TEXT NOT NULL REFERENCES accounts(name), admin BOOLEAN NOT NULL, "
                "created_at DOUBLE PRECISION NOT NULL, prefix TEXT NOT NULL DEFAULT '', "
                "expires_at DOUBLE PRECISION, revoked_at DOUBLE PRECISION, "
                "last_used_at DOUBLE PRECISION)",
                "CREATE TABLE endpoint_secrets (account TEXT NOT NULL, endpoint TEXT NOT NULL, "
                "name TEXT NOT NULL, value TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL, "
                "PRIMARY KEY (account, endpoint, name))",
            ),
        ),
    ),
)

_KEY_SELECT = (
    "SELECT key_hash, account, admin, prefix, created_at, expires_at, revoked_at, last_used_at "
    "FROM api_keys"
)


def _api_key(row: asyncpg.Record) -> ApiKey:
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


class PostgresSealing(PostgresDatabase):
    """Secrets sealed with `_sealer` at rest (shared with the catalog's webhook secrets)."""

    _sealer: Sealer | None = None

    async def _init_sealing(self, sealer: Sealer | None) -> None:
        """Seal webhook secrets stored in plaintext, and check that sealed ones open: a
        replaced key file fails the start, not the first webhook."""
        self._sealer = sealer
        if sealer is None:
            return
        async with self._transaction():
            for name, secret in await self._all("SELECT name, webhook_secret FROM accounts"):
                if is_sealed(secret):
                    sealer.open(secret, webhook_context(name))
                else:
                    await self._exec(
                        "UPDATE accounts SET webhook_secret=$1 WHERE name=$2",
                        sealer.seal(secret, webhook_context(name)),
                        name,
                    )

    def _seal(self, plaintext: str, context: str) -> str:
        return plaintext if self._sealer is None else self._sealer.seal(plaintext, context)

    def _open(self, stored: str, context: str) -> str:
        if not is_sealed(stored):
            return stored
        if self._sealer is None:
            raise SecretUnreadable(f"the {context} is sealed and this store has no key")
        return self._sealer.open(stored, context)


class PostgresCredentials(PostgresSealing, CredentialStore):
    """`CredentialStore` on PostgreSQL; endpoint secrets sealed with `_sealer`."""

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
        await self._exec(
            "INSERT INTO api_keys (key_hash, account, admin, created_at, expires_at, prefix) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            key_hash,
            account,
            admin,
            now,
            expires_at,
            prefix,
        )
        return ApiKey(key_id(key_hash), account, admin, prefix, now, expires_at)

    async def principal(self, key_hash: str) -> Principal | None:
        row = await self._one(
            "SELECT account, admin, expires_at FROM api_keys "
            "WHERE key_hash=$1 AND revoked_at IS NULL",
            key_hash,
        )
        if row is None:
            return None
        return Principal(row[0], bool(row[1]), key_id=key_id(key_hash), expires_at=row[2])

    async def list_keys(self, account: str | None) -> list[ApiKey]:
        rows = await self._all(
            f"{_KEY_SELECT} WHERE ($1::text IS NULL OR account=$1) ORDER BY created_at, key_hash",
            account,
        )
        return [_api_key(r) for r in rows]

    async def revoke_key(self, key_id: str, account: str | None, now: float) -> ApiKey | None:
        if not _KEY_ID.fullmatch(key_id):
            return None
        async with self._transaction():
            row = await self._one(
                f"{_KEY_SELECT} WHERE substr(key_hash, 1, $1)=$2 "
                "AND ($3::text IS NULL OR account=$3)",
                KEY_ID_CHARS,
                key_id,
                account,
            )
            if row is None:
                return None
            await self._exec(
                "UPDATE api_keys SET revoked_at=$1 WHERE key_hash=$2 AND revoked_at IS NULL",
                now,
                row[0],
            )
            row = await self._one(f"{_KEY_SELECT} WHERE key_hash=$1", row[0])
        return None if row is None else _api_key(row)

    async def touch_key(self, key_hash: str, now: float) -> None:
        await self._exec("UPDATE api_keys SET last_used_at=$1 WHERE key_hash=$2", now, key_hash)

    # endpoint secrets
    async def set_secrets(
        self, account: str, endpoint: str, changes: Mapping[str, str | None], now: float
    ) -> None:
        async with self._transaction():
            for name, value in changes.items():
                if value is None:
                    await self._exec(
                        "DELETE FROM endpoint_secrets WHERE account=$1 AND endpoint=$2 AND name=$3",
                        account,
                        endpoint,
                        name,
                    )
                    continue
                await self._exec(
                    "INSERT INTO endpoint_secrets (account, endpoint, name, value, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account, endpoint, name) "
                    "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    account,
                    endpoint,
                    name,
                    self._seal(value, secret_context(account, endpoint, name)),
                    now,
                )

    async def secret_names(self, account: str, endpoint: str) -> list[SecretName]:
        rows = await self._all(
            "SELECT name, updated_at FROM endpoint_secrets WHERE account=$1 AND endpoint=$2 "
            'ORDER BY name COLLATE "C"',
            account,
            endpoint,
        )
        return [SecretName(r[0], r[1]) for r in rows]

    async def all_secrets(self) -> dict[tuple[str, str], dict[str, str]]:
        found: dict[tuple[str, str], dict[str, str]] = {}
        rows = await self._all("SELECT account, endpoint, name, value FROM endpoint_secrets")
        for account, endpoint, name, value in rows:
            context = secret_context(account, endpoint, name)
            found.setdefault((account, endpoint), {})[name] = self._open(value, context)
        return found
