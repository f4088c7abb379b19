"""Ray Serve side of `bench/throughput.py`: one workload of `workloads.py`, one replica, Serve's
default settings (max_ongoing_requests=5) unless `--max-ongoing` says otherwise.

Run by the benchmark with the peers virtualenv's python, never in the project's environment.
Serves `POST http://127.0.0.1:PORT/` with the workload's raw JSON input, prints one JSON line
`{"ready": true, ...}` once it answers, and stops Serve and Ray when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import ray
from ray import serve
from starlette.requests import Request
from workloads import MLP, Embeddings, Noop


@serve.deployment(num_replicas=1)
class Single:
    def __init__(self, kind: str, weights: str | None) -> None:
        self.model: Any = MLP(weights) if kind == "mlp" else Noop()
        self.model.setup()
        self.kind = kind

    async def __call__(self, request: Request) -> Any:
        body = await request.json()
        return self.model.predict(body["seed"]) if self.kind == "mlp" else self.model.predict(body)


@serve.deployment(num_replicas=1)
class Batched:
    def __init__(self, kind: str, weights: str | None) -> None:
        self.model: Any = MLP(weights) if kind == "mlp_batched" else Embeddings()
        self.model.setup()
        self.field = "seed" if kind == "mlp_batched" else "sentence"

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def run(self, items: list[Any]) -> list[Any]:
        return self.model.predict_batch(items)

    async def __call__(self, request: Request) -> Any:
        body = await request.json()
        return await self.run(body[self.field])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--kind", required=True, choices=["noop", "mlp", "mlp_batched", "embeddings_batched"]
    )
    parser.add_argument("--weights")
    parser.add_argument("--temp-dir", required=True, help="Ray's session directory (short path)")
    parser.add_argument("--max-ongoing", type=int, help="max_ongoing_requests (default: Serve's)")
    args = parser.parse_args()
    started = time.monotonic()
    ray.init(
        num_cpus=os.cpu_count() or 2,
        include_dashboard=False,
        _temp_dir=args.temp_dir,
        logging_level="ERROR",
        log_to_driver=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        deployment = Batched if args.kind.endswith("_batched") else Single
        if args.max_ongoing:
            deployment = deployment.options(max_ongoing_requests=args.max_ongoing)
        serve.run(deployment.bind(args.kind, args.weights), name="bench", route_prefix="/")
        print(
            json.dumps(
                {
                    "ready": True,
                    "startup_s": round(time.monotonic() - started, 2),
                    "version": ray.__version__,
                }
            ),
            flush=True,
        )
        sys.stdin.read()  # until the benchmark closes stdin
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
