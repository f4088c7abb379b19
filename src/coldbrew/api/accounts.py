"""Account settings for fair sharing (`/v1/accounts/{name}`): an admin sets an account's
weight (its share of contested hardware slots) and its limit on queued jobs."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api.auth import KeyCache, require_admin
from coldbrew.api.invoke import json_response
from coldbrew.errors import Forbidden, InvalidRequest, NotFound
from coldbrew.platform import Platform
from coldbrew.store.models import Account

MAX_WEIGHT = 1_000.0


def account_json(platform: Platform, account: Account) -> dict[str, Any]:
    """An account's fair-share settings and queue as the API shows them (no webhook secret)."""
    queues = platform.scheduler.queues
    return {
        "name": account.name,
        "weight": account.weight,
        "maxQueuedJobs": queues.limit(account.name),
        "maxQueuedJobsIsDefault": account.max_queued_jobs is None,
        "queuedJobs": queues.queued(account.name),
    }


def _changes(body: bytes) -> dict[str, Any]:
    """The settings a PATCH body asks for, checked: weight > 0, max_queued_jobs ≥ 1 or null."""
    try:
        parsed = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"the body is not JSON: {exc}", hint='send e.g. {"weight": 2}'
        ) from None
    if not isinstance(parsed, dict) or not parsed or set(parsed) - {"weight", "max_queued_jobs"}:
        raise InvalidRequest(
            "send an object with 'weight' and/or 'max_queued_jobs'",
            hint='{"weight": 2} or {"max_queued_jobs": 100000} (null: the server default)',
        )
    changes: dict[str, Any] = {}
    if "weight" in parsed:
        weight = parsed["weight"]
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidRequest("'weight' must be a number", hint='{"weight": 2}')
        if not 0 < weight <= MAX_WEIGHT:
            raise InvalidRequest(
                f"'weight' must be above 0 and at most {MAX_WEIGHT:g}",
                hint="1 is the default; 2 gets twice the slots of a weight-1 account",
            )
        changes["weight"] = float(weight)
    if "max_queued_jobs" in parsed:
        limit = parsed["max_queued_jobs"]
        if limit is None:
            changes["clear_max_queued_jobs"] = True
        elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidRequest(
                "'max_queued_jobs' must be a whole number of at least 1, or null",
                hint="null goes back to the server's COLDBREW_ACCOUNT_MAX_QUEUED_JOBS",
            )
        else:
            changes["max_queued_jobs"] = limit
    return changes


def router(platform: Platform, keys: KeyCache) -> APIRouter:
    """The /v1/accounts routes: anyone reads their own account; only an admin changes one."""
    routes = APIRouter(prefix="/v1/accounts", tags=["manage"])

    @routes.get("/{name}", summary="An account's fair-share weight, queue limit and queue")
    async def get_account(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        if name != principal.account and not principal.admin:
            raise Forbidden(
                "only an admin key can read another account's settings",
                hint=f"read your own: GET /v1/accounts/{principal.account}",
            )
        account = await platform.store.get_account(name)
        if account is None:
            raise NotFound(f"no account {name!r}", hint="POST /v1/keys creates one")
        return json_response(account_json(platform, account))

    @routes.patch("/{name}", summary="Set an account's weight or queue limit (admin)")
    async def update_account(name: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        require_admin(principal)
        changes = _changes(await request.body())
        account = await platform.store.update_account(name, **changes)
        if account is None:
            raise NotFound(f"no account {name!r}", hint="POST /v1/keys creates one")
        platform.scheduler.queues.apply(account)
        return json_response(account_json(platform, account))

    return routes
