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

import re
from pathlib import Path
from typing import Any

from coldbrew.errors import SpecError
from coldbrew.names import NAME_PATTERN
from coldbrew.runtime.adapters.dockerfile import handler_from_dockerfile
from coldbrew.runtime.adapters.settings import (
    CONFIG_FILE,
    DirectorySettings,
    directory_label,
    endpoint_name,
    read_settings,
)
from coldbrew.runtime.adapters.settings import DIRECTORY_NAME_ENV as DIRECTORY_NAME_ENV
from coldbrew.sdk.app import ModelDef

#: The class name recorded for RunPod handler versions; it can never be a Python class name,
#: so the backend recognises these launches without a second field.
HANDLER_CLASS = "runpod.serverless.start"

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


def endpoint_config(directory: Path) -> dict[str, Any]:
    """The endpoint settings of the directory's optional coldbrew.toml (name and spec fields)."""
    settings = read_settings(directory)
    return {**settings.spec, "name": settings.name} if settings.name else dict(settings.spec)


def _starts_worker(path: Path) -> bool:
    return bool(_STARTS_WORKER.search(path.read_text(encoding="utf-8", errors="replace")))


def _repository_handler(directory: Path, settings: DirectorySettings) -> Path | None:
    """A worker repository's handler: `[runpod] handler`, else what the Dockerfile runs."""
    root = directory.resolve()
    if settings.handler is not None:
        path = (directory / settings.handler).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise SpecError(
                f"{CONFIG_FILE} names the handler {settings.handler!r}, which is not a file "
                "in the directory",
                hint='give its path from the directory\'s root: handler = "src/handler.py"',
            )
        return path
    found, _ = handler_from_dockerfile(directory)
    # an image that runs something else (a web server) is not a RunPod worker
    return found if found is not None and _starts_worker(found) else None


def nested_handlers(directory: Path) -> list[str]:
    """Files below the top level that start a RunPod worker (for the error that names one)."""
    return sorted(
        p.relative_to(directory).as_posix()
        for p in directory.glob("*/**/*.py")
        if not any(part.startswith(".") for part in p.relative_to(directory).parts)
        and _starts_worker(p)
    )


def discover(directory: Path) -> dict[str, tuple[str, ModelDef]]:
    """The RunPod endpoint of `directory`: a top-level file that calls
    `runpod.serverless.start`, or the handler a worker repository's Dockerfile runs."""
    settings = read_settings(directory)
    files = handler_files(directory)
    if settings.handler is not None or not files:
        found = _repository_handler(directory, settings)
        files = [found] if found is not None else []
    if not files:
        return {}
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise SpecError(
            f"{directory.name} has {len(files)} RunPod handler files ({names}); "
            "a directory deploys one",
            hint=f'name the one to deploy in {CONFIG_FILE}: [runpod] handler = "{files[0].name}"',
        )
    fields = dict(settings.spec)
    handler = files[0].resolve().relative_to(directory.resolve())
    source = directory_label(directory) or handler.stem
    name = settings.name or endpoint_name(source)
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
    from coldbrew.spec import parse_spec

    # snapshot: the handler is its own process, there is no template to fork from
    spec = parse_spec({**fields, "name": name, "snapshot": False}, where=CONFIG_FILE)
    cls = type(HANDLER_CLASS, (RunPodHandler,), {"__doc__": f"RunPod handler {handler}"})
    module = handler.with_suffix("").as_posix()  # the worker runs `<module>.py`
    return {name: (module, ModelDef(name=name, cls=cls, spec=spec))}
