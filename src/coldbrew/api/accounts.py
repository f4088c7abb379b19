"""Account settings for fair sharing (`/v1/accounts/{name}`): an admin sets an account's
weight (its share of contested hardware slots) and its limit on queued jobs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api.auth import KeyCache, require_admin
from coldbrew.api.bodies import account_changes
from coldbrew.api.responses import json_response
from coldbrew.errors import Forbidden, NotFound
from coldbrew.platform import Platform
from coldbrew.store.models import Account


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
        changes = account_changes(await request.body())
        account = await platform.store.update_account(name, **changes)
        if account is None:
            raise NotFound(f"no account {name!r}", hint="POST /v1/keys creates one")
        platform.scheduler.queues.apply(account)
        return json_response(account_json(platform, account))

    return routes
