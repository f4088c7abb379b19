"""Cog model directories (`cog.yaml` + `predict.py`) as coldbrew endpoints, without Docker.

A directory with a `cog.yaml` is one endpoint. Its predictor (`predict: "predict.py:Predictor"`,
or `run: "run.py:Runner"`) is inspected with cog's own helpers: the input schema, defaults and
constraints come from the `predict`/`run` signature (`cog.Input(ge=, le=, choices=, regex=...)`).
Workers load `CogModel` from this module, which reads `./cog.yaml` in the artifact directory,
loads the predictor with `cog.predictor.load_predictor_from_ref`, runs its `setup()` once and
calls it per job: inputs are checked and normalised by cog (`cog.Path` URLs are downloaded to
temporary files), iterator outputs stream as chunks, and `cog.Path` outputs come back as
`data:` URIs (what Replicate returns for files in sync mode).

Deployment settings: an optional `coldbrew.toml` beside `cog.yaml` (`[endpoint]` with
`name = "..."`, `max_workers = 2`, ...; `runtime/adapters/settings.py`). The endpoint's name is
that `name`, else the last part of cog.yaml's `image:` (`r8.im/acme/hello` -> `hello`), else the
deployed directory's name, never the predictor class (every Cog class is called `Predictor`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import enum
import inspect
import ipaddress
import mimetypes
import pathlib
import sys
import urllib.parse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldbrew.errors import SpecError
from coldbrew.names import NAME_PATTERN
from coldbrew.runtime.adapters.settings import directory_label, endpoint_name, read_settings
from coldbrew.sdk.app import ModelDef

CONFIG_FILE = "cog.yaml"
SETTINGS_FILE = "coldbrew.toml"
#: The key under which the output's JSON Schema rides along in the stored input schema
#: (JSON Schema ignores unknown keywords; the Replicate API serves it as `Output`).
OUTPUT_SCHEMA_KEY = "x-cog-output"
_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class CogConfig:
    """What coldbrew reads from a Cog directory."""

    ref: str  # "predict.py:Predictor"
    name: str | None  # from coldbrew.toml or the image
    spec: dict[str, Any]  # coldbrew.toml, without name


def read_config(directory: Path) -> CogConfig:
    """Parse `cog.yaml` (and `coldbrew.toml` when present) with the fix in every error."""
    import yaml

    path = directory / CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{CONFIG_FILE} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise SpecError(f"{CONFIG_FILE} must be a mapping", hint='predict: "predict.py:Predictor"')
    ref = config.get("run") or config.get("predict")
    if not isinstance(ref, str) or not ref.strip():
        raise SpecError(
            f"{CONFIG_FILE} names no predictor",
            hint='add `predict: "predict.py:Predictor"` (or `run: "run.py:Runner"`)',
        )
    settings = read_settings(directory)
    name, spec = settings.name, dict(settings.spec)
    image = config.get("image")
    if name is None and isinstance(image, str) and image.strip("/"):
        name = image.rstrip("/").rsplit("/", 1)[-1].split(":", 1)[0].lower()
    if name is None and directory_label(directory):
        name = endpoint_name(str(directory_label(directory)))
    return CogConfig(ref=ref.strip(), name=name, spec=spec)


@contextmanager
def _quiet_deprecations() -> Iterator[None]:
    """cog 0.23 warns that `BasePredictor`/`predict` are deprecated; they still work here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _split_ref(directory: Path, ref: str) -> tuple[str, str, str | None]:
    """`predict.py:Predictor` -> (file path, module name, class name or None)."""
    file_part, _, class_name = ref.partition(":")
    path = (directory / file_part).resolve()
    if not path.is_file():
        raise SpecError(
            f"{CONFIG_FILE} points at {file_part}, which is not in the directory",
            hint="deploy the directory that holds cog.yaml and the predictor file",
        )
    return str(path), path.stem, class_name or None


def _import_cog() -> None:
    try:
        import cog  # noqa: F401
    except ImportError:
        raise SpecError(
            "this is a Cog model directory, but the `cog` package is not installed on the server",
            hint="pip install cog==0.23.1 into coldbrew's environment",
        ) from None


def predictor_info(directory: Path, ref: str) -> Any:
    """cog's `PredictorInfo` (inputs with their constraints, output type) for `ref`."""
    _import_cog()
    import importlib.util

    from cog import _inspector

    file_path, module_name, class_name = _split_ref(directory, ref)
    spec = importlib.util.spec_from_file_location(module_name, file_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    if str(directory.resolve()) not in sys.path:
        sys.path.insert(0, str(directory.resolve()))
    spec.loader.exec_module(module)
    if class_name is None:  # cog's own rule: Runner, else Predictor
        class_name = "Runner" if hasattr(module, "Runner") else "Predictor"
    with _quiet_deprecations():
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


def discover_cog(directory: Path) -> dict[str, tuple[str, ModelDef]]:
    """The one endpoint of a Cog directory, as `loader.discover` returns models."""
    from coldbrew.spec import parse_spec

    config = read_config(directory)
    info = predictor_info(directory, config.ref)
    name = config.name or info.predictor_name.lower()
    if not NAME_PATTERN.match(name):
        raise SpecError(
            f"endpoint name {name!r} (from {SETTINGS_FILE}, cog.yaml's image or the directory) "
            "is not valid",
            hint=f'set [endpoint] name = "my-model" in {SETTINGS_FILE}: lower-case letters, '
            "digits, - or _",
        )
    spec = parse_spec(config.spec, where=f"{SETTINGS_FILE} of {name}")
    schema = input_schema(info)
    cls = type("CogModel", (CogModel,), {"__coldbrew_input_schema__": schema})
    return {name: (__name__, ModelDef(name=name, cls=cls, spec=spec))}


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_file_url(field: str, value: Any) -> None:
    """A `cog.Path` input must be a `data:` URI or an http URL on this machine (loopback).

    The worker's own check, before it downloads: the gateway refuses such inputs with 400 at the
    edge (`api/file_inputs.py`); this keeps a job that reached the worker anyway from fetching
    another host's URL (an endpoint with `network=True` could reach it)."""
    if not isinstance(value, str):
        return
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme == "data":
        return
    if parsed.scheme in ("http", "https") and _is_loopback(parsed.hostname):
        return
    raise ValueError(
        f"{field}: file inputs must be a data: URI, a /v1/files URL or an http URL on this "
        f"machine (loopback); got {value[:80]!r}"
    )


def _file_fields(info: Any) -> set[str]:
    from cog import _adt

    return {
        name
        for name, field in info.inputs.items()
        if field.type.primitive in (_adt.PrimitiveType.PATH, _adt.PrimitiveType.FILE)
    }


def _union_values(info: Any, payload: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
    """Union inputs (`str | float | None`) as Cog's server passes them: the JSON value itself.

    cog's Python `check_input` validates a union against its members and converts the value to
    the first member that takes it (an integer `1` becomes `1.0` for `float`); Cog's own server
    hands the predictor the value it received. Union members are plain JSON types (cog refuses
    files and secrets in unions), so the value needs no conversion once it is valid.
    """
    for name, field in info.inputs.items():
        if getattr(field.type, "union_variants", None) and payload.get(name) is not None:
            checked[name] = payload[name]
    return checked


def _materialise(value: Any, temps: list[Any]) -> Any:
    """Download a URL input (cog's `URLPath`) to a temporary file and pass its `cog.Path`."""
    from cog.types import URLPath

    if isinstance(value, URLPath):
        temps.append(value)
        return value.convert()
    if isinstance(value, list):
        return [_materialise(v, temps) for v in value]
    return value


def _data_uri(path: pathlib.Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def to_json(value: Any) -> Any:
    """An output as JSON: files become `data:` URIs, dataclasses objects, enums their value."""
    if isinstance(value, pathlib.Path):
        return _data_uri(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if hasattr(value, "get_secret_value"):  # cog.Secret
        return value.get_secret_value()
    return value


class CogModel:
    """Runs the Cog predictor named in `./cog.yaml` through coldbrew's ordinary worker.

    The worker calls `setup()` once and `predict(**input)` per job; a generator return streams.
    """

    def __init__(self) -> None:
        _import_cog()
        from cog.predictor import load_predictor_from_ref

        directory = Path(".")
        config = read_config(directory)
        self.info = predictor_info(directory, config.ref)
        file_path, _, class_name = _split_ref(directory, config.ref)
        ref = f"{file_path}:{class_name or self.info.predictor_name}"
        with _quiet_deprecations():
            self.predictor = load_predictor_from_ref(ref)
        self._call = self._entry_point(self.predictor)
        self._files = _file_fields(self.info)
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def _entry_point(predictor: Any) -> Any:
        """What runs per job: a function predictor (`predict.py:run` naming a plain function)
        is called itself; a class's instance through `run`, or `predict` for older classes."""
        if inspect.isfunction(predictor):
            return predictor
        from cog.predictor import _user_method_owner

        defines_run = _user_method_owner(type(predictor), "run") is not None
        return getattr(predictor, "run" if defines_run else "predict")

    def setup(self) -> None:
        """The predictor's `setup()` (with `weights` from COG_WEIGHTS when it takes them)."""
        from cog.predictor import extract_setup_weights, has_setup_weights

        setup = getattr(self.predictor, "setup", None)
        if not callable(setup):
            return
        if has_setup_weights(self.predictor):
            self._await(setup(weights=extract_setup_weights(self.predictor)))
        else:
            self._await(setup())

    def predict(self, **payload: Any) -> Any:
        """Check and normalise the input as cog does, run the predictor, encode its output."""
        from cog._inspector import check_input

        for field in self._files & payload.keys():
            value = payload[field]
            for one in value if isinstance(value, list) else [value]:
                check_file_url(field, one)
        kwargs = _union_values(self.info, payload, check_input(self.info.inputs, payload))
        temps: list[Any] = []
        try:
            kwargs = {k: _materialise(v, temps) for k, v in kwargs.items()}
            with _quiet_deprecations():
                result = self._call(**kwargs)
        except BaseException:
            self._cleanup(temps)
            raise
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            return self._stream(result, temps)
        try:
            return to_json(self._await(result))
        finally:
            self._cleanup(temps)

    def _stream(self, result: Any, temps: list[Any]) -> Iterator[Any]:
        try:
            if inspect.isasyncgen(result):
                while True:
                    try:
                        item = self._await(anext(result))
                    except StopAsyncIteration:
                        return
                    yield to_json(item)
            else:
                for item in result:
                    yield to_json(item)
        finally:
            self._cleanup(temps)

    def _await(self, value: Any) -> Any:
        """Run a coroutine on this worker's own loop (async predictors); pass values through."""
        if not inspect.isawaitable(value):
            return value
        if self._loop is None:  # created on first use: never inherited across a fork
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(value)

    @staticmethod
    def _cleanup(temps: list[Any]) -> None:
        for temp in temps:
            temp.unlink(missing_ok=True)
