"""`coldbrew map`: a JSON-lines file of inputs through an endpoint, results in the same order.

Exit status: 0 every input completed; 1 some failed (their lines say why) or the server refused
the map; 2 refused before anything ran (a bad input line, a journal of another map, an output
that a finished map left); 130 interrupted (run the same command again to resume).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click
import orjson

from coldbrew.sdk.bulk import MapProgress, run_map
from coldbrew.sdk.client import Client
from coldbrew.sdk.errors import APIError
from coldbrew.sdk.journal import InputError, MapError, read_inputs
from coldbrew.sdk.progress import ProgressBar

EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 1, 2, 130


def journal_path(out: Path) -> Path:
    """Where the map writing `out` keeps its journal: next to it, `<out>.partial`."""
    return out.with_name(out.name + ".partial")


def map_command(
    client: Client,
    name: str,
    inputs_file: Path,
    out: Path,
    *,
    max_in_flight: int,
    retry_failed: bool,
    overwrite: bool,
    progress: bool,
) -> int:
    """Run the map and write `out`; returns the exit status (see the module docstring)."""
    journal = journal_path(out)
    try:
        inputs, lines = read_inputs(inputs_file)
    except MapError as exc:
        return _refuse_map(exc, inputs_file)
    if not out.absolute().parent.is_dir():
        return _refuse(
            f"cannot write {out}: the folder {out.absolute().parent} does not exist",
            "create it, or choose another --out",
        )
    if out.exists() and not journal.exists() and not overwrite:
        return _refuse(
            f"{out} already exists and no map is in progress there ({journal.name} is absent)",
            "pass --overwrite to run the map again, or choose another --out",
        )
    bar = ProgressBar() if progress else None
    last: list[MapProgress] = []

    def on_progress(state: MapProgress) -> None:
        last[:] = [state]
        if bar is not None:
            bar(state)

    async def go() -> list[dict[str, Any]]:
        async with client.async_http() as http:
            return await run_map(
                http,
                name,
                inputs,
                journal_path=journal,
                max_in_flight=max_in_flight,
                retry_failed=retry_failed,
                on_progress=on_progress,
                where=lambda index: f"line {lines[index]}",
            )

    try:
        results = asyncio.run(go())
    except MapError as exc:
        _close(bar)
        return _refuse_map(exc, inputs_file)
    except APIError as exc:
        _close(bar)
        _error(exc.message, exc.hint)
        if journal.exists():
            click.echo(f"  {journal} keeps what was done: run the map again to resume", err=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _close(bar)
        done = f"{last[0].done} of {last[0].total} inputs done; " if last else ""
        click.echo(
            f"interrupted: {done}run the same command again to resume (journal: {journal})",
            err=True,
        )
        return EXIT_INTERRUPTED
    _close(bar)
    return _write(out, journal, results, lines)


def _write(out: Path, journal: Path, results: list[dict[str, Any]], lines: list[int]) -> int:
    partial = out.with_name(out.name + ".tmp")
    with partial.open("wb") as file:
        for result in results:
            file.write(orjson.dumps(result) + b"\n")
    os.replace(partial, out)
    failed = [r for r in results if r["status"] != "COMPLETED"]
    if not failed:
        journal.unlink(missing_ok=True)
        click.echo(f"wrote {len(results)} results to {out}: all completed", err=True)
        return 0
    first = failed[0]
    click.echo(
        f"wrote {len(results)} results to {out}: {len(failed)} failed "
        f"(first: line {lines[first['index']]}, {first['status']}: {first.get('error')})",
        err=True,
    )
    click.echo(
        f"  hint: run the same command with --retry-failed to run the failed inputs again "
        f"({journal} remembers the rest)",
        err=True,
    )
    return EXIT_FAILED


def _refuse_map(exc: MapError, inputs_file: Path) -> int:
    if not isinstance(exc, InputError):
        return _refuse(exc.message, exc.hint)
    count = len(exc.problems)
    click.echo(
        f"error: {inputs_file}: {count} input line{'s' if count > 1 else ''} refused, "
        "nothing was submitted",
        err=True,
    )
    for where, what in exc.problems[:20]:
        click.echo(f"  {where}: {what}", err=True)
    if count > 20:
        click.echo(f"  … and {count - 20} more", err=True)
    click.echo(f"  hint: {exc.hint}", err=True)
    return EXIT_REFUSED


def _refuse(message: str, hint: str) -> int:
    _error(message, hint)
    return EXIT_REFUSED


def _error(message: str, hint: str) -> None:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"  hint: {hint}", err=True)


def _close(bar: ProgressBar | None) -> None:
    if bar is not None:
        bar.close()
