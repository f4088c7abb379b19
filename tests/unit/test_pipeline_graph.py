"""Pipeline definitions are checked before they are stored: each mistake is named with where it
is and what to do (unknown endpoint, a step reading a later one, a bad field path, ...)."""

from __future__ import annotations

from typing import Any

import pytest

from coldbrew.control.graph import StepKind, parse, parse_path, split_pick
from coldbrew.errors import InvalidPipeline

ENDPOINTS = {"digits", "emotion", "recommend", "notify"}


def _parse(steps: list[Any], **extra: Any) -> Any:
    return parse({"name": "moods", "steps": steps, **extra}, ENDPOINTS.__contains__)


def test_every_kind_of_step_parses_with_names_and_shorthands() -> None:
    graph = _parse(
        [
            {"name": "see", "endpoint": "digits", "input": {"pixels": "$input.pixels"}},
            {"name": "feel", "switch": "$.label", "cases": {"7": "emotion"}, "default": "notify"},
            {"name": "both", "ensemble": ["recommend", {"name": "alt", "endpoint": "notify"}]},
            {
                "name": "ab",
                "split": [{"weight": 3, "step": "notify"}, {"weight": 1, "step": "digits"}],
            },
            {"name": "each", "map": "$steps.both.recommend.items", "step": "notify"},
        ]
    )
    kinds = [s.kind for s in graph.root.children]
    assert kinds == [
        StepKind.TASK,
        StepKind.SWITCH,
        StepKind.ENSEMBLE,
        StepKind.SPLIT,
        StepKind.MAP,
    ]
    feel = graph.root.children[1]
    assert [(case, s.name, s.endpoint) for case, s in feel.cases] == [("7", "feel.7", "emotion")]
    assert feel.default is not None and feel.default.name == "feel.default"
    assert [s.name for s in graph.root.children[2].children] == ["recommend", "alt"]
    assert graph.root.children[3].weights == (3.0, 1.0)
    assert graph.root.children[4].children[0].name == "each.each"
    assert graph.endpoints == ["digits", "emotion", "notify", "recommend"]
    assert graph.summary().startswith("see(digits) → feel[switch]")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        pytest.param(
            [{"name": "a", "endpoint": "nope"}], "no endpoint 'nope'", id="unknown-endpoint"
        ),
        pytest.param(
            [
                {"name": "a", "endpoint": "digits", "input": {"x": "$steps.b.label"}},
                {"name": "b", "endpoint": "emotion"},
            ],
            "reads step 'b', which has not finished",
            id="reads-a-later-step",
        ),
        pytest.param(
            [{"name": "a", "endpoint": "digits", "input": {"x": "$steps.a"}}],
            "reads itself",
            id="reads-itself",
        ),
        pytest.param(
            [{"name": "a", "switch": "label", "cases": {"x": "digits"}}],
            "'label' is not a field path",
            id="bad-path",
        ),
        pytest.param(
            [{"name": "a", "endpoint": "digits", "input": {"x": "$.a..b"}}],
            "is not a field path",
            id="bad-path-in-input",
        ),
        pytest.param(
            [{"name": "a", "endpoint": "digits"}, {"name": "a", "endpoint": "emotion"}],
            "two steps are named 'a'",
            id="duplicate-names",
        ),
        pytest.param(
            [{"name": "a", "endpoint": "digits", "map": "$.x"}],
            "needs exactly one of",
            id="two-kinds",
        ),
        pytest.param(
            [{"name": "a", "split": [{"weight": 0, "step": "digits"}]}],
            "positive weight",
            id="zero-weight",
        ),
        pytest.param([{"name": "a", "switch": "$.x", "cases": {}}], "needs cases", id="no-cases"),
        pytest.param([], "non-empty list of steps", id="no-steps"),
        pytest.param(
            [{"name": "a", "ensemble": ["digits", "digits"]}],
            "two steps are named 'digits'",
            id="ensemble-needs-distinct-names",
        ),
    ],
)
def test_a_broken_definition_says_what_and_where(steps: list[Any], message: str) -> None:
    with pytest.raises(InvalidPipeline, match=message) as caught:
        _parse(steps)
    assert caught.value.status_code == 400
    assert caught.value.fields["problems"][0]["where"].startswith(("steps", "pipeline", "name"))


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(InvalidPipeline) as caught:
        _parse([{"name": "a", "endpoint": "nope"}, {"name": "b", "switch": "x", "cases": {}}])
    wheres = [p["where"] for p in caught.value.fields["problems"]]
    assert wheres == ["steps[0] (a)", "steps[1] (b).switch", "steps[1] (b)"]
    assert "deploy it first" in caught.value.hint


def test_a_bad_pipeline_name_and_unknown_keys_are_refused() -> None:
    with pytest.raises(InvalidPipeline, match="'Bad Name' is not a valid name"):
        parse({"name": "Bad Name", "steps": [{"name": "a", "endpoint": "digits"}]})
    with pytest.raises(InvalidPipeline, match="unknown keys"):
        parse({"name": "ok", "stages": [], "steps": [{"name": "a", "endpoint": "digits"}]})


@pytest.mark.parametrize(
    ("text", "root", "step", "segments"),
    [
        ("$", "prev", None, ()),
        ("$.label", "prev", None, ("label",)),
        ("$.items[2].name", "prev", None, ("items", 2, "name")),
        ("$input.pixels", "input", None, ("pixels",)),
        ("$steps.see.label", "steps", "see", ("label",)),
        ("$steps.see", "steps", "see", ()),
    ],
)
def test_field_paths(text: str, root: str, step: str | None, segments: tuple[Any, ...]) -> None:
    path = parse_path(text)
    assert path is not None
    assert (path.root, path.step, path.segments) == (root, step, segments)


@pytest.mark.parametrize("text", ["label", "$.", "$..a", "$[x]", "$foo", 3])
def test_what_is_not_a_field_path(text: Any) -> None:
    assert parse_path(text) is None


def test_a_split_is_the_same_for_a_run_and_follows_the_weights_over_many() -> None:
    weights = (9.0, 1.0)
    assert split_pick("run-1", "ab", weights) == split_pick("run-1", "ab", weights)
    picks = [split_pick(f"run-{i}", "ab", weights) for i in range(2000)]
    share = picks.count(1) / len(picks)
    assert 0.07 < share < 0.13  # 10% expected; sha256 is uniform enough for 2000 draws
    assert {split_pick(f"r{i}", "k", (1.0, 0.0001, 1.0)) for i in range(200)} >= {0, 2}
