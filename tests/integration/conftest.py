"""An in-process platform with real worker processes and a real SQLite file, driven over ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from coldbrew.api.app import create_app
from coldbrew.cli.serve import deploy_local
from coldbrew.config import Settings
from coldbrew.platform import Platform


@dataclass
class Running:
    platform: Platform
    http: httpx.AsyncClient
    key: str

    async def runsync(self, endpoint: str, payload: dict[str, Any], **extra: Any) -> Any:
        response = await self.http.post(f"/v2/{endpoint}/runsync", json={"input": payload, **extra})
        return response.json()

    async def run(self, endpoint: str, payload: dict[str, Any], **extra: Any) -> str:
        response = await self.http.post(f"/v2/{endpoint}/run", json={"input": payload, **extra})
        assert response.status_code == 200, response.text
        job_id: str = response.json()["id"]
        return job_id

    async def job(self, job_id: str) -> Any:
        return (await self.http.get(f"/v1/jobs/{job_id}")).json()

    async def wait_job(self, job_id: str, timeout_s: float = 30.0) -> Any:
        final = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
        return await wait_for(lambda: self.job(job_id), lambda j: j["status"] in final, timeout_s)

    def live_workers(self, endpoint: str | None = None) -> int:
        return sum(
            1
            for w in self.platform.scheduler.workers.values()
            if endpoint is None or w.version.endpoint == endpoint
        )


async def wait_for(
    fetch: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout_s: float = 30.0
) -> Any:
    """Poll `fetch` until `done(value)`; a bound, not a timing assertion."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await fetch()
        if done(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached in {timeout_s} s; last value: {value}")
        await asyncio.sleep(0.05)


def make_settings(home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "hardware_slots": {"cpu": 4},
        "tick_interval_s": 0.02,
        "setup_backoff_s": 0.2,
        "webhook_backoff_s": 0.05,
        "worker_stop_grace_s": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running(home: Path, *deploy: Path, **overrides: Any) -> AsyncIterator[Running]:
    platform = Platform.create(make_settings(home, **overrides))
    key = await platform.start()
    assert key is not None
    app = create_app(platform, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://coldbrew.test",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as http:
        try:
            for directory in deploy:
                await deploy_local(platform, directory)
            yield Running(platform, http, key)
        finally:
            await platform.stop()
