"""Which endpoint a deployed directory becomes, and when a deploy would replace another model.

Every version records its *source*: the kind of directory it came from (a coldbrew module, a Cog
predictor, a RunPod handler, a KServe model) and the deployed directory's name. A deploy that
gives an existing endpoint's name to another kind or another directory is refused with the
existing endpoint's origin and the two ways out (another name, or `--replace`), so that two
unrelated models never silently become versions of each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coldbrew.errors import Conflict, InvalidRequest
from coldbrew.names import NAME_PATTERN
from coldbrew.runtime.adapters.kserve import ADAPTER_MODULE as KSERVE_MODULE
from coldbrew.runtime.adapters.runpod import HANDLER_CLASS
from coldbrew.store.models import Version

COG_MODULE = "coldbrew.runtime.adapters.cog"
REQUIREMENTS_FILE = "requirements.txt"
#: How each kind is called in messages.
KIND_LABELS = {
    "coldbrew": "coldbrew model",
    "cog": "Cog model",
    "runpod": "RunPod handler",
    "kserve": "KServe model",
}
#: Said at deploy for a version with requirements (`backends/envs.py`).
ENVIRONMENT_NOTE = (
    "runs in its own environment {key} (built with uv from its requirements; "
    "shared with every version that resolves to the same packages)"
)


def kind_of(module: str, class_name: str) -> str:
    """The kind of directory a version came from, from what the worker loads."""
    if class_name == HANDLER_CLASS:
        return "runpod"
    if module == KSERVE_MODULE:
        return "kserve"
    if module == COG_MODULE:
        return "cog"
    return "coldbrew"


def requirements(directory: Path) -> list[str]:
    """The requirement lines of the directory's `requirements.txt` (comments dropped)."""
    path = directory / REQUIREMENTS_FILE
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [s for line in lines if (s := line.split("#", 1)[0].strip())]


def source_of(model: dict[str, Any], directory: Path, directory_name: str | None) -> dict[str, Any]:
    """What a new version records about where it came from."""
    source: dict[str, Any] = {
        "kind": kind_of(model["module"], model["class"]),
        "directory": directory_name,
    }
    needs = requirements(directory)
    if needs:
        source["requirements"] = needs
    return source


def notes(source: dict[str, Any]) -> list[str]:
    """Lines the deploy prints for this version."""
    if source.get("environment"):
        return [ENVIRONMENT_NOTE.format(key=source["environment"])]
    return []


def rename(models: list[dict[str, Any]], name: str | None) -> list[dict[str, Any]]:
    """Give the directory's one endpoint the name the deploy asked for."""
    if name is None:
        return models
    if not NAME_PATTERN.match(name):
        raise InvalidRequest(
            f"{name!r} is not a valid endpoint name",
            hint="use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit",
        )
    if len(models) != 1:
        found = ", ".join(m["name"] for m in models)
        raise InvalidRequest(
            f"the directory holds {len(models)} models ({found}); a name is for one",
            hint="name each model in its own code (@app.model(name=...)) and deploy without --name",
        )
    return [{**models[0], "name": name}]


def _origin(kind: str, directory: str | None) -> str:
    where = f" from directory {directory!r}" if directory else ""
    return f"a {KIND_LABELS.get(kind, kind)}{where}"


def check_replacement(current: Version, new_source: dict[str, Any]) -> None:
    """Refuse a deploy that would make an unrelated model the next version of `current`."""
    old_kind = current.source.get("kind") or kind_of(current.module, current.class_name)
    old_dir = current.source.get("directory")
    new_kind, new_dir = new_source["kind"], new_source.get("directory")
    same_dir = old_dir is None or new_dir is None or old_dir == new_dir
    if old_kind == new_kind and same_dir:
        return
    raise Conflict(
        f"endpoint {current.endpoint!r} already exists (v{current.number}, "
        f"{_origin(old_kind, old_dir)}); this deploy is {_origin(new_kind, new_dir)} and would "
        "replace it",
        hint=f"choose another name: `coldbrew deploy DIR --name NAME` or [endpoint] name = "
        f'"..." in coldbrew.toml; or replace {current.endpoint!r} on purpose with '
        "`coldbrew deploy DIR --replace`",
    )
