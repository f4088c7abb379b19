"""`app.pipeline(...)`: a pipeline declared in Python next to the models it chains, deployed
with them (`coldbrew deploy DIR`). The builder only writes the JSON definition that
`POST /v1/pipelines` takes (`control/graph.py` documents it); the server checks it again against
the account's endpoints when the directory is deployed.

```python
moods = app.pipeline("moods")
moods.task("see", "digits", input={"pixels": "$input.pixels"})
moods.switch("feel", "$.label", cases={"7": "lucky"}, default="plain")
moods.ensemble("suggest", "recommend", Pipeline.task_step("alt", "recommend"))
moods.map("each", "$.items", Pipeline.task_step("one", "notify"))
```
"""

from __future__ import annotations

from typing import Any

Branch = str | dict[str, Any]  # an endpoint name, or a step (`Pipeline.task_step`, ...)


class Pipeline:
    """A sequence of steps, built one method call at a time; each call returns the pipeline."""

    def __init__(self, name: str, description: str | None = None) -> None:
        self.name = name
        self.description = description
        self.steps: list[dict[str, Any]] = []

    @property
    def definition(self) -> dict[str, Any]:
        """The JSON definition (what `POST /v1/pipelines` takes)."""
        body: dict[str, Any] = {"name": self.name, "steps": list(self.steps)}
        if self.description:
            body["description"] = self.description
        return body

    def add(self, step: dict[str, Any]) -> Pipeline:
        """Append a step given as its JSON."""
        self.steps.append(step)
        return self

    @staticmethod
    def task_step(name: str, endpoint: str, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """A task as a value (a branch of a switch, ensemble, split or map)."""
        step: dict[str, Any] = {"name": name, "endpoint": endpoint}
        if input is not None:
            step["input"] = input
        return step

    def task(self, name: str, endpoint: str, input: dict[str, Any] | None = None) -> Pipeline:
        """One job on `endpoint`; `input` maps its fields to paths (`$.label`, `$input.x`)
        or values; without it the previous output is the input as it is."""
        return self.add(self.task_step(name, endpoint, input))

    def switch(
        self, name: str, on: str, cases: dict[str, Branch], default: Branch | None = None
    ) -> Pipeline:
        """Run the case whose key equals the field `on` of the previous output."""
        step: dict[str, Any] = {"name": name, "switch": on, "cases": dict(cases)}
        if default is not None:
            step["default"] = default
        return self.add(step)

    def ensemble(self, name: str, *branches: Branch) -> Pipeline:
        """Run every branch at once; the output is {branch name: its output}."""
        return self.add({"name": name, "ensemble": list(branches)})

    def split(self, name: str, weighted: dict[str, float] | list[tuple[Branch, float]]) -> Pipeline:
        """Run one branch, chosen by weight (the same run always takes the same branch)."""
        pairs = list(weighted.items()) if isinstance(weighted, dict) else list(weighted)
        return self.add(
            {"name": name, "split": [{"weight": w, "step": branch} for branch, w in pairs]}
        )

    def map(self, name: str, on: str, step: Branch) -> Pipeline:
        """Run `step` once per element of the list field `on`; the output is the list."""
        return self.add({"name": name, "map": on, "step": step})
