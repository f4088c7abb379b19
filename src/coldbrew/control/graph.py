"""Pipeline graphs: the JSON a user declares (`POST /v1/pipelines`, `app.pipeline(...)`), parsed
into frozen steps and checked before anything is stored, so a run never meets a definition that
cannot work. Pure: no store, no clock; the evaluator is `control/pipeflow.py`.

```
{"name": "moods", "steps": [                                   a sequence, run in order
  {"name": "see", "endpoint": "digits", "input": {"pixels": "$input.pixels"}},
  {"name": "feel", "switch": "$.label", "cases": {"7": "lucky"}, "default": "plain"},
  {"name": "both", "ensemble": ["recommend", {"name": "alt", "endpoint": "recommend"}]},
  {"name": "ab", "split": [{"weight": 9, "step": "notify"}, {"weight": 1, "step": "notify2"}]},
  {"name": "each", "map": "$.items", "step": {"name": "one", "endpoint": "notify"}}]}
```

A step is a task (`endpoint`, optional `input` template), a nested sequence (`steps`), a
`switch` on a field, an `ensemble` (all branches at once, output keyed by branch name), a
`split` (one branch by weight, seeded by the run id) or a `map` over a list field. A string
where a step is expected is a task on that endpoint, named after it (or `parent.case`).

Field paths: `$` is the previous step's output, `$input` the run's input, `$steps.NAME` an
earlier step's output; each may go on with `.field` and `[index]`. `$$` starts a literal `$`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from coldbrew.errors import InvalidPipeline
from coldbrew.names import NAME_PATTERN

#: Problems reported per definition; later ones are usually consequences of the first.
MAX_PROBLEMS = 5
MAX_STEPS = 200  # steps in one pipeline, nested ones counted
_STEP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_PATH = re.compile(
    r"^\$(?P<root>input|steps\.(?P<step>[A-Za-z0-9_][A-Za-z0-9_.-]*?))?"
    r"(?P<rest>(\.[A-Za-z0-9_-]+|\[\d+\])*)$"
)
_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")
_KINDS = ("endpoint", "steps", "switch", "ensemble", "split", "map")


class StepKind(StrEnum):
    """What a step does with its input."""

    TASK = "task"  # one job on an endpoint
    SEQUENCE = "sequence"  # its steps in order, each fed the previous one's output
    SWITCH = "switch"  # one case, chosen by a field of the previous output
    ENSEMBLE = "ensemble"  # every branch at once; output {branch name: output}
    SPLIT = "split"  # one branch at random by weight, seeded by the run id
    MAP = "map"  # its step once per element of a list field; output the list of outputs


@dataclass(frozen=True)
class Path:
    """A parsed field path: where it starts and the fields and indexes after that."""

    text: str
    root: str  # "prev" | "input" | "steps"
    step: str | None
    segments: tuple[str | int, ...]


@dataclass(frozen=True)
class Step:
    """One node of a pipeline; which fields matter depends on `kind`."""

    name: str
    kind: StepKind
    endpoint: str | None = None
    template: Any = None  # a task's input template (None: the previous output as it is)
    children: tuple[Step, ...] = ()  # sequence, ensemble, split branches, the map's step
    on: Path | None = None  # switch and map: the field read
    cases: tuple[tuple[str, Step], ...] = ()
    default: Step | None = None
    weights: tuple[float, ...] = ()

    def walk(self) -> Iterable[Step]:
        """This step and every step inside it."""
        yield self
        for child in (*self.children, *(s for _, s in self.cases)):
            yield from child.walk()
        if self.default is not None:
            yield from self.default.walk()


@dataclass(frozen=True)
class Graph:
    """A parsed, checked pipeline: its name, the root sequence and the definition it came from."""

    name: str
    root: Step
    definition: dict[str, Any] = field(compare=False)

    @property
    def endpoints(self) -> list[str]:
        """Every endpoint a run may call, first use first."""
        seen: dict[str, None] = {}
        for step in self.root.walk():
            if step.endpoint is not None:
                seen.setdefault(step.endpoint)
        return list(seen)

    @property
    def final_tasks(self) -> frozenset[str]:
        """Names of the tasks whose output is the run's output (whose stream `/stream` shows)."""
        return frozenset(_finals(self.root))

    def summary(self) -> str:
        """One line: the top-level steps in order (`see → feel → both`)."""
        return " → ".join(_describe(s) for s in self.root.children)


def _finals(step: Step) -> Iterable[str]:
    if step.kind is StepKind.TASK:
        yield step.name
    elif step.kind is StepKind.SEQUENCE and step.children:
        yield from _finals(step.children[-1])
    elif step.kind in (StepKind.SWITCH, StepKind.SPLIT):
        for branch in (*step.children, *(s for _, s in step.cases), step.default):
            if branch is not None:
                yield from _finals(branch)


def _describe(step: Step) -> str:
    if step.kind is StepKind.TASK:
        return f"{step.name}({step.endpoint})"
    return f"{step.name}[{step.kind.value}]"


def parse_path(text: Any) -> Path | None:
    """The path `text` spells, or None when it is not one."""
    if not isinstance(text, str):
        return None
    match = _PATH.match(text)
    if match is None:
        return None
    root = match["root"] or "prev"
    segments: list[str | int] = []
    for name, index in _SEGMENT.findall(match["rest"]):
        segments.append(int(index) if index else name)
    return Path(text, "steps" if root.startswith("steps") else root, match["step"], tuple(segments))


def split_pick(run_id: str, key: str, weights: tuple[float, ...]) -> int:
    """The branch a split sends this run to: the same run always gets the same branch (a retry
    or a resume after a restart takes the path it took before)."""
    digest = hashlib.sha256(f"{run_id}:{key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(weights)
    for index, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return index
    return len(weights) - 1


def parse(definition: Any, known_endpoint: Callable[[str], bool] | None = None) -> Graph:
    """Check `definition` and build its graph; `InvalidPipeline` lists what to fix (the first
    few problems, each with where it is). `known_endpoint` says whether an endpoint exists."""
    parser = _Parser(known_endpoint)
    graph = parser.graph(definition)
    if parser.problems:
        shown = parser.problems[:MAX_PROBLEMS]
        raise InvalidPipeline(
            "; ".join(f"{where}: {what}" for where, what, _ in shown),
            hint=next((hint for _, _, hint in shown if hint), "see docs/pipelines.md"),
            problems=[{"where": where, "message": what} for where, what, _ in shown],
        )
    assert graph is not None
    return graph


class _Parser:
    """One pass over a definition, collecting problems instead of stopping at the first."""

    def __init__(self, known_endpoint: Callable[[str], bool] | None) -> None:
        self.known_endpoint = known_endpoint
        self.problems: list[tuple[str, str, str]] = []
        self.names: set[str] = set()
        self.count = 0

    def problem(self, where: str, what: str, hint: str = "") -> None:
        self.problems.append((where, what, hint))

    def graph(self, definition: Any) -> Graph | None:
        if not isinstance(definition, dict):
            self.problem("pipeline", "must be a JSON object", '{"name": ..., "steps": [...]}')
            return None
        name = definition.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            self.problem(
                "name", f"{name!r} is not a valid name", "lower-case letters, digits, -, _"
            )
        unknown = set(definition) - {"name", "steps", "description"}
        if unknown:
            self.problem("pipeline", f"unknown keys {sorted(unknown)}", "keys: name, steps")
        steps = definition.get("steps")
        if not isinstance(steps, list) or not steps:
            self.problem("steps", "must be a non-empty list of steps", '"steps": [{...}, ...]')
            steps = []
        children = self.sequence(steps, "steps", set())
        root = Step(name=str(name), kind=StepKind.SEQUENCE, children=children)
        return Graph(str(name), root, definition)

    def sequence(self, raw: list[Any], where: str, done: set[str]) -> tuple[Step, ...]:
        """Steps in order: each may read the outputs of those before it (`done`)."""
        done = set(done)
        steps = []
        for index, item in enumerate(raw):
            step = self.step(item, f"{where}[{index}]", done, None)
            if step is not None:
                steps.append(step)
                done.add(step.name)
        return tuple(steps)

    def step(self, raw: Any, where: str, done: set[str], default_name: str | None) -> Step | None:
        self.count += 1
        if self.count == MAX_STEPS + 1:
            self.problem(where, f"more than {MAX_STEPS} steps", "split it into pipelines")
        if isinstance(raw, str):
            raw = {"name": default_name or raw, "endpoint": raw}
        if not isinstance(raw, dict):
            self.problem(where, "a step must be an object or an endpoint name")
            return None
        kinds = [k for k in _KINDS if k in raw]
        name = raw.get("name", default_name)
        if not isinstance(name, str) or not _STEP_NAME.match(name):
            self.problem(where, f"step name {name!r} is not valid", 'give it "name": "classify"')
            return None
        where = f"{where} ({name})"
        if name in self.names:
            self.problem(where, f"two steps are named {name!r}", "step names must be unique")
        self.names.add(name)
        if len(kinds) != 1:
            self.problem(where, f"needs exactly one of {', '.join(_KINDS)} (has {kinds or 'none'})")
            return None
        return self._build(kinds[0], name, raw, where, done)

    def _build(self, kind: str, name: str, raw: dict[str, Any], where: str, done: set[str]) -> Step:
        if kind == "endpoint":
            return self.task(name, raw, where, done)
        if kind == "steps":
            raw_steps = raw["steps"] if isinstance(raw["steps"], list) else []
            if not raw_steps:
                self.problem(where, "steps must be a non-empty list")
            return Step(name, StepKind.SEQUENCE, children=self.sequence(raw_steps, where, done))
        if kind == "switch":
            return self.switch(name, raw, where, done)
        if kind == "ensemble":
            return self.branches(name, StepKind.ENSEMBLE, raw["ensemble"], where, done)
        if kind == "split":
            return self.branches(name, StepKind.SPLIT, raw["split"], where, done)
        on = self.path(raw["map"], f"{where}.map", done, name)
        inner = self.step(raw.get("step"), f"{where}.step", done, f"{name}.each")
        return Step(name, StepKind.MAP, on=on, children=(inner,) if inner else ())

    def task(self, name: str, raw: dict[str, Any], where: str, done: set[str]) -> Step:
        endpoint = raw["endpoint"]
        if not isinstance(endpoint, str) or not NAME_PATTERN.match(endpoint):
            self.problem(where, f"endpoint {endpoint!r} is not an endpoint name")
        elif self.known_endpoint is not None and not self.known_endpoint(endpoint):
            self.problem(
                where,
                f"no endpoint {endpoint!r}",
                "deploy it first (`coldbrew deploy DIR`); `coldbrew endpoints` lists yours",
            )
        template = raw.get("input")
        if template is not None:
            if not isinstance(template, dict):
                self.problem(where, "input must be an object of field: path or value")
            self._template_paths(template, f"{where}.input", done, name)
        extra = set(raw) - {"name", "endpoint", "input"}
        if extra:
            self.problem(where, f"unknown keys {sorted(extra)} on a task step")
        return Step(name, StepKind.TASK, endpoint=str(endpoint), template=template)

    def _template_paths(self, value: Any, where: str, done: set[str], own: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self._template_paths(item, f"{where}.{key}", done, own)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self._template_paths(item, f"{where}[{index}]", done, own)
        elif isinstance(value, str) and value.startswith("$") and not value.startswith("$$"):
            self.path(value, where, done, own)

    def path(self, text: Any, where: str, done: set[str], own: str) -> Path | None:
        parsed = parse_path(text)
        if parsed is None:
            self.problem(
                where,
                f"{text!r} is not a field path",
                "use $.field, $input.field, $steps.NAME.field, with [0] for list items",
            )
            return None
        if parsed.step is not None and parsed.step not in done:
            what = "itself" if parsed.step == own else f"step {parsed.step!r}"
            self.problem(
                where,
                f"{text} reads {what}, which has not finished before this step runs (a later "
                "step or the step itself would make a cycle; a branch may not have run)",
                "read only steps that come earlier in the sequence",
            )
        return parsed

    def switch(self, name: str, raw: dict[str, Any], where: str, done: set[str]) -> Step:
        on = self.path(raw["switch"], f"{where}.switch", done, name)
        cases = raw.get("cases")
        if not isinstance(cases, dict) or not cases:
            self.problem(where, "a switch needs cases: {value: step}", '"cases": {"cat": "..."}')
            cases = {}
        built = []
        for value, branch in cases.items():
            step = self.step(branch, f"{where}.cases.{value}", done, f"{name}.{value}")
            if step is not None:
                built.append((str(value), step))
        default = None
        if raw.get("default") is not None:
            default = self.step(raw["default"], f"{where}.default", done, f"{name}.default")
        return Step(name, StepKind.SWITCH, on=on, cases=tuple(built), default=default)

    def branches(self, name: str, kind: StepKind, raw: Any, where: str, done: set[str]) -> Step:
        if not isinstance(raw, list) or not raw:
            self.problem(where, f"{kind.value} needs a non-empty list of branches")
            raw = []
        steps, weights = [], []
        for index, item in enumerate(raw):
            at = f"{where}.{kind.value}[{index}]"
            if kind is StepKind.SPLIT:
                weight = item.get("weight") if isinstance(item, dict) else None
                if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
                    self.problem(at, "each split branch needs a positive weight", '"weight": 3')
                    weight = 1
                weights.append(float(weight))
                item = item.get("step") if isinstance(item, dict) else None
            step = self.step(item, at, done, f"{name}.{index}" if kind is StepKind.SPLIT else None)
            if step is not None:
                steps.append(step)
        return Step(name, kind, children=tuple(steps), weights=tuple(weights))
