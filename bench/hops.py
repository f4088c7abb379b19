"""Count the hops of one warm `runsync`: every call into a coldbrew function on the request's
path, out (from the ASGI app to the job frame leaving for the worker) and back (from the worker's
done frame to the response), as docs/architecture.md reports them.

    python bench/hops.py            # prints the counts and the calls in order

A hop is one call of a function defined under src/coldbrew (a coroutine counts once however
often it resumes); the store's own thread and the worker process are not traced. The scheduler
loop is slowed to one tick an hour so that only the request's own calls are seen.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from coldbrew.api.app import create_app
from coldbrew.cli.serve import deploy_local
from coldbrew.config import Settings
from coldbrew.platform import Platform

ROOT = Path(__file__).resolve().parents[1]
NOOP = ROOT / "tests" / "fixtures" / "tenants" / "noop"
SRC = str(Path(sys.modules["coldbrew"].__file__ or "").parent)


class Tracer:
    """Records the first entry of each coldbrew frame, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._seen: set[int] = set()
        self._kept: list[FrameType] = []  # alive, so that no later frame reuses an id

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not frame.f_code.co_filename.startswith(SRC):
            return
        if id(frame) in self._seen:  # a coroutine resuming
            return
        self._seen.add(id(frame))
        self._kept.append(frame)
        self.calls.append(frame.f_code.co_qualname)


async def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), hardware_slots={"cpu": 2}, tick_interval_s=3600)
        platform = Platform.create(settings)
        key = await platform.start()
        app = create_app(platform, manage_lifecycle=False)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://cb.test", headers=headers
        ) as http:
            await deploy_local(platform, NOOP)
            for _ in range(3):  # a warm worker, caches filled
                answer = await http.post("/v2/noop/runsync", json={"input": {"i": 1}})
                assert answer.json()["status"] == "COMPLETED", answer.text
            await platform.scheduler.write_back()
            tracer = Tracer()
            sys.setprofile(tracer)
            answer = await http.post("/v2/noop/runsync", json={"input": {"i": 2}})
            sys.setprofile(None)
            assert answer.json()["status"] == "COMPLETED", answer.text
        await platform.stop()
    sends = [i for i, name in enumerate(tracer.calls) if name.endswith(".send")]
    if not sends:
        print("\n".join(tracer.calls))
        raise SystemExit("no send to a worker traced")
    sent = max(i for i in sends if i < len(tracer.calls) // 2 + len(tracer.calls) // 4)
    out, back = tracer.calls[: sent + 1], tracer.calls[sent + 1 :]
    print(f"out: {len(out)} calls\n  " + "\n  ".join(out))
    print(f"back: {len(back)} calls\n  " + "\n  ".join(back))
    print(f"hops: {len(out)} out, {len(back)} back")


if __name__ == "__main__":
    asyncio.run(main())
