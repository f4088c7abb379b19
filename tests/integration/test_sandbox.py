"""Real workers under the sandbox, checked from inside: what tenant code can read, reach, use
and leave behind."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from coldbrew.backends.base import WorkerLaunch
from coldbrew.backends.local import LocalBackend
from coldbrew.backends.template import TemplateBackend
from coldbrew.runtime.sandbox.cgroups import CONTROLLERS
from coldbrew.runtime.sandbox.host import Sandbox
from coldbrew.runtime.sandbox.policy import SandboxMode
from tests.conftest import FIXTURES
from tests.integration.conftest import running, wait_for

pytestmark = pytest.mark.anyio
SANDBOXED = FIXTURES / "sandboxed"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not ROOT and not os.environ.get("CI"), reason="uids and cgroups need root (CI runs as root)"
)


def _artifacts(home: Path) -> list[Path]:
    return sorted(p for p in (home / "artifacts").glob("*/*") if p.is_dir())


async def _probe(cb: object, **payload: object) -> dict[str, object]:
    result = await cb.runsync("probe", payload)  # type: ignore[attr-defined]
    assert result["status"] == "COMPLETED", result
    output: dict[str, object] = result["output"]
    return output


@pytest.mark.parametrize("fast_start", [True, False], ids=["forked", "spawned"])
async def test_tenant_code_sees_no_server_secrets_files_or_network(
    tmp_path: Path, fast_start: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_ONLY_SECRET", "do-not-leak")
    home = tmp_path / "home"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        async with running(home, SANDBOXED, FIXTURES / "toys", fast_start=fast_start) as cb:
            (other,) = [p for p in _artifacts(home) if "probe" not in (p / "app.py").read_text()]
            paths = [
                str(home / "admin.key"),
                str(home / "coldbrew.db"),
                str(home),
                str(other / "app.py"),
                f"/proc/{os.getpid()}/environ",
                "/etc/hostname",
            ]
            out = await _probe(cb, paths=paths, port=port)
            redis = await _probe(cb, port=6379)
    assert "SERVER_ONLY_SECRET" not in out["env"]
    read = out["read"]
    assert isinstance(read, dict)
    for path in paths[:-1]:
        assert read[path].startswith("denied"), (path, read)
    assert read["/etc/hostname"] == "allowed"  # the system stays readable
    assert out["scratch"] == "allowed"
    assert str(out["io_uring"]).startswith("denied")  # seccomp: no sockets made by io_uring
    assert str(out["connect"]).startswith("denied")
    assert str(redis["connect"]).startswith("denied")
    if ROOT:
        assert out["uid"] != 0


@needs_root
async def test_memory_limit_fails_the_job_with_a_clear_error(tmp_path: Path) -> None:
    async with running(tmp_path, SANDBOXED) as cb:
        result = await cb.runsync("probe", {"allocate_mb": 1024})
        assert result["status"] == "FAILED", result
        assert "exceeded its memory limit of 256 MB" in result["error"]
        assert (await cb.runsync("probe", {}))["status"] == "COMPLETED"  # a new worker serves


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


@needs_root
@pytest.mark.parametrize("fast_start", [True, False], ids=["forked", "spawned"])
async def test_a_detached_grandchild_dies_with_its_worker(tmp_path: Path, fast_start: bool) -> None:
    async with running(tmp_path, SANDBOXED, fast_start=fast_start) as cb:
        out = await _probe(cb, grandchild=True)
        pid = int(out["grandchild"])  # type: ignore[call-overload]
        assert _alive(pid)
        crashed = await cb.runsync("probe", {"exit": True})
        assert crashed["status"] == "FAILED"

        async def alive() -> bool:
            return _alive(pid)

        await wait_for(alive, lambda up: not up, timeout_s=10)


async def test_secrets_reach_spawned_and_forked_workers(tmp_path: Path) -> None:
    """`WorkerLaunch.env` is set in the worker's environment whichever way it started."""
    home = tmp_path / "home"
    artifact = home / "artifacts" / "acct" / "abc"
    artifact.mkdir(parents=True)
    (artifact / "app.py").write_text((SANDBOXED / "app.py").read_text())
    sandbox = Sandbox(SandboxMode.STANDARD, home)
    backend = TemplateBackend(10.0, LocalBackend(sandbox=sandbox))
    base = {
        "artifact_dir": artifact,
        "module": "app",
        "class_name": "Probe",
        "concurrency": 1,
        "hardware": "cpu",
        "log_path": home / "logs" / "w.log",
        "snapshot": True,
        "account": "acct",
        "env": {"MY_TOKEN": "s3cret"},
    }
    try:
        await backend.prepare([WorkerLaunch(worker_id="template", **base)])  # type: ignore[arg-type]

        async def ready() -> bool:
            return all(t.usable for t in backend._templates.values())

        await wait_for(ready, bool)
        for worker_id in ("forked-1", "spawned-1"):
            launch = WorkerLaunch(worker_id=worker_id, **base)  # type: ignore[arg-type]
            handle = await (
                backend.start(launch) if worker_id.startswith("f") else backend.spawn.start(launch)
            )
            ready_frame = await handle.recv()
            assert ready_frame is not None and ready_frame["t"] == "ready"
            assert ("fork_s" in ready_frame) is worker_id.startswith("f")
            await handle.send({"t": "job", "id": "j1", "input": {}})
            done = await handle.recv()
            assert done is not None and "MY_TOKEN" in done["output"]["env"], done
            await handle.send({"t": "stop"})
            await asyncio.wait_for(handle.wait(), 10)
    finally:
        await backend.close()


@needs_root
async def test_a_stopped_server_leaves_no_cgroups_or_box_root(tmp_path: Path) -> None:
    async with running(tmp_path / "home", SANDBOXED, fast_start=True) as cb:
        assert (await cb.runsync("probe", {}))["status"] == "COMPLETED"  # a template and a fork
        sandbox = cb.platform.sandbox
        assert sandbox is not None
        tops = [Path("/sys/fs/cgroup") / c / f"coldbrew-{sandbox.tag}" for c in CONTROLLERS]
        assert all(top.is_dir() for top in tops) and sandbox.root.is_dir()
    assert [top for top in tops if top.exists()] == []
    assert not sandbox.root.exists()
