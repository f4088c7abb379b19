"""Cog predictors: the input schema from cog's own inspector, and the gateway agreeing with cog."""

from __future__ import annotations

import base64
import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from tests.conftest import FIXTURES

from coldbrew.errors import SpecError
from coldbrew.runtime.adapters import cog as adapter
from coldbrew.runtime.loader import discover

pytest.importorskip("cog")

PREDICTOR = """
from typing import Iterator, Optional

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(
        self,
        prompt: str = Input(description="the prompt", min_length=2, max_length=8),
        steps: int = Input(default=10, ge=1, le=50),
        guidance: float = Input(default=7.5, ge=0, le=20),
        scheduler: str = Input(default="ddim", choices=["ddim", "euler"]),
        seed: Optional[int] = Input(default=None, description="random if empty"),
        code: str = Input(default="ab1", regex="[a-z]+[0-9]"),
        image: Path = Input(description="an image"),
        masks: list[Path] = Input(default=None),
        weights: list[int] = Input(default=[1, 2], ge=0),
        loud: bool = False,
    ) -> Iterator[str]:
        yield prompt
"""


def _directory(tmp_path: Path, source: str = PREDICTOR, **files: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "predict.py").write_text(textwrap.dedent(source))
    config = files.pop(
        "cog_yaml", 'build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n'
    )
    (tmp_path / "cog.yaml").write_text(config)
    for name, text in files.items():
        (tmp_path / name.replace("_", ".")).write_text(text)
    return tmp_path


def _schema(tmp_path: Path) -> dict[str, Any]:
    info = adapter.predictor_info(_directory(tmp_path), "predict.py:Predictor")
    return adapter.input_schema(info)


def test_constraints_defaults_and_descriptions_come_from_the_signature(tmp_path: Path) -> None:
    props = _schema(tmp_path)["properties"]
    assert props["prompt"] == {
        "type": "string",
        "minLength": 2,
        "maxLength": 8,
        "title": "Prompt",
        "x-order": 0,
        "description": "the prompt",
    }
    assert props["steps"] | {} == {
        "type": "integer",
        "minimum": 1,
        "maximum": 50,
        "default": 10,
        "title": "Steps",
        "x-order": 1,
    }
    assert props["guidance"]["maximum"] == 20 and props["guidance"]["default"] == 7.5
    assert props["scheduler"]["enum"] == ["ddim", "euler"]
    assert props["seed"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert props["code"]["pattern"] == "^(?:[a-z]+[0-9])"  # cog matches from the start
    assert props["image"]["format"] == "uri"
    assert props["weights"]["items"] == {"type": "integer", "minimum": 0}
    assert props["weights"]["default"] == [1, 2]
    assert props["loud"]["default"] is False


def test_required_fields_and_the_iterator_output(tmp_path: Path) -> None:
    schema = _schema(tmp_path)
    assert schema["required"] == ["prompt", "image", "masks"]  # cog: a list defaulting to None
    assert schema["x-cog-output"]["x-cog-array-type"] == "iterator"
    assert "additionalProperties" not in schema  # cog ignores unknown inputs with a warning


VALID = {"prompt": "cat", "image": "data:,x", "masks": []}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"steps": 50},
        {"steps": 51},
        {"steps": 0},
        {"guidance": 20.5},
        {"prompt": "c"},
        {"prompt": "far too long"},
        {"scheduler": "pndm"},
        {"seed": None},
        {"seed": 3},
        {"code": "abc"},
        {"code": "ab9 trailing"},
        {"weights": [1, -1]},
        {"weights": [0, 5]},
        {"prompt": None},
    ],
)
def test_the_gateway_refuses_exactly_what_cog_refuses(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    from cog._inspector import check_input

    directory = _directory(tmp_path)
    info = adapter.predictor_info(directory, "predict.py:Predictor")
    payload = {**VALID, **change}
    gateway_ok = Draft202012Validator(adapter.input_schema(info)).is_valid(payload)
    try:
        check_input(info.inputs, payload)
        cog_ok = True
    except (ValueError, TypeError):
        cog_ok = False
    assert gateway_ok == cog_ok, f"gateway {gateway_ok}, cog {cog_ok} for {change}"


def test_a_cog_directory_is_one_endpoint_named_by_settings_image_or_directory(
    tmp_path: Path,
) -> None:
    found = discover(_directory(tmp_path / "a", cog_yaml='predict: "predict.py:Predictor"\n'))
    assert list(found) == ["a"]  # the directory's name, never the class every Cog model shares
    module, model = found["a"]
    assert (module, model.cls.__name__) == ("coldbrew.runtime.adapters.cog", "CogModel")

    with_image = 'predict: "predict.py:Predictor"\nimage: "r8.im/acme/sdxl-lite"\n'
    assert list(discover(_directory(tmp_path / "b", cog_yaml=with_image))) == ["sdxl-lite"]

    named = _directory(tmp_path / "c", cog_yaml=with_image, coldbrew_toml='name = "mine"\n')
    assert list(discover(named)) == ["mine"]

    spec = _directory(tmp_path / "d", coldbrew_toml="max_workers = 2\nidle_timeout_s = 5\n")
    model = discover(spec)["d"][1]
    assert model.spec is not None and model.spec.max_workers == 2


def test_the_run_key_and_a_base_runner(tmp_path: Path) -> None:
    runner = """
    from cog import BaseRunner, Input

    class Runner(BaseRunner):
        def run(self, text: str = Input(default="x")) -> str:
            return text
    """
    directory = _directory(tmp_path / "runner", runner, cog_yaml='run: "predict.py"\n')
    assert list(discover(directory)) == ["runner"]
    assert (
        adapter.input_schema(adapter.predictor_info(directory, "predict.py"))["properties"]["text"][
            "default"
        ]
        == "x"
    )


@pytest.mark.parametrize(
    ("cog_yaml", "settings", "message"),
    [
        ("build: {}\n", None, "names no predictor"),
        ('predict: "missing.py:Predictor"\n', None, "not in the directory"),
        ("predict: [\n", None, "not valid YAML"),
        ('predict: "predict.py:Predictor"\n', 'name = "Bad Name"\n', "is not valid"),
        ('predict: "predict.py:Predictor"\n', "max_workers = -1\n", "max_workers"),
        ('predict: "predict.py:Nope"\n', None, "cog cannot use"),
    ],
)
def test_bad_directories_are_refused_with_the_fix(
    tmp_path: Path, cog_yaml: str, settings: str | None, message: str
) -> None:
    extra = {"coldbrew_toml": settings} if settings else {}
    with pytest.raises(SpecError, match=message):
        discover(_directory(tmp_path, cog_yaml=cog_yaml, **extra))


def test_file_urls_must_be_data_or_loopback() -> None:
    for ok in ("data:,hi", "http://127.0.0.1:8000/x", "http://localhost/x", "http://[::1]/x"):
        adapter.check_file_url("image", ok)
    for bad in ("http://10.0.0.1/x", "https://example.com/a.png", "file:///etc/passwd", "/tmp/x"):
        with pytest.raises(ValueError, match="image: file inputs"):
            adapter.check_file_url("image", bad)


def test_outputs_become_json_with_files_as_data_uris(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class Output:
        caption: str
        picture: Path

    picture = tmp_path / "p.png"
    picture.write_bytes(b"\x89PNG")
    value = adapter.to_json({"items": (Output("a", picture),)})
    uri = value["items"][0]["picture"]
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == b"\x89PNG"


def test_the_fixtures_deploy_as_they_are() -> None:
    names = {
        name
        for d in ("cog_predictor", "cog_runner", "cog_stream")
        for name in discover(FIXTURES / d)
    }
    assert names == {"cog-hello", "runner", "cog-stream"}


def test_an_async_predictor_runs_on_the_workers_own_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = """
    import asyncio
    from typing import AsyncIterator

    from cog import BaseRunner, Input


    class Runner(BaseRunner):
        async def setup(self) -> None:
            self.ready = await asyncio.sleep(0, result=True)

        async def run(self, n: int = Input(default=2, ge=1)) -> AsyncIterator[str]:
            for i in range(n):
                yield f"{i}:{self.ready}"
    """
    monkeypatch.chdir(_directory(tmp_path, source, cog_yaml='run: "predict.py:Runner"\n'))
    model = adapter.CogModel()
    try:
        model.setup()
        assert list(model.predict(n=3)) == ["0:True", "1:True", "2:True"]
        with pytest.raises(ValueError, match="n fails constraint >= 1"):
            model.predict(n=0)
    finally:
        assert model._loop is not None
        model._loop.close()


def test_a_function_predictor_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """`predict: "predict.py:run"` naming a plain function, as Cog allows."""
    monkeypatch.chdir(FIXTURES / "cog_function")
    model = adapter.CogModel()
    model.setup()
    assert model.predict(name="ann") == "hello ann, amount=None (NoneType)"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param(1, "1 (int)", id="int-stays-int"),
        pytest.param(1.5, "1.5 (float)", id="float"),
        pytest.param("many", "'many' (str)", id="str"),
    ],
)
def test_union_inputs_reach_the_predictor_as_cog_passes_them(
    monkeypatch: pytest.MonkeyPatch, value: Any, shown: str
) -> None:
    """`str | float | None`: Cog hands an integer over as the int it is, not as 1.0."""
    monkeypatch.chdir(FIXTURES / "cog_function")
    model = adapter.CogModel()
    assert model.predict(amount=value) == f"hello world, amount={shown}"


def test_an_integer_for_a_union_with_float_stays_an_int_in_a_class_predictor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = """
    from cog import BasePredictor, Input


    class Predictor(BasePredictor):
        def predict(self, amount: str | float | None = Input(default=None)) -> str:
            return type(amount).__name__
    """
    monkeypatch.chdir(_directory(tmp_path, source))
    model = adapter.CogModel()
    assert [model.predict(amount=v) for v in (1, 2.5, "x")] == ["int", "float", "str"]
