"""Routes for API keys (`/v1/keys`) and endpoint secrets (`/v1/endpoints/{name}/secrets`).

Everything is scoped to the caller's account. A non-admin key lists, creates and revokes keys of
its own account only; an admin key can manage every account's keys. No key, admin or not, can
make a key that outlives itself. Secrets have no cross-account form at all, not even for admins,
and no route ever returns a secret's value: responses carry names and times only.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api.auth import KeyCache, require_admin
from coldbrew.api.manage import parse_since
from coldbrew.api.responses import json_response
from coldbrew.control.secrets import validate_changes
from coldbrew.errors import Conflict, InvalidRequest, NotFound
from coldbrew.names import NAME_PATTERN
from coldbrew.platform import Platform
from coldbrew.store.credentials import ApiKey, SecretName
from coldbrew.store.models import Principal
from coldbrew.wire import iso

MAX_KEY_LIFETIME_S = 10 * 365 * 86_400


def key_json(key: ApiKey, now: float) -> dict[str, Any]:
    """What the API shows about a key: never the key, only its id and first characters."""
    return {
        "id": key.id,
        "prefix": f"{key.prefix}…" if key.prefix else None,
        "account": key.account,
        "admin": key.admin,
        "createdAt": iso(key.created_at),
        "expiresAt": iso(key.expires_at) if key.expires_at is not None else None,
        "revokedAt": iso(key.revoked_at) if key.revoked_at is not None else None,
        "lastUsedAt": iso(key.last_used_at) if key.last_used_at is not None else None,
        "active": key.active(now),
    }


def secrets_json(endpoint: str, names: list[SecretName]) -> dict[str, Any]:
    """What the API shows about an endpoint's secrets: names and times, never a value."""
    return {
        "endpoint": endpoint,
        "secrets": [{"name": s.name, "updatedAt": iso(s.updated_at)} for s in names],
    }


def router(platform: Platform, keys: KeyCache) -> APIRouter:
    """The /v1 key and secret routes."""
    routes = APIRouter(prefix="/v1", tags=["manage"])
    store, clock = platform.store, platform.clock

    @routes.get("/keys", summary="API keys: yours, or every account's for an admin key")
    async def list_keys(request: Request, account: str | None = None) -> Response:
        principal = await keys.resolve(request)
        if account is not None and account != principal.account:
            require_admin(principal)
        scope = account if account is not None or principal.admin else principal.account
        now = clock.time()
        return json_response({"keys": [key_json(k, now) for k in await store.list_keys(scope)]})

    @routes.post("/keys", summary="Create an API key (for another account or admin: admin only)")
    async def create_key(request: Request) -> Response:
        principal = await keys.resolve(request)
        body = _json_object(await request.body())
        account, admin, expires_at = _key_request(body, principal, clock.time())
        key, record = await platform.create_key(account, admin, expires_at)
        return json_response({"key": key, **key_json(record, clock.time())}, 201)

    @routes.delete("/keys/{key_id}", summary="Revoke an API key (within seconds, everywhere)")
    async def revoke_key(key_id: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        scope = None if principal.admin else principal.account
        now = clock.time()
        target = next((k for k in await store.list_keys(scope) if k.id == key_id), None)
        if target is None:
            raise NotFound(f"no key {key_id!r}", hint="see the ids with `coldbrew keys list`")
        if target.admin:
            require_admin(principal)
        if (
            target.admin
            and target.active(now)
            and not _outlived(target, await store.list_keys(None), now)
        ):
            raise Conflict(
                f"{key_id} is the last active admin key (the others expire before it); "
                "revoking it would lock every admin out, now or when they expire",
                hint="create another admin key first (`coldbrew keys create --admin`)",
            )
        revoked = await store.revoke_key(key_id, scope, now)
        assert revoked is not None
        keys.forget(key_id)
        return json_response(key_json(revoked, now))

    @routes.get("/endpoints/{name}/secrets", summary="An endpoint's secret names (no values)")
    async def list_secrets(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        _check_endpoint_name(name)
        return json_response(
            secrets_json(name, await platform.secrets.names(principal.account, name))
        )

    @routes.patch(
        "/endpoints/{name}/secrets",
        summary="Set secrets ({NAME: value}) or remove them ({NAME: null}); new workers get them",
    )
    async def change_secrets(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        _check_endpoint_name(name)
        changes = validate_changes(_json_object(await request.body()))
        names = await platform.secrets.change(principal.account, name, changes)
        # templates are keyed by their environment: start the rotated endpoint's template now,
        # so its next workers are forked with the new values rather than spawned
        await platform.scheduler.refresh_endpoints()
        return json_response(secrets_json(name, names))

    return routes


def _outlived(target: ApiKey, keys: list[ApiKey], now: float) -> bool:
    """Whether another active admin key lasts at least as long as `target` (an expiring admin
    key does not stand in for one that never expires)."""
    forever = float("inf")
    until = target.expires_at if target.expires_at is not None else forever
    return any(
        k.admin
        and k.active(now)
        and k.id != target.id
        and (k.expires_at if k.expires_at is not None else forever) >= until
        for k in keys
    )


def _key_request(
    body: dict[str, Any], principal: Principal, now: float
) -> tuple[str, bool, float | None]:
    """(account, admin, expires_at) of a key request, checked against what the caller may do."""
    account = body.get("account", principal.account)
    if not isinstance(account, str) or not NAME_PATTERN.match(account):
        raise InvalidRequest(
            "'account' must be a name of lower-case letters, digits, '-' or '_'",
            hint="leave it out for a key of your own account",
        )
    admin = body.get("admin", False)
    if not isinstance(admin, bool):
        raise InvalidRequest(
            "'admin' must be true or false (a JSON boolean)", hint='send {"admin": true}'
        )
    if admin or account != principal.account:
        require_admin(principal)
    expires = body.get("expires")
    expires_at = None
    if expires is not None:
        if not isinstance(expires, str):
            raise InvalidRequest("'expires' must be a duration such as 30d", hint="use m/h/d/w")
        lifetime_s = parse_since(expires)
        if not 0 < lifetime_s <= MAX_KEY_LIFETIME_S:
            raise InvalidRequest(
                f"'expires' must be more than 0 and at most {MAX_KEY_LIFETIME_S // 86_400}d",
                hint="leave it out for a key that does not expire",
            )
        expires_at = now + lifetime_s
    limit = principal.expires_at  # admins too: a temporary admin key must not mint a lasting one
    if limit is not None and (expires_at is None or expires_at > limit):
        raise InvalidRequest(
            f"a key cannot outlive the key that creates it (yours expires at {iso(limit)})",
            hint="give a shorter 'expires', or use a key that does not expire "
            "($COLDBREW_HOME/admin.key)",
        )
    return account, admin, expires_at


def _check_endpoint_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise InvalidRequest(
            f"{name[:64]!r} is not an endpoint name",
            hint="lower-case letters, digits, '-' or '_'",
        )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not JSON", hint="send a JSON object") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("the body must be a JSON object", hint="send {...}, not a list")
    return parsed
