"""`coldbrew serve`: the platform in the foreground, with optional directories to deploy."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import click
import uvicorn

from coldbrew.api.app import create_app
from coldbrew.cli.http import home_problem, server_limits
from coldbrew.config import Settings
from coldbrew.control.pipelines import Pipelines
from coldbrew.errors import ColdbrewError
from coldbrew.observe.logs import configure as configure_logs
from coldbrew.platform import DEFAULT_ACCOUNT, Platform
from coldbrew.sdk.package import package

#: How long an idle keep-alive connection stays open. RunPod's worker SDK runs a synchronous
#: handler on its event loop and then posts the result on the pooled connection it used before;
#: it does not retry a connection the server closed meanwhile. aiohttp (the SDK's client) drops
#: pooled connections idle for more than 15 s itself, so a server that waits longer than that is
#: never the side that closes first, whatever the handler's duration. (uvicorn's default, 5 s,
#: lost the result of every synchronous handler of 5 to 15 s.)
KEEP_ALIVE_S = 75


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def deploy_local(platform: Platform, directory: Path) -> list[str]:
    """Deploy a directory into the default account without going through HTTP."""
    data, sha = package(directory)
    if not platform.deployer.has_artifact(DEFAULT_ACCOUNT, sha):
        await platform.deployer.store_artifact(DEFAULT_ACCOUNT, sha, _one_chunk(data))
    progress: list[str] = []
    results = await platform.deploy(
        DEFAULT_ACCOUNT, sha, directory.resolve().name, report=progress.append
    )
    lines = []
    for r in results:
        state = "new version" if r["created"] else "unchanged"
        lines.append(f"  deployed {r['name']} v{r['version']} ({state}) from {directory}")
        lines.extend(f"    note: {note}" for note in r.get("notes", []))
    return lines + [f"    {line}" for line in progress]


def banner(settings: Settings, url: str, endpoints: list[str], failed: list[Path]) -> str:
    """What `serve` prints once it is up: where it is, the key, and a call that works."""
    key_path = settings.admin_key_path
    lines = [
        "",
        f"coldbrew is serving on {url}  (API docs: {url}/docs)",
        f"  admin key: {key_path}",
        f"  endpoints: {', '.join(endpoints) or 'none yet'}",
    ]
    if failed:
        lines.append(f"  NOT deployed (see the errors above): {', '.join(map(str, failed))}")
    if "echo" in endpoints:
        cacert = f"--cacert {shlex.quote(str(settings.tls_cert))} " if settings.tls_cert else ""
        lines += [
            "try it:",
            f"  curl -s {cacert}-X POST {url}/v2/echo/runsync "
            f'-H "Authorization: Bearer $(cat {shlex.quote(str(key_path))})" '
            '-H \'Content-Type: application/json\' -d \'{"input": {"message": "hello"}}\'',
        ]
    elif endpoints:
        lines.append("try it: `coldbrew endpoints`, then `coldbrew run NAME --input '{...}'`")
    else:
        lines.append("deploy a model: `coldbrew deploy DIR` (see examples/)")
    lines += ["stop with Ctrl-C (or SIGTERM)", ""]
    return "\n".join(lines)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` handles SIGINT/SIGTERM itself so that
    workers are stopped before the process exits (uvicorn re-raises the signal on its way out)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _on_signals(server: uvicorn.Server) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)


async def serve(settings: Settings, deploy_dirs: list[Path]) -> int:
    try:
        platform = await Platform.open(settings)
    except ColdbrewError as exc:  # a secrets key that does not open the database; --sandbox
        # strict on a machine that cannot give every protection; an unreachable database
        click.echo(f"error: {exc.message}\n  hint: {exc.hint}", err=True)
        return 2
    app = create_app(platform, manage_lifecycle=False)
    admin_key = await platform.start()
    await app.state.triggers.start()  # after the scheduler: runners submit at once
    pipelines: Pipelines = app.state.pipelines
    await pipelines.resume()  # runs a restart interrupted go on from their stored stages
    if admin_key:
        click.echo(
            f"created account '{DEFAULT_ACCOUNT}' with admin key {admin_key}\n"
            f"  (saved to {settings.admin_key_path.resolve()}, mode 0600; shown only once)"
        )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        ssl_certfile=settings.tls_cert,  # HTTPS when set (checked with the settings)
        ssl_keyfile=settings.tls_key,
        timeout_keep_alive=KEEP_ALIVE_S,
        **server_limits(settings),  # connections, header time and size: cli/http.py
    )
    server = _Server(config)
    _on_signals(server)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if task.done():
            task.result()
            click.echo(f"error: could not listen on {settings.host}:{settings.port}", err=True)
            return 1
        failed = []
        for directory in deploy_dirs:
            click.echo(f"deploying {directory} …")
            try:
                for line in await deploy_local(platform, directory):
                    click.echo(line)
            except ColdbrewError as exc:
                failed.append(directory)
                click.echo(f"  failed to deploy {directory}: {exc.message}", err=True)
                if exc.hint:
                    click.echo(f"  hint: {exc.hint}", err=True)
        names = [e.name for e in await platform.store.list_endpoints(DEFAULT_ACCOUNT)]
        # Everything start-up built (~110,000 objects) lives as long as the server: frozen, the
        # collector stops scanning it in every full collection under load.
        gc.collect()
        gc.freeze()
        scheme = "https" if settings.tls_cert else "http"
        url = f"{scheme}://{settings.host}:{settings.port}"
        click.echo(banner(settings, url, names, failed))
        await task
    except SystemExit:
        click.echo(
            f"error: could not listen on {settings.host}:{settings.port} (in use?); "
            "pick another with --port or PORT=",
            err=True,
        )
        return 1
    finally:
        click.echo("stopping workers …")
        await app.state.triggers.stop()
        await pipelines.stop()
        await platform.stop()
    return 0


def run_server(settings: Settings, deploy_dirs: list[Path]) -> None:
    configure_logs(settings.log_json)
    problem = home_problem(settings.home)
    if problem:
        click.echo(problem, err=True)
        sys.exit(1)
    sys.exit(asyncio.run(serve(settings, deploy_dirs)))
