"""`python -m coldbrew.sim`: simulate coldbrew's scaling policy on a synthetic or real trace.

python -m coldbrew.sim                                    # 1,000 endpoints, 10k req/s
python -m coldbrew.sim --sweep idle_timeout_s=0,5,30,120 --sweep prewarm=off,auto
python -m coldbrew.sim --azure invocations_per_function_md.anon.d01.csv --minutes 1:30
python -m coldbrew.sim --trace requests.csv --json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from coldbrew.sim.erlang import check_erlang
from coldbrew.sim.latency import ColdStarts, parse_latency
from coldbrew.sim.model import SimConfig
from coldbrew.sim.report import build, parse_sweep, print_report
from coldbrew.sim.scenario import sized, specs_for
from coldbrew.sim.traces import load_azure, load_simple, span_s
from coldbrew.sim.workload import Trace, azure_endpoints, generate


def _trace(opts: dict[str, Any]) -> tuple[Trace, float]:
    """The trace to play and its end (s)."""
    total_s = opts["warmup"] + opts["duration"]
    if opts["azure"]:
        first, _, last = opts["minutes"].partition(":")
        minutes = (int(first), int(last or first))
        trace = load_azure(
            opts["azure"],
            durations=opts["azure_durations"],
            minutes=minutes,
            max_functions=opts["max_functions"],
            seed=opts["seed"],
        )
        return trace, 60.0 * (minutes[1] - minutes[0] + 1)  # the whole window, idle tail too
    if opts["trace"]:
        trace = load_simple(opts["trace"])
        return trace, span_s(trace)
    endpoints = azure_endpoints(opts["endpoints"], opts["rate"], opts["seed"])
    return generate(endpoints, total_s, opts["seed"]), total_s


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep:
            raise click.BadParameter(f"{what} takes KEY=VALUE, got {text!r}")
        out[key.strip()] = value.strip()
    return out


def _cold(latencies: dict[str, str]) -> ColdStarts:
    fields = {}
    for key, value in latencies.items():
        if key not in ColdStarts.__dataclass_fields__:
            names = ", ".join(ColdStarts.__dataclass_fields__)
            raise click.BadParameter(f"unknown latency {key!r}; one of {names}")
        fields[key] = float(value) if key == "fork_per_mb_s" else parse_latency(value)
    return ColdStarts(**fields)  # type: ignore[arg-type]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--endpoints", default=1000, show_default=True, help="synthetic endpoints")
@click.option("--rate", default=10_000.0, show_default=True, help="total requests per second")
@click.option("--duration", default=600.0, show_default=True, help="measured seconds")
@click.option("--warmup", default=60.0, show_default=True, help="seconds simulated before")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--trace",
    type=click.Path(path_type=Path, exists=True),
    help="timestamp_s,endpoint,duration_s CSV",
)
@click.option(
    "--azure", type=click.Path(path_type=Path, exists=True), help="Azure per-minute invocation CSV"
)
@click.option(
    "--azure-durations", type=click.Path(path_type=Path, exists=True), help="Azure durations CSV"
)
@click.option("--minutes", default="1:1440", show_default=True, help="Azure minutes FIRST:LAST")
@click.option("--max-functions", type=int, help="keep the busiest N functions of an Azure trace")
@click.option(
    "--set", "sets", multiple=True, help="spec field for every endpoint, e.g. idle_timeout_s=30"
)
@click.option("--sweep", "sweeps", multiple=True, help="FIELD=V1,V2,... one run per value")
@click.option(
    "--latency",
    "latencies",
    multiple=True,
    help="cold-start path MEDIAN_S[:SIGMA], e.g. spawn=1.5:0.3",
)
@click.option("--tick-s", type=float, help="scheduler tick (default: coldbrew's tick_interval_s)")
@click.option("--node-idle-s", default=300.0, show_default=True, help="empty node released after")
@click.option("--erlang/--no-erlang", default=True, show_default=True, help="Erlang-C check line")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def main(**opts: Any) -> None:
    """Simulate coldbrew's real autoscaler on a trace: cold starts, queue waits, dollars."""
    started, cpu_started = time.perf_counter(), time.process_time()
    trace, end_s = _trace(opts)
    base: dict[str, Any] = _pairs(opts["sets"], "--set")
    sweeps = [parse_sweep(s) for s in opts["sweeps"]]
    try:
        for name, values in [(k, [v]) for k, v in base.items()] + sweeps:
            for value in values:
                specs_for(trace.endpoints[:1], {**base, name: value})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})" for e in exc.errors()
        )
        raise click.BadParameter(f"{problems}; the fields are DeploymentSpec's") from None
    # a real trace is measured from its start unless --warmup is given
    source = click.get_current_context().get_parameter_source("warmup")
    real = opts["azure"] or opts["trace"]
    warmup_s = 0.0 if real and source is click.core.ParameterSource.DEFAULT else opts["warmup"]
    config = SimConfig(
        duration_s=end_s,
        warmup_s=min(warmup_s, end_s),
        node_idle_s=opts["node_idle_s"],
        cold=_cold(_pairs(opts["latencies"], "--latency")),
        seed=opts["seed"],
    )
    if opts["tick_s"]:
        config = replace(config, tick_interval_s=opts["tick_s"])
    config = sized(config, trace.endpoints)
    erlang = check_erlang(seed=opts["seed"]) if opts["erlang"] else None
    progress = (lambda what: click.echo(f"... {what}", err=True)) if not opts["as_json"] else None
    report = build(trace, config, base, sweeps, erlang, progress or (lambda _: None))
    if opts["as_json"]:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_report(report)
    wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    click.echo(f"({wall_s:.1f} s wall, {cpu_s:.1f} s CPU)", err=True)


if __name__ == "__main__":
    main(sys.argv[1:])
