"""Inspect a model directory in a throwaway process: `python -m coldbrew.runtime.inspect DIR`.

Prints one JSON object: `{"models": [...], "pipelines": [...]}` with each endpoint's module,
class, spec and input schema and each declared pipeline's definition, or `{"error": {...}}`.
Runs out of the server process because it imports user code.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

from coldbrew.errors import ColdbrewError, SpecError
from coldbrew.runtime.loader import discover, pipelines_in
from coldbrew.runtime.sandbox.enter import enter_from_env
from coldbrew.runtime.schema import input_schema


def inspect_directory(directory: Path) -> list[dict[str, Any]]:
    """Describe every model in `directory`."""
    described = []
    for name, (module, model) in sorted(discover(directory).items()):
        assert model.spec is not None, "inspect runs with spec validation on"
        described.append(
            {
                "name": name,
                "module": module,
                "class": model.cls.__name__,
                "spec": model.spec.model_dump(mode="json", exclude={"name"}),
                "input_schema": input_schema(model.cls, batched=model.spec.batch is not None),
            }
        )
    return described


def main() -> None:
    directory = Path(sys.argv[1])
    try:
        enter_from_env()  # module-level code is tenant code too
        models = inspect_directory(directory)
        result: dict[str, Any] = {"models": models, "pipelines": pipelines_in(directory)}
    except ColdbrewError as exc:
        result = exc.to_json()
    except BaseException as exc:
        result = SpecError(
            f"importing the model code failed: {type(exc).__name__}: {exc}",
            hint="run the module locally to see the traceback, fix it, deploy again",
            traceback=traceback.format_exc(),
        ).to_json()
    sys.stdout.flush()
    print("\n@@COLDBREW@@" + json.dumps(result))


if __name__ == "__main__":
    main()
