"""One error vocabulary: every error coldbrew makes, HTTP body or job record, is spelled by the
tree in `errors.py`, and every class in the tree is used."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from coldbrew import errors
from coldbrew.backends.runpod_handler import error_record as runpod_error_record
from coldbrew.errors import ColdbrewError, JobTimedOut, PayloadTooLarge, job_error
from coldbrew.runtime.worker import error_record

SRC = Path(errors.__file__).parent
TREE = [
    cls for cls in vars(errors).values() if inspect.isclass(cls) and issubclass(cls, ColdbrewError)
]
#: Job error records still spelled by hand in files another change owns (none left).
PENDING: set[str] = set()


def test_job_error_spells_the_type_as_the_tree_does() -> None:
    record = job_error(JobTimedOut, "too slow", hint="raise timeout_s")
    assert record == {"type": "timed_out", "message": "too slow", "hint": "raise timeout_s"}


def test_each_error_has_its_own_spelling() -> None:
    leaves = [cls for cls in TREE if cls not in (errors.ClientError, errors.ServerError)]
    spellings = [cls.error_type for cls in leaves]
    assert len(spellings) == len(set(spellings)), spellings
    assert all(re.fullmatch(r"[a-z_]+", s) for s in spellings)


def test_the_module_docstring_draws_every_class_with_its_spelling() -> None:
    doc = errors.__doc__ or ""
    for cls in TREE:
        if cls in (errors.ClientError, errors.ServerError):
            continue
        assert re.search(rf"{cls.__name__}\s+\d{{3}}\s+{cls.error_type}\b", doc), cls.__name__


def test_every_error_class_is_used_outside_the_tree() -> None:
    text = "\n".join(p.read_text() for p in SRC.rglob("*.py") if p.name != "errors.py")
    unused = [
        cls.__name__
        for cls in TREE
        if cls not in (errors.ClientError, errors.ServerError)
        and not re.search(rf"\b{cls.__name__}\b", text)
    ]
    assert unused == [], unused


def _hand_spelled_records(path: Path) -> list[str]:
    """`{"type": "SomeName", ...}` dict literals: a job record spelled outside the tree."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and key.value == "type"
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and re.fullmatch(r"[A-Z][A-Za-z]+", value.value)
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {value.value}")
    return found


def test_no_job_record_is_spelled_by_hand() -> None:
    found = [
        hit
        for path in sorted(SRC.rglob("*.py"))
        if str(path.relative_to(SRC)) not in PENDING
        for hit in _hand_spelled_records(path)
    ]
    assert found == []


def test_a_worker_spells_coldbrews_errors_from_the_tree_and_models_by_class() -> None:
    ours = error_record(PayloadTooLarge("the job's output is more than 1 MB", hint="smaller"))
    assert (ours["type"], ours["hint"]) == ("payload_too_large", "smaller")
    theirs = error_record(ValueError("bad pixel"))
    assert (theirs["type"], theirs["message"]) == ("ValueError", "bad pixel")
    assert "hint" not in theirs


@pytest.mark.parametrize(
    ("sent", "kind"),
    [
        ('{"error_type": "<class \'KeyError\'>", "error_message": "x"}', "KeyError"),
        ("the handler said no", "handler_error"),
    ],
)
def test_a_runpod_handlers_error_is_its_class_or_handler_error(sent: str, kind: str) -> None:
    assert runpod_error_record(sent)["type"] == kind
