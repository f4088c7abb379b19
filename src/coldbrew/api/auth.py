"""API-key authentication: `Authorization: Bearer <key>` (a bare key is accepted too)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import Request

from coldbrew.control.routing import CALLER_AUTHORIZATION
from coldbrew.errors import Forbidden, Unauthorized
from coldbrew.platform import Platform, hash_key
from coldbrew.store.models import Principal

log = logging.getLogger("coldbrew.auth")
_PRUNE_AT = 4096  # cached keys before the stale ones are dropped


class KeyCache:
    """Resolved keys, so a warm request costs no database lookup.

    An entry is trusted for `key_cache_ttl_s` (5 s by default), then looked up again; a revoke
    through this gateway also drops its entries at once. The TTL is what bounds revocation
    everywhere else (another gateway on the same database, a key revoked in the database by
    hand), and each lookup records the key's last use, so `last used` costs one write per key
    per TTL rather than one per request. Expiry is checked on every request against the clock.
    """

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._ttl_s = platform.settings.key_cache_ttl_s
        self._known: dict[str, tuple[Principal, float]] = {}  # key -> (principal, trusted until)

    async def resolve(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header[:7].lower() == "bearer " else header.strip()
        if not key:
            raise Unauthorized("no API key", hint="send the header 'Authorization: Bearer <key>'")
        CALLER_AUTHORIZATION.set(header)  # a hop to the endpoint's owner carries it
        clock = self._platform.clock
        entry = self._known.get(key)
        if entry is None or entry[1] <= clock.monotonic():
            principal = await self._lookup(key)
            self._known[key] = (principal, clock.monotonic() + self._ttl_s)
        else:
            principal = entry[0]
        if principal.expires_at is not None and principal.expires_at <= clock.time():
            self._known.pop(key, None)
            when = datetime.fromtimestamp(principal.expires_at, UTC).isoformat(timespec="seconds")
            raise Unauthorized(
                f"the API key {principal.key_id} expired at {when}",
                hint="create a new key with `coldbrew keys create`",
            )
        return principal

    async def _lookup(self, key: str) -> Principal:
        key_hash = hash_key(key)
        principal = await self._platform.store.principal(key_hash)
        if principal is None:
            self._known.pop(key, None)
            raise Unauthorized(
                "unknown API key (or a revoked one)",
                hint="use a key from `coldbrew keys create` or $COLDBREW_HOME/admin.key",
            )
        try:
            await self._platform.store.touch_key(key_hash, self._platform.clock.time())
        except Exception:  # best effort: a storage fault must not refuse a valid key
            log.debug("could not record the last use of key %s", principal.key_id, exc_info=True)
        if len(self._known) >= _PRUNE_AT:
            self._prune()
        return principal

    def _prune(self) -> None:
        """Drop entries past their TTL, so keys seen once do not stay in memory forever."""
        now = self._platform.clock.monotonic()
        for key in [k for k, (_, until) in self._known.items() if until <= now]:
            del self._known[key]

    def forget(self, key_id: str) -> None:
        """Drop the cached entries of the key with this id (it was just revoked)."""
        for key in [k for k, (p, _) in self._known.items() if p.key_id == key_id]:
            del self._known[key]


def require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise Forbidden("this needs an admin key", hint="ask an admin to run the command")
