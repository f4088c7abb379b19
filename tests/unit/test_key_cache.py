"""The gateway's key cache, on a fake clock: a revoked key stops within the TTL (at once when
revoked here), an expired key stops at its expiry, and the last use is recorded once per TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import Request

from coldbrew.api.auth import KeyCache
from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.errors import Unauthorized
from coldbrew.platform import Platform, hash_key


def request(key: str) -> Request:
    return Request({"type": "http", "headers": [(b"authorization", f"Bearer {key}".encode())]})


class Node:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        settings = Settings(home=tmp_path, key_cache_ttl_s=5.0, hardware_slots={"cpu": 1})
        self.platform = Platform.create(settings, clock=self.clock)
        self.cache = KeyCache(self.platform)

    def key(self, expires_in_s: float | None = None) -> tuple[str, str]:
        expires_at = None if expires_in_s is None else self.clock.time() + expires_in_s
        key, record = asyncio.run(self.platform.create_key("acme", False, expires_at))
        return key, record.id

    def resolve(self, key: str) -> str:
        return asyncio.run(self.cache.resolve(request(key))).account

    def revoke_elsewhere(self, key_id: str) -> None:
        asyncio.run(self.platform.store.revoke_key(key_id, None, self.clock.time()))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = Node(tmp_path)
    yield made
    asyncio.run(made.platform.store.close())


def test_a_key_revoked_elsewhere_stops_when_its_cache_entry_ends(node: Node) -> None:
    key, key_id = node.key()
    assert node.resolve(key) == "acme"
    node.revoke_elsewhere(key_id)
    node.clock.advance(4.9)
    assert node.resolve(key) == "acme"  # still trusted from the cache
    node.clock.advance(0.2)
    with pytest.raises(Unauthorized, match="unknown API key"):
        node.resolve(key)


def test_a_key_revoked_here_stops_at_once(node: Node) -> None:
    key, key_id = node.key()
    node.resolve(key)
    node.revoke_elsewhere(key_id)
    node.cache.forget(key_id)
    with pytest.raises(Unauthorized):
        node.resolve(key)


def test_an_expiring_key_stops_at_its_expiry_even_while_cached(node: Node) -> None:
    key, key_id = node.key(expires_in_s=3.0)
    node.resolve(key)
    node.clock.advance(2.9)
    node.resolve(key)
    node.clock.advance(0.2)
    with pytest.raises(Unauthorized, match=f"{key_id} expired at"):
        node.resolve(key)


def test_the_last_use_is_written_once_per_ttl(node: Node) -> None:
    key, _ = node.key()
    touched: list[float] = []
    real_touch = node.platform.store.touch_key

    async def touch(key_hash: str, now: float) -> None:
        assert key_hash == hash_key(key)
        touched.append(now)
        await real_touch(key_hash, now)

    node.platform.store.touch_key = touch  # type: ignore[method-assign]
    for _ in range(100):
        node.resolve(key)
        node.clock.advance(0.1)  # 10 s in all: two TTLs
    assert len(touched) == 2
    (listed,) = asyncio.run(node.platform.store.list_keys("acme"))
    assert listed.last_used_at == touched[-1]


def test_a_failing_last_use_write_does_not_refuse_the_key(node: Node) -> None:
    key, _ = node.key()

    async def broken(key_hash: str, now: float) -> None:
        raise OSError("disk full")

    node.platform.store.touch_key = broken  # type: ignore[method-assign]
    assert node.resolve(key) == "acme"
