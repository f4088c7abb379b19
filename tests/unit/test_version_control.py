"""VersionControl over a real in-memory store: admission's choice, the live set, rollbacks and
the canary check with its log line and event (time is a FakeClock)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest

from coldbrew.clock import FakeClock
from coldbrew.control.versions import VersionControl
from coldbrew.errors import Conflict, InvalidRequest, NotFound
from coldbrew.store.models import CanaryRule, Job, JobStatus, Version
from coldbrew.store.sqlite import SQLiteStore

SPEC: dict[str, Any] = {"hardware": "cpu"}
RULE = CanaryRule(window_s=60.0, max_error_rate=0.05, min_jobs=10, webhook_url="http://h/x")


async def setup(n: int = 2) -> tuple[SQLiteStore, VersionControl, list[Version], list[Any]]:
    store = SQLiteStore(":memory:")
    await store.create_account("acme", "whsec", 1.0)
    versions = [
        (await store.add_version("acme", "echo", f"sha-{i}", "app", "E", SPEC, {}, 10.0 + i))[0]
        for i in range(1, n + 1)
    ]
    events: list[Any] = []
    control = VersionControl(store, FakeClock(1000.0), lambda *a: events.append(a))
    await control.refresh()
    return store, control, versions, events


async def endpoint(store: SQLiteStore) -> Any:
    return await store.get_endpoint("acme", "echo")


def job(version: Version, n: int, status: JobStatus, finished_at: float) -> Job:
    return Job(
        id=f"j{n}",
        account="acme",
        endpoint_id=version.endpoint_id,
        endpoint="echo",
        version_id=version.id,
        status=status,
        input={},
        created_at=finished_at - 0.05,
        expires_at=1e9,
        timeout_s=60.0,
        max_attempts=1,
        finished_at=finished_at,
    )


def test_choose_follows_the_split_pins_and_names_missing_versions() -> None:
    async def go() -> None:
        store, control, (v1, v2), _ = await setup()
        await control.set_traffic(await endpoint(store), {1: 90, 2: 10}, None)
        ep = await endpoint(store)
        picks = Counter([await control.choose(ep, f"job-{n}", None) for n in range(3000)])
        assert abs(picks[v2.id] / 3000 - 0.10) < 0.02
        assert await control.choose(ep, "x", 2) == v2.id
        assert await control.live() == {v1.id, v2.id}
        with pytest.raises(NotFound, match="no version 5"):
            await control.choose(ep, "x", 5)
        v3, _ = await store.add_version("acme", "echo", "sha-3", "app", "E", SPEC, {}, 50.0)
        assert await control.choose(await endpoint(store), "x", 3) == v3.id  # not refreshed yet
        await store.close()

    asyncio.run(go())


def test_rollback_defaults_to_the_previous_version_and_refuses_nonsense() -> None:
    async def go() -> None:
        store, control, (_v1, v2), _ = await setup()
        done = await control.rollback(await endpoint(store), None)
        assert (done.from_version.number, done.to_version.number) == (2, 1)
        with pytest.raises(InvalidRequest, match="no earlier one"):
            await control.rollback(await endpoint(store), None)
        with pytest.raises(Conflict, match="already at version 1"):
            await control.rollback(await endpoint(store), 1)
        assert (await store.get_version(v2.id)).rollback_reason == (
            "rolled back to version 1 by request"
        )
        await store.close()

    asyncio.run(go())


def test_a_failing_canary_is_taken_back_once_with_a_log_line_and_an_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go() -> None:
        store, control, (v1, v2), events = await setup()
        await control.set_traffic(await endpoint(store), {1: 80, 2: 20}, RULE)
        for n in range(10):
            control.outcomes.record(job(v1, n, JobStatus.COMPLETED, 990.0))
            control.outcomes.record(
                job(v2, 100 + n, JobStatus.FAILED if n < 2 else JobStatus.COMPLETED, 990.0)
            )
        with caplog.at_level(logging.WARNING, "coldbrew.versions"):
            done = await control.check_canaries()
            assert await control.check_canaries() == []  # already at 0%: nothing more
        assert [(d.version_id, d.reason[:21]) for d in done] == [(v2.id, "error rate 0.200 (2 o")]
        assert "canary rolled back: acme/echo version 2 taken to 0%" in caplog.text
        ((account, url, _msg_id, payload),) = events
        assert (account, url) == ("acme", "http://h/x")
        assert payload["type"] == "version.rolled_back" and payload["version"] == 2
        assert await store.get_split(v1.endpoint_id) is None
        assert (await store.get_version(v2.id)).rollback_reason == done[0].reason
        assert await control.live() == set()
        await store.close()

    asyncio.run(go())
