"""`coldbrew.toml`: one settings file for every kind of directory (Cog, RunPod, KServe).

The file sits next to the platform's own files, which stay unmodified. Its format is the same
whatever the directory holds:

```toml
[endpoint]            # the endpoint's name and any deployment setting
name = "my-model"     # default: the deployed directory's name (or what the files declare)
max_workers = 2
timeout_s = 120

[runpod]              # RunPod worker repositories only
handler = "src/handler.py"   # default: the Dockerfile's CMD/ENTRYPOINT, or a top-level file
```

Keys at the top level (`name = "..."` without a table) mean the same as under `[endpoint]`,
which is how the first Cog directories wrote it.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldbrew.errors import SpecError

CONFIG_FILE = "coldbrew.toml"
#: Set by the deployer for the inspecting process: the name of the directory that was deployed
#: (the artifact is unpacked under its hash, so the inspected directory's own name says nothing).
DIRECTORY_NAME_ENV = "COLDBREW_DIRECTORY_NAME"
_TABLES = ("endpoint", "runpod")
_RUNPOD_KEYS = ("handler",)
_EXAMPLE = '[endpoint]\nname = "my-model"\nmax_workers = 2'


@dataclass(frozen=True)
class DirectorySettings:
    """What a directory's coldbrew.toml says (empty when it has none)."""

    name: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # DeploymentSpec fields, without name
    handler: str | None = None  # [runpod] handler: the file RunPod's image runs


def endpoint_name(text: str) -> str:
    """A directory name made into an endpoint name: `My Worker` → `my-worker`."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:63]
    return name.rstrip("-_")


def directory_label(directory: Path) -> str | None:
    """The deployed directory's name: what the client sent, else the directory's own name
    unless it is an artifact hash; None when there is none."""
    sent = os.environ.get(DIRECTORY_NAME_ENV)
    if sent:
        return sent
    own = directory.resolve().name
    return None if re.fullmatch(r"[0-9a-f]{64}", own) else own


def _load(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{CONFIG_FILE} is not valid TOML: {exc}", hint=_EXAMPLE) from None


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"{CONFIG_FILE}: [{key}] must be a table", hint=_EXAMPLE)
    return dict(value)


def read_settings(directory: Path) -> DirectorySettings:
    """Parse the directory's optional coldbrew.toml, with the fix in every error."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        return DirectorySettings()
    data = _load(path)
    unknown = [k for k, v in data.items() if isinstance(v, dict) and k not in _TABLES]
    if unknown:
        raise SpecError(
            f"{CONFIG_FILE}: unknown table [{unknown[0]}]; the tables are "
            + ", ".join(f"[{t}]" for t in _TABLES),
            hint=_EXAMPLE,
        )
    top = {k: v for k, v in data.items() if k not in _TABLES}
    endpoint = _table(data, "endpoint")
    both = sorted(top.keys() & endpoint.keys())
    if both:
        raise SpecError(
            f"{CONFIG_FILE} sets {both[0]!r} both at the top level and under [endpoint]",
            hint=f"keep one: settings under [endpoint], e.g.\n{_EXAMPLE}",
        )
    spec = {**top, **endpoint}
    name = spec.pop("name", None)
    if name is not None and not isinstance(name, str):
        raise SpecError(f"{CONFIG_FILE}: name must be a string", hint=_EXAMPLE)
    runpod = _table(data, "runpod")
    extra = sorted(runpod.keys() - set(_RUNPOD_KEYS))
    if extra:
        raise SpecError(
            f"{CONFIG_FILE}: unknown key {extra[0]!r} in [runpod]; it takes: handler",
            hint='[runpod]\nhandler = "src/handler.py"',
        )
    handler = runpod.get("handler")
    if handler is not None and not isinstance(handler, str):
        raise SpecError(f"{CONFIG_FILE}: [runpod] handler must be a path (a string)")
    return DirectorySettings(name=name or None, spec=spec, handler=handler)
