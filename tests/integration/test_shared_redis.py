"""The Redis side of what gateways share, against the Redis on this machine: slots that hold an
account's cap across gateways and lapse when a gateway dies, budget stops and wake-ups heard by
every gateway. Each test uses its own key prefix."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from coldbrew.clock import SystemClock
from coldbrew.config import Settings
from coldbrew.errors import StorageUnavailable
from coldbrew.store.shared import Stop, make_shared
from coldbrew.store.shared.redis_shared import RedisLink, RedisSignals, RedisSlots, RedisStops

pytestmark = pytest.mark.anyio
REDIS_URL = "redis://127.0.0.1:6379/0"


async def _redis_or_skip() -> None:
    """Redis on loopback: CI has it (a failure there); a machine without it skips."""
    import redis.asyncio
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisConnectionError, OSError):
        if os.environ.get("CI"):
            raise
        pytest.skip("no Redis on 127.0.0.1:6379 (CI always has one)")
    finally:
        await client.aclose()


@pytest.fixture
async def prefix() -> object:
    await _redis_or_skip()
    name = f"cbtest-{uuid.uuid4().hex[:10]}"
    yield name
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(f"{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_two_gateways_share_an_accounts_cap(prefix: str) -> None:
    clock = SystemClock()
    one = RedisSlots(RedisLink(REDIS_URL, prefix), clock, "gw-1", lease_s=30.0)
    two = RedisSlots(RedisLink(REDIS_URL, prefix), clock, "gw-2", lease_s=30.0)
    mine = await one.take("acme", 4, 3)
    assert len(mine) == 3 and all(t.startswith("gw-1:") for t in mine)
    theirs = await two.take("acme", 4, 3)
    assert len(theirs) == 1  # 3 + 1 = the cap of 4
    assert await two.take("acme", 4) == []
    assert len(await two.take("beta", 4, 2)) == 2  # another account's cap is its own
    one.give_back("acme", mine[:2])
    await asyncio.sleep(0.05)  # giving back is sent in the background
    assert len(await two.take("acme", 4, 5)) == 2
    await one.close()
    await two.close()


async def test_concurrent_takes_on_two_gateways_grant_exactly_the_cap(prefix: str) -> None:
    clock = SystemClock()
    gateways = [
        RedisSlots(RedisLink(REDIS_URL, prefix), clock, f"gw-{n}", lease_s=30.0) for n in (1, 2)
    ]
    granted = await asyncio.gather(*(gateways[n % 2].take("acme", 4, 1 + n % 3) for n in range(40)))
    assert sum(len(g) for g in granted) == 4
    for gateway in gateways:
        await gateway.close()


async def test_a_dead_gateways_slots_lapse_and_a_live_ones_are_renewed(prefix: str) -> None:
    clock = SystemClock()
    dead = RedisSlots(RedisLink(REDIS_URL, prefix), clock, "gw-dead", lease_s=0.3)
    live = RedisSlots(RedisLink(REDIS_URL, prefix), clock, "gw-live", lease_s=0.3)
    assert len(await dead.take("acme", 2)) == 1
    assert len(await live.take("acme", 2)) == 1
    assert await live.take("acme", 2) == []
    for _ in range(6):  # 0.6 s: the dead gateway never renews, the live one does
        await asyncio.sleep(0.1)
        await live.renew()
    granted = await live.take("acme", 2)
    assert len(granted) == 1  # the dead one's slot lapsed; the live one's still counts
    assert await live.take("acme", 2) == []
    await live.close()
    await dead.link.redis.aclose()


async def test_a_stop_posted_by_one_gateway_reaches_another(prefix: str) -> None:
    one, two = RedisStops(RedisLink(REDIS_URL, prefix)), RedisStops(RedisLink(REDIS_URL, prefix))
    heard = asyncio.Event()
    two.on_change(heard.set)
    await one.start()
    await two.start()
    stop = Stop("acme", None, 5.0, 5.5, "2026-11")
    endpoint_stop = Stop("acme", "echo", 1.0, 1.25, "2026-11")
    await one.update([stop, endpoint_stop], [])
    await asyncio.wait_for(heard.wait(), 5)
    assert sorted(await two.read(), key=str) == sorted([stop, endpoint_stop], key=str)
    heard.clear()
    await one.update([], [stop])
    await asyncio.wait_for(heard.wait(), 5)
    assert await two.read() == [endpoint_stop]
    await one.close()
    await two.close()


async def test_every_gateway_hears_a_job_made_final(prefix: str) -> None:
    one = RedisSignals(RedisLink(REDIS_URL, prefix), SystemClock())
    two = RedisSignals(RedisLink(REDIS_URL, prefix), SystemClock())
    heard: list[str] = []
    got = asyncio.Event()
    two.on_final(lambda job_id: (heard.append(job_id), got.set()))
    await one.start()
    await two.start()
    one.publish("job-1")
    await asyncio.wait_for(got.wait(), 5)
    assert heard == ["job-1"]
    await one.close()
    await two.close()


async def test_a_gateway_whose_redis_does_not_answer_says_the_fix(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, redis_url="redis://127.0.0.1:1/0")
    shared = make_shared(settings, SystemClock(), "gw-1")
    with pytest.raises(StorageUnavailable) as caught:
        await shared.ping()
    assert "redis_url" in caught.value.message and "--redis-url" in (caught.value.hint or "")
