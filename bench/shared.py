"""What sharing costs and how fast it travels, against the Redis on this machine:

    python bench/shared.py [redis://127.0.0.1:6379/0]

- an account slot taken and given back per job (the cap across gateways), Redis vs in-process;
- a budget stop posted by one gateway until another gateway's admission refuses (402);
- a job made final on one gateway until a waiter on another is woken.

Two gateways are two connections in this process, so the numbers are Redis and the event loop,
not a network; each run uses its own key prefix and removes its keys.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid

import redis.asyncio

from coldbrew.clock import SystemClock
from coldbrew.store.shared import LocalSlots, Stop
from coldbrew.store.shared.redis_shared import RedisLink, RedisSignals, RedisSlots, RedisStops

ROUNDS = 2000
SAMPLES = 200


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {statistics.median(values) * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms"


async def _slots(url: str, prefix: str) -> None:
    clock = SystemClock()
    for name, slots in (
        ("in-process", LocalSlots()),
        ("redis", RedisSlots(RedisLink(url, prefix), clock, "bench", lease_s=15.0)),
    ):
        started = time.perf_counter()
        for _ in range(ROUNDS):
            tokens = await slots.take("acme", 4)
            slots.give_back("acme", tokens)
        per_job_us = (time.perf_counter() - started) / ROUNDS * 1e6
        print(f"slot take + give back, {name}: {per_job_us:.1f} us per job")
        await slots.close()


async def _stops(url: str, prefix: str) -> None:
    one = RedisStops(RedisLink(url, prefix))
    two = RedisStops(RedisLink(url, prefix))
    heard = asyncio.Event()
    two.on_change(heard.set)
    await one.start()
    await two.start()
    delays = []
    for n in range(SAMPLES):
        heard.clear()
        stop = Stop("acme", None, 1.0, 1.0 + n, "2026-11")
        started = time.perf_counter()
        await one.update([stop], [])
        await heard.wait()
        await two.read()  # what the other gateway does when told: read the board
        delays.append(time.perf_counter() - started)
    print(f"budget stop posted -> read by the other gateway: {_ms(delays)}")
    await one.close()
    await two.close()


async def _wakeups(url: str, prefix: str) -> None:
    clock = SystemClock()
    one = RedisSignals(RedisLink(url, prefix), clock)
    two = RedisSignals(RedisLink(url, prefix), clock)
    waiting: dict[str, asyncio.Future[None]] = {}
    two.on_final(lambda job_id: waiting.pop(job_id).set_result(None) if job_id in waiting else None)
    await one.start()
    await two.start()
    delays = []
    loop = asyncio.get_running_loop()
    for _ in range(SAMPLES):
        job_id = str(uuid.uuid4())
        future = waiting[job_id] = loop.create_future()
        started = time.perf_counter()
        one.publish(job_id)
        await future
        delays.append(time.perf_counter() - started)
    print(f"job final on one gateway -> waiter on the other woken: {_ms(delays)}")
    await one.close()
    await two.close()


async def main(url: str) -> None:
    prefix = f"cbbench-{uuid.uuid4().hex[:8]}"
    try:
        await _slots(url, prefix)
        await _stops(url, prefix)
        await _wakeups(url, prefix)
    finally:
        client = redis.asyncio.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"))
