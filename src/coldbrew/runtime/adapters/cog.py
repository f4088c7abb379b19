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
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldbrew.errors import SpecError
from coldbrew.names import NAME_PATTERN
from coldbrew.runtime.adapters.cog_schema import (
    CONFIG_FILE,
    OUTPUT_SCHEMA_KEY,
    import_cog,
    input_schema,
    predictor_info,
    quiet_deprecations,
    split_ref,
)
from coldbrew.runtime.adapters.cog_values import (
    check_file_url,
    file_fields,
    materialise,
    to_json,
    union_values,
)
from coldbrew.runtime.adapters.settings import directory_label, endpoint_name, read_settings
from coldbrew.sdk.app import ModelDef

# Re-exported: the gateway checks file URLs and reads the output schema key from here.
__all__ = [
    "CONFIG_FILE",
    "OUTPUT_SCHEMA_KEY",
    "SETTINGS_FILE",
    "CogConfig",
    "CogModel",
    "check_file_url",
    "discover_cog",
    "input_schema",
    "predictor_info",
    "read_config",
    "to_json",
]

SETTINGS_FILE = "coldbrew.toml"


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


class CogModel:
    """Runs the Cog predictor named in `./cog.yaml` through coldbrew's ordinary worker.

    The worker calls `setup()` once and `predict(**input)` per job; a generator return streams.
    """

    def __init__(self) -> None:
        import_cog()
        from cog.predictor import load_predictor_from_ref

        directory = Path(".")
        config = read_config(directory)
        self.info = predictor_info(directory, config.ref)
        file_path, _, class_name = split_ref(directory, config.ref)
        ref = f"{file_path}:{class_name or self.info.predictor_name}"
        with quiet_deprecations():
            self.predictor = load_predictor_from_ref(ref)
        self._call = self._entry_point(self.predictor)
        self._files = file_fields(self.info)
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
        kwargs = union_values(self.info, payload, check_input(self.info.inputs, payload))
        temps: list[Any] = []
        try:
            kwargs = {k: materialise(v, temps) for k, v in kwargs.items()}
            with quiet_deprecations():
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
