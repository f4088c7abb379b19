"""The deployment spec and `@app.model`: defaults, and errors that name the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from coldbrew import App, DeploymentSpec, Scaler
from coldbrew.errors import ClientError, SpecError
from coldbrew.spec import parse_spec

VALID_FIELDS = (
    "batch, buffer_workers, cache_ttl_s, concurrency, hardware, idle_timeout_s, max_workers, "
    "memory_mb, min_workers, name, network, "
    "preload, prewarm, prewarm_lead_s, reserved_workers, retries, scaler, scaler_target_s, "
    "snapshot, timeout_s, warm_schedule"
)


def test_defaults() -> None:
    assert parse_spec({}, where="model Echo").model_dump() == {
        "name": None,
        "hardware": "cpu",
        "min_workers": 0,
        "max_workers": 4,
        "reserved_workers": 0,
        "buffer_workers": 0,
        "idle_timeout_s": 300.0,
        "concurrency": 1,
        "timeout_s": 600.0,
        "retries": 2,
        "snapshot": True,
        "preload": (),
        "memory_mb": 2048,
        "network": False,
        "batch": None,
        "cache_ttl_s": 0.0,
        "warm_schedule": (),
        "prewarm": "off",
        "prewarm_lead_s": 120.0,
        "scaler": Scaler.REQUEST_COUNT,
        "scaler_target_s": 2.0,
    }


def test_fields_are_kept() -> None:
    spec = parse_spec(
        {"hardware": "L4", "min_workers": 1, "max_workers": 8, "scaler": "queue_delay"},
        where="model Echo",
    )
    assert (spec.hardware, spec.min_workers, spec.max_workers, spec.scaler) == (
        "L4",
        1,
        8,
        Scaler.QUEUE_DELAY,
    )


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        pytest.param(
            {"min_workers": 5, "max_workers": 2},
            ["min_workers (5) is above max_workers (2)", "raise max_workers or lower min_workers"],
            id="min-above-max",
        ),
        pytest.param(
            {"gpu": "L4"},
            ["unknown field 'gpu'", f"valid fields are: {VALID_FIELDS}"],
            id="unknown-field",
        ),
        pytest.param(
            {"hardware": "T4"},
            ["unknown hardware 'T4'", "choose one of cpu, RTX4090, L4, L40S, A100, H100, H200"],
            id="bad-hardware",
        ),
        pytest.param(
            {"name": "My Model"},
            ["name 'My Model' is not a valid endpoint name", "lower-case letters, digits"],
            id="bad-name",
        ),
        pytest.param({"name": "a" * 64}, ["is not a valid endpoint name"], id="name-too-long"),
        pytest.param({"name": "-echo"}, ["is not a valid endpoint name"], id="name-leading-dash"),
        pytest.param(
            {"max_workers": 0}, ["max_workers: ", "greater than or equal to 1"], id="max-zero"
        ),
        pytest.param(
            {"scaler": "fastest"}, ["scaler: ", "'request_count' or 'queue_delay'"], id="scaler"
        ),
        pytest.param({"timeout_s": 0}, ["timeout_s: ", "greater than 0"], id="timeout-zero"),
        pytest.param({"concurrency": "many"}, ["concurrency: "], id="not-an-int"),
    ],
)
def test_invalid_spec_names_the_field_and_the_fix(fields: dict[str, Any], says: list[str]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(fields, where="model Echo")
    message = str(caught.value)
    assert message.startswith("invalid spec for model Echo: ")
    for text in says:
        assert text in message
    assert "@app.model" in caught.value.hint


def test_spec_error_is_a_client_error_with_status_400() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"hardware": "T4"}, where="model Echo")
    assert isinstance(caught.value, ClientError)
    assert caught.value.status_code == 400
    assert caught.value.to_json()["error"]["type"] == "invalid_spec"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"gpu": 1, "retries": 99}, where="model Echo")
    message = str(caught.value)
    assert "unknown field 'gpu'" in message
    assert "retries: " in message


@pytest.mark.parametrize("name", ["echo", "e", "a" * 63, "my-model_2", "0day"])
def test_valid_names(name: str) -> None:
    assert parse_spec({"name": name}, where="model Echo").name == name


def test_name_with_trailing_newline_is_refused() -> None:
    with pytest.raises(SpecError, match="not a valid endpoint name"):
        parse_spec({"name": "echo\n"}, where="model Echo")


def test_spec_is_frozen() -> None:
    spec = DeploymentSpec()
    with pytest.raises(ValidationError):
        spec.max_workers = 10  # type: ignore[misc]


# App.model


def test_endpoint_name_defaults_to_lower_cased_class_name() -> None:
    app = App("demo")

    @app.model(max_workers=2)
    class TextEmbedder:
        def predict(self, text: str) -> dict[str, Any]:
            return {"text": text}

    assert list(app.models) == ["textembedder"]
    model = app.models["textembedder"]
    assert (model.name, model.cls, model.spec.max_workers) == ("textembedder", TextEmbedder, 2)


def test_decorator_returns_the_class_itself() -> None:
    app = App("demo")

    class Echo:
        def predict(self, text: str) -> str:
            return text

    assert app.model()(Echo) is Echo
    assert Echo().predict("hi") == "hi"


def test_explicit_name_wins() -> None:
    app = App("demo")

    @app.model(name="echo-v2")
    class Echo:
        def predict(self) -> None: ...

    assert list(app.models) == ["echo-v2"]


def test_two_models_on_one_app() -> None:
    app = App("demo")

    @app.model()
    class Echo:
        def predict(self) -> None: ...

    @app.model(hardware="L4")
    class Embed:
        def predict(self) -> None: ...

    assert {name: m.spec.hardware for name, m in app.models.items()} == {
        "echo": "cpu",
        "embed": "L4",
    }


def test_bad_spec_on_a_model_names_the_class() -> None:
    app = App("demo")

    class Echo:
        def predict(self) -> None: ...

    with pytest.raises(SpecError, match=r"invalid spec for model Echo: .*min_workers \(3\)"):
        app.model(min_workers=3, max_workers=1)(Echo)
    assert app.models == {}


def test_class_name_that_is_not_a_valid_endpoint_name_asks_for_name() -> None:
    app = App("demo")

    class _Hidden:
        def predict(self) -> None: ...

    with pytest.raises(SpecError, match=r"'_hidden' \(from class _Hidden\) is not valid") as caught:
        app.model()(_Hidden)
    assert "name=" in caught.value.hint


def test_duplicate_endpoint_names_are_refused() -> None:
    app = App("demo")

    @app.model()
    class Echo:
        def predict(self) -> None: ...

    class Other:
        def predict(self) -> None: ...

    with pytest.raises(SpecError, match="app 'demo' already has an endpoint named 'echo'"):
        app.model(name="echo")(Other)
    assert app.models["echo"].cls is Echo


@pytest.mark.parametrize("predict", [None, 42], ids=["missing", "not-callable"])
def test_class_without_predict_is_refused(predict: object) -> None:
    app = App("demo")
    namespace = {} if predict is None else {"predict": predict}
    cls = type("NoPredict", (), namespace)
    with pytest.raises(SpecError, match=r"model NoPredict has no predict\(\) method"):
        app.model()(cls)
    assert app.models == {}
