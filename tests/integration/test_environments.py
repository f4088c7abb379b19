"""Per-version environments: each model directory's requirements, built with uv, side by side.

These resolve against PyPI (CI has it) and build real venvs; uv's cache under the test's home
makes every build after the first a matter of hard links.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from coldbrew.sdk.package import package
from tests.integration.conftest import Running, running

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(600)]

MODEL = """
import importlib.util
import sys

import coldbrew

app = coldbrew.App("envs")


@app.model(name="{name}")
class Probe:
    def predict(self) -> dict:
        import six

        try:
            with open(sys.prefix + "/planted.py", "w"):
                writable = True
        except OSError:
            writable = False
        return {{
            "six": six.__version__,
            "prefix": sys.prefix,
            "server_package": importlib.util.find_spec("fastapi") is not None,
            "env_writable": writable,
        }}
"""


def _model(path: Path, name: str, requirements: str) -> Path:
    path.mkdir(parents=True)
    (path / "app.py").write_text(textwrap.dedent(MODEL.format(name=name)))
    (path / "requirements.txt").write_text(requirements)
    return path


async def _deploy(cb: Running, directory: Path, streamed: bool = False) -> Any:
    data, sha = package(directory)
    assert (await cb.http.put(f"/v1/artifacts/{sha}", content=data)).status_code == 200
    body = {"artifact": sha, "directory": directory.name}
    headers = {"accept": "application/x-ndjson"} if streamed else {}
    return await cb.http.post("/v1/deployments", json=body, headers=headers)


def _lines(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line]


async def test_two_models_with_conflicting_versions_of_a_package_answer_side_by_side(
    tmp_path: Path,
) -> None:
    old = _model(tmp_path / "old", "old-six", "six==1.16.0\n")
    new = _model(tmp_path / "new", "new-six", "# the newer one\nsix==1.17.0\n")
    async with running(tmp_path / "home") as cb:
        for directory in (old, new):
            *progress, last = _lines(await _deploy(cb, directory, streamed=True))
            phases = {p["progress"].split(":", 1)[0] for p in progress}
            assert {"resolve", "download", "install"} <= phases, progress
            (endpoint,) = last["endpoints"]
            assert "own environment" in endpoint["notes"][0]
        first = await cb.runsync("old-six", {})
        second = await cb.runsync("new-six", {})
        assert first["status"] == "COMPLETED", first
        assert second["status"] == "COMPLETED", second
        assert first["output"]["six"] == "1.16.0"
        assert second["output"]["six"] == "1.17.0"
        assert first["output"]["prefix"] != second["output"]["prefix"]
        envs = cb.platform.settings.home / "envs"
        assert first["output"]["prefix"].startswith(str(envs))
        assert not first["output"]["server_package"]  # nothing of the server's venv leaks in
        assert not first["output"]["env_writable"]  # the sandbox grants it read-only
        # a code-only change keeps the environment, without resolving again
        (old / "app.py").write_text((old / "app.py").read_text() + "\n# v2\n")
        *progress, ready, last = _lines(await _deploy(cb, old, streamed=True))
        assert [p["progress"].split(":")[0] for p in progress] == [
            f"environment {first['output']['prefix'].rsplit('/', 1)[1]}"
        ]
        assert ready["progress"].startswith("old-six v2: ready: its template is loaded")
        assert last["endpoints"][0]["version"] == 2
        assert (await cb.runsync("old-six", {}))["output"]["six"] == "1.16.0"


async def test_a_bad_requirement_fails_the_deploy_with_uvs_message_and_v1_keeps_answering(
    tmp_path: Path,
) -> None:
    model = _model(tmp_path / "probe", "probe", "six==1.16.0\n")
    async with running(tmp_path / "home") as cb:
        assert (await _deploy(cb, model)).status_code == 200
        assert (await cb.runsync("probe", {}))["output"]["six"] == "1.16.0"
        (model / "requirements.txt").write_text("six==1.16.0\nno-such-package-coldbrew-test==1.0\n")
        failed = await _deploy(cb, model)
        assert failed.status_code == 400
        error = failed.json()["error"]
        assert "no-such-package-coldbrew-test" in error["message"]
        assert "No solution found" in error["message"]  # uv's own words
        # the streamed deploy says each phase, then the same error with its status
        *progress, last = _lines(await _deploy(cb, model, streamed=True))
        assert progress[0]["progress"].startswith("environment: 2 requirements")
        assert any(p["progress"].startswith("resolve:") for p in progress)
        assert last["status"] == 400 and "No solution found" in last["error"]["message"]
        endpoint = (await cb.http.get("/v1/endpoints/probe")).json()
        assert endpoint["version"] == 1
        answer = await cb.runsync("probe", {})
        assert answer["status"] == "COMPLETED" and answer["output"]["six"] == "1.16.0"


async def test_an_environment_no_version_uses_is_removed(tmp_path: Path) -> None:
    shared_a = _model(tmp_path / "a", "a", "six==1.16.0\n")
    shared_b = _model(tmp_path / "b", "b", "six == 1.16.0\n")
    async with running(tmp_path / "home") as cb:
        for directory in (shared_a, shared_b):
            assert (await _deploy(cb, directory)).status_code == 200
        envs = cb.platform.settings.home / "envs"
        keys = {
            (await cb.platform.store.get_version(e.current_version_id)).source["environment"]
            for e in await cb.platform.store.list_endpoints(None)
        }
        assert len(keys) == 1  # the same resolved set: one environment, shared
        (key,) = keys
        assert (await cb.runsync("a", {}))["status"] == "COMPLETED"
        assert (await cb.http.delete("/v1/endpoints/a")).status_code == 200
        assert (envs / key).is_dir()  # b still uses it
        assert (await cb.runsync("b", {}))["output"]["six"] == "1.16.0"
        assert (await cb.http.delete("/v1/endpoints/b")).status_code == 200
        assert not (envs / key).exists()


@pytest.mark.skipif(
    not list(Path("/opt/wheels").glob("torch-2.13.0+cpu-*.whl")),
    reason="the machine's CPU torch wheel is not on disk",
)
async def test_a_pinned_torch_resolves_to_the_cpu_wheel_on_disk(tmp_path: Path) -> None:
    """uv does not read pip's find-links; coldbrew hands them over, so the pin takes the local
    CPU build instead of PyPI's CUDA one (resolving only: nothing is installed)."""
    from coldbrew.backends.envs import Environments

    said: list[str] = []
    envs = Environments(tmp_path / "envs", find_links=("/opt/wheels",))
    pinned = await envs.resolve(("torch==2.13.0",), said.append)
    assert "torch==2.13.0+cpu" in pinned.splitlines()
    assert not any(line.startswith("nvidia-") for line in pinned.splitlines())


COG_PREDICTOR = """
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        import six

        return six.__version__
"""


async def test_a_cog_models_python_packages_become_its_environment(tmp_path: Path) -> None:
    """`build.python_packages` of an unmodified cog.yaml; cog itself comes along (the server's
    version), since the predictor imports it."""
    model = tmp_path / "cogsix"
    model.mkdir()
    (model / "predict.py").write_text(textwrap.dedent(COG_PREDICTOR))
    (model / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  python_packages:\n    - "six==1.16.0"\n'
        'predict: "predict.py:Predictor"\n'
    )
    async with running(tmp_path / "home") as cb:
        made = await _deploy(cb, model)
        assert made.status_code == 200, made.text
        (endpoint,) = made.json()["endpoints"]
        assert endpoint["source"]["environment"]
        assert endpoint["source"]["requirements"] == ["six==1.16.0"]  # from cog.yaml
        answer = await cb.runsync(endpoint["name"], {})
        assert answer["status"] == "COMPLETED", answer
        assert answer["output"] == "1.16.0"
