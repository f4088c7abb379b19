"""Turn the type hints of `predict` into the endpoint's input schema (pydantic → JSON Schema)."""

from __future__ import annotations

import inspect
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from coldbrew.errors import SpecError


def input_model(cls: type) -> type[BaseModel]:
    """A pydantic model whose fields are the keyword arguments of `cls.predict`.

    Parameters without a hint accept any JSON value; a `**kwargs` parameter lets unknown fields
    through, otherwise they are refused.
    """
    predict = cls.predict  # type: ignore[attr-defined]
    try:
        hints = typing.get_type_hints(predict, include_extras=True)
    except Exception as exc:
        raise SpecError(
            f"cannot read the type hints of {cls.__name__}.predict: {exc}",
            hint="make every annotation importable at module level",
        ) from exc
    fields: dict[str, Any] = {}
    extra = "forbid"
    params = list(inspect.signature(predict).parameters.values())
    if not isinstance(inspect.getattr_static(cls, "predict"), staticmethod | classmethod):
        params = params[1:]  # drop self
    for param in params:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra = "allow"
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise SpecError(
                f"{cls.__name__}.predict takes *{param.name}; inputs are keyword arguments",
                hint="declare each input as a named parameter",
            )
        if param.name.startswith("_"):
            raise SpecError(
                f"{cls.__name__}.predict has the input {param.name!r}; input names cannot "
                "start with '_'",
                hint="rename the parameter",
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    config = ConfigDict(extra=extra)  # type: ignore[typeddict-item]
    model: type[BaseModel] = create_model(f"{cls.__name__}Input", __config__=config, **fields)
    return model


def input_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of `cls.predict`'s input, as clients and the gateway see it."""
    try:
        return input_model(cls).model_json_schema()
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(
            f"the type hints of {cls.__name__}.predict cannot be turned into a schema: {exc}",
            hint="use JSON-compatible types (str, int, float, bool, list, dict, pydantic models)",
        ) from exc
