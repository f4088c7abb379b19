"""The template process: import the model once (and, for CPU models, run `setup()` once), then
fork a worker per request, so a cold start costs a fork instead of an interpreter, imports and a
weight load. Forked workers share the template's loaded weights copy-on-write.

Started as `python -m coldbrew.runtime.template DIR MODULE CLASS CONCURRENCY SNAPSHOT` with a
SOCK_SEQPACKET control socket in `COLDBREW_TEMPLATE_FD`. Messages are one JSON object each:

- gateway → template: `fork` {worker_id} with the worker's socket passed as SCM_RIGHTS; `stop`
- template → gateway: `template_ready` {import_s, setup_s}, `setup_failed` {error},
  `forked` {worker_id, pid}, `exited` {pid, code}, `spare` {pid} (a spare child was forked)

The template stays single-threaded (forking a process with threads is unsafe) and keeps
OpenMP/BLAS pools at one thread while it loads: torch forked after running multi-threaded work
hangs its child forever in GNU OpenMP. It exits once told to stop and its last child has exited,
so every worker's exit status is always reported.

A cold start does not wait for a fork: the template keeps one *spare* child, forked ahead of
time, that has already paid for the fork and its copy-on-write faults and waits on its own socket
(`SPARE_DELAY_S` after the last one was taken, so forking it does not compete with the cold
start that took it). A fork request hands the worker's socket and secrets to the spare, which
becomes that worker; with no spare (a burst, or one that died) the template forks on the spot.
A spare is an ordinary child of the template (reaped, in its sandbox); it holds no secret until
it is handed one, and exits when the template stops or goes away.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from coldbrew.runtime import lifeline, weights
from coldbrew.runtime.loader import load_class
from coldbrew.runtime.sandbox.enter import enter_from_env
from coldbrew.runtime.worker import Worker, error_record, make_channel

#: Thread-pool sizes forced to 1 while the template loads, restored in each child.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_MAX_MESSAGE = 65536
#: How long after a spare was taken the next one is forked: past the cold start it served and,
#: in the common case, its first job (forking a template that holds 1 GB of weights copies its
#: page tables: ~10 ms of CPU that a first predict running at once on a small machine feels).
SPARE_DELAY_S = 1.0
#: After a spare died untaken (killed, or the fork trap), wait this long before the next one.
SPARE_RETRY_S = 5.0


class _ChildExit(Exception):
    """A child ends on purpose (a spare closed out, a setup that failed) with this code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


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
        self.spare: tuple[int, socket.socket] | None = None  # its pid, our end of its socket
        self.spare_due: float | None = None  # when (monotonic) to fork the next spare
        self._inherited: list[int] = []  # descriptors a child closes: the wake-up pipe
        self._selector: selectors.BaseSelector | None = None
        self.pid = os.getpid()  # a child checks it is still its parent's

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
                with weights.resident():  # weights its forks share, page tables included
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
        self._selector, self._inherited = selector, [wake_r, wake_w]
        self.spare_due = time.monotonic()  # the first spare at once
        while not (self.stopping and not self.children):
            for key, _ in selector.select(timeout=self._wait_s()):
                if key.data == "child":
                    os.read(wake_r, 4096)
                elif not self._on_message():
                    self._stop()
                    selector.unregister(self.ctl)  # closed: select would return at once
            self._reap()
            if self.spare_due is not None and time.monotonic() >= self.spare_due:
                self._fork_spare()

    def _wait_s(self) -> float:
        if self.spare_due is None or self.stopping:
            return 1.0
        return min(1.0, max(0.0, self.spare_due - time.monotonic()))

    def _stop(self) -> None:
        """Fork nothing more; the spare, closed out, exits (the loop reaps it)."""
        self.stopping = True
        self.spare_due = None
        if self.spare is not None:
            self.spare[1].close()
            self.spare = None

    def _on_message(self) -> bool:
        try:
            data, fds, _, _ = socket.recv_fds(self.ctl, _MAX_MESSAGE, 1)
        except ConnectionError:
            return False
        if not data:
            return False  # the gateway went away: stop forking; children see their own EOF
        message = json.loads(data)
        if message["t"] == "stop":
            self._stop()
        elif message["t"] == "fork" and fds and not self.stopping:
            received_at = time.perf_counter()
            secrets = message.get("env") or {}
            pid = self._hand_to_spare(fds[0], received_at, secrets)
            if pid is None:
                pid = self._fork(fds[0], received_at, secrets)
            os.close(fds[0])
            self.children.add(pid)
            _send(self.ctl, {"t": "forked", "worker_id": message["worker_id"], "pid": pid})
            if self.spare is None and self.spare_due is None:
                self.spare_due = time.monotonic() + SPARE_DELAY_S
        else:
            for fd in fds:
                os.close(fd)
        return True

    def _fork(self, fd: int, received_at: float, secrets: dict[str, str]) -> int:
        """Fork a worker now (no spare was ready)."""
        pid = os.fork()
        if pid == 0:
            self._in_child(lambda: self._child(fd, received_at, secrets))
        return pid

    def _hand_to_spare(self, fd: int, received_at: float, secrets: dict[str, str]) -> int | None:
        """Give the worker's socket and secrets to the spare; its pid, or None without one."""
        if self.spare is None:
            return None
        pid, handover = self.spare
        self.spare = None
        request = json.dumps({"received_at": received_at, "env": secrets}).encode()
        try:
            socket.send_fds(handover, [request], [fd])
        except OSError:  # it died meanwhile: the loop reaps it
            return None
        finally:
            handover.close()
        return pid

    def _fork_spare(self) -> None:
        self.spare_due = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            self._in_child(lambda: self._wait_as_spare(theirs))
        theirs.close()
        self.children.add(pid)
        self.spare = (pid, ours)
        _send(self.ctl, {"t": "spare", "pid": pid})  # the gateway makes its cgroups now

    def _in_child(self, run: Callable[[], None]) -> NoReturn:
        """Runs in a new child: leave the template's loop, run `run`, and never return."""
        code = 0
        try:
            if self._selector is not None:
                self._selector.close()
            for fd in self._inherited:
                os.close(fd)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.ctl.close()
            if self.sandboxed or lifeline.wanted():  # dies with its template, as the
                lifeline.die_with_parent(self.pid)  # template with the gateway (or agent)
            self._restore_threads()
            run()
        except _ChildExit as exc:
            code = exc.code
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            os._exit(code)

    def _wait_as_spare(self, handover: socket.socket) -> None:
        """A spare: wait for a worker to become; exit quietly when the template closes out."""
        try:
            data, fds, _, _ = socket.recv_fds(handover, _MAX_MESSAGE, 1)
        except OSError:
            data, fds = b"", []
        handover.close()
        if not data or not fds:
            raise _ChildExit(0)
        request = json.loads(data)
        self._child(fds[0], float(request["received_at"]), request.get("env") or {})

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            if self.spare is not None and self.spare[0] == pid:  # died untaken
                self.spare[1].close()
                self.spare = None
                if not self.stopping:
                    self.spare_due = time.monotonic() + SPARE_RETRY_S
            _send(self.ctl, {"t": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def _child(self, fd: int, received_at: float, secrets: dict[str, str]) -> None:
        """Become an ordinary worker (in a child `_in_child` prepared). It inherits the
        template's sandbox; what is its own arrives with the fork request: the endpoint's
        secrets (set here, never in the template) and, from the gateway, its own cgroup."""
        os.environ.update(secrets)
        self._restore_thread_env()  # the operator's thread counts, whatever the secrets say
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
            raise _ChildExit(1) from None
        fork_s = time.perf_counter() - received_at - setup_s
        channel.send(
            {"t": "ready", "import_s": 0.0, "setup_s": setup_s, "fork_s": max(0.0, fork_s)}
        )
        Worker(channel, model, self.concurrency).serve()

    def _restore_thread_env(self) -> None:
        for var, value in self.saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value

    def _restore_threads(self) -> None:
        """Give the child the thread settings the operator asked for, not the template's 1."""
        self._restore_thread_env()
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
    lifeline.from_env()  # a template on a Ray node dies with its agent
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
    # What the model built is never garbage: frozen, a child's collections skip it, so they
    # neither scan it nor write its pages (which would copy them out of the shared template).
    gc.collect()
    gc.freeze()
    _send(ctl, {"t": "template_ready", "import_s": import_s, "setup_s": setup_s})
    template.serve()


if __name__ == "__main__":
    main()
