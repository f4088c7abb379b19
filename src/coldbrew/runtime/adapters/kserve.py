"""KServe `Model` subclasses as coldbrew models: a file written for `kserve.ModelServer` deploys
unmodified.

A top-level `.py` file that imports kserve and defines `class X(kserve.Model)` (or `(Model)` after
`from kserve import Model`) becomes an endpoint per such class. The endpoint's name is the one the
file gives the model (`X("name")`, usually under `if __name__ == "__main__"`; `X(args.model_name)`
is kserve's default, `model`), else the class name in lower case; `coldbrew.toml` `[endpoint]`
may set it and the other settings. The version records this module and `"<file>.<Class>"` as
its class: the worker imports this module, whose `__getattr__` builds a coldbrew model class
around the user's class. Its `setup()` creates the model and calls `load()` unless the
constructor did; its `predict(**request)` runs KServe's own preprocess → predict → postprocess
chain (`Model.__call__`) on an `InferRequest` made from an Open Inference Protocol body
(`{"inputs": [...]}`), or on the dict itself (v1 style, `{"instances": [...]}`), and returns the
response as JSON.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import threading
from pathlib import Path
from typing import Any

from coldbrew.errors import SpecError
from coldbrew.names import NAME_PATTERN
from coldbrew.sdk.app import ModelDef

#: The module recorded for KServe versions; the class field holds "<file>.<Class>".
ADAPTER_MODULE = "coldbrew.runtime.adapters.kserve"
#: The job input key that carries a request's binary tensor data, base64-encoded (the gateway's
#: `api/tensors.py` sets it; runtime code cannot import the api layer).
BINARY_KEY = "coldbrew_binary_data"

_IMPORTS_KSERVE = re.compile(r"^\s*(import kserve|from kserve\b)", re.MULTILINE)
_SUBCLASS = re.compile(r"^class\s+(\w+)\s*\(\s*(?:kserve\.)?Model\s*\)\s*:", re.MULTILINE)


#: The name `kserve.ModelServer` serves a model under when the file passes `args.model_name`
#: (the `--model_name` flag of kserve's argument parser, whose default this is).
DEFAULT_MODEL_NAME = "model"


def _given_name(text: str, class_name: str) -> str | None:
    """The name the file constructs its model with: a string literal, else (an expression such
    as `args.model_name`) kserve's default `model`; None when the file never constructs it."""
    match = re.search(rf"\b{class_name}\(\s*(?:name\s*=\s*)?[\"']([^\"']+)[\"']", text)
    if match:
        return match.group(1)
    if re.search(rf"(?<!class )(?<![\w.]){class_name}\(\s*[^)\s]", text):
        return DEFAULT_MODEL_NAME
    return None


class _Stand:
    """Stands for a KServe model at deploy time: `**request` makes the input schema free-form."""

    def predict(self, **request: Any) -> Any:
        raise RuntimeError("a KServe model runs in a worker, through the adapter class")


def discover(directory: Path) -> dict[str, tuple[str, ModelDef]]:
    """The KServe models of `directory`, by endpoint name (module: this adapter)."""
    from coldbrew.runtime.adapters.runpod import endpoint_config
    from coldbrew.spec import parse_spec

    found: dict[str, tuple[str, ModelDef]] = {}
    for path in sorted(directory.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if not _IMPORTS_KSERVE.search(text):
            continue
        classes = _SUBCLASS.findall(text)
        fields = endpoint_config(directory)
        for class_name in classes:
            name = _given_name(text, class_name) or class_name.lower()
            if len(classes) == 1 and fields.get("name"):
                name = fields["name"]
            if name in found:
                raise SpecError(
                    f"two KServe models of {directory.name} are both named {name!r} "
                    f"({found[name][1].cls.__name__} and {path.stem}.{class_name})",
                    hint="give each its own name, or deploy each file from its own directory "
                    'with a name in coldbrew.toml: [endpoint] name = "my-model"',
                )
            if not NAME_PATTERN.match(name):
                raise SpecError(
                    f"KServe model {class_name} in {path.name} is named {name!r}, which is not a "
                    "valid endpoint name",
                    hint='set one in coldbrew.toml: [endpoint] name = "my-model"',
                )
            spec = parse_spec(
                {"snapshot": False, **fields, "name": name}, where=f"{path.name}:{class_name}"
            )
            cls = type(f"{path.stem}.{class_name}", (_Stand,), {})
            found[name] = (ADAPTER_MODULE, ModelDef(name=name, cls=cls, spec=spec))
    return found


def is_oip_request(request: dict[str, Any]) -> bool:
    inputs = request.get("inputs")
    return isinstance(inputs, list) and all(isinstance(t, dict) for t in inputs)


class KServeAdapter:
    """A coldbrew model around one KServe `Model` subclass (made per class by `__getattr__`)."""

    user_module = ""
    user_class = ""

    def setup(self) -> None:
        module = importlib.import_module(self.user_module)
        cls = getattr(module, self.user_class)
        text = Path(str(module.__file__)).read_text(encoding="utf-8", errors="replace")
        # the name the file gives its model, as kserve.ModelServer would have served it
        self.model = cls(_given_name(text, self.user_class) or self.user_class.lower())
        if not getattr(self.model, "ready", False):
            self.model.load()
        self._loops = threading.local()

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop | None = getattr(self._loops, "loop", None)
        if loop is None:
            loop = self._loops.loop = asyncio.new_event_loop()
        return loop

    def predict(self, **request: Any) -> Any:
        from kserve.protocol.infer_type import (  # type: ignore[import-not-found,unused-ignore]
            InferRequest,
            InferResponse,
        )

        payload: Any = request
        if is_oip_request(request):
            import base64

            import orjson

            binary = request.pop(BINARY_KEY, None)  # the bytes after the JSON, as sent
            header = orjson.dumps(request)
            raw = header + (base64.b64decode(binary) if isinstance(binary, str) else b"")
            payload = InferRequest.from_bytes(raw, len(header), self.model.name)
        result, _headers = self._loop().run_until_complete(self.model(payload, headers={}))
        if isinstance(result, InferResponse):
            body, _length = result.to_rest()
            return body
        return result


def __getattr__(name: str) -> type:
    """`"<file>.<Class>"` → a `KServeAdapter` subclass for that user class (what workers load)."""
    module, _, class_name = name.rpartition(".")
    if not module or not class_name.isidentifier():
        raise AttributeError(name)
    return type(name, (KServeAdapter,), {"user_module": module, "user_class": class_name})
