"""Warm-path throughput: coldbrew against LitServe and Ray Serve on identical workloads.

    python bench/throughput.py            # everything, 3 rounds (about 25 minutes here)
    python bench/throughput.py --smoke    # coldbrew only, noop, short runs (what CI runs)
    python bench/throughput.py --only noop,mlp --rounds 1
    python bench/throughput.py --systems coldbrew,baseline --baseline ../before --only noop
                                          # this checkout against another one, alternating

Every system serves the same model code (`bench/peers/workloads.py`) with one worker/replica:
- noop: returns its input;
- mlp: 100 MB float32 5000x5000 weights, memory-mapped from safetensors; `{"seed": N}` -> sum and
  first 3 values of x @ W for x drawn from that seed;
- mlp_batched: the same with batches of up to 32 requests and a 5 ms window;
- embeddings_batched: all-MiniLM-L6-v2, one sentence per request, batched like mlp_batched.

coldbrew is measured through its whole path: `POST /v2/{name}/runsync` with an API key, so auth,
validation, the queue and metering are on it. LitServe 0.2.19 (`POST /predict`, its own batching)
and Ray Serve 2.60 (`POST /`, Serve's defaults: max_ongoing_requests=5, `@serve.batch` for the
batched workloads) run from `bench/.venv-peers` (installed on first use, never into the project's
environment). Systems alternate: in each round every system serves every workload once, each on a
fresh server started for it and stopped after it.

Per (system, workload) and round: warm-up; latency at concurrency 1 over at least 2,000 requests
(p50/p99); requests/s and p50/p99 at concurrency 32 over 15 s; then the PSS of the whole serving
process tree with the model loaded and, for coldbrew, again once its worker has scaled to zero.
The load generator is wrk (Debian's package), on loopback only; without wrk a small Python client
is used (smoke mode only: its own overhead would blur the comparison). The table shows medians
over rounds; the last line printed is one JSON object with every figure.

In every round each workload is also run with no server at all (`bench/ceiling.py`: the same
model code in a tight in-process loop, batches of 32 where the workload batches): the model's
compute ceiling on these cores. It is measured twice: alone, and beside a busy core (a second
process spinning while it runs, as a server's own process keeps the other core busy; on this
2-vCPU machine that alone halves a memory-bound batch's speed). Each system's c32 requests/s is
printed as a fraction of both (`--no-ceiling` skips them).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldstart import (
    PEERS_VENV,
    Server,
    free_port,
    http_call,
    interrupt,
    link_or_copy,
    make_weights,
    peers_python,
    poll,
    read_text,
)

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
HOST = "127.0.0.1"
WORKLOADS = ["noop", "mlp", "mlp_batched", "embeddings_batched"]
SYSTEMS = ["coldbrew", "litserve", "ray_serve"]
#: the model alone, and alone with the other core kept busy (`bench/ceiling.py --beside-busy`)
CEILINGS = ("ceiling", "ceiling_busy")
C1_MIN_REQUESTS = 2000
C32 = 32
WRK_SCRIPT = r"""
local counter = 0
local kind = os.getenv("BENCH_KIND")
local wrap = os.getenv("BENCH_WRAP") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
function request()
  counter = counter + 1
  local p
  if kind == "mlp" or kind == "mlp_batched" then p = '{"seed": ' .. counter .. '}'
  elseif kind == "embeddings_batched" then
    p = '{"sentence": "request ' .. counter .. ' asks for one sentence embedding"}'
  else p = '{"message": "hello", "n": ' .. counter .. '}' end
  if wrap then p = '{"input": ' .. p .. '}' end
  return wrk.format(nil, nil, nil, p)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "socket_errors": %d, "status_errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def log(message: str) -> None:
    print(f"[throughput {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def payload(kind: str, n: int) -> dict[str, Any]:
    if kind.startswith("mlp"):
        return {"seed": n}
    if kind.startswith("embeddings"):
        return {"sentence": f"request {n} asks for one sentence embedding"}
    return {"message": "hello", "n": n}


# ---------------------------------------------------------------------------------------------
# Systems under test: each serves one workload on one port, with a URL path, a body shape and a
# process tree to measure.


@dataclass
class Target:
    system: str
    kind: str
    port: int
    path: str
    wrap: bool  # coldbrew takes {"input": ...}
    key: str = ""

    def call(self, n: int) -> Any:
        body = payload(self.kind, n)
        reply = http_call(
            self.port, "POST", self.path, {"input": body} if self.wrap else body, self.key or None
        )
        if reply.status != 200:
            raise RuntimeError(f"{self.system} {self.kind}: HTTP {reply.status}: {reply.body}")
        out = reply.body
        if self.wrap:
            if out.get("status") != "COMPLETED":
                raise RuntimeError(f"coldbrew {self.kind}: {out}")
            out = out["output"]
        return out


class ColdbrewSystem:
    """coldbrew serving one workload; `python` from another checkout's venv serves that
    checkout's code (the `baseline` system: a regression check between two commits)."""

    def __init__(
        self,
        kind: str,
        workdir: Path,
        weights: Path,
        name: str = "coldbrew",
        python: str = "",
        max_workers: int = 1,
    ) -> None:
        self.name = name
        app = workdir / f"{name}-{kind}"
        shutil.rmtree(app, ignore_errors=True)
        app.mkdir(parents=True)
        shutil.copy(PEERS / "coldbrew_app.py", app / "app.py")
        shutil.copy(PEERS / "workloads.py", app / "workloads.py")
        (app / "workload.json").write_text(
            json.dumps(
                {
                    "name": f"tp-{kind.replace('_', '-')}",
                    "kind": kind,
                    "idle_timeout_s": 5,
                    "max_workers": max_workers,
                }
            )
        )
        if kind.startswith("mlp"):
            link_or_copy(weights, app / "weights.safetensors")
        self.endpoint = f"tp-{kind.replace('_', '-')}"
        self.server = Server(
            "coldbrew_fast", workdir / f"home-{name}-{kind}", [app], [self.endpoint]
        )
        self.server.python = python or sys.executable
        self.kind = kind

    def start(self) -> Target:
        self.server.launch()
        self.server.wait_ready()
        return Target(
            self.name,
            self.kind,
            self.server.port,
            f"/v2/{self.endpoint}/runsync",
            True,
            self.server.key,
        )

    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def workers(self) -> int:
        return self.server.worker_count(self.endpoint)

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.server.home, ignore_errors=True)


class PeerSystem:
    """LitServe or Ray Serve, run by the peers virtualenv's python in its own process group."""

    def __init__(self, name: str, kind: str, workdir: Path, weights: Path) -> None:
        self.name, self.kind, self.workdir = name, kind, workdir
        self.port = free_port()
        self.log_path = workdir / f"{name}-{kind}.log"
        self.temp_dir = Path(tempfile.mkdtemp(prefix="cbtp-", dir="/tmp"))  # short: Ray's sockets
        script = "litserve_app.py" if name == "litserve" else "ray_throughput_app.py"
        self.command = [str(peers_python()), str(PEERS / script), "--port", str(self.port)]
        self.command += ["--kind", kind, "--weights", str(weights)]
        if name == "ray_serve":
            self.command += ["--temp-dir", str(self.temp_dir)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Target:
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
        env["PYTHONPATH"] = str(PEERS)
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                self.command,
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.temp_dir,
                start_new_session=True,
            )
        path = "/predict" if self.name == "litserve" else "/"
        target = Target(self.name, self.kind, self.port, path, False)

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {read_text(self.log_path)[-2000:]}")
            with contextlib.suppress(OSError, RuntimeError, http.client.HTTPException):
                target.call(0)
                return True
            return False

        poll(answers, 600, f"{self.name} to answer", interval_s=0.5)
        return target

    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()  # Ray's app shuts Serve and Ray down
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30 if self.name == "ray_serve" else 1)
            for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                if self.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, sig)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.process.wait(timeout=wait_s)
        for proc in Path("/proc").iterdir():  # Ray's daemons, found by their session dir
            if proc.name.isdigit() and str(self.temp_dir) in read_text(proc / "cmdline"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Measuring


def tree(root: int) -> list[int]:
    """`root` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        stat = read_text(proc / "stat")
        if ")" in stat:
            fields = stat.rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(proc.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pss_mb(root: int) -> float:
    total = 0
    for pid in tree(root):
        for line in read_text(Path(f"/proc/{pid}/smaps_rollup")).splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def wrk(target: Target, concurrency: int, seconds: float, script: Path) -> dict[str, Any]:
    env = dict(os.environ, BENCH_KIND=target.kind, BENCH_WRAP="1" if target.wrap else "0")
    env["BENCH_KEY"] = target.key
    url = f"http://{HOST}:{target.port}{target.path}"
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
    done = subprocess.run(
        [*command, "-s", str(script), url],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {done.stdout[-1000:]} {done.stderr[-1000:]}")
    raw = json.loads(line[len("BENCHJSON ") :])
    return summarise(raw["requests"], raw["duration_us"] / 1e6, raw, "wrk")


def summarise(requests: int, seconds: float, raw: dict[str, Any], tool: str) -> dict[str, Any]:
    errors = raw["socket_errors"] + raw["status_errors"]
    return {
        "requests": requests,
        "seconds": round(seconds, 2),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 3),
        "p90_ms": round(raw["p90_us"] / 1000, 3),
        "p99_ms": round(raw["p99_us"] / 1000, 3),
        "errors": errors,
        "tool": tool,
    }


def python_load(target: Target, concurrency: int, seconds: float) -> dict[str, Any]:
    """The fallback load generator: keep-alive connections in threads (smoke mode only)."""
    latencies: list[float] = []
    errors = [0]
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()
    headers = {"Content-Type": "application/json"}
    if target.key:
        headers["Authorization"] = f"Bearer {target.key}"

    def client(worker: int) -> None:
        conn = http.client.HTTPConnection(HOST, target.port, timeout=30)
        n = worker * 1_000_000
        mine = []
        while time.monotonic() < stop_at:
            n += 1
            body = payload(target.kind, n)
            data = json.dumps({"input": body} if target.wrap else body).encode()
            start = time.perf_counter()
            conn.request("POST", target.path, body=data, headers=headers)
            response = response_ok = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - start)
            if response_ok.status != 200:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    ordered = sorted(latencies) or [0.0]

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1e6

    raw = {"socket_errors": 0, "status_errors": errors[0]}
    raw.update(p50_us=pct(50), p90_us=pct(90), p99_us=pct(99))
    return summarise(len(latencies), elapsed, raw, "python")


def load(target: Target, concurrency: int, seconds: float, script: Path | None) -> dict[str, Any]:
    if script is None:
        return python_load(target, concurrency, seconds)
    return wrk(target, concurrency, seconds, script)


def measure(
    system: Any, target: Target, args: argparse.Namespace, script: Path | None
) -> dict[str, Any]:
    """Warm-up, concurrency 1, concurrency 32, memory."""
    load(target, 1, args.warmup_s, script)
    warm = load(target, C32, args.warmup_s, script)
    # concurrency 1: long enough for C1_MIN_REQUESTS at the rate the warm-up suggests
    probe = load(target, 1, 1.0, script)
    wanted = max(args.c1_min_requests / max(probe["rps"], 1.0) * 1.15, 1.0)
    c1 = load(target, 1, min(wanted, args.c1_max_s), script)
    c32 = load(target, C32, args.c32_s, script)
    result: dict[str, Any] = {"c1": c1, "c32": c32, "warmup_c32_rps": warm["rps"]}
    time.sleep(1.0)
    result["pss_loaded_mb"] = pss_mb(system.pid())
    if isinstance(system, ColdbrewSystem):
        poll(lambda: system.workers() == 0, 120, "coldbrew to scale to zero", interval_s=0.5)
        time.sleep(0.5)
        result["pss_zero_workers_mb"] = pss_mb(system.pid())
    return result


def check_outputs(outputs: dict[str, Any]) -> None:
    """Every system must compute the same answer for the same request."""
    values = list(outputs.values())
    for system, value in outputs.items():
        if json.dumps(value, sort_keys=True)[:200] != json.dumps(values[0], sort_keys=True)[:200]:
            same = _close(value, values[0])
            if not same:
                raise RuntimeError(f"{system} answered {value!r:.200}, others {values[0]!r:.200}")


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(a - b) <= 1e-3 * max(1.0, abs(a), abs(b))
    return bool(a == b)


# ---------------------------------------------------------------------------------------------
# The run


def make_system(
    name: str, kind: str, workdir: Path, weights: Path, args: argparse.Namespace
) -> Any:
    if name == "coldbrew":
        return ColdbrewSystem(kind, workdir, weights, max_workers=args.max_workers)
    if name == "baseline":
        python = Path(args.baseline).resolve() / ".venv" / "bin" / "python"
        return ColdbrewSystem(
            kind, workdir, weights, "baseline", str(python), max_workers=args.max_workers
        )
    return PeerSystem(name, kind, workdir, weights)


def one(
    name: str,
    kind: str,
    args: argparse.Namespace,
    workdir: Path,
    weights: Path,
    script: Path | None,
) -> tuple[dict[str, Any], Any]:
    system = make_system(name, kind, workdir, weights, args)
    started = time.monotonic()
    try:
        target = system.start()
        log(f"{name} serves {kind} (up in {time.monotonic() - started:.1f} s)")
        answer = target.call(7)
        result = measure(system, target, args, script)
        log(f"{name} {kind}: c1 p50 {result['c1']['p50_ms']} ms, c32 {result['c32']['rps']} req/s")
        return result, answer
    finally:
        system.stop()


def ceiling(kind: str, weights: Path, seconds: float, beside_busy: bool) -> dict[str, Any]:
    """The workload's model alone, in a fresh process (`bench/ceiling.py`); `beside_busy`: with
    the other core kept busy meanwhile, as a server's own process keeps it."""
    command = [sys.executable, str(ROOT / "bench" / "ceiling.py"), "--kind", kind]
    command += ["--weights", str(weights), "--seconds", str(seconds)]
    command += ["--beside-busy"] if beside_busy else []
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    how = "beside a busy core" if beside_busy else "alone"
    log(f"ceiling {kind} {how}: {result['rps']} req/s (one call {result['call_p50_ms']} ms)")
    return result


def ceiling_rows(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The medians over rounds of each ceiling measured (alone, beside a busy core)."""
    rows = {}
    for which, busy in zip(CEILINGS, (False, True), strict=True):
        picked = [c for c in found if c.get("beside_busy", False) is busy]
        if picked:
            rows[which] = {
                "rounds": len(picked),
                "c32_rps": median([c["rps"] for c in picked]),
                "call_p50_ms": median([c["call_p50_ms"] for c in picked]),
            }
    return rows


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    out: dict[str, Any] = {"rounds": len(ok)}
    if len(ok) < len(runs):
        out["errors"] = [r["error"] for r in runs if "error" in r]
    for key, pick in {
        "c1_p50_ms": lambda r: r["c1"]["p50_ms"],
        "c1_p99_ms": lambda r: r["c1"]["p99_ms"],
        "c1_requests": lambda r: r["c1"]["requests"],
        "c32_rps": lambda r: r["c32"]["rps"],
        "c32_p50_ms": lambda r: r["c32"]["p50_ms"],
        "c32_p99_ms": lambda r: r["c32"]["p99_ms"],
        "pss_loaded_mb": lambda r: r["pss_loaded_mb"],
        "pss_zero_workers_mb": lambda r: r.get("pss_zero_workers_mb"),
    }.items():
        values = [v for v in (pick(r) for r in ok) if v is not None]
        if values:
            out[key] = median(values)
    out["errors_seen"] = sum(r["c1"]["errors"] + r["c32"]["errors"] for r in ok)
    return out


def ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 2) if a and b else None


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, systems in summary.items():
        cb, lit, ray = (systems.get(s, {}) for s in SYSTEMS)
        out[kind] = {
            "c1_p50_vs_litserve": ratio(cb.get("c1_p50_ms"), lit.get("c1_p50_ms")),
            "c32_rps_vs_litserve": ratio(cb.get("c32_rps"), lit.get("c32_rps")),
            "c32_rps_vs_ray_serve": ratio(cb.get("c32_rps"), ray.get("c32_rps")),
        }
        for which in CEILINGS:
            top = systems.get(which, {}).get("c32_rps")
            if top and kind != "noop":  # noop's ceiling is a dictionary copy: no useful fraction
                out[kind][f"c32_rps_of_{which}"] = {
                    name: ratio(row.get("c32_rps"), top)
                    for name, row in systems.items()
                    if name not in CEILINGS
                }
        if "baseline" in systems:
            base = systems["baseline"]
            out[kind]["c1_p50_vs_baseline"] = ratio(cb.get("c1_p50_ms"), base.get("c1_p50_ms"))
            out[kind]["c32_rps_vs_baseline"] = ratio(cb.get("c32_rps"), base.get("c32_rps"))
    return out


def table(summary: dict[str, dict[str, Any]], rel: dict[str, Any]) -> str:
    head = (
        f"{'workload':<20}{'system':<11}{'c1 p50':>9}{'c1 p99':>9}{'c32 req/s':>11}"
        f"{'c32 p50':>9}{'c32 p99':>9}{'PSS MB':>9}{'zero MB':>9}"
    )
    lines = [head, "-" * len(head)]
    for kind, systems in summary.items():
        for system, s in systems.items():

            def f(key: str, digits: int = 2, row: dict[str, Any] = s) -> str:
                value = row.get(key)
                return "-" if value is None else f"{value:.{digits}f}"

            lines.append(
                f"{kind:<20}{system:<11}{f('c1_p50_ms'):>9}{f('c1_p99_ms'):>9}"
                f"{f('c32_rps', 0):>11}{f('c32_p50_ms'):>9}{f('c32_p99_ms'):>9}"
                f"{f('pss_loaded_mb', 0):>9}{f('pss_zero_workers_mb', 0):>9}"
            )
        r = rel.get(kind, {})
        if r.get("c32_rps_vs_litserve") is not None or r.get("c32_rps_vs_ray_serve") is not None:
            lines.append(
                f"{'':<20}coldbrew: c1 p50 {r.get('c1_p50_vs_litserve')}x LitServe's; c32 "
                f"{r.get('c32_rps_vs_litserve')}x LitServe, "
                f"{r.get('c32_rps_vs_ray_serve')}x Ray Serve"
            )
        for which, how in zip(CEILINGS, ("alone", "beside a busy core"), strict=True):
            of = r.get(f"c32_rps_of_{which}")
            if of:
                shares = ", ".join(f"{name} {share:.0%}" for name, share in of.items() if share)
                lines.append(f"{'':<20}c32 req/s as a share of the ceiling {how}: {shares}")
        if r.get("c32_rps_vs_baseline") is not None:
            lines.append(
                f"{'':<20}coldbrew against baseline: c1 p50 {r.get('c1_p50_vs_baseline')}x, "
                f"c32 req/s {r.get('c32_rps_vs_baseline')}x"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help=f"comma-separated workloads of {','.join(WORKLOADS)}")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--c32-s", type=float, default=15.0, help="seconds at concurrency 32")
    parser.add_argument("--c1-min-requests", type=int, default=C1_MIN_REQUESTS)
    parser.add_argument("--c1-max-s", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--smoke", action="store_true", help="coldbrew, noop, 1 short round")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument(
        "--max-workers", type=int, default=1, help="coldbrew's workers per endpoint (peers: 1)"
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the in-process ceiling")
    parser.add_argument("--ceiling-s", type=float, default=5.0, help="seconds per ceiling run")
    parser.add_argument(
        "--baseline",
        default="",
        help="another checkout (with its own .venv) served as system `baseline`, alternating",
    )
    args = parser.parse_args(argv)
    if "baseline" in args.systems.split(",") and not args.baseline:
        parser.error("--systems baseline needs --baseline PATH (a checkout with its own .venv)")
    if args.smoke:
        args.rounds, args.systems, args.only = 1, "coldbrew", args.only or "noop"
        args.c32_s, args.c1_min_requests, args.warmup_s = 2.0, 200, 0.5
        args.ceiling_s = 0.5
    return args


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    kinds = args.only.split(",") if args.only else WORKLOADS
    systems = args.systems.split(",")
    for name in [*kinds, *systems]:
        if name not in [*WORKLOADS, *SYSTEMS, "baseline"]:
            raise SystemExit(f"unknown workload or system {name!r}")
    script: Path | None = None
    if shutil.which("wrk"):
        script = workdir / "bench.lua"
        script.write_text(WRK_SCRIPT)
    elif not args.smoke:
        raise SystemExit("wrk is needed for the full benchmark: apt-get install -y wrk")
    weights = make_weights(100, workdir / "weights-100mb.st")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {k: {s: [] for s in systems} for k in kinds}
    ceilings: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for round_no in range(args.rounds):
        order = systems[round_no % len(systems) :] + systems[: round_no % len(systems)]
        for kind in kinds:
            answers: dict[str, Any] = {}
            for name in order:
                try:
                    result, answers[name] = one(name, kind, args, workdir, weights, script)
                except Exception as exc:
                    log(f"{name} {kind} failed: {exc}")
                    result = {"error": f"{type(exc).__name__}: {exc}"[:1500]}
                runs[kind][name].append(result)
            check_outputs(answers)
            if not args.no_ceiling:
                ceilings[kind].append(ceiling(kind, weights, args.ceiling_s, False))
                if kind != "noop":
                    ceilings[kind].append(ceiling(kind, weights, args.ceiling_s, True))
    summary = {k: {s: aggregate(runs[k][s]) for s in systems} for k in kinds}
    for kind, found in ceilings.items():
        summary[kind] |= ceiling_rows(found)
    return {
        "smoke": args.smoke,
        "rounds": args.rounds,
        "load_generator": "wrk" if script else "python",
        "cpus": os.cpu_count(),
        "summary": summary,
        "ratios": ratios(summary),
        "runs": runs,
        "ceilings": ceilings,
        "peers_venv": str(PEERS_VENV) if set(systems) & {"litserve", "ray_serve"} else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="coldbrew-tp-")).resolve()
    log(f"work directory {workdir}")
    try:
        report = run(args, workdir)
    finally:
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    print(table(report["summary"], report["ratios"]))
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
