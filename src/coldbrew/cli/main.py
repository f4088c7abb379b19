"""The `coldbrew` command line. Everything but `serve` talks to the server over HTTP."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from coldbrew.cli.credentials import keys, secrets
from coldbrew.cli.money import advise, budgets, usage
from coldbrew.cli.output import print_table
from coldbrew.cli.pipelines import pipelines
from coldbrew.cli.state import state
from coldbrew.cli.triggers import triggers
from coldbrew.cli.versions import rollback, traffic, versions
from coldbrew.config import load_settings
from coldbrew.sdk.client import Client
from coldbrew.sdk.errors import APIError


def _client() -> Client:
    return Client()


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


class _Group(click.Group):
    """Turns API errors into one readable line and a hint instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except APIError as exc:
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"  hint: {exc.hint}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
def main() -> None:
    """coldbrew: serverless inference on your own machine."""


@main.command()
@click.option("--host", default=None, help="address to bind (default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default 8000)")
@click.option(
    "--deploy",
    "deploy_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="deploy this directory at start (repeatable)",
)
@click.option("--log-json", is_flag=True, default=None, help="server logs as JSON lines")
@click.option("--tls-cert", type=Path, default=None, help="PEM certificate: serve HTTPS")
@click.option("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
@click.option(
    "--sandbox",
    type=click.Choice(["strict", "standard", "off"]),
    default=None,
    help="isolation of tenant code (default standard: what the kernel allows; strict: refuse "
    "to start without every layer; off: none, with a warning)",
)
@click.option(
    "--database-url",
    default=None,
    help="postgresql://USER@HOST:5432/DB: keep jobs in PostgreSQL, shared by several gateways "
    "(default: SQLite in the home; env COLDBREW_DATABASE_URL)",
)
@click.option(
    "--redis-url",
    default=None,
    help="redis://… that several gateways share: account caps, budget stops, wake-ups and the "
    "result cache (default: none, all in this process)",
)
@click.option(
    "--shared-dir",
    type=Path,
    default=None,
    help="directory every gateway mounts for deploy artifacts and uploaded files (default: "
    "the home)",
)
@click.option("--gateway-id", default=None, help="this gateway's id (default: new per start)")
@click.option(
    "--advertise-url",
    default=None,
    help="where the other gateways reach this one (default http://HOST:PORT)",
)
@click.option(
    "--ray-address", default=None, help="run workers on this Ray cluster (host:port; docs/ray.md)"
)
def serve(
    host: str | None,
    port: int | None,
    deploy_dirs: tuple[Path, ...],
    log_json: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    sandbox: str | None,
    database_url: str | None,
    redis_url: str | None,
    shared_dir: Path | None,
    gateway_id: str | None,
    advertise_url: str | None,
    ray_address: str | None,
) -> None:
    """Run the platform in the foreground (Ctrl-C or SIGTERM stops it and its workers)."""
    from pydantic import ValidationError

    from coldbrew.cli.serve import run_server

    try:
        settings = load_settings(
            host=host,
            port=port,
            log_json=log_json,
            tls_cert=tls_cert,
            tls_key=tls_key,
            sandbox=sandbox,
            database_url=database_url,
            redis_url=redis_url,
            shared_dir=shared_dir,
            gateway_id=gateway_id,
            advertise_url=advertise_url,
            ray_address=ray_address,
        )
    except ValidationError as exc:
        click.echo(f"error: invalid settings:\n{exc}", err=True)
        sys.exit(2)
    run_server(settings, list(deploy_dirs))


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", default=None, help="deploy the directory's one model under this name")
@click.option(
    "--replace",
    is_flag=True,
    help="replace an endpoint of that name that came from another directory or kind of model",
)
def deploy(directory: Path, name: str | None, replace: bool) -> None:
    """Package DIRECTORY, upload it and create a new version of each model in it."""
    bar: Any = None

    def progress(sent: int, total: int) -> None:
        nonlocal bar
        if total < (1 << 20):
            return
        if bar is None:
            bar = click.progressbar(
                length=total, label="uploading", show_pos=False, show_percent=True, show_eta=True
            )
            bar.__enter__()
        bar.update(sent - bar.pos)

    with _client() as client:
        click.echo(f"packaging {directory} …")
        try:
            results = client.deploy(
                directory,
                progress,
                name=name,
                replace=replace,
                on_line=lambda line: click.echo(f"  {line}"),
            )
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
        for r in results:
            state = "new version" if r["created"] else "unchanged, no new version"
            click.echo(f"{r['name']}: v{r['version']} ({state})")
            for note in r.get("notes", []):
                click.echo(f"  note: {note}")


@main.command()
def endpoints() -> None:
    """List endpoints with version, workers and queue length."""
    with _client() as client:
        rows = client.endpoints()
    print_table(
        ["NAME", "VERSION", "HARDWARE", "IDLE", "BUSY", "STARTING", "QUEUE"],
        [
            [
                e["name"],
                f"v{e['version']}",
                e["hardware"],
                e["workers"]["idle"],
                e["workers"]["running"],
                e["workers"]["starting"],
                e["queue"],
            ]
            for e in rows
        ],
        right=["VERSION", "IDLE", "BUSY", "STARTING", "QUEUE"],
    )


@main.command()
@click.argument("name")
def delete(name: str) -> None:
    """Stop NAME's workers and remove the endpoint."""
    with _client() as client:
        client.delete(name)
    click.echo(f"deleted {name}")


def _read_input(text: str) -> dict[str, Any]:
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--input")
    return value


@main.command()
@click.argument("name")
@click.option("--input", "input_text", default="{}", help="JSON object, or @file.json")
@click.option("--async", "is_async", is_flag=True, help="queue it and print the job id")
@click.option("--wait", "wait_ms", type=int, default=None, help="runsync wait in ms")
def run(name: str, input_text: str, is_async: bool, wait_ms: int | None) -> None:
    """Run a job on endpoint NAME and print its status JSON."""
    payload = _read_input(input_text)
    with _client() as client:
        if is_async:
            _print_json(client.run(name, payload))
        else:
            result = client.run_sync(name, payload, wait_ms)
            _print_json(result)
            if result["status"] in ("FAILED", "TIMED_OUT", "CANCELLED"):
                sys.exit(1)


@main.command("map")
@click.argument("name")
@click.argument("inputs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="results: one JSON line per input, in input order",
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(1, 10_000),
    default=64,
    show_default=True,
    help="jobs queued or running at once",
)
@click.option("--retry-failed", is_flag=True, help="run the inputs that failed last time again")
@click.option("--overwrite", is_flag=True, help="replace an --out file that a finished map left")
@click.option("--no-progress", is_flag=True, help="no progress bar on stderr")
def map_(
    name: str,
    inputs: Path,
    out: Path,
    max_in_flight: int,
    retry_failed: bool,
    overwrite: bool,
    no_progress: bool,
) -> None:
    """Run each line of INPUTS (one JSON object: a job's input) on NAME; results to --out.

    Interrupted (Ctrl-C, a kill)? Run the same command again: the journal OUT.partial makes it
    poll the jobs already submitted and skip the finished ones. Exit status 0 when every input
    completed, 1 when some failed, 2 when refused before starting, 130 when interrupted.
    """
    from coldbrew.cli.bulk import map_command

    with _client() as client:
        code = map_command(
            client,
            name,
            inputs,
            out,
            max_in_flight=max_in_flight,
            retry_failed=retry_failed,
            overwrite=overwrite,
            progress=not no_progress,
        )
    sys.exit(code)


@main.command()
@click.argument("job_id")
def status(job_id: str) -> None:
    """Print a job's status JSON."""
    with _client() as client:
        _print_json(client.status(job_id))


@main.command()
@click.argument("job_id")
def logs(job_id: str) -> None:
    """Print what the worker printed while it ran JOB_ID."""
    from datetime import UTC, datetime

    with _client() as client:
        for line in client.logs(job_id):
            ts = datetime.fromtimestamp(line["ts"], UTC).strftime("%H:%M:%S.%f")[:-3]
            click.echo(f"{ts} {line['stream']:<6} {line['line']}")


main.add_command(keys)
main.add_command(secrets)
main.add_command(versions)
main.add_command(traffic)
main.add_command(rollback)
main.add_command(state)
main.add_command(triggers)
main.add_command(pipelines)
for _command in (usage, budgets, advise):
    main.add_command(_command)
