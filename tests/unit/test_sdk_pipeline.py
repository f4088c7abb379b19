"""`app.pipeline(...)` writes the JSON definition `POST /v1/pipelines` takes, and the server's
check accepts what the builder writes."""

from __future__ import annotations

import pytest

import coldbrew
from coldbrew.control.graph import StepKind, parse
from coldbrew.errors import SpecError
from coldbrew.sdk.pipeline import Pipeline


def test_the_builder_writes_a_definition_the_server_accepts() -> None:
    app = coldbrew.App("demo")
    moods = app.pipeline("moods", description="a demo")
    moods.task("see", "digits", input={"pixels": "$input.pixels"})
    moods.switch("feel", "$.digit", cases={"7": "lucky"}, default="plain")
    moods.ensemble("both", "recommend", Pipeline.task_step("alt", "recommend"))
    moods.split("ab", {"notify": 9, "notify2": 1})
    moods.map("each", "$input.users", Pipeline.task_step("one", "notify", {"user": "$"}))
    assert app.pipelines == {"moods": moods}
    definition = moods.definition
    assert definition["description"] == "a demo"
    assert definition["steps"][3] == {
        "name": "ab",
        "split": [{"weight": 9, "step": "notify"}, {"weight": 1, "step": "notify2"}],
    }
    graph = parse(definition)
    kinds = [s.kind for s in graph.root.children]
    assert kinds == [
        StepKind.TASK,
        StepKind.SWITCH,
        StepKind.ENSEMBLE,
        StepKind.SPLIT,
        StepKind.MAP,
    ]


def test_a_pipeline_name_is_checked_and_unique_in_the_app() -> None:
    app = coldbrew.App("demo")
    app.pipeline("moods")
    with pytest.raises(SpecError, match="already has an endpoint or pipeline 'moods'"):
        app.pipeline("moods")
    with pytest.raises(SpecError, match="is not valid"):
        app.pipeline("Not Valid")
