"""The template's spare child: a cold start takes the pre-forked spare, a new one replaces it,
and a spare that dies untaken or a burst with no spare still forks workers."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from coldbrew.backends.base import WorkerHandle, WorkerLaunch
from coldbrew.backends.local import LocalBackend
from coldbrew.backends.template import TemplateBackend, _Template
from coldbrew.runtime.sandbox.host import Sandbox
from coldbrew.runtime.sandbox.policy import SandboxMode
from tests.conftest import FIXTURES
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.anyio


def _children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _launch(home: Path, worker_id: str) -> WorkerLaunch:
    return WorkerLaunch(
        worker_id=worker_id,
        artifact_dir=FIXTURES / "toys",
        module="app",
        class_name="Toy",
        concurrency=1,
        hardware="cpu",
        log_path=home / "logs" / f"{worker_id}.log",
        snapshot=True,
        account="acct",
        env={"MY_TOKEN": "s3cret"},
    )


@pytest.fixture
async def template(tmp_path: Path) -> AsyncIterator[tuple[TemplateBackend, _Template]]:
    backend = TemplateBackend(10.0)
    try:
        await backend.prepare([_launch(tmp_path, "template")])

        async def ready() -> list[_Template]:
            return [t for t in backend._templates.values() if t.usable]

        (loaded,) = await wait_for(ready, bool)
        yield backend, loaded
    finally:
        await backend.close()


async def _spare(template: _Template, besides: set[int] = frozenset()) -> int:
    """The template's one child that is not a worker: its spare."""

    async def spares() -> set[int]:
        return _children(template.process.pid) - besides

    (spare,) = await wait_for(spares, lambda found: len(found) == 1)
    return int(spare)


async def _serve_one(handle: WorkerHandle) -> int:
    ready = await handle.recv()
    assert ready is not None and ready["t"] == "ready" and "fork_s" in ready, ready
    await handle.send({"t": "job", "id": "j1", "input": {"value": 1}})
    done = await handle.recv()
    assert done is not None and done["output"]["value"] == 1, done
    pid: int = done["output"]["pid"]
    return pid


async def _stop(handle: WorkerHandle) -> int:
    await handle.send({"t": "stop"})
    return await handle.wait()


async def test_a_cold_start_takes_the_spare_and_a_new_one_replaces_it(
    tmp_path: Path, template: tuple[TemplateBackend, _Template]
) -> None:
    backend, loaded = template
    spare = await _spare(loaded)
    handle = await backend.start(_launch(tmp_path, "w-1"))
    assert await _serve_one(handle) == spare  # the spare became the worker
    replacement = await _spare(loaded, besides={spare})
    assert replacement != spare
    assert await _stop(handle) == 0


async def test_a_spare_killed_before_use_does_not_stop_cold_starts(
    tmp_path: Path, template: tuple[TemplateBackend, _Template]
) -> None:
    backend, loaded = template
    spare = await _spare(loaded)
    os.kill(spare, signal.SIGKILL)

    async def gone() -> set[int]:
        return _children(loaded.process.pid)

    await wait_for(gone, lambda children: spare not in children)
    handles = [await backend.start(_launch(tmp_path, f"w-{i}")) for i in range(2)]  # no spare
    pids = [await _serve_one(handle) for handle in handles]
    assert spare not in pids and len(set(pids)) == 2
    assert [await _stop(handle) for handle in handles] == [0, 0]


async def test_a_stopped_template_takes_its_spare_with_it(
    template: tuple[TemplateBackend, _Template],
) -> None:
    backend, loaded = template
    spare = await _spare(loaded)
    await backend.close()
    assert loaded.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(spare, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root (CI runs as root)")
async def test_the_spare_becomes_a_worker_already_in_its_own_cgroups(tmp_path: Path) -> None:
    home = tmp_path / "home"
    artifact = home / "artifacts" / "acct" / "toys"
    artifact.parent.mkdir(parents=True)
    shutil.copytree(FIXTURES / "toys", artifact)
    sandbox = Sandbox(SandboxMode.STANDARD, home)
    backend = TemplateBackend(10.0, LocalBackend(sandbox=sandbox))
    launch = replace(_launch(home, "template"), artifact_dir=artifact, memory_mb=512)
    try:
        await backend.prepare([launch])

        async def spare_boxed() -> list[_Template]:
            return [t for t in backend._templates.values() if t.usable and t.spare is not None]

        (loaded,) = await wait_for(spare_boxed, bool)
        assert loaded.spare is not None
        spare = loaded.spare.pid
        group = Path(f"/sys/fs/cgroup/memory/coldbrew-{sandbox.tag}") / loaded.spare.spec.name

        async def moved_in() -> str:
            return (group / "cgroup.procs").read_text() if group.is_dir() else ""

        await wait_for(moved_in, lambda procs: str(spare) in procs.split())
        handle = await backend.start(replace(launch, worker_id="w-1"))
        assert await _serve_one(handle) == spare
        assert (group / "memory.limit_in_bytes").read_text().strip() == str(512 << 20)
        assert await _stop(handle) == 0
        assert not group.exists()  # removed with the worker
    finally:
        await backend.close()
        sandbox.close()
