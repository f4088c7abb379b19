"""`coldbrew usage`, `coldbrew budgets` and `coldbrew advise`: what the workers cost, the limits
on it, and what the recorded traffic would cost otherwise."""

from __future__ import annotations

import json
from typing import Any

import click

from coldbrew.cli.output import print_table
from coldbrew.sdk.client import Client


@click.command()
@click.option(
    "--by", type=click.Choice(["endpoint", "account", "hardware", "version"]), default="endpoint"
)
@click.option("--since", default="24h", help="window, e.g. 30m, 24h, 7d")
@click.option("--json", "as_json", is_flag=True, help="print the JSON report")
@click.option("--csv", "as_csv", is_flag=True, help="print CSV (one row per group)")
def usage(by: str, since: str, as_json: bool, as_csv: bool) -> None:
    """Billable seconds split into cold start / busy / idle / reserved, and dollars."""
    with Client() as client:
        if as_csv:
            click.echo(client.usage_csv(by, since), nl=False)
            return
        report = client.usage(by, since)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"usage over the last {since}, by {by}")
    numbers = ["COLD s", "BUSY s", "IDLE s", "RESERVED s", "RESERVED USD", "TOTAL s", "USD"]
    print_table(
        [by.upper(), *numbers],
        [
            [
                row[by],
                f"{row['coldStartS']:.1f}",
                f"{row['busyS']:.1f}",
                f"{row['idleS']:.1f}",
                f"{row.get('reservedS', 0.0):.1f}",
                f"{row.get('reservedUsd', 0.0):.6f}",
                f"{row['totalS']:.1f}",
                f"{row['totalUsd']:.6f}",
            ]
            for row in [*report["rows"], {by: "TOTAL", **report["total"]}]
        ],
        right=numbers,
    )


@click.group(invoke_without_command=True)
@click.pass_context
def budgets(ctx: click.Context) -> None:
    """Monthly budgets: spend so far, forecast, alerts sent. `budgets set` adds one."""
    if ctx.invoked_subcommand is not None:
        return
    with Client() as client:
        report = client.budgets()
    numbers = ["BUDGET $", "SPENT $", "USED %", "FORECAST $"]
    print_table(
        ["SCOPE", *numbers, "STOP"],
        [
            [
                f"endpoint {b['endpoint']}" if b["endpoint"] else f"account {b['account']}",
                f"{b['monthlyUsd']:g}",
                f"{b['spentUsd']:.6f}",
                f"{b['usedPct']:.1f}",
                f"{b['forecastUsd']:.6f}",
                "STOPPED" if b["stopped"] else ("hard" if b["hardStop"] else "-"),
            ]
            for b in report["budgets"]
        ],
        right=numbers,
    )
    for alert in report["alerts"]:
        scope = alert["endpoint"] or "account"
        click.echo(f"alert: {scope} reached {alert['thresholdPct']}% in {alert['period']}")


@budgets.command("set")
@click.option("--account", default=None, help="a budget for a whole account (admin for others)")
@click.option("--endpoint", default=None, help="a budget for one endpoint")
@click.option("--monthly-usd", type=float, required=True, help="the monthly limit in dollars")
@click.option("--alerts", default="50,80,100", help="percentages that alert, once per month")
@click.option("--hard-stop", is_flag=True, help="refuse new jobs (HTTP 402) once spent")
@click.option("--webhook", default=None, help="signed alert webhook URL")
def budgets_set(
    account: str | None,
    endpoint: str | None,
    monthly_usd: float,
    alerts: str,
    hard_stop: bool,
    webhook: str | None,
) -> None:
    """Set (or replace) a monthly budget."""
    if (account is None) == (endpoint is None):
        raise click.UsageError("give exactly one of --account or --endpoint")
    try:
        pcts = [int(p) for p in alerts.split(",") if p.strip()]
    except ValueError:
        raise click.BadParameter(
            "a comma-separated list of percentages", param_hint="--alerts"
        ) from None
    fields: dict[str, Any] = {"monthlyUsd": monthly_usd, "alerts": pcts, "hardStop": hard_stop}
    if account:
        fields["account"] = account
    if endpoint:
        fields["endpoint"] = endpoint
    if webhook:
        fields["webhook"] = webhook
    with Client() as client:
        line = client.set_budget(**fields)
    click.echo(
        f"budget set: ${line['monthlyUsd']:g}/month, ${line['spentUsd']:.6f} spent so far "
        f"({line['usedPct']:.1f}%), forecast ${line['forecastUsd']:.6f}"
    )


@click.command()
@click.argument("name")
@click.option("--window", default="7d", help="traffic to look at, e.g. 24h, 7d")
def advise(name: str, window: str) -> None:
    """Serverless vs dedicated for NAME's recorded traffic, and setting changes, with the math."""
    with Client() as client:
        report = client.advise(name, window)
    click.echo(f"{name}: {report['requests']} requests in the last {window}")
    click.echo(
        f"  serverless ~${report['serverlessMonthlyUsd']}/month, dedicated "
        f"${report['dedicatedMonthlyUsd']}/month -> {report['cheaper']} is cheaper"
    )
    for line in report["arithmetic"]:
        click.echo(f"  {line}")
    for tip in report["suggestions"]:
        click.echo(f"  suggest {tip['setting']}: {tip['effect']}")
    if reserved := report.get("reserved"):
        click.echo(
            f"  reserve {reserved['count']} worker(s) (now {reserved['current']}): "
            f"~${reserved['monthlyUsd']}/month, none: ${reserved['serverlessMonthlyUsd']}"
        )
        click.echo("".join(f"    {line}\n" for line in reserved["arithmetic"]), nl=False)
