"""API-key authentication: `Authorization: Bearer <key>` (a bare key is accepted too)."""

from __future__ import annotations

from fastapi import Request

from coldbrew.errors import Forbidden, Unauthorized
from coldbrew.platform import Platform
from coldbrew.store.models import Principal


class KeyCache:
    """Resolved keys, so a warm request costs no database lookup (keys are never edited)."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._known: dict[str, Principal] = {}

    async def resolve(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header[:7].lower() == "bearer " else header.strip()
        if not key:
            raise Unauthorized("no API key", hint="send the header 'Authorization: Bearer <key>'")
        principal = self._known.get(key)
        if principal is None:
            principal = await self._platform.principal(key)
            if principal is None:
                raise Unauthorized(
                    "unknown API key",
                    hint="use a key from `coldbrew keys create` or $COLDBREW_HOME/admin.key",
                )
            self._known[key] = principal
        return principal


def require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise Forbidden("this needs an admin key", hint="ask an admin to run the command")
