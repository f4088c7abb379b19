"""State for stateful models: a small key-value store per account and endpoint.

A chatbot keeps a conversation's history between requests; a model counts what it has seen.
`coldbrew.state` inside `predict` reaches this store through the worker's own channel (the
worker has no network and no database of its own), and the gateway scopes every call to the
account and endpoint of the job it runs, so one tenant's code never names another's keys.

Values are JSON. Every write bumps the entry's `version`, so `set(..., if_version=v)` is a
compare-and-set and `update(key, fn)` in the SDK is atomic. `append` adds to a list (keeping
the last `max_items`) and `incr` adds to a number, each in one step. An entry may expire
(`ttl_s`). Each namespace has a byte quota: a write that would pass it is refused.

Embedded by default (`SQLiteState`, its own file beside the job database) and Redis when
`state_url` names one (`RedisState`), for gateways on several machines.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

from coldbrew.errors import Conflict, PayloadTooLarge

#: Longest key, in characters.
KEY_MAX_CHARS = 256


def check_size(key: str, size: int, limit: int) -> None:
    """Refuse a value of more than `limit` bytes of JSON (before anything is written)."""
    if size > limit:
        raise PayloadTooLarge(
            f"state key {key!r} would hold {size} bytes, more than {limit}",
            hint="keep large data elsewhere and store a reference, use append's max_items, "
            "or raise COLDBREW_STATE_VALUE_MAX_KB",
        )


def checked(key: str, current: Entry | None, if_version: int | None) -> None:
    """`Conflict` unless the live entry is at `if_version` (0: none); None checks nothing."""
    have = current.version if current else 0
    if if_version is not None and have != if_version:
        raise Conflict(
            f"state key {key!r} is at version {have}, not {if_version}",
            hint="read it again and retry the update",
        )


def appended(key: str, current: Entry | None, items: list[Any], max_items: int | None) -> list[Any]:
    """The list under `key` with `items` added, keeping the last `max_items`."""
    value = [] if current is None else current.value
    if not isinstance(value, list):
        raise Conflict(
            f"state key {key!r} holds a {type(value).__name__}, not a list",
            hint="append only to a key that holds a list (or none)",
        )
    value = value + list(items)
    if max_items is not None:
        value = value[-max_items:] if max_items > 0 else []
    return value


def incremented(key: str, current: Entry | None, by: float) -> Any:
    """The number under `key` (0 when missing) plus `by`."""
    value = 0 if current is None else current.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Conflict(
            f"state key {key!r} holds a {type(value).__name__}, not a number",
            hint="incr only a key that holds a number (or none)",
        )
    return value + by


@dataclass(frozen=True)
class Namespace:
    """Whose entries: one account's endpoint. Never taken from tenant code."""

    account: str
    endpoint: str


@dataclass(frozen=True)
class Entry:
    """One key's value and bookkeeping."""

    key: str
    value: Any
    version: int  # 1 on creation, +1 on every write
    size_bytes: int  # of the value's JSON
    updated_at: float  # wall clock, seconds
    expires_at: float | None  # wall clock; None: never


class StateStore(Protocol):
    """Per-namespace entries with versions, expiry and a byte quota."""

    @abstractmethod
    async def get(self, ns: Namespace, key: str, now: float) -> Entry | None:
        """The live entry, or None (missing or expired)."""

    @abstractmethod
    async def set(
        self,
        ns: Namespace,
        key: str,
        value: Any,
        now: float,
        *,
        ttl_s: float | None = None,
        if_version: int | None = None,
    ) -> Entry:
        """Write the value. With `if_version`, only when the live entry has that version
        (0: only when there is none), else `StateConflict`."""

    @abstractmethod
    async def append(
        self,
        ns: Namespace,
        key: str,
        items: list[Any],
        now: float,
        *,
        max_items: int | None = None,
        ttl_s: float | None = None,
    ) -> Entry:
        """Add `items` to the list under `key` (created empty when missing), keeping the last
        `max_items`; a value that is not a list is `StateConflict`."""

    @abstractmethod
    async def incr(
        self, ns: Namespace, key: str, by: float, now: float, *, ttl_s: float | None = None
    ) -> Entry:
        """Add `by` to the number under `key` (0 when missing)."""

    @abstractmethod
    async def delete(self, ns: Namespace, key: str, now: float) -> bool:
        """Remove the entry; False when there was no live one."""

    @abstractmethod
    async def entries(
        self, ns: Namespace, now: float, *, prefix: str = "", after: str = "", limit: int = 100
    ) -> list[Entry]:
        """Live entries whose key starts with `prefix`, in key order, after the key `after`."""

    @abstractmethod
    async def clear(self, ns: Namespace, now: float) -> int:
        """Remove every entry of the namespace; how many there were."""

    @abstractmethod
    async def purge_expired(self, now: float) -> int:
        """Drop expired entries (their bytes stop counting toward the quota)."""

    @abstractmethod
    async def close(self) -> None: ...
