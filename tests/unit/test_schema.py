"""The input schema of an endpoint, read from the type hints of its `predict`."""

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from coldbrew.errors import SpecError
from coldbrew.runtime.schema import input_model, input_schema


class Point(BaseModel):
    x: float
    y: float


class Classifier:
    def predict(
        self,
        text: str,
        pixels: list[float],
        top_k: int = 3,
        threshold: float = 0.5,
        normalize: bool = True,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {}


class Loose:
    def predict(self, text: str, **extra: Any) -> None: ...


class Untyped:
    def predict(self, value, *, scale: float = 1.0):  # type: ignore[no-untyped-def]
        return value


class Nested:
    def predict(self, origin: Point) -> None: ...


class NoInputs:
    def predict(self) -> None: ...


class StarArgs:
    def predict(self, *rows: float) -> None: ...


class BadHint:
    def predict(self, text: "NotDefinedAnywhere") -> None: ...  # type: ignore[name-defined]  # noqa: F821


class Underscored:
    def predict(self, _seed: int) -> None: ...


class Static:
    @staticmethod
    def predict(text: str) -> str:
        return text


def test_required_and_defaulted_fields() -> None:
    schema = input_schema(Classifier)
    assert schema["type"] == "object"
    assert schema["required"] == ["text", "pixels"]
    assert list(schema["properties"]) == [
        "text",
        "pixels",
        "top_k",
        "threshold",
        "normalize",
        "options",
    ]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("text", {"type": "string"}),
        ("pixels", {"type": "array", "items": {"type": "number"}}),
        ("top_k", {"type": "integer", "default": 3}),
        ("threshold", {"type": "number", "default": 0.5}),
        ("normalize", {"type": "boolean", "default": True}),
        (
            "options",
            {
                "anyOf": [{"type": "object", "additionalProperties": True}, {"type": "null"}],
                "default": None,
            },
        ),
    ],
)
def test_hints_become_json_schema_types(field: str, expected: dict[str, Any]) -> None:
    prop = dict(input_schema(Classifier)["properties"][field])
    prop.pop("title")
    assert prop == expected


def test_unknown_fields_are_refused_without_kwargs() -> None:
    assert input_schema(Classifier)["additionalProperties"] is False
    with pytest.raises(ValidationError, match="colour"):
        input_model(Classifier).model_validate({"text": "a", "pixels": [], "colour": "red"})


def test_kwargs_lets_extra_fields_through() -> None:
    schema = input_schema(Loose)
    assert schema["additionalProperties"] is True
    assert schema["required"] == ["text"]
    extra = input_model(Loose).model_validate({"text": "a", "lang": "en"})
    assert extra.model_dump() == {"text": "a", "lang": "en"}


def test_inputs_are_validated_and_coerced_like_json() -> None:
    model = input_model(Classifier)
    parsed = model.model_validate({"text": "hi", "pixels": [1, 2.5]})
    assert parsed.model_dump() == {
        "text": "hi",
        "pixels": [1.0, 2.5],
        "top_k": 3,
        "threshold": 0.5,
        "normalize": True,
        "options": None,
    }
    with pytest.raises(ValidationError, match="pixels"):
        model.model_validate({"text": "hi"})


def test_unannotated_parameter_accepts_any_json() -> None:
    schema = input_schema(Untyped)
    assert schema["required"] == ["value"]
    assert "type" not in schema["properties"]["value"]
    assert schema["properties"]["scale"]["type"] == "number"


def test_pydantic_model_parameter_is_a_nested_object() -> None:
    schema = input_schema(Nested)
    assert schema["properties"]["origin"] == {"$ref": "#/$defs/Point"}
    assert schema["$defs"]["Point"]["required"] == ["x", "y"]


def test_predict_without_inputs_takes_an_empty_object() -> None:
    schema = input_schema(NoInputs)
    assert schema["properties"] == {}
    assert "required" not in schema


def test_star_args_are_refused() -> None:
    with pytest.raises(SpecError, match=r"StarArgs.predict takes \*rows") as caught:
        input_schema(StarArgs)
    assert "named parameter" in caught.value.hint


def test_unresolvable_hint_is_a_spec_error() -> None:
    with pytest.raises(
        SpecError, match=r"cannot read the type hints of BadHint\.predict"
    ) as caught:
        input_schema(BadHint)
    assert "importable" in caught.value.hint


def test_parameter_with_leading_underscore_is_not_silently_dropped() -> None:
    try:
        schema = input_schema(Underscored)
    except SpecError as exc:
        assert "_seed" in str(exc)
    else:
        assert schema.get("required") == ["_seed"]


def test_staticmethod_predict_keeps_its_first_input() -> None:
    schema = input_schema(Static)
    assert schema.get("required") == ["text"]
