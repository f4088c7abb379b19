"""The simulator's report: the workload's calibration statistics, one run's numbers, sweeps of
one spec field at a time, and the Erlang-C validation line; as tables or as JSON.

Every number comes from seeded draws and simulated time, so the same arguments print the same
bytes (run time goes to stderr, never into the report).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from coldbrew.sim.erlang import ErlangCheck, describe
from coldbrew.sim.model import SimConfig
from coldbrew.sim.scenario import simulate, specs_for, summarise
from coldbrew.sim.workload import Trace, top_share

#: Columns of the run and sweep tables: (key in `summarise`, header).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("cold_start_pct", "cold %"),
    ("wait_p50_ms", "wait p50 ms"),
    ("wait_p99_ms", "wait p99 ms"),
    ("wait_mean_ms", "wait mean ms"),
    ("usd_per_1k_req", "USD/1k req"),
    ("billed_usd", "billed USD"),
    ("node_usd", "node USD"),
    ("billed_over_node_pct", "billed/node %"),
)


def workload_stats(trace: Trace, window: tuple[float, float]) -> dict[str, Any]:
    """What the trace looks like against the Azure statistics it is calibrated to."""
    start, end = window
    measured = (trace.arrival_s >= start) & (trace.arrival_s < end)
    counts = np.bincount(trace.endpoint[measured], minlength=len(trace.endpoints))
    rates = np.array([e.rate_per_s for e in trace.endpoints])
    execs = np.array([e.exec_mean_s for e in trace.endpoints])
    triggers: dict[str, int] = {}
    for e in trace.endpoints:
        triggers[e.trigger] = triggers.get(e.trigger, 0) + 1
    hardware: dict[str, int] = {}
    for e in trace.endpoints:
        hardware[e.hardware] = hardware.get(e.hardware, 0) + 1
    positive = rates[rates > 0]
    return {
        "endpoints": len(trace.endpoints),
        "requests": int(measured.sum()),
        "req_per_s": round(float(measured.sum()) / (end - start), 3),
        "top_1pct_share": round(top_share(counts, 0.01), 4),
        "top_18.6pct_share": round(top_share(counts, 0.186), 4),
        "rate_orders_of_magnitude": round(
            float(np.log10(positive.max() / positive.min())) if positive.size else 0.0, 2
        ),
        "median_exec_mean_s": round(float(np.median(execs)), 4) if execs.size else 0.0,
        "offered_busy_slots": round(float((rates * execs).sum()), 1),
        "triggers": dict(sorted(triggers.items())),
        "hardware": dict(sorted(hardware.items())),
    }


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """`idle_timeout_s=0,5,30` → ("idle_timeout_s", ["0", "5", "30"])."""
    name, sep, values = text.partition("=")
    if not sep or not name or not values:
        raise ValueError(f"a sweep is FIELD=V1,V2,...; got {text!r}")
    return name.strip(), [v.strip() for v in values.split(",") if v.strip()]


def _key(trace: Trace, overrides: Mapping[str, Any]) -> str:
    """What a run depends on besides the trace and config: every endpoint's spec."""
    return "\n".join(spec.model_dump_json() for spec in specs_for(trace.endpoints, overrides))


def build(
    trace: Trace,
    config: SimConfig,
    base: Mapping[str, Any],
    sweeps: Sequence[tuple[str, list[str]]],
    erlang: ErlangCheck | None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The whole report as plain data (what `--json` prints). A sweep value that gives the
    same specs as a run already made (`min_workers=0` when that is the default) reuses it."""
    done: dict[str, dict[str, Any]] = {}

    def run(overrides: Mapping[str, Any], what: str) -> dict[str, Any]:
        key = _key(trace, overrides)
        if key not in done:
            progress(what)
            done[key] = summarise(simulate(trace, config, overrides))
        return done[key]

    result = run(base, "base run")
    sweep_rows = {
        name: [
            {"value": value, **run({**base, name: value}, f"{name}={value}")} for value in values
        ]
        for name, values in sweeps
    }
    return {
        "config": {
            "duration_s": config.duration_s,
            "warmup_s": config.warmup_s,
            "tick_interval_s": config.tick_interval_s,
            "seed": config.seed,
            "initial_nodes": config.initial_nodes,
            "node_slots": config.node_slots,
            "node_idle_s": config.node_idle_s,
            "spec_overrides": dict(base),
            "cold_starts": asdict(config.cold),
        },
        "workload": workload_stats(trace, (config.warmup_s, config.duration_s)),
        "result": result,
        "sweeps": sweep_rows,
        "erlang_c": None if erlang is None else {**asdict(erlang), "line": describe(erlang)},
    }


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=400, color_system=None, soft_wrap=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    with console.capture() as captured:
        console.print(table)
    lines = [line.rstrip() for line in captured.get().splitlines() if line.strip()]
    print("\n".join([title, *lines, ""]))


def print_report(report: dict[str, Any]) -> None:
    """The report as tables on stdout."""
    w = report["workload"]
    _table(
        "workload (Azure Functions 2019 calibration)",
        ["statistic", "value"],
        [(k, v) for k, v in w.items()],
    )
    r = report["result"]
    _table(
        f"run: {w['endpoints']:,} endpoints, {r['req_per_s']:,.0f} req/s over "
        f"{report['config']['duration_s'] - report['config']['warmup_s']:g} s "
        f"(after {report['config']['warmup_s']:g} s warm-up)",
        ["metric", "value"],
        [(k, v) for k, v in r.items()],
    )
    for name, rows in report["sweeps"].items():
        _table(
            f"sweep {name} (every endpoint)",
            [name, *(h for _, h in COLUMNS)],
            [(row["value"], *(row[k] for k, _ in COLUMNS)) for row in rows],
        )
    if report["erlang_c"] is not None:
        print(report["erlang_c"]["line"])
