"""Turn the type hints of `predict` into the endpoint's input schema (pydantic → JSON Schema)."""

from __future__ import annotations

import inspect
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from coldbrew.errors import SpecError


def _element(annotation: Any, name: str, cls: type) -> Any:
    """`list[X]` → `X`: a batched predict takes lists, the request holds one element."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = typing.get_args(annotation)
    if type(None) in args and len(args) == 2:  # list[X] | None: the element may be missing
        (inner,) = [a for a in args if a is not type(None)]
        return _element(inner, name, cls) | None
    if typing.get_origin(annotation) is list:
        (element,) = typing.get_args(annotation) or (Any,)
        return element
    if annotation is Any:
        return Any
    raise SpecError(
        f"{cls.__name__}.predict is batched, so {name!r} must be annotated list[...]",
        hint="with batch=coldbrew.Batch(...), each argument is a list with one item per job",
    )


def input_model(cls: type, batched: bool = False) -> type[BaseModel]:
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
        if batched:
            annotation = _element(annotation, param.name, cls)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    config = ConfigDict(extra=extra)  # type: ignore[typeddict-item]
    model: type[BaseModel] = create_model(f"{cls.__name__}Input", __config__=config, **fields)
    return model


def input_schema(cls: type, batched: bool = False) -> dict[str, Any]:
    """The JSON Schema of `cls.predict`'s input, as clients and the gateway see it.

    An adapter class for another platform's models brings its own (`__coldbrew_input_schema__`).
    """
    own = getattr(cls, "__coldbrew_input_schema__", None)
    if isinstance(own, dict):
        return own
    try:
        return input_model(cls, batched).model_json_schema()
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(
            f"the type hints of {cls.__name__}.predict cannot be turned into a schema: {exc}",
            hint="use JSON-compatible types (str, int, float, bool, list, dict, pydantic models)",
        ) from exc
