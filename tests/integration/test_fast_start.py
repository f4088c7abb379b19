"""Workers forked from per-version templates, and the fallbacks when forking cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import running

pytestmark = pytest.mark.anyio
TOYS = FIXTURES / "toys"


async def _template_ready(cb: object) -> None:
    from tests.integration.conftest import wait_for

    backend = cb.platform.scheduler.backend  # type: ignore[attr-defined]

    async def usable() -> bool:
        templates = list(backend._templates.values())
        return bool(templates) and all(t.usable for t in templates)

    await wait_for(usable, bool)


@pytest.mark.parametrize("fast_start", [True, False], ids=["forked", "spawned"])
async def test_cold_starts_say_how_the_worker_started(tmp_path: Path, fast_start: bool) -> None:
    async with running(tmp_path, TOYS, fast_start=fast_start) as cb:
        if fast_start:
            await _template_ready(cb)
        result = await cb.runsync("toy", {"value": 1})
        assert result["status"] == "COMPLETED" and result["coldStart"] is True
        detail = result["coldStartDetail"]
        assert detail["forked"] is fast_start
        assert ("forkMs" in detail) is fast_start
        assert ("processStartMs" in detail) is not fast_start
        assert detail["firstPredictMs"] == result["executionTime"]
        assert "queueWaitMs" in detail
        crashed = await cb.runsync("toy", {"crash": "segv"})
        assert "killed by SIGSEGV" in crashed["error"]


async def test_a_forked_child_that_hangs_is_killed_and_a_spawned_worker_takes_over(
    tmp_path: Path,
) -> None:
    """torch forked after multi-threaded work hangs in GNU OpenMP: the known trap."""
    async with running(tmp_path, FIXTURES / "trap", fork_ready_timeout_s=3.0) as cb:
        await _template_ready(cb)
        result = await cb.runsync("trap", {})
        assert result["status"] == "COMPLETED", result
        assert result["coldStartDetail"]["forked"] is False
        backend = cb.platform.scheduler.backend
        assert not backend._templates  # retired: this version spawns from now on
        again = await cb.runsync("trap", {})
        assert again["status"] == "COMPLETED"


async def test_a_redeploy_replaces_the_template(tmp_path: Path) -> None:
    import shutil

    from coldbrew.cli.serve import deploy_local

    source = tmp_path / "src"
    shutil.copytree(TOYS, source)
    async with running(tmp_path / "home", source) as cb:
        await _template_ready(cb)
        backend = cb.platform.scheduler.backend
        before = {(k.artifact_dir, k.class_name) for k in backend._templates}
        app = source / "app.py"
        app.write_text(app.read_text().replace('"value": value}', '"value": value, "v": 2}'))
        await deploy_local(cb.platform, source)
        after = {(k.artifact_dir, k.class_name) for k in backend._templates}
        assert len(before) == len(after) == 3  # one per model of the directory
        assert {d for d, _ in before}.isdisjoint({d for d, _ in after})
        await _template_ready(cb)
        result = await cb.runsync("other", {"value": 1})
        assert result["output"] == {"value": 1, "v": 2}


async def test_a_killed_template_is_recreated_and_cold_starts_fork_again(tmp_path: Path) -> None:
    import os
    import signal

    from tests.integration.conftest import wait_for

    async with running(tmp_path, TOYS, template_backoff_s=0.1) as cb:
        await _template_ready(cb)
        backend = cb.platform.scheduler.backend
        (old,) = [t for t in backend._templates.values() if t.key.class_name == "Toy"]
        os.kill(old.process.pid, signal.SIGKILL)

        async def recreated() -> bool:
            now = [t for t in backend._templates.values() if t.key.class_name == "Toy"]
            return bool(now) and now[0] is not old and now[0].usable

        await wait_for(recreated, bool)
        result = await cb.runsync("toy", {"value": 1})
        assert result["status"] == "COMPLETED" and result["coldStart"] is True
        assert result["coldStartDetail"]["forked"] is True


async def test_a_deploy_waits_for_its_template_so_the_first_request_forks(tmp_path: Path) -> None:
    from coldbrew.cli.serve import deploy_local

    async with running(tmp_path) as cb:
        lines = await deploy_local(cb.platform, FIXTURES / "slow_setup")
        assert any("deployed slow v1 (new version)" in line for line in lines), lines
        ready = [line for line in lines if "ready: its template is loaded" in line]
        assert ready and ready[0].strip().startswith("slow v1:"), lines
        result = await cb.runsync("slow", {"value": 1})
        assert result["status"] == "COMPLETED"
        detail = result["coldStartDetail"]
        assert detail["forked"] is True, detail  # a fork, not a second import and setup()
        assert detail["totalMs"] < 1000  # setup() takes 1 s: it ran in the template, not here


async def test_a_cold_start_while_the_template_loads_waits_for_it(tmp_path: Path) -> None:
    """Without the deploy's wait, a request that arrives during setup() still forks."""
    async with running(tmp_path, template_load_wait_s=0) as cb:
        deployed = await cb.http.post(
            "/v1/deployments",
            json={
                "artifact": await _upload(cb, FIXTURES / "slow_setup"),
                "directory": "slow_setup",
            },
        )
        assert deployed.status_code == 200, deployed.text
        assert deployed.json()["endpoints"][0]["coldStart"] == "loading"  # 0 s: did not wait
        cb.platform.scheduler.backend.inner.load_wait_s = 30.0  # a cold start may wait for it
        result = await cb.runsync("slow", {"value": 2})
        assert result["status"] == "COMPLETED"
        assert result["coldStartDetail"]["forked"] is True


async def _upload(cb: object, directory: Path) -> str:
    from coldbrew.sdk.package import package

    data, sha = package(directory)
    put = await cb.http.put(f"/v1/artifacts/{sha}", content=data)  # type: ignore[attr-defined]
    assert put.status_code in (200, 201), put.text
    return sha
