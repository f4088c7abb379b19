"""A trigger whose target is a pipeline, through the gateway on real worker processes: an S3
event (sent twice, as S3 may) starts one run, and the run's final output reaches the sink."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from coldbrew.api.app import create_app
from coldbrew.cli.serve import deploy_local
from coldbrew.integrations.triggers.base import SINKS, Kind, KindConfig, SinkRecord, register_sink
from coldbrew.platform import Platform
from tests.conftest import FIXTURES
from tests.integration.conftest import make_settings, wait_for

pytestmark = pytest.mark.anyio
TWICE = {
    "name": "twice",
    "steps": [
        {"name": "first", "endpoint": "toy", "input": {"value": "$input.key"}},
        {"name": "second", "endpoint": "toy", "input": {"value": "$.value"}},
    ],
}
RECORDS: list[SinkRecord] = []


class MemoryConfig(KindConfig):
    """No settings."""


class MemorySink:
    """Keeps what the runner writes, for the test to read."""

    async def open(self) -> None: ...

    async def write(self, records: Sequence[SinkRecord]) -> None:
        RECORDS.extend(records)

    async def close(self) -> None: ...


@pytest.fixture(autouse=True)
def memory_sink() -> Iterator[None]:
    RECORDS.clear()
    register_sink(Kind("memory-test", MemoryConfig, lambda c, ctx: MemorySink(), "test sink"))
    yield
    SINKS.pop("memory-test")


@asynccontextmanager
async def gateway(home: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    platform = Platform.create(make_settings(home))
    key = await platform.start()
    app = create_app(platform, manage_lifecycle=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://coldbrew.test",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as http:
        try:
            await deploy_local(platform, FIXTURES / "toys")
            yield http, app
        finally:
            await app.state.triggers.stop()
            await app.state.pipelines.stop()
            await platform.stop()


def _event(key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "in"}, "object": {"key": key, "sequencer": "01"}},
            }
        ]
    }


async def test_an_event_runs_the_pipeline_once_and_its_output_reaches_the_sink(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path) as (http, _app):
        assert (await http.post("/v1/pipelines", json=TWICE)).status_code == 201
        created = await http.post(
            "/v1/triggers",
            json={
                "name": "uploads",
                "source": {"kind": "s3"},
                "pipeline": "twice",
                "sink": {"kind": "memory-test"},
            },
        )
        assert created.status_code == 201, created.text
        trigger = created.json()
        assert trigger["pipeline"] == "twice"
        for _ in range(2):  # S3 delivers at least once
            sent = await http.post(trigger["eventsUrl"], json=_event("cat.jpg"))
            assert sent.status_code == 200, sent.text
        await wait_for(lambda: _stats(http, trigger["id"]), lambda s: s["completed"] == 1)
        (record,) = RECORDS
        assert (record.status, record.output["value"]) == ("COMPLETED", "cat.jpg")
        run = (await http.get(f"/v2/twice/status/{record.job_id}")).json()
        assert run["status"] == "COMPLETED" and len(run["stages"]) == 2, run
        stats = await _stats(http, trigger["id"])
        assert (stats["received"], stats["completed"], stats["inFlight"]) == (1, 1, 0)


async def _stats(http: httpx.AsyncClient, trigger_id: str) -> Any:
    return (await http.get(f"/v1/triggers/{trigger_id}")).json()["stats"]
