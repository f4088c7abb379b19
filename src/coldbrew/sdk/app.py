"""`App` and `@app.model`: how a user declares the models in a directory and how they run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from coldbrew.errors import SpecError
from coldbrew.names import NAME_PATTERN, SKIP_VALIDATION_ENV

if TYPE_CHECKING:
    from coldbrew.spec import DeploymentSpec

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class ModelDef:
    """One model class registered on an app, with its validated spec (None inside workers)."""

    name: str
    cls: type
    spec: DeploymentSpec | None


class App:
    """A group of models deployed together from one directory.

    ```python
    app = coldbrew.App("demo")

    @app.model(max_workers=4, idle_timeout_s=300)
    class Digits:
        def setup(self) -> None: ...
        def predict(self, pixels: list[float]) -> dict: ...
    ```
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.models: dict[str, ModelDef] = {}

    def model(self, **spec: Any) -> Any:
        """Register a class as an endpoint; `spec` holds the `DeploymentSpec` fields."""

        def register(cls: T) -> T:
            validated = None
            if os.environ.get(SKIP_VALIDATION_ENV) != "1":
                from coldbrew.spec import parse_spec

                validated = parse_spec(spec, where=f"model {cls.__name__}")
            name = spec.get("name") or cls.__name__.lower()
            if not NAME_PATTERN.match(name):
                raise SpecError(
                    f"endpoint name {name!r} (from class {cls.__name__}) is not valid",
                    hint="pass name='...' with lower-case letters, digits, '-' or '_'",
                )
            if not callable(getattr(cls, "predict", None)):
                raise SpecError(
                    f"model {cls.__name__} has no predict() method",
                    hint="add `def predict(self, ...)`: its keyword arguments are the input",
                )
            if name in self.models:
                raise SpecError(
                    f"app {self.name!r} already has an endpoint named {name!r}",
                    hint="give one of them another name with @app.model(name=...)",
                )
            self.models[name] = ModelDef(name=name, cls=cls, spec=validated)
            cls.__coldbrew_model__ = self.models[name]  # type: ignore[attr-defined]
            return cls

        return register
