"""`coldbrew keys …` and `coldbrew secrets …`: API keys and per-endpoint secrets.

Neither command ever prints a secret it did not just create: `keys list` shows ids and the
first characters of each key, `secrets list` shows names only.
"""

from __future__ import annotations

import sys

import click

from coldbrew.cli.output import print_table
from coldbrew.sdk.client import Client


def _when(value: str | None) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM' (UTC), or '-'."""
    return value[:16].replace("T", " ") if value else "-"


@click.group()
def keys() -> None:
    """API keys: list, create, revoke."""


@keys.command("list")
@click.option("--account", default=None, help="only this account's keys (admin for others)")
def keys_list(account: str | None) -> None:
    """Keys you may see: id, prefix, account, admin, created, expires, last used (UTC)."""
    with Client() as client:
        rows = client.keys(account)
    print_table(
        ["ID", "PREFIX", "ACCOUNT", "ADMIN", "CREATED", "EXPIRES", "LAST USED", "STATE"],
        [
            [
                k["id"],
                k["prefix"] or "-",
                k["account"],
                "yes" if k["admin"] else "no",
                _when(k["createdAt"]),
                _when(k["expiresAt"]),
                _when(k["lastUsedAt"]),
                "active" if k["active"] else ("revoked" if k["revokedAt"] else "expired"),
            ]
            for k in rows
        ],
    )


@keys.command("create")
@click.option("--account", default=None, help="account name (created if new; default: yours)")
@click.option("--admin", is_flag=True, help="the key can manage every account (admin only)")
@click.option("--expires", default=None, help="lifetime, e.g. 12h, 30d, 52w (default: never)")
def keys_create(account: str | None, admin: bool, expires: str | None) -> None:
    """Create a key and print it (it is shown only once), then its id on stderr."""
    with Client() as client:
        made = client.add_key(account, admin, expires)
    click.echo(made["key"])
    until = f", expires {_when(made['expiresAt'])} UTC" if made["expiresAt"] else ""
    click.echo(f"id {made['id']} for account {made['account']}{until}", err=True)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke the key KEY_ID (from `coldbrew keys list`); it stops working within seconds."""
    with Client() as client:
        revoked = client.revoke_key(key_id)
    click.echo(f"revoked {revoked['id']} ({revoked['account']})")


@click.group()
def secrets() -> None:
    """Per-endpoint secrets, delivered to that endpoint's new workers as environment variables."""


def _pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE arguments as a dict; `KEY=-` reads that one value from stdin, so it never
    appears in the process list (`/proc/<pid>/cmdline` is readable by every local user) or in
    the shell's history."""
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            # the argument may hold a value: never echo it back
            raise click.BadParameter("each must be KEY=VALUE", param_hint="KEY=VALUE")
        values[name] = value
    from_stdin = [name for name, value in values.items() if value == "-"]
    if len(from_stdin) > 1:
        raise click.BadParameter(
            f"only one value can come from stdin ({', '.join(from_stdin)} all say '-')",
            param_hint="KEY=-",
        )
    if from_stdin:
        values[from_stdin[0]] = sys.stdin.read().removesuffix("\n")
    return values


@secrets.command("set")
@click.argument("endpoint")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
def secrets_set(endpoint: str, pairs: tuple[str, ...]) -> None:
    """Set secrets of ENDPOINT (it need not be deployed yet). Running workers keep the values
    they started with; workers started from now on get the new ones. KEY=- reads KEY's value
    from stdin (keeps it out of `ps` and the shell history)."""
    values = _pairs(pairs)
    with Client() as client:
        names = client.set_secrets(endpoint, values)
    click.echo(f"{endpoint}: set {', '.join(sorted(values))}; {len(names)} secret(s) in all")


@secrets.command("unset")
@click.argument("endpoint")
@click.argument("names", nargs=-1)
@click.option("--all", "unset_all", is_flag=True, help="remove every secret of ENDPOINT")
def secrets_unset(endpoint: str, names: tuple[str, ...], unset_all: bool) -> None:
    """Remove secrets of ENDPOINT by name."""
    if bool(names) == unset_all:
        raise click.UsageError("give the names to remove, or --all")
    with Client() as client:
        if unset_all:
            names = tuple(s["name"] for s in client.secrets(endpoint))
        left = client.unset_secrets(endpoint, names) if names else []
    click.echo(f"{endpoint}: removed {', '.join(names) or 'nothing'}; {len(left)} left")


@secrets.command("list")
@click.argument("endpoint")
def secrets_list(endpoint: str) -> None:
    """The names of ENDPOINT's secrets and when each was set (never the values)."""
    with Client() as client:
        rows = client.secrets(endpoint)
    print_table(
        ["NAME", "UPDATED"],
        [[row["name"], _when(row["updatedAt"])] for row in rows],
        show_header=False,
    )
