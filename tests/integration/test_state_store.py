"""The state store's contract, on SQLite (embedded default) and on Redis (several gateways)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from coldbrew.errors import Conflict, PayloadTooLarge
from coldbrew.store.sqlite_state import SQLiteState
from coldbrew.store.state import Namespace, StateStore

REDIS_URL = "redis://127.0.0.1:6379/0"
QUOTA = 2000
VALUE_MAX = 1600
ACME = Namespace("acme", "chat")


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip("no Redis on 127.0.0.1:6379 (CI always has one)")


class Sync:
    """The store's coroutines called as plain functions, each on one long-lived loop."""

    def __init__(self, store: StateStore, loop: asyncio.AbstractEventLoop) -> None:
        self._store, self._loop = store, loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        return lambda *a, **k: self._loop.run_until_complete(method(*a, **k))


@pytest.fixture(params=["sqlite", "redis"])
def state(request: pytest.FixtureRequest) -> Iterator[Sync]:
    loop = asyncio.new_event_loop()
    store: StateStore
    if request.param == "sqlite":
        store = SQLiteState(":memory:", QUOTA, VALUE_MAX)
    else:
        _redis_or_skip()

        prefix = f"cbtest:{uuid.uuid4().hex}:"
        store = loop.run_until_complete(_make_redis(prefix))
    yield Sync(store, loop)
    if request.param == "redis":
        loop.run_until_complete(_drop_prefix(prefix))
    loop.run_until_complete(store.close())
    loop.close()


async def _make_redis(prefix: str) -> StateStore:
    from coldbrew.store.redis_state import RedisState

    return RedisState(REDIS_URL, QUOTA, VALUE_MAX, prefix=prefix)


async def _drop_prefix(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def test_set_get_versions_and_compare_and_set(state: Sync) -> None:
    assert state.get(ACME, "k", 1.0) is None
    first = state.set(ACME, "k", {"a": 1}, 1.0)
    assert (first.value, first.version) == ({"a": 1}, 1)
    second = state.set(ACME, "k", [1, 2], 2.0, if_version=1)
    assert (state.get(ACME, "k", 3.0).value, second.version) == ([1, 2], 2)
    with pytest.raises(Conflict, match="version 2, not 1"):
        state.set(ACME, "k", "lost", 3.0, if_version=1)
    with pytest.raises(Conflict):
        state.set(ACME, "k", "lost", 3.0, if_version=0)  # 0: only when there is none
    assert state.set(ACME, "fresh", 5, 3.0, if_version=0).version == 1
    assert state.get(ACME, "k", 4.0).value == [1, 2]


def test_namespaces_never_mix(state: Sync) -> None:
    state.set(ACME, "k", "acme's", 1.0)
    other = Namespace("beta", "chat")
    assert state.get(other, "k", 1.0) is None
    assert state.entries(other, 1.0) == []
    assert state.delete(other, "k", 1.0) is False
    assert state.clear(other, 1.0) == 0
    assert state.get(ACME, "k", 1.0).value == "acme's"
    assert state.get(Namespace("acme", "other"), "k", 1.0) is None


def test_append_keeps_the_last_items(state: Sync) -> None:
    state.append(ACME, "h", [{"role": "user"}], 1.0)
    entry = state.append(ACME, "h", [2, 3, 4], 2.0, max_items=3)
    assert entry.value == [2, 3, 4]
    assert entry.version == 2
    state.set(ACME, "n", 7, 2.0)
    with pytest.raises(Conflict, match="not a list"):
        state.append(ACME, "n", [1], 3.0)


def test_incr_counts(state: Sync) -> None:
    assert state.incr(ACME, "c", 1, 1.0).value == 1
    assert state.incr(ACME, "c", 2.5, 1.0).value == 3.5
    state.set(ACME, "s", "text", 1.0)
    with pytest.raises(Conflict, match="not a number"):
        state.incr(ACME, "s", 1, 1.0)


def test_ttl_expires_and_append_keeps_it(state: Sync) -> None:
    state.set(ACME, "t", "soon gone", 100.0, ttl_s=10)
    state.append(ACME, "h", [1], 100.0, ttl_s=10)
    state.append(ACME, "h", [2], 105.0)  # no ttl given: keeps the expiry it had
    assert state.get(ACME, "t", 109.0).value == "soon gone"
    assert state.get(ACME, "t", 110.0) is None
    assert state.get(ACME, "h", 111.0) is None
    assert [e.key for e in state.entries(ACME, 111.0)] == []
    assert state.set(ACME, "t", "again", 111.0, if_version=0).version == 1  # expired: none


def test_quota_refuses_and_frees(state: Sync) -> None:
    state.set(ACME, "big", "x" * 1500, 1.0)
    with pytest.raises(PayloadTooLarge, match="quota"):
        state.set(ACME, "more", "y" * 600, 1.0)
    assert state.get(ACME, "more", 1.0) is None  # nothing changed
    state.set(ACME, "big", "x" * 1000, 1.0)  # replacing frees the old bytes first
    state.set(ACME, "more", "y" * 600, 1.0)
    assert state.delete(ACME, "big", 1.0) is True
    state.set(ACME, "third", "z" * 1200, 1.0)
    state.set(ACME, "short", "w" * 150, 1.0, ttl_s=5)
    state.purge_expired(10.0)
    state.set(ACME, "after", "v" * 150, 10.0)  # the expired entry's bytes no longer count


def test_a_value_past_the_limit_changes_nothing(state: Sync) -> None:
    state.append(ACME, "h", ["x" * 700], 1.0)
    state.append(ACME, "h", ["y" * 700], 1.0)
    with pytest.raises(PayloadTooLarge, match="more than 1600"):
        state.append(ACME, "h", ["z" * 700], 1.0)
    kept = state.get(ACME, "h", 1.0)
    assert (len(kept.value), kept.version) == (2, 2)
    assert state.append(ACME, "h", ["z" * 700], 1.0, max_items=2).value[-1] == "z" * 700


def test_entries_list_in_key_order_with_prefix_and_paging(state: Sync) -> None:
    for key in ["session:b", "session:a", "other", "session:c"]:
        state.set(ACME, key, key, 1.0)
    page = state.entries(ACME, 1.0, prefix="session:", limit=2)
    assert [e.key for e in page] == ["session:a", "session:b"]
    rest = state.entries(ACME, 1.0, prefix="session:", after="session:b", limit=2)
    assert [e.key for e in rest] == ["session:c"]
    assert state.clear(ACME, 1.0) == 4
    assert state.entries(ACME, 1.0) == []
    state.set(ACME, "k", "x" * 1500, 2.0)
    state.set(ACME, "j", "x" * 400, 2.0)  # clearing gave the quota back


def test_concurrent_appends_all_land(state: Sync) -> None:
    store = state._store

    async def many() -> None:
        await asyncio.gather(*(store.append(ACME, "h", [i], 1.0) for i in range(40)))

    state._loop.run_until_complete(many())
    assert sorted(state.get(ACME, "h", 1.0).value) == list(range(40))
