"""The template process: import the model once (and, for CPU models, run `setup()` once), then
fork a worker per request, so a cold start costs a fork instead of an interpreter, imports and a
weight load. Forked workers share the template's loaded weights copy-on-write.

Started as `python -m coldbrew.runtime.template DIR MODULE CLASS CONCURRENCY SNAPSHOT` with a
SOCK_SEQPACKET control socket in `COLDBREW_TEMPLATE_FD`. Messages are one JSON object each:

- gateway → template: `fork` {worker_id} with the worker's socket passed as SCM_RIGHTS; `stop`
- template → gateway: `template_ready` {import_s, setup_s}, `setup_failed` {error},
  `forked` {worker_id, pid}, `exited` {pid, code}

The template stays single-threaded (forking a process with threads is unsafe) and keeps
OpenMP/BLAS pools at one thread while it loads: torch forked after running multi-threaded work
hangs its child forever in GNU OpenMP. It exits once told to stop and its last child has exited,
so every worker's exit status is always reported.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from coldbrew.runtime.loader import load_class
from coldbrew.runtime.sandbox import _libc
from coldbrew.runtime.sandbox.enter import enter_from_env
from coldbrew.runtime.worker import Worker, error_record, make_channel

#: Thread-pool sizes forced to 1 while the template loads, restored in each child.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_MAX_MESSAGE = 65536


def _send(ctl: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the gateway is gone: nobody to tell
        ctl.send(json.dumps(message).encode())


class Template:
    """Holds the loaded model and forks workers from it."""

    def __init__(
        self, ctl: socket.socket, concurrency: int, snapshot: bool, sandboxed: bool = False
    ) -> None:
        self.ctl = ctl
        self.sandboxed = sandboxed
        self.concurrency = concurrency
        self.snapshot = snapshot
        self.cls: type | None = None
        self.model: Any = None
        self.children: set[int] = set()
        self.stopping = False
        self.saved_env = {k: os.environ.get(k) for k in THREAD_VARS}

    def load(self, module: str, class_name: str, preload: list[str]) -> tuple[float, float]:
        for var in THREAD_VARS:
            os.environ[var] = "1"
        started = time.perf_counter()
        for name in preload:
            importlib.import_module(name)
        self.cls = load_class(Path("."), module, class_name)
        imported = time.perf_counter()
        if self.snapshot:
            self.model = self.cls()
            if callable(getattr(self.model, "setup", None)):
                self.model.setup()
        if "numpy" in sys.modules:  # imported here once, not in every child (_restore_threads)
            with contextlib.suppress(ImportError):
                importlib.import_module("threadpoolctl")
        return imported - started, time.perf_counter() - imported

    def serve(self) -> None:
        """Answer fork requests and report child exits until stopped and childless."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        selector = selectors.DefaultSelector()
        selector.register(self.ctl, selectors.EVENT_READ, "ctl")
        selector.register(wake_r, selectors.EVENT_READ, "child")
        while not (self.stopping and not self.children):
            for key, _ in selector.select(timeout=1.0):
                if key.data == "child":
                    os.read(wake_r, 4096)
                elif not self._on_message(selector, wake_r, wake_w):
                    self.stopping = True
                    selector.unregister(self.ctl)  # closed: select would return at once
            self._reap()

    def _on_message(self, selector: selectors.BaseSelector, wake_r: int, wake_w: int) -> bool:
        try:
            data, fds, _, _ = socket.recv_fds(self.ctl, _MAX_MESSAGE, 1)
        except ConnectionError:
            return False
        if not data:
            return False  # the gateway went away: stop forking; children see their own EOF
        message = json.loads(data)
        if message["t"] == "stop":
            self.stopping = True
        elif message["t"] == "fork" and fds and not self.stopping:
            started = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                selector.close()
                for fd in (wake_r, wake_w):
                    os.close(fd)
                self._child(fds[0], started, message.get("env") or {})
            os.close(fds[0])
            self.children.add(pid)
            _send(self.ctl, {"t": "forked", "worker_id": message["worker_id"], "pid": pid})
        else:
            for fd in fds:
                os.close(fd)
        return True

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            _send(self.ctl, {"t": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def _child(self, fd: int, forked_at: float, secrets: dict[str, str]) -> None:
        """Runs in the forked worker: become an ordinary worker and never return. It inherits
        the template's sandbox; what is its own arrives with the fork request: the endpoint's
        secrets (set here, never in the template) and, from the gateway, its own cgroup."""
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.ctl.close()
            if self.sandboxed:  # dies with its template, as a spawned worker with the gateway
                _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            os.environ.update(secrets)
            self._restore_threads()
            channel = make_channel(fd)
            setup_s = 0.0
            try:
                model = self.model
                if model is None:
                    assert self.cls is not None
                    began = time.perf_counter()
                    model = self.cls()
                    if callable(getattr(model, "setup", None)):
                        model.setup()
                    setup_s = time.perf_counter() - began
                if callable(getattr(model, "warmup", None)):
                    model.warmup()
            except BaseException as exc:
                channel.send({"t": "setup_failed", "error": error_record(exc)})
                code = 1
                return
            fork_s = time.perf_counter() - forked_at - setup_s
            channel.send(
                {"t": "ready", "import_s": 0.0, "setup_s": setup_s, "fork_s": max(0.0, fork_s)}
            )
            Worker(channel, model, self.concurrency).serve()
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            os._exit(code)

    def _restore_threads(self) -> None:
        """Give the child the thread settings the operator asked for, not the template's 1."""
        for var, value in self.saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        torch = sys.modules.get("torch")
        wanted = self.saved_env.get("OMP_NUM_THREADS")
        if torch is not None and wanted and wanted.isdigit():
            torch.set_num_threads(int(wanted))
        if "numpy" in sys.modules:
            # BLAS as a freshly started process would have it: the operator's count, else one
            # thread per core (the template loaded it with one; its pool was never started, so
            # the child may start threads). torch keeps what setup() chose.
            blas = self.saved_env.get("OPENBLAS_NUM_THREADS") or wanted
            threads = int(blas) if blas and blas.isdigit() else (os.cpu_count() or 1)
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                return
            threadpool_limits(limits=threads, user_api="blas")


def main() -> None:
    directory, module, class_name, concurrency, snapshot, preload = sys.argv[1:7]
    ctl = socket.socket(fileno=int(os.environ["COLDBREW_TEMPLATE_FD"]))
    template = Template(ctl, int(concurrency), snapshot == "1")
    try:
        # sandboxed before the model is imported, so every fork inherits it
        template.sandboxed = enter_from_env() is not None
        os.chdir(directory)
        import_s, setup_s = template.load(module, class_name, [m for m in preload.split(",") if m])
    except BaseException as exc:
        _send(ctl, {"t": "setup_failed", "error": error_record(exc)})
        traceback.print_exc()
        sys.exit(1)
    _send(ctl, {"t": "template_ready", "import_s": import_s, "setup_s": setup_s})
    template.serve()


if __name__ == "__main__":
    main()
