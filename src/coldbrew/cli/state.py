"""`coldbrew state`: see and delete what a model keeps with `coldbrew.state`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from coldbrew.sdk.client import Client


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def state() -> None:
    """What an endpoint's model keeps between requests (`coldbrew.state` in predict)."""


@state.command("list")
@click.argument("endpoint")
@click.option("--prefix", default="", help="only keys that start with this")
@click.option("--limit", default=100, show_default=True, help="at most this many keys")
def list_state(endpoint: str, prefix: str, limit: int) -> None:
    """ENDPOINT's keys with their size, version, last write and expiry (UTC)."""
    with Client() as client:
        page = client.state(endpoint, prefix=prefix, limit=limit)
    entries = page["entries"]
    if not entries:
        click.echo(f"{endpoint} keeps no state" + (f" under {prefix!r}" if prefix else ""))
        return
    width = max(12, *(len(e["key"]) for e in entries)) + 2
    click.echo(f"{'KEY':<{width}}{'BYTES':>9}{'VERSION':>9}  {'UPDATED':<21}{'EXPIRES':<19}")
    for e in entries:
        click.echo(
            f"{e['key']:<{width}}{e['sizeBytes']:>9}{e['version']:>9}  "
            f"{_when(e['updatedAt']):<21}{_when(e['expiresAt']):<19}"
        )
    if page["next"]:
        click.echo(f"(more after {page['next']!r}: raise --limit or narrow --prefix)")


@state.command("get")
@click.argument("endpoint")
@click.argument("key")
def get_state(endpoint: str, key: str) -> None:
    """Print KEY's value (JSON)."""
    with Client() as client:
        entry = client.state(endpoint, key)
    click.echo(json.dumps(entry["value"], indent=2, ensure_ascii=False))


@state.command("delete")
@click.argument("endpoint")
@click.argument("key", required=False)
@click.option("--all", "everything", is_flag=True, help="delete every key of ENDPOINT")
def delete_state(endpoint: str, key: str | None, everything: bool) -> None:
    """Delete KEY, or with --all every key of ENDPOINT."""
    if bool(key) == everything:
        raise click.UsageError("name one KEY, or pass --all (and no key) to delete every key")
    with Client() as client:
        result = client.delete_state(endpoint, key)
    if key:
        click.echo(f"deleted {key!r} from {endpoint}")
    else:
        click.echo(f"deleted {result['cleared']} key(s) from {endpoint}")
