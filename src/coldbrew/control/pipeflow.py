"""Evaluates a pipeline graph (`control/graph.py`) over one run's input, calling a stage
function for every task. It keeps no state of its own: whoever supplies the stage function
decides what "run a stage" means (submit a job and wait, answer from a stored result, a fake in
tests), so evaluating again after a restart or a retry walks the same path and only the stages
without a stored result do any work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from coldbrew.control.graph import Graph, Path, Step, StepKind, parse_path, split_pick
from coldbrew.errors import StageFailed, job_error

#: Runs one task: (stage key, its step, the payload) → the job's output. The key is unique in
#: the run (`see`, `each[2]/one`) and the same on every evaluation of the run.
StageFn = Callable[[str, Step, dict[str, Any]], Awaitable[Any]]


class RunFailed(Exception):
    """The run cannot go on: `stage` names where, `error` is the record the run keeps."""

    def __init__(self, stage: str, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.stage = stage
        self.error = error


class _Missing(Exception):
    """A field path found nothing; turned into a RunFailed naming the step."""


@dataclass
class _Context:
    """What paths read: the run's input and the outputs of the steps finished so far."""

    input: Any
    steps: dict[str, Any] = field(default_factory=dict)

    def child(self) -> _Context:
        return _Context(self.input, dict(self.steps))


def resolve(path: Path, prev: Any, context_input: Any, steps: dict[str, Any]) -> Any:
    """The value `path` points at; `_Missing` when a field or index is not there."""
    if path.root == "prev":
        value = prev
    elif path.root == "input":
        value = context_input
    else:
        if path.step not in steps:
            raise _Missing(f"{path.text}: step {path.step!r} has no output yet")
        value = steps[path.step]
    for segment in path.segments:
        in_list = isinstance(segment, int) and isinstance(value, list) and segment < len(value)
        if not (in_list or (isinstance(value, dict) and segment in value)):
            shown = sorted(value)[:10] if isinstance(value, dict) else type(value).__name__
            raise _Missing(f"{path.text}: no {segment!r} in {shown}")
        value = value[segment]
    return value


class Evaluator:
    """Walks one run of a graph; `run_stage` does each task."""

    def __init__(self, graph: Graph, run_id: str, run_stage: StageFn) -> None:
        self.graph = graph
        self.run_id = run_id
        self.run_stage = run_stage

    async def evaluate(self, payload: dict[str, Any]) -> Any:
        """The run's output: the last step's. Raises RunFailed when a stage fails."""
        return await self._step(self.graph.root, _Context(payload), payload, "")

    async def _step(self, step: Step, ctx: _Context, prev: Any, prefix: str) -> Any:
        key = prefix + step.name
        try:
            out = await self._kind(step, ctx, prev, prefix, key)
        except _Missing as exc:
            raise RunFailed(
                key, _error(key, f"step {key!r}: {exc}", "fix the field path")
            ) from None
        ctx.steps[step.name] = out
        return out

    async def _kind(self, step: Step, ctx: _Context, prev: Any, prefix: str, key: str) -> Any:
        if step.kind is StepKind.TASK:
            return await self.run_stage(key, step, self._payload(step, ctx, prev, key))
        if step.kind is StepKind.SEQUENCE:
            for child in step.children:
                prev = await self._step(child, ctx, prev, prefix)
            return prev
        if step.kind is StepKind.SWITCH:
            return await self._step(self._case(step, ctx, prev, key), ctx, prev, prefix)
        if step.kind is StepKind.SPLIT:
            chosen = split_pick(self.run_id, key, step.weights)
            return await self._step(step.children[chosen], ctx, prev, prefix)
        if step.kind is StepKind.ENSEMBLE:
            outs = await _gather(self._step(c, ctx, prev, prefix) for c in step.children)
            return {child.name: out for child, out in zip(step.children, outs, strict=True)}
        return await self._map(step, ctx, prev, key)

    def _payload(self, step: Step, ctx: _Context, prev: Any, key: str) -> dict[str, Any]:
        """The task's input: its template filled in, or the previous output as it is."""
        if step.template is None:
            if not isinstance(prev, dict):
                raise RunFailed(
                    key,
                    _error(
                        key,
                        f"step {key!r} got a {type(prev).__name__} from the step before, "
                        "not an object it could take as its input",
                        'give the step an "input" that names its fields, e.g. {"item": "$"}',
                    ),
                )
            return prev
        filled: dict[str, Any] = self._fill(step.template, ctx, prev)
        return filled

    def _fill(self, value: Any, ctx: _Context, prev: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._fill(v, ctx, prev) for k, v in value.items()}
        if isinstance(value, list):
            return [self._fill(v, ctx, prev) for v in value]
        if isinstance(value, str) and value.startswith("$$"):
            return value[1:]
        if isinstance(value, str) and value.startswith("$"):
            path = parse_path(value)
            assert path is not None, "checked when the pipeline was created"
            return resolve(path, prev, ctx.input, ctx.steps)
        return value

    def _case(self, step: Step, ctx: _Context, prev: Any, key: str) -> Step:
        assert step.on is not None
        value = resolve(step.on, prev, ctx.input, ctx.steps)
        label = _label(value)
        for case, branch in step.cases:
            if case == label:
                return branch
        if step.default is not None:
            return step.default
        cases = ", ".join(c for c, _ in step.cases)
        raise RunFailed(
            key,
            _error(
                key,
                f"switch {key!r}: {step.on.text} is {label!r}, which no case matches ({cases})",
                "add the case or a default",
            ),
        )

    async def _map(self, step: Step, ctx: _Context, prev: Any, key: str) -> list[Any]:
        assert step.on is not None
        items = resolve(step.on, prev, ctx.input, ctx.steps)
        if not isinstance(items, list):
            raise _Missing(f"{step.on.text} is a {type(items).__name__}, not a list")
        (inner,) = step.children
        return await _gather(
            self._step(inner, ctx.child(), item, f"{key}[{index}]/")
            for index, item in enumerate(items)
        )


async def _gather(steps: Any) -> list[Any]:
    """Every branch to its end (so each one's stage is recorded), then the first failure."""
    outs = await asyncio.gather(*steps, return_exceptions=True)
    for out in outs:
        if isinstance(out, BaseException):
            raise out
    return list(outs)


def _label(value: Any) -> str:
    """How a switch compares a value with its cases (JSON object keys are strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _error(stage: str, message: str, hint: str) -> dict[str, Any]:
    return job_error(StageFailed, message, hint=hint, stage=stage)
