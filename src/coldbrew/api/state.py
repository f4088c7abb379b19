"""`/v1/endpoints/{name}/state`: what a model keeps with `coldbrew.state`, seen and deleted by
its account (never another's: the caller's account names the namespace)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api.auth import KeyCache
from coldbrew.api.responses import json_response
from coldbrew.control.jobs import JobService
from coldbrew.control.state import LIST_MAX, entry_json
from coldbrew.errors import InvalidRequest, NotFound
from coldbrew.platform import Platform
from coldbrew.store.state import Namespace


def router(platform: Platform, keys: KeyCache, jobs: JobService) -> APIRouter:
    routes = APIRouter(prefix="/v1/endpoints/{name}/state", tags=["state"])
    state = platform.state

    async def namespace(request: Request, name: str) -> Namespace:
        principal = await keys.resolve(request)
        await jobs.endpoint(principal, name)  # 404 for an endpoint the caller does not have
        return Namespace(principal.account, name)

    @routes.get("", summary="List a model's state entries (key order, paged with `after`)")
    async def list_state(
        name: str,
        request: Request,
        prefix: str = "",
        after: str = "",
        limit: int = 100,
        values: bool = False,
    ) -> Response:
        if not 1 <= limit <= LIST_MAX:
            raise InvalidRequest(f"limit must be from 1 to {LIST_MAX}, not {limit}")
        ns = await namespace(request, name)
        entries = await state.entries(ns, prefix, after, limit, values)
        following = entries[-1]["key"] if len(entries) == limit else None
        return json_response({"endpoint": name, "entries": entries, "next": following})

    @routes.get("/{key:path}", summary="One state entry with its value")
    async def get_state(name: str, key: str, request: Request) -> Response:
        entry = await state.get(await namespace(request, name), key)
        if entry is None:
            raise NotFound(
                f"no state key {key!r} in endpoint {name!r}",
                hint=f"`coldbrew state list {name}` shows the keys it has",
            )
        return json_response(entry_json(entry))

    @routes.delete("/{key:path}", summary="Delete one state entry")
    async def delete_state(name: str, key: str, request: Request) -> Response:
        if not await state.delete(await namespace(request, name), key):
            raise NotFound(f"no state key {key!r} in endpoint {name!r}")
        return json_response({"deleted": key})

    @routes.delete("", summary="Delete every state entry of the endpoint")
    async def clear_state(name: str, request: Request) -> Response:
        cleared = await state.clear(await namespace(request, name))
        return json_response({"endpoint": name, "cleared": cleared})

    return routes
