"""Find and import the models declared in a deployed directory.

A directory's model modules are its top-level `.py` files that import coldbrew; other files
(weight generators, helpers) are never executed by the platform.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from coldbrew.errors import SpecError
from coldbrew.sdk.app import App, ModelDef

_IMPORTS_COLDBREW = re.compile(r"^\s*(import coldbrew|from coldbrew)\b", re.MULTILINE)


def model_modules(directory: Path) -> list[str]:
    """Names of the top-level modules in `directory` that import coldbrew, sorted."""
    names = []
    for path in sorted(directory.glob("*.py")):
        if _IMPORTS_COLDBREW.search(path.read_text(encoding="utf-8", errors="replace")):
            names.append(path.stem)
    return names


def import_module(directory: Path, module: str) -> ModuleType:
    """Import `module` from `directory`, which becomes the working directory and on sys.path."""
    path = str(directory.resolve())
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module(module)


def models_in(module: ModuleType) -> list[ModelDef]:
    """Every model registered on an `App` that `module` defines at top level."""
    found: list[ModelDef] = []
    for value in vars(module).values():
        if isinstance(value, App):
            found.extend(value.models.values())
    return found


def pipelines_in(directory: Path) -> list[dict[str, Any]]:
    """The definitions of the pipelines declared with `app.pipeline(...)` in `directory` (after
    `discover` imported its modules)."""
    found: dict[str, dict[str, Any]] = {}
    for module_name in model_modules(directory):
        for value in vars(import_module(directory, module_name)).values():
            if isinstance(value, App):
                found.update((n, p.definition) for n, p in value.pipelines.items())
    return [found[name] for name in sorted(found)]


def discover(directory: Path) -> dict[str, tuple[str, ModelDef]]:
    """All models in `directory`, by endpoint name, with the module that defines each."""
    if (directory / "cog.yaml").is_file():  # a Cog model directory: one endpoint
        from coldbrew.runtime.adapters.cog import discover_cog

        return discover_cog(directory)
    from coldbrew.runtime.adapters import kserve, runpod  # files written for other platforms

    result: dict[str, tuple[str, ModelDef]] = dict(runpod.discover(directory))
    result.update(kserve.discover(directory))
    modules = model_modules(directory)
    if not modules and result:
        return result
    if not modules:
        nested = runpod.nested_handlers(directory)
        if nested:  # a RunPod worker repository whose image command we could not read
            raise SpecError(
                f"no model found in {directory.name}: {nested[0]} starts a RunPod worker, but "
                "no Dockerfile CMD or ENTRYPOINT runs it",
                hint=f'name it in coldbrew.toml:\n[runpod]\nhandler = "{nested[0]}"',
            )
        raise SpecError(
            f"no model found in {directory}: no top-level .py file imports coldbrew",
            hint="add a file with `app = coldbrew.App(...)` and an `@app.model()` class",
        )
    for module_name in modules:
        for model in models_in(import_module(directory, module_name)):
            if model.name in result:
                raise SpecError(
                    f"endpoint {model.name!r} is defined twice "
                    f"({result[model.name][0]}.py and {module_name}.py)",
                    hint="give one of them another name with @app.model(name=...)",
                )
            result[model.name] = (module_name, model)
    if not result:
        raise SpecError(
            f"no model found in {directory}: modules {modules} define no @app.model class",
            hint="decorate the model class with @app.model() on a coldbrew.App",
        )
    return result


def load_class(directory: Path, module: str, class_name: str) -> type:
    """Import one model class by module and class name (what a worker does)."""
    cls = getattr(import_module(directory, module), class_name, None)
    if not isinstance(cls, type):
        raise SpecError(f"{module}.py has no class {class_name}")
    return cls
