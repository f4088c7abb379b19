"""GPU rows: ResNet-50 served by coldbrew on one GPU, against the model's own ceiling there.

    python3 bench/gpu.py                        # the H200 run (bench/gpu_device.sh wraps it)
    python3 bench/gpu.py --device cpu --smoke   # the same steps on the CPU, small and short

Steps, each bounded in time (the whole run takes about 2-3 minutes on an H200; --budget-s stops
it, with what was measured so far, if it runs long):

1. Ceiling, in a separate process (bench/gpu_ceiling.py): ResNet-50 (random weights written once
   to a safetensors file, bf16, channels-last; torchvision's resnet50) timed in a tight loop on
   the GPU at batch 1 and 32: ms per batch and images/s, a lone forward, what `predict` does
   in-process, and a fresh process's load stages.
2. `coldbrew serve` on 127.0.0.1 with COLDBREW_HARDWARE_SLOTS {"H200": 1, "cpu": 4}, deploying
   bench/resnet (three endpoints of the same model; bench/resnet/app.py).
3. Cold start from zero on `resnet50-cold` (idle_timeout_s 1: back at zero a second after each
   try): untimed tries until the server forks workers from its template, then `--cold-tries`
   timed `runsync` calls, each as the client sees it, with the server's coldStartDetail and the
   worker's own setup stages.
4. Warm, on `resnet50` (one worker): latency at concurrency 1 (p50/p99 over `--c1-requests`
   requests on a keep-alive connection), then requests/s at concurrency 32 for `--seconds`.
5. The same on `resnet50-batch` (coldbrew's dynamic batching, max 32 per batch).

Requests are `{"input": {"seed": N}}`: the seed picks one of 256 random images drawn on the GPU
when the worker starts (bench/resnet/resnet_model.py says why). The load generator is Python
(`--load-procs` processes of keep-alive http.client connections, 32 connections in all): there is
no wrk on the GPU machine. Prints a table and, last, one JSON object with every figure; with $OUT
set, writes them to $OUT/gpu.txt and $OUT/gpu.json and the server's logs to $OUT/gpu-logs.txt.
Everything it starts is stopped before it exits. Progress goes to stderr.

On the GPU machine (python3 3.12 with torch, torchvision, numpy, httpx, click, anyio, h11,
prometheus-client, threadpoolctl, safetensors, but not coldbrew's server packages), the server's
missing packages travel as wheels in .whl/ at the repository root (ignored through
.git/info/exclude), fetched here with

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl fastapi==0.165.0 starlette==1.10.0 \
        pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
        annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 \
        opentelemetry-api==1.45.2 anyio==4.16.0 uvicorn==0.54.0 httptools==0.9.0 \
        orjson==3.13.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
        referencing==0.37.0 rpds-py==2026.9.1 redis==8.1.0 sniffio==1.3.1

(5 MiB; the versions of the development environment), and bench/gpu_device.sh installs them
into /tmp/site and runs this script with PYTHONPATH=/tmp/site:src.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldstart import Server, http_call, percentile, poll, runtime_processes, server_env
from gpu_report import detail_medians, ratios, table

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "bench" / "resnet"
HOST = "127.0.0.1"
COLD, WARM, BATCHED = "resnet50-cold", "resnet50", "resnet50-batch"
ENDPOINTS = [COLD, WARM, BATCHED]


def log(message: str) -> None:
    print(f"[gpu {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The server


@dataclass
class GPUServer(Server):
    """coldstart.Server with this benchmark's hardware slots."""

    slots: str = '{"cpu": 1}'
    fast_start: str = "1"

    def launch(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "coldbrew", "serve", "--host", HOST]
        command += ["--port", str(self.port)]
        command += [arg for app in self.apps for arg in ("--deploy", str(app))]
        env = server_env(self.home, self.fast_start)
        env["COLDBREW_HARDWARE_SLOTS"] = self.slots
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home.parent,
            )

    def runsync(self, endpoint: str, seed: int) -> tuple[int, Any, float]:
        path = f"/v2/{endpoint}/runsync?wait=300000"
        reply = http_call(self.port, "POST", path, {"input": {"seed": seed}}, key=self.key)
        return reply.status, reply.body, reply.elapsed_ms

    def logs(self) -> str:
        """The server's output and every worker/template log, tails only."""
        parts = [f"== server ==\n{self.output()[-60_000:]}"]
        for path in sorted((self.home / "logs" / "workers").glob("*.log")):
            parts.append(f"== {path.name} ==\n{path.read_text(errors='replace')[-20_000:]}")
        return "\n".join(parts)


def completed(status: int, body: Any) -> bool:
    return status == 200 and isinstance(body, dict) and body.get("status") == "COMPLETED"


# ---------------------------------------------------------------------------------------------
# Cold starts


def cold_row(status: int, body: Any, elapsed_ms: float) -> dict[str, Any]:
    if not completed(status, body):
        return {"error": f"HTTP {status}: {json.dumps(body)[:300]}"}
    output = body.get("output") or {}
    return {
        "client_ms": round(elapsed_ms, 1),
        "cold_start": body.get("coldStart"),
        "detail": body.get("coldStartDetail") or {},
        "delay_ms": body.get("delayTime"),
        "execution_ms": body.get("executionTime"),
        "setup_ms": output.get("setup_ms") if isinstance(output, dict) else None,
    }


def bench_cold(server: GPUServer, tries: int, settle_s: float) -> dict[str, Any]:
    """Untimed cold starts until one is forked (at most 3; one without the fast path), then
    `tries` timed ones."""

    def at_zero() -> bool:
        return server.worker_count(COLD) == 0

    warm_up = []
    for _ in range(3):
        poll(at_zero, 120, "zero workers")
        row = cold_row(*server.runsync(COLD, 0))
        if "error" in row:
            raise RuntimeError(f"cold warm-up request failed: {row['error']}")
        warm_up.append({k: row[k] for k in ("client_ms", "detail")})
        log(f"cold warm-up: {row['client_ms']:.0f} ms, forked={row['detail'].get('forked')}")
        if server.fast_start == "0" or row["detail"].get("forked") is not False:
            break
    rows = []
    for i in range(tries):
        poll(at_zero, 120, "zero workers")
        time.sleep(settle_s)
        rows.append(cold_row(*server.runsync(COLD, i + 1)))
        log(f"cold try {i + 1}/{tries}: {rows[-1].get('client_ms', rows[-1].get('error'))}")
    good = [r for r in rows if "error" not in r]
    client = [r["client_ms"] for r in good]
    return {
        "tries": rows,
        "warm_up": warm_up,
        "client_p50_ms": rounded(percentile(client, 50)),
        "client_min_ms": rounded(min(client, default=None)),
        "client_max_ms": rounded(max(client, default=None)),
        "detail_p50": detail_medians([r["detail"] for r in good]),
        "setup_p50": detail_medians([r["setup_ms"] or {} for r in good]),
        "all_cold": all(r["cold_start"] for r in good) and bool(good),
        "errors": len(rows) - len(good),
    }


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# ---------------------------------------------------------------------------------------------
# Warm: concurrency 1 here, concurrency 32 from worker processes


def c1(server: GPUServer, endpoint: str, requests: int, max_s: float) -> dict[str, Any]:
    """Sequential requests on one keep-alive connection."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=120)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {server.key}"}
    latencies, errors = [], 0
    deadline = time.monotonic() + max_s
    try:
        for n in range(requests):
            if time.monotonic() > deadline:
                break
            data = json.dumps({"input": {"seed": n}}).encode()
            start = time.perf_counter()
            conn.request("POST", f"/v2/{endpoint}/runsync", body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            latencies.append((time.perf_counter() - start) * 1000)
            errors += response.status != 200 or b'"COMPLETED"' not in raw
    finally:
        conn.close()
    return {
        "requests": len(latencies),
        "p50_ms": rounded(percentile(latencies, 50), 3),
        "p90_ms": rounded(percentile(latencies, 90), 3),
        "p99_ms": rounded(percentile(latencies, 99), 3),
        "mean_ms": rounded(sum(latencies) / len(latencies), 3) if latencies else None,
        "errors": errors,
    }


def load_proc(
    port: int, path: str, key: str, threads: int, start_at: float, seconds: float, base: int
) -> dict[str, Any]:
    """One load-generator process: `threads` keep-alive connections, each sending requests one
    after another from `start_at` (wall clock) for `seconds`. Runs in a spawned process."""
    stop_at = start_at + seconds
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    results: list[tuple[list[float], int, int]] = []

    def client(worker: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=120)
        conn.connect()
        mine: list[float] = []
        errors = done_in_window = 0
        n = base + worker * 1_000_000
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < stop_at:
            n += 1
            data = b'{"input": {"seed": %d}}' % n
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=120)
                continue
            mine.append((time.perf_counter() - start) * 1000)
            errors += response.status != 200 or b'"COMPLETED"' not in raw
            done_in_window += time.time() <= stop_at
        conn.close()
        results.append((mine, errors, done_in_window))

    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {
        "latencies": [x for r in results for x in r[0]],
        "errors": sum(r[1] for r in results),
        "in_window": sum(r[2] for r in results),
    }


def concurrent_load(
    server: GPUServer, endpoint: str, concurrency: int, seconds: float, procs: int
) -> dict[str, Any]:
    """`concurrency` connections spread over `procs` spawned processes for `seconds`."""
    procs = max(1, min(procs, concurrency))
    shares = [concurrency // procs + (i < concurrency % procs) for i in range(procs)]
    start_at = time.time() + 2.0  # spawned interpreters start and connect before this
    ctx = multiprocessing.get_context("spawn")
    path = f"/v2/{endpoint}/runsync"
    with ctx.Pool(procs) as pool:
        jobs = [
            pool.apply_async(
                load_proc, (server.port, path, server.key, n, start_at, seconds, i * 100_000_000)
            )
            for i, n in enumerate(shares)
        ]
        parts = [job.get(timeout=seconds + 150) for job in jobs]
    latencies = [x for p in parts for x in p["latencies"]]
    in_window = sum(p["in_window"] for p in parts)
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "requests": in_window,
        "rps": round(in_window / seconds, 1),
        "p50_ms": rounded(percentile(latencies, 50), 3),
        "p99_ms": rounded(percentile(latencies, 99), 3),
        "errors": sum(p["errors"] for p in parts),
        "load_procs": procs,
    }


def bench_warm(server: GPUServer, endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    """First request (a cold start when the worker is not up), then c1, then c32."""
    status, body, elapsed = server.runsync(endpoint, 0)
    if not completed(status, body):
        raise RuntimeError(f"{endpoint}: first request failed: HTTP {status} {body}")
    first = {"client_ms": round(elapsed, 1), "cold_start": body.get("coldStart")}
    first["detail"] = body.get("coldStartDetail")
    for n in range(args.warm_requests):  # untimed: lazy CUDA/cuDNN work, connection set-up
        server.runsync(endpoint, n)
    out: dict[str, Any] = {"first_request": first}
    out["c1"] = c1(server, endpoint, args.c1_requests, max_s=args.seconds * 2)
    log(f"{endpoint} c1: {out['c1']}")
    out["c32"] = concurrent_load(server, endpoint, args.concurrency, args.seconds, args.load_procs)
    log(f"{endpoint} c{args.concurrency}: {out['c32']}")
    return out


# ---------------------------------------------------------------------------------------------
# Main


def prepare_app(workdir: Path, args: argparse.Namespace) -> Path:
    app = workdir / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    conf = {
        "hardware": args.hardware,
        "device": args.device,
        "dtype": args.dtype,
        "image_size": args.image_size,
        "max_wait_ms": args.max_wait_ms,
    }
    (app / "bench.json").write_text(json.dumps(conf))
    return app


def ceiling(app: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "bench" / "gpu_ceiling.py"), "--app", str(app)]
    command += ["--seconds", str(args.ceiling_seconds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    sys.stderr.write(done.stderr[-4000:])
    if done.returncode != 0:
        raise RuntimeError(f"gpu_ceiling.py failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace, workdir: Path, report: dict[str, Any]) -> None:
    app = prepare_app(workdir, args)
    log(f"ceiling (in-process, {args.device})")
    report["ceiling"] = ceiling(app, args)
    slots = {"cpu": args.cpu_slots}
    if args.hardware != "cpu":
        slots[args.hardware] = args.gpu_slots
    report["slots"] = slots
    server = GPUServer("coldbrew_fast", workdir / "home", [app], ENDPOINTS)
    server.slots = json.dumps(slots)
    server.fast_start = "1" if args.fast_start else "0"
    began = time.monotonic()
    try:
        server.launch()
        server.wait_ready(timeout_s=240)
        report["server_start_s"] = round(time.monotonic() - began, 1)
        log(f"server up in {report['server_start_s']} s on {HOST}:{server.port}")
        report["cold"] = bench_cold(server, args.cold_tries, args.settle_s)
        report["warm"] = bench_warm(server, WARM, args)
        report["batched"] = bench_warm(server, BATCHED, args)
    finally:
        with contextlib.suppress(Exception):
            report["_logs"] = server.logs()
        server.stop()
        report["leftover_processes"] = len(runtime_processes(server.home))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--smoke", action="store_true", help="few and short tries (CPU checks)")
    parser.add_argument("--hardware", help="coldbrew hardware class (default H200; cpu on cpu)")
    parser.add_argument("--dtype", help="default bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--image-size", type=int, help="default 224 (64 with --smoke)")
    parser.add_argument("--cold-tries", type=int, default=5)
    parser.add_argument("--c1-requests", type=int, default=500)
    parser.add_argument("--warm-requests", type=int, default=20, help="untimed, before c1")
    parser.add_argument("--seconds", type=float, default=10.0, help="each concurrent load run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--load-procs", type=int, default=6, help="load-generator processes")
    parser.add_argument("--ceiling-seconds", type=float, default=2.0)
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batch window")
    parser.add_argument("--gpu-slots", type=int, default=1)
    parser.add_argument("--cpu-slots", type=int, default=4)
    parser.add_argument("--settle-s", type=float, default=0.5, help="pause at zero workers")
    parser.add_argument("--budget-s", type=float, default=330, help="stop everything after this")
    parser.add_argument(
        "--no-fast-start",
        dest="fast_start",
        action="store_false",
        help="COLDBREW_FAST_START=0: a fresh process per worker instead of a fork of the template",
    )
    parser.add_argument("--keep-workdir", action="store_true")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    args.hardware = args.hardware or ("H200" if cuda else "cpu")
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    args.image_size = args.image_size or (64 if args.smoke else 224)
    if args.smoke:
        args.cold_tries, args.c1_requests, args.warm_requests = 2, 20, 2
        args.seconds, args.load_procs, args.ceiling_seconds = 3.0, 2, 0.5
        args.concurrency = min(args.concurrency, 8)
    return args


def alarm(signum: int, frame: object) -> None:
    """SIGALRM (the budget) and SIGTERM unwind like Ctrl-C, so every `finally` stops its part."""
    raise KeyboardInterrupt(f"signal {signum}")


def write_out(text: str, line: str, logs: str) -> None:
    out = os.environ.get("OUT")
    if not out:
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "gpu.txt").write_text(text + "\n" + line + "\n")
    Path(out, "gpu.json").write_text(line + "\n")
    if logs:
        Path(out, "gpu-logs.txt").write_text(logs[-8_000_000:])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, alarm)
    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(args.budget_s))
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="coldbrew-gpu-")).resolve()
    log(f"work directory {workdir}")
    report: dict[str, Any] = {"device": args.device, "hardware": args.hardware}
    report["settings"] = {
        k: getattr(args, k)
        for k in ("smoke", "dtype", "image_size", "cold_tries", "c1_requests", "seconds")
    }
    report["settings"].update(concurrency=args.concurrency, max_wait_ms=args.max_wait_ms)
    report["settings"].update(fast_start=args.fast_start, load_procs=args.load_procs)
    code = 0
    try:
        run(args, workdir, report)
    except (Exception, KeyboardInterrupt) as exc:
        log(f"stopped early: {type(exc).__name__}: {exc}")
        report["error"] = f"{type(exc).__name__}: {exc}"[:3000]
        code = 1
    finally:
        signal.alarm(0)
        if args.keep_workdir:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    logs = report.pop("_logs", "")
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["ratios"] = ratios(report)
    text = table(report)
    line = json.dumps(report, separators=(",", ":"))
    print(text)
    print(line)
    write_out(text, line, logs)
    return code


if __name__ == "__main__":
    sys.exit(main())
