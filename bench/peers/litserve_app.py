"""LitServe side of `bench/throughput.py`: one workload of `workloads.py` behind LitServe's
`POST /predict`, one inference worker, with LitServe's own batching for the batched workloads
(max_batch_size=32, batch_timeout=5 ms, the same window as the others).

Run by the benchmark with the peers virtualenv's python. Prints `{"ready": true, ...}` from the
benchmark's side once /predict answers; stopped with SIGTERM to its process group.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

import litserve as ls
from workloads import MLP, Embeddings, Noop


class API(ls.LitAPI):
    def __init__(self, kind: str, weights: str | None, **options: Any) -> None:
        super().__init__(**options)
        self.kind = kind
        self.weights = weights

    def setup(self, device: Any) -> None:
        kind = self.kind
        self.model: Any = (
            MLP(self.weights)
            if kind.startswith("mlp")
            else (Embeddings() if kind.startswith("embeddings") else Noop())
        )
        self.model.setup()
        self.field = {"mlp": "seed", "mlp_batched": "seed", "embeddings_batched": "sentence"}.get(
            kind
        )

    # no annotation on purpose: LitServe reads it, and none means "the raw JSON body"
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request[self.field] if self.field else request

    def predict(self, x: Any) -> Any:
        if self.kind.endswith("_batched"):
            return self.model.predict_batch(list(x))
        return self.model.predict(x)

    def encode_response(self, output: Any) -> Any:
        return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--kind", required=True, choices=["noop", "mlp", "mlp_batched", "embeddings_batched"]
    )
    parser.add_argument("--weights")
    args = parser.parse_args()
    batching = (
        {"max_batch_size": 32, "batch_timeout": 0.005} if args.kind.endswith("_batched") else {}
    )
    # LitServe moved the batching options from LitServer to LitAPI; pass them where this version
    # takes them.
    api_takes = "max_batch_size" in inspect.signature(ls.LitAPI.__init__).parameters
    api = API(args.kind, args.weights, **(batching if api_takes else {}))
    server = ls.LitServer(
        api, accelerator="cpu", workers_per_device=1, **({} if api_takes else batching)
    )
    # No access log line per request (coldbrew writes none either).
    server.run(port=args.port, host="127.0.0.1", generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
