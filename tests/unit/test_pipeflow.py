"""What each kind of step does with its input, evaluated over a fake stage function that
records every call (the keys are what make stage results durable and runs resumable)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coldbrew.control.graph import Step, parse
from coldbrew.control.pipeflow import Evaluator, RunFailed


class FakeStages:
    """Each endpoint is a small function of the payload; `fail` names endpoints that fail."""

    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = fail
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, key: str, step: Step, payload: dict[str, Any]) -> Any:
        assert step.endpoint is not None
        self.calls.append((key, step.endpoint, payload))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(0)  # let sibling branches start
        self.running -= 1
        if step.endpoint in self.fail:
            raise RunFailed(key, {"type": "stage_failed", "message": f"{key} broke"})
        return {"from": step.endpoint, "got": payload}


def _run(steps: list[Any], payload: dict[str, Any], stages: FakeStages, run_id: str = "r1") -> Any:
    graph = parse({"name": "p", "steps": steps})
    return asyncio.run(Evaluator(graph, run_id, stages).evaluate(payload))


def test_a_sequence_feeds_each_output_to_the_next_step() -> None:
    stages = FakeStages()
    out = _run(
        [
            {"name": "a", "endpoint": "one"},
            {"name": "b", "endpoint": "two", "input": {"seen": "$.from", "orig": "$input.x"}},
            {"name": "c", "endpoint": "three", "input": {"first": "$steps.a.got", "lit": "$$5"}},
        ],
        {"x": 1},
        stages,
    )
    assert [(k, e) for k, e, _ in stages.calls] == [("a", "one"), ("b", "two"), ("c", "three")]
    assert stages.calls[1][2] == {"seen": "one", "orig": 1}
    assert stages.calls[2][2] == {"first": {"x": 1}, "lit": "$5"}
    assert out["from"] == "three"


@pytest.mark.parametrize(
    ("label", "endpoint"),
    [("cat", "meow"), ("dog", "woof"), ("fish", "other"), (7, "seven"), (True, "yes")],
)
def test_a_switch_routes_on_a_field_of_the_previous_output(label: Any, endpoint: str) -> None:
    stages = FakeStages()
    steps = [
        {
            "name": "route",
            "switch": "$.label",
            "cases": {"cat": "meow", "dog": "woof", "7": "seven", "true": "yes"},
            "default": "other",
        }
    ]
    out = _run(steps, {"label": label}, stages)
    assert out["from"] == endpoint
    assert len(stages.calls) == 1


def test_a_switch_without_a_matching_case_or_default_fails_naming_the_value() -> None:
    with pytest.raises(RunFailed, match="'bird', which no case matches") as caught:
        _run(
            [{"name": "route", "switch": "$.label", "cases": {"cat": "meow"}}],
            {"label": "bird"},
            FakeStages(),
        )
    assert caught.value.stage == "route"


def test_an_ensemble_runs_its_branches_at_once_and_keys_outputs_by_name() -> None:
    stages = FakeStages()
    out = _run(
        [{"name": "vote", "ensemble": ["a", "b", {"name": "c", "endpoint": "a"}]}],
        {"x": 1},
        stages,
    )
    assert set(out) == {"a", "b", "c"}
    assert out["c"]["from"] == "a"
    assert stages.most_at_once == 3


def test_an_ensemble_finishes_every_branch_before_reporting_a_failure() -> None:
    stages = FakeStages(fail=frozenset({"b"}))
    with pytest.raises(RunFailed, match="b broke"):
        _run([{"name": "vote", "ensemble": ["a", "b", "c"]}], {}, stages)
    assert sorted(k for k, _, _ in stages.calls) == ["a", "b", "c"]


def test_a_split_is_reproducible_per_run_and_spreads_runs_by_weight() -> None:
    steps = [
        {"name": "ab", "split": [{"weight": 1, "step": "left"}, {"weight": 1, "step": "right"}]}
    ]
    chosen = {}
    for i in range(40):
        first, again = FakeStages(), FakeStages()
        _run(steps, {}, first, run_id=f"run-{i}")
        _run(steps, {}, again, run_id=f"run-{i}")
        assert first.calls == again.calls  # the same run takes the same branch
        chosen[i] = first.calls[0][1]
    assert set(chosen.values()) == {"left", "right"}
    assert first.calls[0][0] in ("ab.0", "ab.1")


def test_a_map_runs_its_step_per_element_and_collects_a_list() -> None:
    stages = FakeStages()
    out = _run(
        [
            {
                "name": "each",
                "map": "$.items",
                "step": {"name": "one", "endpoint": "up", "input": {"v": "$"}},
            }
        ],
        {"items": [3, 1, 2]},
        stages,
    )
    assert [o["got"] for o in out] == [{"v": 3}, {"v": 1}, {"v": 2}]
    assert sorted(k for k, _, _ in stages.calls) == ["each[0]/one", "each[1]/one", "each[2]/one"]


def test_a_map_over_objects_passes_each_as_the_input() -> None:
    stages = FakeStages()
    out = _run([{"name": "each", "map": "$input.rows", "step": "up"}], {"rows": [{"a": 1}]}, stages)
    assert out == [{"from": "up", "got": {"a": 1}}]


@pytest.mark.parametrize(
    ("steps", "payload", "message"),
    [
        ([{"name": "m", "map": "$.items", "step": "up"}], {"items": 3}, "is a int, not a list"),
        (
            [{"name": "m", "map": "$.nope", "step": "up"}],
            {"items": []},
            "no 'nope' in \\['items'\\]",
        ),
        (
            [{"name": "m", "map": "$.items", "step": "up"}],
            {"items": [1]},
            "got a int from the step before",
        ),
        ([{"name": "s", "endpoint": "up", "input": {"x": "$.a[3]"}}], {"a": [1]}, "no 3 in list"),
    ],
)
def test_a_path_that_finds_nothing_fails_the_run_naming_the_step(
    steps: list[Any], payload: dict[str, Any], message: str
) -> None:
    with pytest.raises(RunFailed, match=message) as caught:
        _run(steps, payload, FakeStages())
    assert caught.value.error["type"] == "stage_failed"
    assert caught.value.error["stage"] in ("m", "m[0]/m.each", "s")


def test_the_outputs_of_the_last_tasks_are_what_the_run_streams() -> None:
    graph = parse(
        {
            "name": "p",
            "steps": [
                {"name": "a", "endpoint": "x"},
                {"name": "r", "switch": "$.k", "cases": {"1": "y"}, "default": "z"},
            ],
        }
    )
    assert graph.final_tasks == frozenset({"r.1", "r.default"})
