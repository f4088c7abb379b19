"""Deploying a directory never silently replaces an unrelated endpoint.

An endpoint remembers what kind of directory it came from (coldbrew, Cog, RunPod handler, KServe
model) and the directory's name; a deploy that would give the same name to another kind or
another directory is refused with a 409 that names the endpoint and how to choose a name, unless
the deploy asks to replace it.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from coldbrew.sdk.package import package
from tests.conftest import FIXTURES
from tests.integration.conftest import Running, running

pytestmark = pytest.mark.anyio

KSERVE_BY_ARGS = """
import argparse

from kserve import Model, ModelServer, model_server

parser = argparse.ArgumentParser(parents=[model_server.parser])
args, _ = parser.parse_known_args()


class Sizer(Model):
    def predict(self, payload, headers=None):
        return {"size": len(payload.get("instances", []))}


if __name__ == "__main__":
    model = Sizer(args.model_name)
    model.load()
    ModelServer().start([model])
"""


async def _deploy(cb: Running, directory: Path, **options: Any) -> Any:
    data, sha = package(directory)
    assert (await cb.http.put(f"/v1/artifacts/{sha}", content=data)).status_code == 200
    body = {"artifact": sha, "directory": directory.name, **options}
    return await cb.http.post("/v1/deployments", json=body)


def _kserve_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.py").write_text(textwrap.dedent(KSERVE_BY_ARGS))
    return path


async def test_a_second_model_under_the_same_name_is_refused_naming_the_first(
    tmp_path: Path,
) -> None:
    first, second = _kserve_dir(tmp_path / "sizer-a"), _kserve_dir(tmp_path / "sizer-b")
    (second / "README.md").write_text("another model of the same class\n")
    async with running(tmp_path / "home") as cb:
        made = await _deploy(cb, first)
        assert made.status_code == 200, made.text
        assert [e["name"] for e in made.json()["endpoints"]] == ["model"]

        refused = await _deploy(cb, second)
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert "'model'" in error["message"] and "sizer-a" in error["message"]
        assert "--name" in error["hint"] and "--replace" in error["hint"]
        endpoint = (await cb.http.get("/v1/endpoints/model")).json()
        assert endpoint["version"] == 1  # untouched

        named = await _deploy(cb, second, name="sizer-b")
        assert named.status_code == 200, named.text
        assert [e["name"] for e in named.json()["endpoints"]] == ["sizer-b"]

        replaced = await _deploy(cb, second, replace=True)
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["endpoints"][0]["version"] == 2


async def test_another_kind_of_directory_under_the_same_name_is_refused(tmp_path: Path) -> None:
    worker = tmp_path / "echo"
    shutil.copytree(FIXTURES / "runpod_sync", worker)
    model = _kserve_dir(tmp_path / "kserve-echo")
    (model / "coldbrew.toml").write_text('[endpoint]\nname = "echo"\n')
    async with running(tmp_path / "home") as cb:
        assert (await _deploy(cb, worker)).status_code == 200
        refused = await _deploy(cb, model)
        assert refused.status_code == 409
        assert "RunPod handler" in refused.json()["error"]["message"]
        assert "KServe model" in refused.json()["error"]["message"]


async def test_redeploying_the_same_directory_makes_a_new_version(tmp_path: Path) -> None:
    worker = tmp_path / "echo"
    shutil.copytree(FIXTURES / "runpod_sync", worker)
    async with running(tmp_path / "home") as cb:
        assert (await _deploy(cb, worker)).status_code == 200
        (worker / "handler.py").write_text((worker / "handler.py").read_text() + "\n# v2\n")
        again = await _deploy(cb, worker)
        assert again.status_code == 200, again.text
        assert again.json()["endpoints"][0]["version"] == 2


async def test_a_runpod_repository_gets_an_environment_from_its_requirements(
    tmp_path: Path,
) -> None:
    async with running(tmp_path / "home") as cb:
        made = await _deploy(cb, FIXTURES / "runpod_repo")
        assert made.status_code == 200, made.text
        (endpoint,) = made.json()["endpoints"]
        assert endpoint["name"] == "runpod_repo"
        assert endpoint["source"]["requirements"] == ["runpod~=1.12"]
        assert any("own environment" in note for note in endpoint["notes"])
        assert endpoint["source"]["environment"]
        version = await cb.platform.store.get_version(
            (await cb.platform.store.get_endpoint("default", "runpod_repo")).current_version_id
        )
        assert version.module == "src/handler"
        assert version.source["kind"] == "runpod"


async def test_a_name_for_a_directory_with_several_models_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path / "home") as cb:
        refused = await _deploy(cb, FIXTURES / "toys", name="one")
        assert refused.status_code == 400
        assert "models" in refused.json()["error"]["message"]
