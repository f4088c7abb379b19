"""The fast path of the local backend: workers forked from a per-version template process.

`TemplateBackend.prepare()` keeps one template per current version; `start()` forks a worker
from it when it is ready and falls back to a freshly spawned process otherwise: while the template
loads, after it failed, or when a forked child does not become ready within
`fork_ready_timeout_s` (a hung fork, e.g. the OpenMP trap), in which case the template is retired
and that version uses spawned workers from then on.

A template that dies unexpectedly (killed, crashed after loading) is recreated with exponential
back-off (`template_backoff_s` doubling up to `template_backoff_max_s`), so cold starts go back
to forks without a redeploy. Each template runs in its own sandbox box; each forked worker gets
its own cgroup, into which the gateway moves it as soon as the template reports its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from typing import Any

from coldbrew.backends.base import ColdPath, WorkerHandle, WorkerLaunch
from coldbrew.backends.fork_boxes import ForkBoxes, close_made
from coldbrew.backends.forked import ForkedWorker, TemplateKey, _Template
from coldbrew.backends.local import (
    LocalBackend,
    box_spec,
    spawn_runtime,
    worker_env,
)
from coldbrew.clock import Clock, SystemClock
from coldbrew.runtime.sandbox.host import Box

log = logging.getLogger("coldbrew.templates")

_MAX_MESSAGE = 65536


def _cold_path(template: _Template | None) -> ColdPath:
    if template is None or template.broken:
        return ColdPath.SPAWN
    if not template.ready.done():
        return ColdPath.LOADING
    return ColdPath.FORK if template.usable else ColdPath.SPAWN


class TemplateBackend:
    """Forks workers from templates; spawns them when it cannot."""

    def __init__(
        self,
        fork_ready_timeout_s: float,
        spawn: LocalBackend | None = None,
        clock: Clock | None = None,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        load_wait_s: float = 120.0,
    ) -> None:
        self.fork_ready_timeout_s = fork_ready_timeout_s
        self.load_wait_s = load_wait_s  # a start waits this long for a loading template
        self.spawn = spawn or LocalBackend()
        self.clock = clock or SystemClock()
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._templates: dict[TemplateKey, _Template] = {}
        self._retired: list[_Template] = []  # draining: exit after their last child
        self._failed: set[TemplateKey] = set()
        self._wanted: dict[TemplateKey, WorkerLaunch] = {}
        self._deaths: dict[TemplateKey, int] = {}  # unexpected exits, for the back-off
        self._restarts: set[asyncio.Task[None]] = set()
        self._serial = 0
        self._prepare_lock = asyncio.Lock()
        self._boxes = ForkBoxes(self.spawn.sandbox)

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        """Keep templates for exactly these launches: start missing ones, stop the rest."""
        async with self._prepare_lock:  # two deploys at once must not start a key twice
            wanted = {TemplateKey.of(launch): launch for launch in launches}
            self._wanted = wanted
            for key in list(self._deaths):
                if key not in wanted:
                    del self._deaths[key]
            for key in list(self._templates):
                if key not in wanted:
                    self._retire(key)
            for key, launch in wanted.items():
                if key not in self._templates and key not in self._failed:
                    await self._start_template(key, launch)

    async def ready(self, launches: list[WorkerLaunch], timeout_s: float) -> list[ColdPath]:
        """Wait (together, up to `timeout_s`) for the launches' templates to load."""
        templates = [self._templates.get(TemplateKey.of(launch)) for launch in launches]
        loading = {t.ready for t in templates if t is not None and not t.ready.done()}
        if loading:
            await asyncio.wait(loading, timeout=timeout_s)  # never cancels them on a timeout
        return [_cold_path(t) for t in templates]

    async def start(self, launch: WorkerLaunch) -> WorkerHandle:
        template = await self._loaded(launch)
        if template is None:
            return await self.spawn.start(launch)
        try:
            return await self._fork(template, launch)
        except Exception as exc:
            log.warning("forking %s failed (%s); spawning a worker instead", launch.module, exc)
            self._retire(template.key, failed=True)
            return await self.spawn.start(launch)

    async def _loaded(self, launch: WorkerLaunch) -> _Template | None:
        """The launch's template once it can fork (None: spawn instead). One still loading
        started before this worker would, so waiting for it is never slower than spawning a
        process that imports everything again."""
        template = self._templates.get(TemplateKey.of(launch))
        if template is not None and not template.ready.done() and not template.broken:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(template.ready), self.load_wait_s)
        return template if template is not None and template.usable else None

    async def close(self) -> None:
        """Retire every template and wait for them to exit (their workers are gone by now)."""
        self._wanted = {}
        for task in list(self._restarts):
            task.cancel()
        for key in list(self._templates):
            self._retire(key)
        for template in list(self._retired):
            try:
                await asyncio.wait_for(template.process.wait(), 5.0)
            except TimeoutError:
                template.process.kill()
                await template.process.wait()
            self._drain_messages(template)
            self._on_template_gone(template)

    async def _start_template(self, key: TemplateKey, launch: WorkerLaunch) -> None:
        self._serial += 1
        name = f"template-{launch.artifact_dir.name[:12]}-{self._serial}"
        box = self.spawn.sandbox.box(box_spec(launch, name))
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        python = self.spawn.interpreter(launch)  # the version's environment, if it has one
        runtime = worker_env(launch, {**self.spawn.extra_env, **python.env})
        runtime["COLDBREW_TEMPLATE_FD"] = str(child.fileno())
        env = box.env(runtime, launch.env)  # setup() may need the endpoint's secrets
        log_path = launch.log_path.with_name(
            f"template-{launch.artifact_dir.name[:12]}-{launch.class_name}.log"
        )
        args = [
            str(box.workdir),
            launch.module,
            launch.class_name,
            str(launch.concurrency),
            "1" if launch.snapshot else "0",
            ",".join(launch.preload),
        ]
        try:
            process = await spawn_runtime(
                "template", args, env, log_path, child.fileno(), box.cwd, box.pass_fds, python
            )
            box.started()
        except BaseException:
            parent.close()
            box.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        loop = asyncio.get_running_loop()
        template = _Template(key, process, parent, loop.create_future(), box)
        self._templates[key] = template
        loop.add_reader(parent.fileno(), self._on_readable, template)

    def _on_readable(self, template: _Template) -> bool:
        """Handle one message from the template; False when none was waiting or it is gone."""
        try:
            data = template.ctl.recv(_MAX_MESSAGE)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._on_template_gone(template)
            return False
        message = json.loads(data)
        kind = message["t"]
        if kind == "template_ready":
            template.ready.set_result(message)
        elif kind == "setup_failed":
            template.ready.set_exception(RuntimeError(message["error"]["message"]))
            template.ready.exception()  # retrieved: spawned workers report the failure to jobs
            self._retire(template.key, failed=True)
        elif kind == "forked":
            pid = int(message["pid"])
            # registered now, not when _fork resumes: the child may exit before that
            template.exits[pid] = asyncio.get_running_loop().create_future()
            future = template.forks.pop(message["worker_id"], None)
            if future is not None and not future.done():
                future.set_result(pid)
        elif kind in ("spare", "exited"):
            self._on_child(template, kind, int(message["pid"]), message.get("code"))
        return True

    def _on_child(self, template: _Template, kind: str, pid: int, code: Any) -> None:
        """A spare was forked (its groups are made now), or a child exited."""
        if template.spare is not None and (kind == "spare" or template.spare.pid == pid):
            template.spare.discard()  # replaced, or it died untaken
            template.spare = None
        if kind == "spare":
            launch = self._wanted.get(template.key)
            template.spare = None if launch is None else self._boxes.spare(launch, pid)
            return
        exit_future = template.exits.get(pid)
        if exit_future is not None and not exit_future.done():
            exit_future.set_result(int(code))

    def _drain_messages(self, template: _Template) -> None:
        """Read the reports still queued on a template's socket (exit codes before killing)."""
        while template.ctl.fileno() >= 0 and self._on_readable(template):
            pass

    def _on_template_gone(self, template: _Template) -> None:
        """The template exited: its children can no longer be reaped, so end them."""
        if template.ctl.fileno() >= 0:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(template.ctl.fileno())
            template.ctl.close()
        template.broken = True
        if not template.ready.done():
            template.ready.set_exception(RuntimeError("template exited while loading"))
            template.ready.exception()
        for pid, future in template.exits.items():
            if not future.done():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                future.set_result(-signal.SIGKILL)
        for future in template.forks.values():
            if not future.done():
                future.set_exception(ConnectionError("template exited"))
        if template.spare is not None:
            template.spare.discard()
            template.spare = None
        if template.box is not None:
            template.box.close()  # whatever it left behind dies with it
            template.box = None
        if self._templates.get(template.key) is template:
            del self._templates[template.key]
            self._recreate_later(template.key)  # it died: nobody retired it
        if template in self._retired:
            self._retired.remove(template)

    def _recreate_later(self, key: TemplateKey) -> None:
        """Start a dead template again after a back-off that doubles with each death."""
        deaths = self._deaths.get(key, 0)
        self._deaths[key] = deaths + 1
        delay = min(self.backoff_max_s, self.backoff_s * 2**deaths)
        log.warning("a template of %s exited; recreating it in %.1f s", key.module, delay)
        task = asyncio.get_running_loop().create_task(self._recreate(key, delay))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _recreate(self, key: TemplateKey, delay: float) -> None:
        await self.clock.sleep(delay)
        async with self._prepare_lock:
            launch = self._wanted.get(key)
            if launch is not None and key not in self._templates and key not in self._failed:
                await self._start_template(key, launch)

    async def _fork(self, template: _Template, launch: WorkerLaunch) -> WorkerHandle:
        parent, child = socket.socketpair()
        writer: asyncio.StreamWriter | None = None
        try:
            forked, creating = self._request_fork(template, launch, child)
            # set up while the template hands the request to its spare
            reader, writer = await asyncio.open_unix_connection(sock=parent)
            pid = await self._forked_pid(template, launch, forked, creating)
        except BaseException:
            if writer is not None:
                writer.close()
            parent.close()
            raise
        finally:
            child.close()
        box, placing = await self._forked_box(template, launch, pid, creating)
        worker = ForkedWorker(pid, template.exits[pid], reader, writer, box, placing)
        # Only a snapshot child is bounded: an import-only child runs setup() (GPU weights)
        # before its first frame, which may rightly take long.
        bound = self.fork_ready_timeout_s if launch.snapshot else None
        try:
            async with asyncio.timeout(bound):
                first = await worker.recv()
        except TimeoutError:
            worker.kill()
            writer.close()
            worker._close_box()
            raise RuntimeError(
                f"the forked worker was not ready within {self.fork_ready_timeout_s:g} s "
                "(a fork-unsafe library in the template?)"
            ) from None
        if first is None:
            writer.close()
            worker._close_box()
            raise RuntimeError("the forked worker exited before it was ready")
        worker._first.append(first)
        return worker

    def _request_fork(
        self, template: _Template, launch: WorkerLaunch, channel: socket.socket
    ) -> tuple[asyncio.Future[int], asyncio.Future[Box] | None]:
        """Ask the template for a worker whose frames go over `channel` (ours to close): the
        future of its pid, and of its box when one is made now."""
        forked: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        template.forks[launch.worker_id] = forked
        # with a spare reported, its groups are made already (or being made)
        creating = self._boxes.fresh(launch) if template.spare is None else None
        request = {"t": "fork", "worker_id": launch.worker_id, "env": launch.env}
        try:
            socket.send_fds(template.ctl, [json.dumps(request).encode()], [channel.fileno()])
        except BaseException:
            template.forks.pop(launch.worker_id, None)
            if creating is not None:
                creating.add_done_callback(close_made)
            raise
        return forked, creating

    async def _forked_pid(
        self,
        template: _Template,
        launch: WorkerLaunch,
        forked: asyncio.Future[int],
        creating: asyncio.Future[Box] | None,
    ) -> int:
        """The pid the template reports for the fork; on failure the box made for it goes."""
        try:
            return await asyncio.wait_for(forked, self.fork_ready_timeout_s)
        except BaseException:
            template.forks.pop(launch.worker_id, None)
            if creating is not None:
                (await creating).close()
            raise

    async def _forked_box(
        self,
        template: _Template,
        launch: WorkerLaunch,
        pid: int,
        creating: asyncio.Future[Box] | None,
    ) -> tuple[Box, asyncio.Future[None]]:
        """The forked worker's box: its spare's when the spare became it, else one made now."""
        spare = template.spare if template.spare and template.spare.pid == pid else None
        if spare is not None:
            template.spare = None
        return await self._boxes.worker(launch, pid, spare, creating)

    def _retire(self, key: TemplateKey, failed: bool = False) -> None:
        """Stop forking from a template; it exits once its last child has exited."""
        template = self._templates.pop(key, None)
        if failed:
            self._failed.add(key)
        if template is None:
            return
        template.broken = True
        self._retired.append(template)
        with contextlib.suppress(OSError):
            template.ctl.send(json.dumps({"t": "stop"}).encode())
