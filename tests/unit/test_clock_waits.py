"""Waits on the injected clock: with the fake clock a timeout or a timer fires when the test
moves time (`advance`), never by sleeping."""

from __future__ import annotations

import asyncio

import pytest

from coldbrew.clock import FakeClock, SystemClock


def test_a_wait_times_out_only_when_the_fake_clock_passes_its_deadline() -> None:
    async def scenario() -> None:
        clock, never = FakeClock(), asyncio.Event()
        waiting = asyncio.ensure_future(clock.wait_for(never.wait(), 5.0))
        await asyncio.sleep(0)
        clock.advance(4.9)
        await asyncio.sleep(0)
        assert not waiting.done()  # not yet: 0.1 s left
        clock.advance(0.1)
        with pytest.raises(TimeoutError):
            await waiting

    asyncio.run(scenario())


def test_a_wait_returns_the_result_and_leaves_no_timer_behind() -> None:
    async def scenario() -> None:
        clock, ready = FakeClock(), asyncio.Event()
        asyncio.get_running_loop().call_soon(ready.set)
        assert await clock.wait_for(ready.wait(), 5.0) is True
        clock.advance(10.0)  # the cancelled timer fires nothing

    asyncio.run(scenario())


def test_a_zero_timeout_is_due_at_once() -> None:
    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            await FakeClock().wait_for(asyncio.Event().wait(), 0)

    asyncio.run(scenario())


def test_timers_run_in_deadline_order_and_a_cancelled_one_never() -> None:
    clock, ran = FakeClock(), []
    clock.call_later(2.0, lambda: ran.append("b"))
    clock.call_later(1.0, lambda: ran.append("a"))
    clock.call_later(1.5, lambda: ran.append("x")).cancel()
    clock.advance(1.0)
    assert ran == ["a"]
    clock.advance(5.0)
    assert ran == ["a", "b"]


def test_the_system_clock_waits_on_the_event_loop() -> None:
    async def scenario() -> None:
        clock = SystemClock()
        with pytest.raises(TimeoutError):
            await clock.wait_for(asyncio.Event().wait(), 0.01)
        fired = asyncio.Event()
        clock.call_later(0.0, fired.set)
        await asyncio.wait_for(fired.wait(), 1.0)

    asyncio.run(scenario())
