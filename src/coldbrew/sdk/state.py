"""`coldbrew.state`: a key-value store a model reaches from `predict`, kept between requests.

```python
import coldbrew

class Chat:
    def predict(self, session_id: str, message: str) -> dict:
        history = coldbrew.state.append(f"chat:{session_id}", {"user": message},
                                        max_items=50, ttl_s=86400)
        ...
```

Entries belong to the account and endpoint the worker serves (the gateway decides which: a
model cannot name another's), survive restarts of workers and of the server, and are listed
and deleted with `coldbrew state …` or `/v1/endpoints/{name}/state`. Values are JSON.

Inside a worker each call is one round trip over the worker's channel to the gateway (the
worker has no network); outside one (a model's own unit tests) the calls go to a dictionary in
this process, with the same rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from coldbrew.errors import ColdbrewError, Conflict, InvalidRequest, PayloadTooLarge

#: Sends one state request frame and returns the reply frame (set by the worker at start).
Transport = Callable[[dict[str, Any]], dict[str, Any]]
_transport: Transport | None = None
_ERRORS: dict[str, type[ColdbrewError]] = {
    "conflict": Conflict,
    "payload_too_large": PayloadTooLarge,
    "invalid_request": InvalidRequest,
}


def connect(transport: Transport | None) -> None:
    """Route every call through `transport` (the worker does this once; None: in-process)."""
    global _transport
    _transport = transport
    _local.clear()


def get(key: str, default: Any = None) -> Any:
    """The value under `key`, or `default` when there is none (or it expired)."""
    entry = _call({"op": "get", "key": key})["entry"]
    return default if entry is None else entry["value"]


def entry(key: str) -> dict[str, Any] | None:
    """`{"value", "version", "expiresAt"}` for `key`, or None: the version is for `set(...,
    if_version=)`."""
    found: dict[str, Any] | None = _call({"op": "get", "key": key})["entry"]
    return found


def set(key: str, value: Any, *, ttl_s: float | None = None, if_version: int | None = None) -> int:
    """Store `value` (JSON); returns the entry's new version. With `if_version` the write lands
    only if the entry is still at that version (0: only if there is none), else `Conflict`."""
    reply = _call(
        {"op": "set", "key": key, "value": value, "ttl_s": ttl_s, "if_version": if_version}
    )
    return int(reply["entry"]["version"])


def delete(key: str) -> bool:
    """Remove `key`; False when there was nothing to remove."""
    return bool(_call({"op": "delete", "key": key})["deleted"])


def append(
    key: str, *items: Any, max_items: int | None = None, ttl_s: float | None = None
) -> list[Any]:
    """Add `items` to the list under `key` in one atomic step, keeping the last `max_items`;
    returns the list. A `ttl_s` restarts the entry's expiry; without one it keeps its own."""
    reply = _call(
        {"op": "append", "key": key, "items": list(items), "max_items": max_items, "ttl_s": ttl_s}
    )
    value: list[Any] = reply["entry"]["value"]
    return value


def incr(key: str, by: float = 1, *, ttl_s: float | None = None) -> Any:
    """Add `by` to the number under `key` (0 when missing) in one atomic step; the new number."""
    return _call({"op": "incr", "key": key, "by": by, "ttl_s": ttl_s})["entry"]["value"]


def update(
    key: str,
    change: Callable[[Any], Any],
    *,
    default: Any = None,
    ttl_s: float | None = None,
    attempts: int = 20,
) -> Any:
    """Replace the value with `change(value)` atomically (compare-and-set, retried when another
    worker wrote in between); returns the new value."""
    for _ in range(attempts):
        found = entry(key)
        version = 0 if found is None else int(found["version"])
        value = change(default if found is None else found["value"])
        try:
            set(key, value, ttl_s=ttl_s, if_version=version)
        except Conflict:
            continue
        return value
    raise Conflict(
        f"state key {key!r} kept changing: {attempts} attempts to update it lost the race",
        hint="fewer writers per key, or append/incr, which need no retries",
    )


def keys(prefix: str = "", limit: int = 100) -> list[str]:
    """Keys starting with `prefix`, in order (at most `limit`)."""
    found: list[str] = _call({"op": "keys", "prefix": prefix, "limit": limit})["keys"]
    return found


def _call(request: dict[str, Any]) -> dict[str, Any]:
    reply = _transport(request) if _transport is not None else _local_call(request)
    error = reply.get("error")
    if error is not None:
        kind = _ERRORS.get(str(error.get("type")), ColdbrewError)
        raise kind(str(error.get("message", "state call failed")), hint=str(error.get("hint", "")))
    return reply


# -- outside a worker: one dictionary in this process ---------------------------------------

_local: dict[str, dict[str, Any]] = {}


def _local_call(request: dict[str, Any]) -> dict[str, Any]:
    """The same operations on `_local`, for running a model's code without a gateway."""
    now = time.time()
    for key in [
        k for k, e in _local.items() if e["expiresAt"] is not None and e["expiresAt"] <= now
    ]:
        del _local[key]
    op, key = request["op"], request.get("key", "")
    current = _local.get(key)
    if op == "get":
        return {"entry": current}
    if op == "delete":
        return {"deleted": _local.pop(key, None) is not None}
    if op == "keys":
        return {
            "keys": sorted(k for k in _local if k.startswith(request["prefix"]))[: request["limit"]]
        }
    version = 0 if current is None else current["version"]
    if op == "set":
        if request.get("if_version") is not None and request["if_version"] != version:
            return {
                "error": {
                    "type": "conflict",
                    "message": f"state key {key!r} is at version {version}",
                }
            }
        value = request["value"]
    elif op == "append":
        value = (current["value"] if current else []) + request["items"]
        if request.get("max_items") is not None:
            value = value[-request["max_items"] :] if request["max_items"] > 0 else []
    else:
        value = (current["value"] if current else 0) + request["by"]
    ttl_s = request.get("ttl_s")
    expires_at = (
        now + ttl_s
        if ttl_s is not None
        else (current["expiresAt"] if current and op != "set" else None)
    )
    _local[key] = {"value": value, "version": version + 1, "expiresAt": expires_at}
    return {"entry": _local[key]}
