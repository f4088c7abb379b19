"""RunPod handler directories at deploy time, and RunPod errors as coldbrew error records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldbrew.backends.runpod import error_record
from coldbrew.errors import SpecError
from coldbrew.runtime.adapters import runpod
from coldbrew.runtime.loader import discover

HANDLER = 'import runpod\n\nrunpod.serverless.start({"handler": lambda job: job})\n'


def test_a_handler_file_is_one_endpoint_named_after_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    (tmp_path / "helpers.py").write_text("def f(): ...\n")
    monkeypatch.setenv(runpod.DIRECTORY_NAME_ENV, "My Worker")
    (name, (module, model)), *rest = discover(tmp_path).items()
    assert not rest
    assert (name, module, model.cls.__name__) == ("my-worker", "handler", runpod.HANDLER_CLASS)
    assert model.spec is not None and model.spec.snapshot is False


def test_coldbrew_toml_names_and_configures_it(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(HANDLER)
    (tmp_path / "coldbrew.toml").write_text('[endpoint]\nname = "gen"\nconcurrency = 4\n')
    model = discover(tmp_path)["gen"][1]
    assert model.spec is not None and model.spec.concurrency == 4


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.py": HANDLER, "b.py": HANDLER}, "has 2 RunPod handler files (a.py, b.py)"),
        ({"h.py": HANDLER, "coldbrew.toml": "[endpoint]\nname = 'Bad Name'\n"}, "not a valid"),
        ({"h.py": HANDLER, "coldbrew.toml": "[endpoint]\nmax_workers = 0\n"}, "max_workers"),
        ({"h.py": HANDLER, "coldbrew.toml": "[endpoint]\ncolour = 1\n"}, "unknown field"),
        ({"h.py": HANDLER, "coldbrew.toml": "[endpoint\n"}, "not valid TOML"),
        ({"h.py": HANDLER, "coldbrew.toml": "[endpoint.batch]\nmax_size = 4\n"}, "batch"),
    ],
)
def test_mistakes_are_refused_with_the_fix(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        discover(tmp_path)


def test_endpoint_names_from_directory_names() -> None:
    assert runpod.endpoint_name("My_Worker v2!") == "my_worker-v2"
    assert runpod.endpoint_name("--x--") == "x"


def test_an_exception_in_the_handler_keeps_its_type_message_and_traceback() -> None:
    sent = json.dumps(
        {
            "error_type": "<class 'ValueError'>",
            "error_message": "boom",
            "error_traceback": "Traceback ...\nValueError: boom\n",
        }
    )
    record = error_record(sent)
    assert (record["type"], record["message"]) == ("ValueError", "boom")
    assert record["traceback"].endswith("ValueError: boom\n")


def test_generator_errors_and_returned_errors() -> None:
    record = error_record("handler: failed at chunk 1 \ntraceback: Traceback ...")
    assert (record["type"], record["message"]) == ("handler_error", "failed at chunk 1")
    assert error_record("input is bad")["message"] == "input is bad"
    assert error_record(["a", "b"])["message"] == '["a", "b"]'
