"""The gateway's side of `coldbrew.state`: a worker's state requests, checked and scoped.

A worker runs tenant code, so every request is untrusted: the operation and its arguments are
checked here (key length, value size, numbers that are numbers), and the namespace is the
account and endpoint of the worker that sent it — never a field of the request. The same
service answers the management API (`/v1/endpoints/{name}/state`), where the caller's account
names the namespace.
"""

from __future__ import annotations

from typing import Any

import orjson

from coldbrew.clock import Clock
from coldbrew.errors import ColdbrewError, InvalidRequest
from coldbrew.store.state import KEY_MAX_CHARS, Entry, Namespace, StateStore, check_size

_OPS = ("get", "set", "append", "incr", "delete", "keys")
_TTL_MAX_S = 10 * 365 * 86400.0
LIST_MAX = 1000


def entry_json(entry: Entry, with_value: bool = True) -> dict[str, Any]:
    """An entry as the API and the worker see it."""
    body: dict[str, Any] = {
        "key": entry.key,
        "version": entry.version,
        "sizeBytes": entry.size_bytes,
        "updatedAt": entry.updated_at,
        "expiresAt": entry.expires_at,
    }
    if with_value:
        body["value"] = entry.value
    return body


class StateService:
    """Runs state requests against the store, within a value size limit."""

    def __init__(self, store: StateStore, clock: Clock, value_max_bytes: int) -> None:
        self.store = store
        self.clock = clock
        self.value_max_bytes = value_max_bytes

    async def call(self, ns: Namespace, request: dict[str, Any]) -> dict[str, Any]:
        """A worker's request → the reply fields (`entry`, `deleted`, `keys`, or `error`)."""
        try:
            return await self._run(ns, request)
        except ColdbrewError as exc:
            return {"error": exc.to_json()["error"]}

    async def _run(self, ns: Namespace, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op not in _OPS:
            raise InvalidRequest(f"unknown state operation {op!r}", hint=f"one of {_OPS}")
        now = self.clock.time()
        if op == "keys":
            prefix = _text(request.get("prefix", ""), "prefix", allow_empty=True)
            limit = _count(request.get("limit", 100), "limit", 1, LIST_MAX)
            found = await self.store.entries(ns, now, prefix=prefix, limit=limit)
            return {"keys": [e.key for e in found]}
        key = _text(request.get("key"), "key")
        ttl_s = _ttl(request.get("ttl_s"))
        if op == "get":
            found_one = await self.store.get(ns, key, now)
            return {"entry": None if found_one is None else entry_json(found_one)}
        if op == "delete":
            return {"deleted": await self.store.delete(ns, key, now)}
        if op == "set":
            value = request.get("value")
            self._check_size(value, key)
            version = request.get("if_version")
            if version is not None:
                version = _count(version, "if_version", 0, 2**62)
            entry = await self.store.set(ns, key, value, now, ttl_s=ttl_s, if_version=version)
        elif op == "append":
            items = request.get("items")
            if not isinstance(items, list):
                raise InvalidRequest("append needs a list of items")
            self._check_size(items, key)
            max_items = request.get("max_items")
            if max_items is not None:
                max_items = _count(max_items, "max_items", 0, 1_000_000)
            entry = await self.store.append(ns, key, items, now, max_items=max_items, ttl_s=ttl_s)
        else:
            by = request.get("by", 1)
            if isinstance(by, bool) or not isinstance(by, int | float):
                raise InvalidRequest("incr needs a number to add (by)")
            entry = await self.store.incr(ns, key, by, now, ttl_s=ttl_s)
        return {"entry": entry_json(entry)}

    def _check_size(self, value: Any, key: str) -> None:
        try:
            size = len(orjson.dumps(value))
        except TypeError as exc:
            raise InvalidRequest(f"state values must be JSON: {exc}") from None
        check_size(key, size, self.value_max_bytes)  # before a store round trip

    # the management API

    async def entries(
        self, ns: Namespace, prefix: str, after: str, limit: int, with_values: bool
    ) -> list[dict[str, Any]]:
        found = await self.store.entries(
            ns, self.clock.time(), prefix=prefix, after=after, limit=limit
        )
        return [entry_json(e, with_values) for e in found]

    async def get(self, ns: Namespace, key: str) -> Entry | None:
        return await self.store.get(ns, key, self.clock.time())

    async def delete(self, ns: Namespace, key: str) -> bool:
        return await self.store.delete(ns, key, self.clock.time())

    async def clear(self, ns: Namespace) -> int:
        return await self.store.clear(ns, self.clock.time())

    async def purge_expired(self) -> int:
        return await self.store.purge_expired(self.clock.time())


def _text(value: Any, name: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise InvalidRequest(f"the state {name} must be a non-empty string")
    if len(value) > KEY_MAX_CHARS or any(ord(c) < 32 for c in value):
        raise InvalidRequest(
            f"the state {name} must be at most {KEY_MAX_CHARS} printable characters"
        )
    return value


def _count(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}")
    return value


def _ttl(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= _TTL_MAX_S:
        raise InvalidRequest(f"ttl_s must be a number of seconds above 0, at most {_TTL_MAX_S:g}")
    return float(value)
