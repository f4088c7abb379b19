"""`App` and `@app.model`: how a user declares the models in a directory and how they run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from coldbrew.errors import SpecError
from coldbrew.names import NAME_PATTERN, SKIP_VALIDATION_ENV
from coldbrew.sdk.pipeline import Pipeline

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
        self.pipelines: dict[str, Pipeline] = {}

    def pipeline(self, name: str, description: str | None = None) -> Pipeline:
        """Declare a pipeline over this app's (or the account's) endpoints, deployed with the
        models; add its steps on the `Pipeline` returned (`sdk/pipeline.py`)."""
        if not NAME_PATTERN.match(name):
            raise SpecError(
                f"pipeline name {name!r} is not valid",
                hint="lower-case letters, digits, '-' or '_'",
            )
        if name in self.pipelines or name in self.models:
            raise SpecError(f"app {self.name!r} already has an endpoint or pipeline {name!r}")
        self.pipelines[name] = Pipeline(name, description)
        return self.pipelines[name]

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
