"""What cog's own inspector says about a Cog predictor: its inputs with their constraints and its
output type, turned into the JSON Schema an endpoint stores (`cog.py` reads the directory)."""

from __future__ import annotations

import enum
import pathlib
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from coldbrew.errors import SpecError

CONFIG_FILE = "cog.yaml"
#: The key under which the output's JSON Schema rides along in the stored input schema
#: (JSON Schema ignores unknown keywords; the Replicate API serves it as `Output`).
OUTPUT_SCHEMA_KEY = "x-cog-output"


@contextmanager
def quiet_deprecations() -> Iterator[None]:
    """cog 0.23 warns that `BasePredictor`/`predict` are deprecated; they still work here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def split_ref(directory: Path, ref: str) -> tuple[str, str, str | None]:
    """`predict.py:Predictor` -> (file path, module name, class name or None)."""
    file_part, _, class_name = ref.partition(":")
    path = (directory / file_part).resolve()
    if not path.is_file():
        raise SpecError(
            f"{CONFIG_FILE} points at {file_part}, which is not in the directory",
            hint="deploy the directory that holds cog.yaml and the predictor file",
        )
    return str(path), path.stem, class_name or None


def import_cog() -> None:
    try:
        import cog  # noqa: F401
    except ImportError:
        raise SpecError(
            "this is a Cog model directory, but the `cog` package is not installed on the server",
            hint="pip install cog==0.23.1 into coldbrew's environment",
        ) from None


def predictor_info(directory: Path, ref: str) -> Any:
    """cog's `PredictorInfo` (inputs with their constraints, output type) for `ref`."""
    import_cog()
    import importlib.util

    from cog import _inspector

    file_path, module_name, class_name = split_ref(directory, ref)
    spec = importlib.util.spec_from_file_location(module_name, file_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    if str(directory.resolve()) not in sys.path:
        sys.path.insert(0, str(directory.resolve()))
    spec.loader.exec_module(module)
    if class_name is None:  # cog's own rule: Runner, else Predictor
        class_name = "Runner" if hasattr(module, "Runner") else "Predictor"
    with quiet_deprecations():
        try:
            return _inspector.create_predictor(module_name, class_name)
        except (ValueError, TypeError, ImportError) as exc:
            raise SpecError(
                f"cog cannot use {ref}: {exc}",
                hint="check the predictor's type hints and Input(...) arguments",
            ) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, pathlib.Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_default(v) for v in value]
    return value


def _constraints(field: Any) -> dict[str, Any]:
    """cog's Input(...) constraints as JSON Schema keywords."""
    out: dict[str, Any] = {}
    if field.ge is not None:
        out["minimum"] = int(field.ge) if field.ge == int(field.ge) else field.ge
    if field.le is not None:
        out["maximum"] = int(field.le) if field.le == int(field.le) else field.le
    if field.min_length is not None:
        out["minLength"] = field.min_length
    if field.max_length is not None:
        out["maxLength"] = field.max_length
    if field.regex is not None:  # cog uses re.match: anchored at the start
        out["pattern"] = field.regex if field.regex.startswith("^") else f"^(?:{field.regex})"
    if field.choices is not None:
        out["enum"] = list(field.choices)
    return out


def _property(field: Any) -> tuple[dict[str, Any], bool]:
    """One input's JSON Schema and whether it is required."""
    from dataclasses import MISSING, Field

    from cog import _adt

    core = dict(field.type.json_type())
    if field.type.primitive is _adt.PrimitiveType.ANY and "type" in core:
        del core["type"]  # Any: any JSON value
    limits = _constraints(field)
    repeated = field.type.repetition in (
        _adt.Repetition.REPEATED,
        _adt.Repetition.OPTIONAL_REPEATED,
    )
    if repeated and "items" in core:
        core["items"] = {**core["items"], **limits}
    else:
        core.update(limits)
    optional = field.type.repetition in (
        _adt.Repetition.OPTIONAL,
        _adt.Repetition.OPTIONAL_REPEATED,
    )
    core.pop("nullable", None)
    prop: dict[str, Any] = {"anyOf": [core, {"type": "null"}]} if optional else core
    prop["title"] = field.name.replace("_", " ").title()
    prop["x-order"] = field.order
    if field.description:
        prop["description"] = field.description
    if field.deprecated:
        prop["deprecated"] = True
    default = field.default
    if isinstance(default, Field):
        has_default = default.default is not MISSING or default.default_factory is not MISSING
        if default.default is not MISSING and default.default is not None:
            prop["default"] = _json_default(default.default)
    else:
        has_default = default is not None
        if has_default:
            prop["default"] = _json_default(default)
    return prop, not (has_default or optional)


def input_schema(info: Any) -> dict[str, Any]:
    """The JSON Schema of a cog predictor's input, with the output schema alongside.

    Unknown fields are let through (cog ignores them with a warning in the job's logs).
    """
    properties: dict[str, Any] = {}
    required = []
    for name, field in sorted(info.inputs.items(), key=lambda kv: kv[1].order):
        properties[name], is_required = _property(field)
        if is_required:
            required.append(name)
    schema: dict[str, Any] = {"title": "Input", "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema[OUTPUT_SCHEMA_KEY] = info.output.json_type()
    return schema
