"""Webhooks as an outbox: the gateway that owed a retry dies, another claims the webhook once
the dead one's claim lapsed and carries on from the attempts recorded; a held one is left alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.unit.conftest import make_job

from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.integrations.webhooks import WebhookSender
from coldbrew.store.models import Job, JobStatus, WebhookState
from coldbrew.store.sqlite import SQLiteStore


class _Frozen:
    """The shared clock, except that sleeping never ends: a gateway stuck in its back-off."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.sleeping = asyncio.Event()

    def time(self) -> float:
        return self._clock.time()

    def monotonic(self) -> float:
        return self._clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        await asyncio.Event().wait()


def _scripted(sender: WebhookSender, answers: list[int], seen: list[tuple[str, int]]) -> None:
    """Replace the HTTP POST: each call takes the next status code."""

    async def post(url: str, secret: str, msg_id: str, body: bytes) -> tuple[int, str | None]:
        code = answers.pop(0)
        seen.append((sender.owner, code))
        return code, None if code < 300 else f"receiver answered HTTP {code}"

    sender._post = post  # type: ignore[method-assign]


async def _final_job(store: SQLiteStore, clock: FakeClock) -> Job:
    await store.create_account("a", "whsec_" + "A" * 32, clock.time())
    version, _ = await store.add_version("a", "e", "sha", "app", "E", {}, {}, clock.time())
    job = make_job(version, clock, webhook_url="https://receiver.test/hook")
    await store.create_job(job)
    await store.claim(version.id, "w1", clock.time())
    final = await store.finish(job.id, JobStatus.COMPLETED, clock.time(), output={"y": 1})
    assert final is not None and final.webhook_state is WebhookState.PENDING
    return final


def test_a_retry_survives_the_gateway_that_owed_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        store = SQLiteStore(tmp_path / "shared.db")
        settings = Settings(home=tmp_path, webhook_claim_s=30.0, webhook_timeout_s=5.0)
        seen: list[tuple[str, int]] = []
        dying = WebhookSender(store, clock, settings, owner="gw-a")
        frozen = _Frozen(clock)
        dying.clock = frozen
        other = WebhookSender(store, clock, settings, owner="gw-b")
        _scripted(dying, [500], seen)
        _scripted(other, [204], seen)
        job = await _final_job(store, clock)

        dying.submit(job)  # gw-a ended the job: it claims and tries at once
        await asyncio.wait_for(frozen.sleeping.wait(), 30)  # attempt 1 done, waiting to retry
        assert seen == [("gw-a", 500)]
        assert await other.poll() == 0  # gw-a holds it through its back-off
        await dying.close()  # gw-a dies owing attempt 2

        clock.advance(1.0 + 5.0 + 30.0 + 0.1)  # its back-off, a POST's time and the claim
        assert await other.poll() == 1
        await asyncio.gather(*other._tasks)
        assert seen == [("gw-a", 500), ("gw-b", 204)]
        attempts = await store.deliveries(job.id)
        assert [(d["attempt"], d["statusCode"]) for d in attempts] == [(1, 500), (2, 204)]
        done = await store.get_job(job.id)
        assert done is not None and done.webhook_state is WebhookState.DELIVERED
        assert await other.poll() == 0
        await other.close()
        await store.close()

    asyncio.run(scenario())


def test_one_gateway_delivers_each_webhook_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        store = SQLiteStore(tmp_path / "shared.db")
        settings = Settings(home=tmp_path)
        seen: list[tuple[str, int]] = []
        senders = [WebhookSender(store, clock, settings, owner=f"gw-{n}") for n in range(3)]
        for sender in senders:
            _scripted(sender, [204], seen)
        job = await _final_job(store, clock)
        senders[0].submit(job)
        polls: list[Any] = [s.poll() for s in senders[1:]]
        await asyncio.gather(*polls)
        await asyncio.gather(*(t for s in senders for t in list(s._tasks)))
        assert len(seen) == 1
        for sender in senders:
            await sender.close()
        await store.close()

    asyncio.run(scenario())


def test_a_gateway_that_stops_lets_its_webhooks_go_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        store = SQLiteStore(tmp_path / "shared.db")
        settings = Settings(home=tmp_path)
        seen: list[tuple[str, int]] = []
        stopping = WebhookSender(store, clock, settings, owner="gw-a")
        frozen = _Frozen(clock)
        stopping.clock = frozen
        other = WebhookSender(store, clock, settings, owner="gw-b")
        _scripted(stopping, [500], seen)
        _scripted(other, [204], seen)
        job = await _final_job(store, clock)
        stopping.submit(job)
        await asyncio.wait_for(frozen.sleeping.wait(), 30)
        assert await other.poll() == 0
        await stopping.close()  # SIGTERM, not kill -9: its claim ends now
        clock.advance(0.001)
        assert await other.poll() == 1
        await asyncio.gather(*other._tasks)
        assert seen == [("gw-a", 500), ("gw-b", 204)]
        await other.close()
        await store.close()

    asyncio.run(scenario())
