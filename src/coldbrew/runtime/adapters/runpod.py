"""RunPod handler files as coldbrew endpoints: how a deployed directory declares one.

A top-level `.py` file that calls `runpod.serverless.start(...)` is a RunPod worker. coldbrew
never imports it: each worker runs the file unmodified as its own process
(`backends/runpod.py`), and the gateway serves it RunPod's worker protocol
(`api/runpod_worker.py`). The endpoint's name and settings come from an optional
`coldbrew.toml` next to it; without one, the name is the deployed directory's:

```toml
[endpoint]
name = "my-worker"   # default: the directory's name
max_workers = 2
concurrency = 4      # jobs one worker takes at once: what the concurrency_modifier allows
timeout_s = 120
```
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from coldbrew.errors import SpecError
from coldbrew.sdk.app import ModelDef
from coldbrew.sdk.names import NAME_PATTERN

#: The class name recorded for RunPod handler versions; it can never be a Python class name,
#: so the backend recognises these launches without a second field.
HANDLER_CLASS = "runpod.serverless.start"
#: Set by the deployer for the inspecting process: the name of the directory that was deployed.
DIRECTORY_NAME_ENV = "COLDBREW_DIRECTORY_NAME"
CONFIG_FILE = "coldbrew.toml"

_STARTS_WORKER = re.compile(r"\bserverless\s*\.\s*start\s*\(")


class RunPodHandler:
    """Stands for a handler file at deploy time: `**input` makes the input schema free-form."""

    def predict(self, **input: Any) -> Any:
        raise RuntimeError("a RunPod handler runs in its own process, never through predict()")


def handler_files(directory: Path) -> list[Path]:
    """Top-level `.py` files of `directory` that start a RunPod serverless worker."""
    return [
        path
        for path in sorted(directory.glob("*.py"))
        if _STARTS_WORKER.search(path.read_text(encoding="utf-8", errors="replace"))
    ]


def endpoint_name(text: str) -> str:
    """A directory name made into an endpoint name: `My Worker` → `my-worker`."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:63]
    return name.rstrip("-_")


def endpoint_config(directory: Path) -> dict[str, Any]:
    """The `[endpoint]` table of the directory's optional coldbrew.toml (spec fields)."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(
            f"{CONFIG_FILE} is not valid TOML: {exc}", hint="fix the file and deploy again"
        ) from None
    endpoint = data.get("endpoint", {})
    if not isinstance(endpoint, dict):
        raise SpecError(
            f"{CONFIG_FILE}: [endpoint] must be a table", hint='[endpoint]\nname = "my-worker"'
        )
    return dict(endpoint)


def discover(directory: Path) -> dict[str, tuple[str, ModelDef]]:
    """The RunPod endpoint of `directory`, if a top-level file calls `runpod.serverless.start`."""
    files = handler_files(directory)
    if not files:
        return {}
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise SpecError(
            f"{directory.name} has {len(files)} RunPod handler files ({names}); "
            "a directory deploys one",
            hint="put each handler file in its own directory and deploy each",
        )
    fields = endpoint_config(directory)
    source = os.environ.get(DIRECTORY_NAME_ENV) or files[0].stem
    name = fields.pop("name", None) or endpoint_name(source)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SpecError(
            f"{name!r} (from {source!r}) is not a valid endpoint name",
            hint=f'set one in {CONFIG_FILE}: [endpoint] name = "my-worker" (lower-case letters, '
            "digits, '-' or '_')",
        )
    if fields.get("batch") is not None:
        raise SpecError(
            "a RunPod handler takes one job at a time; batch is not supported for it",
            hint=f"remove batch from {CONFIG_FILE}; use concurrency for parallel jobs",
        )
    from coldbrew.sdk.spec import parse_spec

    # snapshot: the handler is its own process, there is no template to fork from
    spec = parse_spec({**fields, "name": name, "snapshot": False}, where=CONFIG_FILE)
    cls = type(HANDLER_CLASS, (RunPodHandler,), {"__doc__": f"RunPod handler {files[0].name}"})
    return {name: (files[0].stem, ModelDef(name=name, cls=cls, spec=spec))}
