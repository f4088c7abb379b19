"""Real traces as simulator input, in two CSV formats.

- **Azure Functions 2019** (`invocations_per_function_md.anon.dNN.csv` from the public
  dataset): `HashOwner,HashApp,HashFunction,Trigger,1,2,...,1440`, invocations per minute of
  one day. A minute's invocations are spread uniformly over that minute (seeded). Durations come
  from the dataset's `function_durations_percentiles` file when given (its `Average` column, in
  ms), else from the Azure-fit lognormal of `workload.py`; each invocation is lognormal around
  its function's average.
- **Simple**: `timestamp_s,endpoint,duration_s`, one request a line (a header line is allowed).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from coldbrew.sim.workload import (
    EXEC_LOG_MEAN,
    EXEC_LOG_SIGMA,
    EXEC_MAX_S,
    EXEC_MIN_S,
    INVOCATION_SIGMA,
    TRIGGERS,
    Arrivals,
    EndpointLoad,
    Trace,
)

_KINDS = {name: kind for name, _, kind in TRIGGERS}
_UNSAFE = re.compile(r"[^a-z0-9_-]")


def _name(raw: str, taken: set[str]) -> str:
    """A valid endpoint name from a hash or a label, unique within the trace."""
    base = ("fn-" + _UNSAFE.sub("-", raw.lower()))[:40]
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


def _durations(path: Path | None) -> dict[str, float]:
    """Average seconds per HashFunction from the dataset's durations file."""
    if path is None:
        return {}
    out: dict[str, float] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            out[row["HashFunction"]] = float(row["Average"]) / 1000.0
    return out


def load_azure(
    path: Path,
    durations: Path | None = None,
    minutes: tuple[int, int] = (1, 1440),
    max_functions: int | None = None,
    seed: int = 0,
) -> Trace:
    """The invocations of minutes `minutes[0]..minutes[1]` (1-based, inclusive) as a trace.

    `max_functions` keeps the busiest functions in that window (all when None)."""
    first, last = minutes
    rng = np.random.default_rng([seed, 5])
    averages = _durations(durations)
    rows: list[tuple[str, str, np.ndarray]] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        start = header.index("1")
        for row in reader:
            counts = np.array(row[start + first - 1 : start + last], dtype=np.int64)
            if counts.sum():
                rows.append((row[2], row[3].lower(), counts))
    if max_functions is not None:
        rows = sorted(rows, key=lambda r: -int(r[2].sum()))[:max_functions]
    window_s = 60.0 * (last - first + 1)
    loads, parts, index = [], [], []
    taken: set[str] = set()
    for i, (fn, trigger, counts) in enumerate(rows):
        minute = np.repeat(np.arange(counts.size), counts)
        parts.append(60.0 * (minute + rng.uniform(size=minute.size)))
        index.append(np.full(minute.size, i, dtype=np.int64))
        average = averages.get(fn)
        if average is None:
            average = float(np.exp(EXEC_LOG_MEAN + EXEC_LOG_SIGMA * rng.standard_normal()))
        loads.append(
            EndpointLoad(
                name=_name(fn[:16], taken),
                rate_per_s=float(counts.sum()) / window_s,
                arrivals=_KINDS.get(trigger, Arrivals.BURSTY),
                exec_mean_s=float(np.clip(average, EXEC_MIN_S, EXEC_MAX_S)),
                trigger=trigger,
            )
        )
    return _assemble(tuple(loads), parts, index, rng)


def _assemble(
    loads: tuple[EndpointLoad, ...],
    parts: list[np.ndarray],
    index: list[np.ndarray],
    rng: np.random.Generator,
) -> Trace:
    arrival = np.concatenate(parts) if parts else np.empty(0)
    endpoint = np.concatenate(index) if index else np.empty(0, dtype=np.int64)
    means = np.array([load.exec_mean_s for load in loads])[endpoint]
    mu = np.log(np.maximum(means, 1e-6)) - INVOCATION_SIGMA**2 / 2
    duration = np.exp(mu + INVOCATION_SIGMA * rng.standard_normal(arrival.size))
    order = np.argsort(arrival, kind="stable")
    return Trace(loads, arrival[order], endpoint[order], duration[order])


def load_simple(path: Path) -> Trace:
    """`timestamp_s,endpoint,duration_s` lines (times from any origin; shifted to start at 0)."""
    names: dict[str, int] = {}
    rows = []
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].strip().startswith("#"):
                continue
            try:
                at, duration = float(row[0]), float(row[2])
            except ValueError:
                continue  # the header line
            rows.append((at, names.setdefault(row[1].strip(), len(names)), duration))
    return _simple_trace(rows, names)


def _simple_trace(rows: Iterable[tuple[float, int, float]], names: dict[str, int]) -> Trace:
    table = np.array(list(rows), dtype=float).reshape(-1, 3)
    order = np.argsort(table[:, 0], kind="stable")
    table = table[order]
    arrival = table[:, 0] - (table[0, 0] if table.size else 0.0)
    endpoint = table[:, 1].astype(np.int64)
    span_s = max(float(arrival[-1]) if arrival.size else 0.0, 1.0)
    taken: set[str] = set()
    loads = []
    for label, i in names.items():
        mine = table[endpoint == i, 2]
        loads.append(
            EndpointLoad(
                name=_name(label, taken),
                rate_per_s=mine.size / span_s,
                arrivals=Arrivals.POISSON,
                exec_mean_s=float(mine.mean()) if mine.size else 1.0,
            )
        )
    return Trace(tuple(loads), arrival, endpoint, table[:, 2].copy())


def span_s(trace: Trace) -> float:
    """Seconds from the first arrival to just after the last (a run's natural duration)."""
    return math.ceil(float(trace.arrival_s[-1]) + 1) if len(trace) else 1.0
