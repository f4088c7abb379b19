"""`coldbrew versions`, `coldbrew traffic` and `coldbrew rollback`: see and steer versions."""

from __future__ import annotations

from typing import Any

import click

from coldbrew.sdk.client import Client


def _when(value: str | None) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM' (UTC), or '-'."""
    return value[:16].replace("T", " ") if value else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def print_versions(report: dict[str, Any]) -> None:
    """The versions table, then the canary rule and any rollback reasons."""
    click.echo(
        f"{'VERSION':>7}  {'CREATED (UTC)':<17}{'ARTIFACT':<14}{'ENVIRONMENT':<14}{'STATUS':<12}"
        f"{'SHARE':>6}{'IDLE':>6}{'BUSY':>6}{'START':>6}{'JOBS':>7}{'ERRORS':>7}{'P99 MS':>8}"
    )
    for v in report["versions"]:
        w, s = v["workers"], v["stats"]
        errors = s["byStatus"]["FAILED"] + s["byStatus"]["TIMED_OUT"]
        click.echo(
            f"{'v' + str(v['version']):>7}  {_when(v['createdAt']):<17}{v['artifact'][:12]:<14}"
            f"{v['environment'][:13]:<14}{v['status']:<12}{str(v['share']) + '%':>6}"
            f"{w['idle']:>6}{w['running']:>6}{w['starting']:>6}{s['invocations']:>7}"
            f"{errors:>7}{_ms(s['latencyP99Ms']):>8}"
        )
    rule = report.get("rule")
    if rule:
        bounds = []
        if rule["maxErrorRate"] is not None:
            bounds.append(f"error rate > {rule['maxErrorRate']:g}")
        if rule["maxP99Ms"] is not None:
            bounds.append(f"p99 > {rule['maxP99Ms']:g} ms")
        click.echo(
            f"canary rule: back to 0% on {' or '.join(bounds)} over {rule['windowS']:g} s "
            f"(after {rule['minJobs']} jobs)"
        )
    for v in report["versions"]:
        if v["rollbackReason"]:
            click.echo(
                f"v{v['version']} rolled back {_when(v['rolledBackAt'])}: {v['rollbackReason']}"
            )


@click.command()
@click.argument("name")
@click.option("--window", default="1h", help="jobs, errors and p99 over this window, e.g. 15m")
def versions(name: str, window: str) -> None:
    """NAME's versions: created, artifact, environment, status, traffic share, workers, stats."""
    with Client() as client:
        report = client.versions(name, window)
    print_versions(report)


def _weights(pairs: tuple[str, ...]) -> dict[int, int]:
    weights: dict[int, int] = {}
    for pair in pairs:
        number, sep, pct = pair.partition("=")
        if not sep or not number.lstrip("v").isdigit() or not pct.lstrip("-").isdigit():
            raise click.BadParameter(
                f"{pair!r} is not VERSION=PERCENT", param_hint="e.g. 3=90 4=10"
            )
        weights[int(number.lstrip("v"))] = int(pct)
    return weights


@click.command()
@click.argument("name")
@click.argument("weights", nargs=-1, required=True)
@click.option("--max-error-rate", type=float, default=None, help="roll a canary back above this")
@click.option("--max-p99-ms", type=float, default=None, help="roll a canary back above this p99")
@click.option("--window", default="60s", help="the window the bounds are judged over")
@click.option("--min-jobs", type=int, default=None, help="jobs in the window before judging (20)")
@click.option("--webhook", default=None, help="signed event URL for an automatic rollback")
def traffic(
    name: str,
    weights: tuple[str, ...],
    max_error_rate: float | None,
    max_p99_ms: float | None,
    window: str,
    min_jobs: int | None,
    webhook: str | None,
) -> None:
    """Split NAME's new jobs between versions, e.g. `coldbrew traffic echo 3=90 4=10`.

    With --max-error-rate or --max-p99-ms, a canary (a version with a share that is not the
    current one) crossing the bound over --window is taken back to 0% automatically.
    """
    with Client() as client:
        report = client.traffic(
            name,
            _weights(weights),
            max_error_rate=max_error_rate,
            max_p99_ms=max_p99_ms,
            window=window,
            min_jobs=min_jobs,
            webhook=webhook,
        )
    print_versions(report)


@click.command()
@click.argument("name")
@click.option("--to", "to", type=int, default=None, help="version number (default: the previous)")
def rollback(name: str, to: int | None) -> None:
    """Make an earlier version of NAME current (new jobs go to it; a split is dropped)."""
    with Client() as client:
        done = client.rollback(name, to)
    click.echo(f"{done['endpoint']}: version {done['from']} -> {done['version']}")
