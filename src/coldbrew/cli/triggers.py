"""`coldbrew triggers create|list|get|pause|resume|delete`: sources that run an endpoint per
message and send its results to a sink."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from coldbrew.cli.output import print_table
from coldbrew.sdk.client import Client

#: Which config field `--sink KIND:NAME` fills, per sink kind.
_SINK_NAME = {
    "postgres": "table",
    "redis": "stream",
    "webhook": "url",
    "nats": "subject",
    "rabbitmq": "routing_key",
    "mqtt": "topic",
}


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, Any]:
    """`k=v` pairs. Values stay text (the server reads "100" or "true" for a number or flag
    field), except a JSON object or list (`input={"a": 1}`)."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint=flag)
        out[key] = value
        if value[:1] in ("{", "["):
            try:
                out[key] = json.loads(value)
            except ValueError:
                raise click.BadParameter(f"{key}: {value!r} is not JSON", param_hint=flag) from None
    return out


_CREATE_HELP = """Create trigger NAME: messages from a source run ENDPOINT, results go to a sink.

\b
Examples:
  coldbrew triggers create orders --source redis --stream orders --group g \\
      --endpoint echo --sink postgres:results --sink-set dsn=postgresql://127.0.0.1/app
  coldbrew triggers create nightly --source cron --schedule '0 3 * * *' \\
      --timezone Europe/Berlin --endpoint report
  coldbrew triggers create inserts --source postgres --set dsn=postgresql://127.0.0.1/app \\
      --table events --endpoint embed --sink redis:embeddings
  coldbrew triggers create uploads --source s3 --endpoint thumbnail   # prints eventsUrl
  coldbrew triggers create orders --config trigger.json   # the POST /v1/triggers body

\b
Sources: cron, redis, postgres, s3 (and nats, rabbitmq, mqtt, kafka where installed).
Sinks:   postgres:TABLE, redis:STREAM, webhook:URL, nats:SUBJECT, rabbitmq:QUEUE,
         mqtt:TOPIC (more fields with --sink-set k=v).
"""


@click.group()
def triggers() -> None:
    """Triggers: a source (cron, Redis Streams, a PostgreSQL table, S3 events, brokers) that
    runs an endpoint per message and writes results to a sink."""


@triggers.command("create", help=_CREATE_HELP)
@click.argument("name")
@click.option("--source", "source_kind", help="source kind: cron, redis, postgres, s3, ...")
@click.option("--endpoint", help="the endpoint each message runs")
@click.option("--pipeline", help="or the pipeline each message runs (one run per message)")
@click.option("--stream", help="redis: the stream to read")
@click.option("--group", help="redis: the consumer group (created if missing)")
@click.option("--schedule", help="cron: five-field schedule, e.g. '*/5 * * * *'")
@click.option("--timezone", help="cron: IANA time zone of the schedule (default UTC)")
@click.option("--table", help="postgres: the table whose inserts run jobs")
@click.option("--set", "source_set", multiple=True, help="any source field, key=value")
@click.option("--sink", help="KIND[:NAME], e.g. postgres:results, redis:out, webhook:https://…")
@click.option("--sink-set", multiple=True, help="any sink field, key=value (e.g. dsn=…)")
@click.option("--batch-size", type=int, help="messages fetched and submitted together (10)")
@click.option("--batch-window-ms", type=int, help="wait this long to fill a window (0)")
@click.option("--max-in-flight", type=int, help="jobs of this trigger at once, at most (100)")
@click.option("--max-attempts", type=int, help="jobs per message before dead-lettering (3)")
@click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the created trigger as JSON")
def create(name: str, config_file: Path | None, as_json: bool, **flags: Any) -> None:
    body: dict[str, Any] = json.loads(config_file.read_text()) if config_file else {}
    body["name"] = name
    source = dict(body.get("source") or {})
    if flags["source_kind"]:
        source["kind"] = flags["source_kind"]
    for flag in ("stream", "group", "schedule", "timezone", "table"):
        if flags[flag] is not None:
            source[flag] = flags[flag]
    source.update(_pairs(flags["source_set"], "--set"))
    body["source"] = source
    body.update(_target(flags["endpoint"], flags["pipeline"]))
    if flags["sink"]:
        kind, _, named = flags["sink"].partition(":")
        body["sink"] = {"kind": kind, **({_SINK_NAME.get(kind, "name"): named} if named else {})}
    if flags["sink_set"]:
        body.setdefault("sink", {}).update(_pairs(flags["sink_set"], "--sink-set"))
    for flag in ("batch_size", "batch_window_ms", "max_in_flight", "max_attempts"):
        if flags[flag] is not None:
            body[flag] = flags[flag]
    with Client() as client:
        trigger = client.create_trigger(body)
    if as_json:
        click.echo(json.dumps(trigger, indent=2))
        return
    click.echo(f"created trigger {trigger['name']} ({trigger['id']}), {trigger['state']}")
    if "eventsUrl" in trigger:
        click.echo(f"point the bucket's event notifications at:\n  {trigger['eventsUrl']}")


def _target(endpoint: str | None, pipeline: str | None) -> dict[str, str]:
    """The body's target: an endpoint or a pipeline, never both."""
    if endpoint and pipeline:
        raise click.UsageError("a trigger runs one target: give --endpoint or --pipeline")
    return {"endpoint": endpoint} if endpoint else {"pipeline": pipeline} if pipeline else {}


def _rate(value: float) -> str:
    return f"{value:.1f}/s"


@triggers.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_triggers(as_json: bool) -> None:
    """Triggers with their state, lag, throughput, failures and last error."""
    with Client() as client:
        found = client.triggers()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    rows = []
    for t in found:
        s = t["stats"]
        target = t.get("endpoint") or t.get("pipeline") or "-"
        sink = (t["sink"] or {}).get("kind", "-")
        error = (s["lastError"] or {}).get("message", "-")
        rows.append(
            [
                t["name"], t["id"], t["state"], t["source"]["kind"], target, sink,
                "-" if s["lag"] is None else s["lag"], s["inFlight"],
                _rate(s["throughputPerS"]), s["completed"], s["failed"], s["deadLettered"],
                error[:60],
            ]
        )  # fmt: skip
    print_table(
        ["NAME", "ID", "STATE", "SOURCE", "TARGET", "SINK", "LAG", "IN FLIGHT", "THROUGHPUT",
         "DONE", "FAILED", "DEAD", "LAST ERROR"],
        rows,
        right=("LAG", "IN FLIGHT", "THROUGHPUT", "DONE", "FAILED", "DEAD"),
    )  # fmt: skip


def _action(action: str | None) -> Any:
    def run(trigger: str) -> None:
        with Client() as client:
            result = client.trigger(trigger, action)
        if action == "delete":
            click.echo(f"deleted trigger {trigger}")
        elif action is None:
            click.echo(json.dumps(result, indent=2))
        else:
            click.echo(f"trigger {result['name']} is {result['state']}")

    return run


for _name, _doc in (
    ("get", "TRIGGER (id or name) as JSON, with its stats."),
    ("pause", "Stop fetching for TRIGGER; its source keeps what arrives meanwhile."),
    ("resume", "Fetch again for TRIGGER from where it stopped."),
    ("delete", "Stop and remove TRIGGER (its dead letters too)."),
):
    triggers.command(_name, help=_doc)(
        click.argument("trigger")(_action(None if _name == "get" else _name))
    )
