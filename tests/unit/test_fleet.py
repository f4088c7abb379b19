"""The fleet against its own interface: a launched worker becomes ready (log caps first), its
frames go to the callbacks it was given, and its exit is reported once it left the registry."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.unit.conftest import FakeBackend, make_job, settle

from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control.fleet import Fleet
from coldbrew.control.workers import InFlight, ManagedWorker, WorkerState
from coldbrew.spec import DeploymentSpec
from coldbrew.store.models import Version
from coldbrew.store.sqlite import SQLiteStore

VERSION = Version(7, 3, "a", "e", 1, "sha", "m", "C", {}, {}, 0.0)


def fleet(tmp_path: Path) -> tuple[Fleet, FakeBackend, list[Any]]:
    backend = FakeBackend()
    f = Fleet(SQLiteStore(":memory:"), backend, FakeClock(), Settings(home=tmp_path))
    events: list[Any] = []
    f.limits_frame = {"t": "limits"}
    f.wake = lambda: events.append("wake")
    f.on_log = lambda frame: events.append(("log", frame["line"]))
    f.on_chunk = lambda job_id, chunk: events.append(("chunk", chunk))

    async def on_done(worker: ManagedWorker, frame: dict[str, Any]) -> None:
        events.append(("done", frame["id"]))

    async def on_exit(worker: ManagedWorker, code: int) -> None:
        events.append(("exit", worker.id in f.workers, worker.state))

    f.on_done, f.on_exit = on_done, on_exit
    return f, backend, events


def test_a_launched_worker_gets_its_log_caps_and_becomes_idle(tmp_path: Path) -> None:
    async def scenario() -> None:
        f, backend, events = fleet(tmp_path)
        f.launch(VERSION, DeploymentSpec())
        assert f.worker_counts(3) == {"idle": 0, "running": 0, "starting": 1}
        await settle()
        (worker,) = f.workers.values()
        assert worker.state is WorkerState.IDLE and events == ["wake"]
        assert backend.handles[0].sent[0] == {"t": "limits"}  # before any job
        assert f.state_counts() == {("a", "e"): {"idle": 1}}
        assert f.free_worker(7, whole=True) is worker and f.ready(7)
        assert worker.cold_start_detail is not None and not worker.cold_start_detail["forked"]

    asyncio.run(scenario())


def test_frames_go_to_the_callbacks_only_for_the_workers_own_jobs(tmp_path: Path) -> None:
    async def scenario() -> None:
        f, backend, events = fleet(tmp_path)
        f.launch(VERSION, DeploymentSpec())
        await settle()
        (worker,) = f.workers.values()
        job = make_job(VERSION, FakeClock())
        worker.jobs[job.id] = InFlight(job, deadline=60.0)
        f.frames.assigned(worker.id, job.id)
        handle = backend.handles[0]
        for frame in (
            {"t": "log", "id": job.id, "ts": 1.0, "stream": "stdout", "line": "hi"},
            {"t": "chunk", "id": job.id, "output": 1},
            {"t": "chunk", "id": "someone-elses", "output": 2},  # dropped
            {"t": "done", "id": job.id, "output": {}},
        ):
            handle.frames.put_nowait(frame)
        await settle()
        assert events[1:] == [("log", "hi"), ("chunk", 1), ("done", job.id)]

    asyncio.run(scenario())


def test_a_stopped_worker_leaves_the_registry_before_its_exit_is_reported(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        f, backend, events = fleet(tmp_path)
        f.launch(VERSION, DeploymentSpec())
        await settle()
        (worker,) = f.workers.values()
        await f.stop_worker(worker, "idle past its keep-warm window")
        assert not f.drain(worker, "again")  # already draining
        await settle()
        assert backend.handles[0].sent[-1] == {"t": "stop"}
        assert events[-1] == ("exit", False, WorkerState.STOPPED) and f.workers == {}
        assert worker.stop_reason == "idle past its keep-warm window"

    asyncio.run(scenario())
