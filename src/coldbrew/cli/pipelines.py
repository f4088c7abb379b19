"""`coldbrew pipelines ...`: list, show, create (from a JSON file), delete, and a run's status
with one line per stage. Running one is `coldbrew run PIPELINE '{...}'`, as for an endpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from coldbrew.cli.output import print_table
from coldbrew.sdk.client import Client


@click.group()
def pipelines() -> None:
    """Pipelines: chains of endpoints called as one endpoint (/v2/PIPELINE/run)."""


@pipelines.command("list")
def list_() -> None:
    """Your pipelines with their steps."""
    with Client() as client:
        rows = client.pipelines()
    print_table(
        ["NAME", "REVISION", "STEPS"],
        [[p["name"], p["revision"], p["steps"]] for p in rows],
    )


@pipelines.command()
@click.argument("name")
def show(name: str) -> None:
    """The pipeline NAME with its JSON definition."""
    with Client() as client:
        click.echo(json.dumps(client.pipeline(name), indent=2))


@pipelines.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def create(file: Path) -> None:
    """Create or replace a pipeline from a JSON definition FILE."""
    try:
        definition = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{file} is not JSON: {exc}") from None
    with Client() as client:
        made = client.create_pipeline(definition)
    state = f"revision {made['revision']}" if made["changed"] else "unchanged"
    click.echo(f"{made['name']}: {made['steps']} ({state})")


@pipelines.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete the pipeline NAME (its runs stay readable)."""
    with Client() as client:
        client.delete_pipeline(name)
    click.echo(f"deleted pipeline {name}")


@pipelines.command()
@click.argument("name")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="print the status JSON")
def status(name: str, run_id: str, as_json: bool) -> None:
    """A run of NAME: its status, cost and one line per stage."""
    with Client() as client:
        body = client.run_status(name, run_id)
    if as_json:
        click.echo(json.dumps(body, indent=2))
    else:
        _print_run(body)
    if body["status"] in ("FAILED", "CANCELLED"):
        sys.exit(1)


def _cost(stage: dict[str, Any]) -> str:
    """The stage's cost, and what its attempts before a /retry cost (the run's total has both)."""
    earlier = stage.get("earlierAttemptsCostUsd")
    cost = f"{stage['costUsd']:.9f}"
    return f"{cost} (+{earlier:.9f} earlier)" if earlier else cost


def _print_run(body: dict[str, Any]) -> None:
    click.echo(f"{body['id']}  {body['status']}  ${body['costUsd']:.9f}")
    print_table(
        ["STAGE", "ENDPOINT", "JOB", "STATUS", "DELAY MS", "EXEC MS", "COLD", "COST USD"],
        [
            [
                s["stage"], s["endpoint"], (s["id"] or "-")[:8], s["status"],
                s.get("delayTime", "-"), s.get("executionTime", "-"),
                "yes" if s["coldStart"] else "", _cost(s),
            ]
            for s in body["stages"]
        ],
    )  # fmt: skip
    if body.get("error"):
        click.echo(f"error: {body['error']}")
