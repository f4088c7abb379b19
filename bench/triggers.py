"""Trigger throughput: messages per second from a Redis stream, through jobs, into a sink.

    python bench/triggers.py                      # echo and a batched model, 2,000 messages each
    python bench/triggers.py --messages 500 --only echo

For each workload a fresh `coldbrew serve` (its own home, a free loopback port) deploys the model;
a trigger reads a Redis stream of this run's own and writes every result to a Redis stream sink;
the 2,000 messages are `XADD`ed at once after one warm-up message went through (the worker is
up), and the clock runs from the first `XADD` to the moment the sink stream holds every result.
Workloads:
- echo: `examples/echo` (returns its input), up to 4 workers;
- batched: `tests/fixtures/batched` `doubler` (one worker, `Batch(max_size=8, max_wait_ms=20)`):
  the trigger submits a window's jobs together and the dispatcher hands them over as batches.
The floor beside them: the same stream read and written by a bare Python loop (XREADGROUP,
XACK, XADD per window, no jobs), what Redis itself allows on this machine.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/0"
WORKLOADS = {
    "echo": (ROOT / "examples" / "echo", "echo", lambda i: {"i": i}),
    "batched": (ROOT / "tests" / "fixtures" / "batched", "doubler", lambda i: {"x": float(i)}),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not reached in {timeout_s} s")
        time.sleep(0.005)


def serve(home: Path, deploy: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {**os.environ, "COLDBREW_HOME": str(home), "COLDBREW_HARDWARE_SLOTS": '{"cpu": 4}'}
    process = subprocess.Popen(
        [sys.executable, "-m", "coldbrew", "serve", "--port", str(port), "--deploy", str(deploy)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("stop with Ctrl-C"):
            return process, f"http://127.0.0.1:{port}"
    raise SystemExit("server did not start")


def one(workload: str, n: int, client: redis.Redis) -> dict[str, Any]:
    deploy, endpoint, body = WORKLOADS[workload]
    stream, results = f"cb-bench-{uuid.uuid4().hex[:8]}", f"cb-bench-out-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        process, url = serve(Path(tmp) / "home", deploy)
        try:
            key = (Path(tmp) / "home" / "admin.key").read_text().strip()
            created = httpx.post(
                f"{url}/v1/triggers",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "name": "bench",
                    "source": {"kind": "redis", "url": REDIS_URL, "stream": stream},
                    "endpoint": endpoint,
                    "sink": {"kind": "redis", "url": REDIS_URL, "stream": results},
                    "batch_size": 100,
                    "max_in_flight": 400,
                },
                timeout=60,
            )
            created.raise_for_status()
            time.sleep(0.5)  # the runner opens its group at "$": only later entries count
            client.xadd(stream, {"body": json.dumps(body(-1))})  # warm-up: the worker starts
            wait_for(lambda: client.xlen(results) >= 1, 120, "the warm-up result")
            start = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for i in range(n):
                pipe.xadd(stream, {"body": json.dumps(body(i))})
            pipe.execute()
            wait_for(lambda: client.xlen(results) >= n + 1, 600, f"{n} results")
            seconds = time.perf_counter() - start
            statuses = {f[b"status"] for _, f in client.xrange(results)}
            batch = max(json.loads(f[b"output"]).get("batch", 1) for _, f in client.xrange(results))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            client.delete(stream, results)
    return {
        "workload": workload,
        "messages": n,
        "seconds": round(seconds, 3),
        "per_s": round(n / seconds, 1),
        "statuses": sorted(s.decode() for s in statuses),
        "largest_batch": batch,
    }


def floor(n: int, client: redis.Redis) -> dict[str, Any]:
    """Redis alone: the stream read in windows of 100, acked, and each entry written back."""
    stream, out = f"cb-bench-{uuid.uuid4().hex[:8]}", f"cb-bench-out-{uuid.uuid4().hex[:8]}"
    client.xgroup_create(stream, "g", id="0", mkstream=True)
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"body": json.dumps({"i": i})})
    start = time.perf_counter()
    pipe.execute()
    done = 0
    while done < n:
        reply: Any = client.xreadgroup("g", "me", {stream: ">"}, count=100, block=1000)
        entries = reply[0][1] if reply else []
        write = client.pipeline(transaction=False)
        write.xack(stream, "g", *[e[0] for e in entries])
        for _, fields in entries:
            write.xadd(out, {"output": fields[b"body"]})
        write.execute()
        done += len(entries)
    seconds = time.perf_counter() - start
    client.delete(stream, out)
    return {"workload": "redis-floor", "messages": n, "seconds": round(seconds, 3),
            "per_s": round(n / seconds, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--only", default="echo,batched")
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    rows = [one(w, args.messages, client) for w in args.only.split(",")]
    rows.append(floor(args.messages, client))
    print(f"{'workload':<13}{'messages':>9}{'seconds':>9}{'msg/s':>9}  notes")
    for r in rows:
        notes = f"largest batch {r['largest_batch']}" if "largest_batch" in r else ""
        print(f"{r['workload']:<13}{r['messages']:>9}{r['seconds']:>9}{r['per_s']:>9}  {notes}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
