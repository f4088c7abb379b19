"""The store's credentials concern: API keys (expiry, revocation) and per-endpoint secrets.

Keys are kept as the sha256 of the key; the key itself is shown once, at creation. A key's
public id is the start of that hash, so it names the key in `coldbrew keys list|revoke` without
revealing it. Endpoint secrets are sealed at rest by the implementation (`coldbrew.crypto`); the
methods here take and return plaintext. Kept apart from the catalog because it holds the
only secrets and is read on every authenticated request (through the gateway's key cache):
its rules (hashing, sealing, scoping) are reviewed on their own.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from coldbrew.store.models import Principal

#: Hex digits of the key's sha256 that make its public id (64 bits: unique in practice).
KEY_ID_CHARS = 16


def key_id(key_hash: str) -> str:
    """The public id of the key whose sha256 is `key_hash`."""
    return key_hash[:KEY_ID_CHARS]


@dataclass
class ApiKey:
    """What `coldbrew keys list` shows about a key: everything but the key."""

    id: str
    account: str
    admin: bool
    prefix: str  # the key's first characters, to recognise it ('' for keys made before 0.2)
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None  # to within the gateway's key cache TTL

    def active(self, now: float) -> bool:
        """Not revoked and not expired at `now`."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass
class SecretName:
    """One secret of an endpoint, without its value."""

    name: str
    updated_at: float


class CredentialStore(Protocol):
    """API keys and endpoint secrets, always scoped to an account."""

    @abstractmethod
    async def add_key(
        self,
        key_hash: str,
        account: str,
        admin: bool,
        now: float,
        *,
        expires_at: float | None = None,
        prefix: str = "",
    ) -> ApiKey: ...

    @abstractmethod
    async def principal(self, key_hash: str) -> Principal | None:
        """Who holds this key, unless it was revoked (an expired key is returned: the caller
        compares `expires_at` with its clock and says so)."""

    @abstractmethod
    async def list_keys(self, account: str | None) -> list[ApiKey]:
        """Keys of `account` (every account's for None), oldest first, revoked ones included."""

    @abstractmethod
    async def revoke_key(self, key_id: str, account: str | None, now: float) -> ApiKey | None:
        """Revoke the key with this id if it belongs to `account` (any account for None);
        None when there is no such key there. Revoking a revoked key changes nothing."""

    @abstractmethod
    async def touch_key(self, key_hash: str, now: float) -> None:
        """Record that the key was used at `now`."""

    @abstractmethod
    async def set_secrets(
        self, account: str, endpoint: str, changes: Mapping[str, str | None], now: float
    ) -> None:
        """Set each named secret of the endpoint to its value, or remove it where the value is
        None, in one transaction."""

    @abstractmethod
    async def secret_names(self, account: str, endpoint: str) -> list[SecretName]:
        """The names of the endpoint's secrets, sorted; never their values."""

    @abstractmethod
    async def all_secrets(self) -> dict[tuple[str, str], dict[str, str]]:
        """Every endpoint's secrets by (account, endpoint name), opened: what workers get."""
