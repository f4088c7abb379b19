"""The model's own compute ceiling: `bench/peers/workloads.py` in a tight in-process loop.

    python bench/ceiling.py --kind mlp_batched --weights W.st [--seconds 5] [--batch 32]

What the hardware gives the model's code with no server at all: setup once, then `predict`
(or `predict_batch` with `--batch` inputs, for the batched workloads) called back to back in
one process, with the BLAS threads coldbrew's workers get by default (`worker_blas_threads`:
one fewer than the cores, at least 1; `--threads N` to change) and MiniLM on one torch thread,
as `Embeddings.setup` sets. `bench/throughput.py` runs it in the same
run as the systems and prints each system's requests/s as a fraction of it. Prints one JSON
object: requests/s, and the per-call latency p50/p99 in ms (a call is one batch when batched).

`--beside-busy` measures it again with a second process spinning a pure-Python loop meanwhile,
as a server's gateway does on the other core: on this 2-vCPU machine a busy loop on the second
vCPU slows a batch of 16 through the mlp from 8.4 to 16 ms, so "alone" overstates what any
server on these cores can reach; both are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))

from workloads import MLP, Embeddings, Noop

BATCHED = ("mlp_batched", "embeddings_batched")


def model(kind: str, weights: str) -> Any:
    if kind.startswith("mlp"):
        return MLP(weights)
    if kind.startswith("embeddings"):
        return Embeddings()
    return Noop()


def call(kind: str, instance: Any, n: int, batch: int) -> Any:
    if kind == "noop":
        return instance.predict({"message": "hello", "n": n})
    if kind == "mlp":
        return instance.predict(n)
    if kind == "mlp_batched":
        return instance.predict_batch(list(range(n, n + batch)))
    sentences = [f"request {i} asks for one sentence embedding" for i in range(n, n + batch)]
    return instance.predict_batch(sentences)


def measure(
    kind: str, weights: str, seconds: float, batch: int, threads: int, beside_busy: bool = False
) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    spinner = None
    if beside_busy:  # a second process keeping the other core busy, as a gateway would
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            found = _measure(kind, weights, seconds, batch)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return found | {"blas_threads": threads, "beside_busy": beside_busy}


def _measure(kind: str, weights: str, seconds: float, batch: int) -> dict[str, Any]:
    instance = model(kind, weights)
    instance.setup()
    per_call = batch if kind in BATCHED else 1
    for n in range(3):  # warm-up: first-touch page faults, lazy initialisation
        call(kind, instance, n, batch)
    samples: list[float] = []
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        call(kind, instance, n, batch)
        samples.append(time.perf_counter() - t0)
        n += per_call
    elapsed = time.perf_counter() - started
    samples.sort()
    return {
        "kind": kind,
        "rps": round(len(samples) * per_call / elapsed, 1),
        "call_p50_ms": round(statistics.median(samples) * 1000, 3),
        "call_p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000, 3),
        "calls": len(samples),
        "batch": per_call,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", required=True, choices=["noop", "mlp", *BATCHED])
    parser.add_argument("--weights", default="")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1) - 1))
    parser.add_argument("--beside-busy", action="store_true", help="with the other core busy")
    args = parser.parse_args(argv)
    found = measure(
        args.kind, args.weights, args.seconds, args.batch, args.threads, args.beside_busy
    )
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
