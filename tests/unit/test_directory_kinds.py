"""What a deployed directory is and what its endpoint is called, for every kind of directory:
one `coldbrew.toml` format, RunPod worker repositories, Cog and KServe names."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from tests.conftest import FIXTURES

from coldbrew.errors import SpecError
from coldbrew.runtime.adapters.runpod import DIRECTORY_NAME_ENV
from coldbrew.runtime.loader import discover

KSERVE_BY_ARGS = """
import argparse

from kserve import Model, ModelServer, model_server

parser = argparse.ArgumentParser(parents=[model_server.parser])
args, _ = parser.parse_known_args()


class Sizer(Model):
    def predict(self, payload, headers=None):
        return payload


if __name__ == "__main__":
    model = Sizer(args.model_name)
    model.load()
    ModelServer().start([model])
"""

COG_PREDICTOR = """
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, text: str) -> str:
        return text
"""


def _write(directory: Path, **files: str) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return directory


def test_a_kserve_model_named_by_its_arguments_takes_kserves_default_name(tmp_path: Path) -> None:
    """kserve's `--model_name` defaults to `model`: clients call `/v2/models/model/infer`."""
    models = discover(_write(tmp_path / "sizer", **{"model.py": KSERVE_BY_ARGS}))
    assert list(models) == ["model"]


def test_a_cog_directory_without_image_is_named_after_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("cog")
    monkeypatch.delenv(DIRECTORY_NAME_ENV, raising=False)
    first = _write(tmp_path / "captioner", **{"cog.yaml": 'predict: "predict.py:Predictor"\n'})
    _write(first, **{"predict.py": COG_PREDICTOR})
    assert list(discover(first)) == ["captioner"]
    monkeypatch.setenv(DIRECTORY_NAME_ENV, "My Upscaler")  # what `coldbrew deploy` sends
    assert list(discover(first)) == ["my-upscaler"]


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param('[endpoint]\nname = "caption"\nmax_workers = 2\n', id="endpoint-table"),
        pytest.param('name = "caption"\nmax_workers = 2\n', id="top-level-keys"),
    ],
)
def test_one_coldbrew_toml_format_for_cog_runpod_and_kserve(tmp_path: Path, settings: str) -> None:
    pytest.importorskip("cog")
    cog = _write(
        tmp_path / "cog",
        **{"cog.yaml": 'predict: "predict.py:Predictor"\n', "predict.py": COG_PREDICTOR},
    )
    kserve = _write(tmp_path / "kserve", **{"model.py": KSERVE_BY_ARGS})
    runpod = tmp_path / "runpod"
    shutil.copytree(FIXTURES / "runpod_sync", runpod)
    for directory in (cog, kserve, runpod):
        (directory / "coldbrew.toml").write_text(settings)
        ((name, (_, model)),) = discover(directory).items()
        assert name == "caption", directory
        assert model.spec is not None and model.spec.max_workers == 2


def test_an_unknown_coldbrew_toml_field_names_the_valid_ones(tmp_path: Path) -> None:
    runpod = tmp_path / "runpod"
    shutil.copytree(FIXTURES / "runpod_sync", runpod)
    (runpod / "coldbrew.toml").write_text("[endpoint]\nmax_wrokers = 2\n")
    with pytest.raises(SpecError, match=r"unknown field 'max_wrokers'.*max_workers"):
        discover(runpod)


def test_a_runpod_worker_repository_deploys_from_its_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`src/handler.py` run by the Dockerfile's CMD; `requirements.txt` beside it."""
    monkeypatch.delenv(DIRECTORY_NAME_ENV, raising=False)
    ((name, (module, model)),) = discover(FIXTURES / "runpod_repo").items()
    assert name == "runpod_repo"
    assert module == "src/handler"
    assert model.cls.__name__ == "runpod.serverless.start"


@pytest.mark.parametrize(
    ("dockerfile", "found"),
    [
        pytest.param("ADD src .\nCMD python3.11 -u /handler.py\n", "src/handler", id="add-src"),
        pytest.param(
            'WORKDIR /app\nCOPY src/ /app/\nCMD ["python", "-u", "handler.py"]\n',
            "src/handler",
            id="exec-form-workdir",
        ),
        pytest.param(
            'COPY . /worker\nENTRYPOINT ["python3", "/worker/src/handler.py"]\n',
            "src/handler",
            id="entrypoint-copy-all",
        ),
        pytest.param("COPY . .\nCMD python -u src/handler.py\n", "src/handler", id="relative"),
        pytest.param(  # Docker drops comment and blank lines inside a continuation
            "ADD src .\nCMD python \\\n    # the handler\n\n    -u /handler.py\n",
            "src/handler",
            id="comment-in-continuation",
        ),
        pytest.param(  # build-time variables in WORKDIR and COPY
            "ARG APP=/app\nENV SRC=src\nWORKDIR ${APP}\nCOPY $SRC/ ./\nCMD python handler.py\n",
            "src/handler",
            id="arg-env-substitution",
        ),
    ],
)
def test_the_handler_is_found_from_the_dockerfile(
    tmp_path: Path, dockerfile: str, found: str
) -> None:
    repo = tmp_path / "worker"
    shutil.copytree(FIXTURES / "runpod_repo", repo)
    (repo / "Dockerfile").write_text("FROM python:3.11-slim\n" + dockerfile)
    ((_, (module, _)),) = discover(repo).items()
    assert module == found


def test_coldbrew_toml_names_the_handler_when_no_dockerfile_does(tmp_path: Path) -> None:
    repo = tmp_path / "worker"
    shutil.copytree(FIXTURES / "runpod_repo", repo)
    (repo / "Dockerfile").unlink()
    with pytest.raises(SpecError, match="handler") as refused:
        discover(repo)
    assert "coldbrew.toml" in refused.value.hint
    (repo / "coldbrew.toml").write_text('[runpod]\nhandler = "src/handler.py"\n')
    ((_, (module, _)),) = discover(repo).items()
    assert module == "src/handler"
