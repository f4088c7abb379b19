"""The in-process ceiling for bench/gpu.py: ResNet-50 timed in a tight loop, no server.

    python bench/gpu_ceiling.py --app DIR [--seconds 2]

DIR is the app directory bench/gpu.py prepared (app.py, resnet_model.py, bench.json); the weight
file is written there first if it is missing. Run in its own process, so the benchmark's own
process never initialises CUDA and the GPU is free again before the server starts.

Per batch size (1 and 32), on the same Runner the served model uses:

- `forward_ms`: forward passes back to back, synchronised once per block (launches overlap the
  GPU's work): the model's throughput ceiling, `images_per_s` = size / forward_ms;
- `forward_synced_ms`: one forward, then wait for the GPU (p50): a lone request's compute;
- `predict_ms`: Runner.run, what `predict` does (pick the images, forward, top-1, copy to the
  host) (p50): the floor under a served request;
- `graph_ms` (CUDA only): the forward captured once as a CUDA graph and replayed back to back,
  i.e. without Python's per-kernel launch cost; a lead for what graphs would give, not what the
  served model does.

Also: the stages of a fresh process's load (import, device context, weights, first forward), the
setup the served cold start repeats; and on CUDA, when torchvision imports, the largest relative
difference between torchvision's resnet50 and the bundled copy on the same weights (float32).
Prints one JSON object on its last line.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def blocks(step: Callable[[], Any], sync: Callable[[], None], seconds: float) -> list[float]:
    """ms per call of `step`, one value per block of calls with a sync at each end; blocks of
    about 50 ms until `seconds` have passed (at least 3 blocks)."""
    sync()
    began = time.perf_counter()
    step()
    sync()
    per_block = max(1, min(200, int(0.05 / max(time.perf_counter() - began, 1e-6))))
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(out) < 3 or time.perf_counter() < deadline:
        sync()
        t = time.perf_counter()
        for _ in range(per_block):
            step()
        sync()
        out.append((time.perf_counter() - t) * 1000 / per_block)
    return out


def each(step: Callable[[], Any], seconds: float, at_most: int = 2000) -> list[float]:
    """ms of each call (the call waits for its own result), until `seconds` or `at_most`."""
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(out) < 3 or (time.perf_counter() < deadline and len(out) < at_most):
        t = time.perf_counter()
        step()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def graph_ms(runner: Any, x: Any, seconds: float) -> float | None:
    """The forward as one CUDA graph, replayed back to back (median ms per replay)."""
    import torch

    try:
        static_x = x.clone().contiguous(memory_format=torch.channels_last)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                runner.forward(static_x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            runner.forward(static_x)
        return round(statistics.median(blocks(graph.replay, runner.sync, seconds)), 4)
    except Exception as exc:  # a lead only: never fail the run for it
        print(f"CUDA graph capture failed: {exc}", file=sys.stderr)
        return None


def compare_bundled(runner: Any) -> dict[str, Any]:
    """torchvision's resnet50 against the bundled copy, float32, same weights and images."""
    import resnet_model
    import torch
    from safetensors.torch import load_file

    if resnet_model._torchvision_resnet50 is None:
        return {"skipped": "torchvision did not import"}
    state = {
        k: v.float() if v.is_floating_point() else v
        for k, v in load_file(str(runner.weights), device=str(runner.device)).items()
    }
    x = runner.images[:4].float()
    logits = []
    for bundled in (False, True):
        net = resnet_model.architecture(bundled)
        net.load_state_dict(state)
        with torch.inference_mode():
            logits.append(net.to(runner.device).eval()(x).double())
    diff = float((logits[0] - logits[1]).norm() / logits[0].norm())
    served = torch.tensor([r["label"] for r in runner.run([0, 1, 2, 3])])
    agree = int((logits[0].argmax(dim=1).cpu() == served).sum())
    return {"rel_diff_fp32": diff, "top1_agree_served_vs_fp32_of_4": agree}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=2.0, help="per timed measurement")
    parser.add_argument("--sizes", default="1,32")
    args = parser.parse_args()
    conf = json.loads((args.app / "bench.json").read_text())
    sys.path.insert(0, str(args.app))

    import resnet_model
    import torch

    imported = time.perf_counter()
    if conf["device"] == "cpu":
        torch.set_num_threads(1)  # as forked workers run (their template imports torch so)
    weights = args.app / "weights.safetensors"
    out: dict[str, Any] = {"model": resnet_model.SOURCE, "torch": torch.__version__}
    if not weights.exists():
        t = time.perf_counter()
        out["parameters"] = resnet_model.make_weights(weights, conf["dtype"])
        out["make_weights_s"] = round(time.perf_counter() - t, 2)
    out["weights_mb"] = round(weights.stat().st_size / 1e6, 1)
    sizes = [int(s) for s in args.sizes.split(",")]
    runner = resnet_model.Runner(weights, conf["device"], conf["dtype"], conf["image_size"])
    runner.load(warm_sizes=(1,))  # as the unbatched served model: comparable cold stages
    out["fresh_process_ms"] = {"import_ms": round((imported - STARTED) * 1000, 1)}
    out["fresh_process_ms"].update(runner.setup_ms)
    if runner.device.type == "cuda":
        props = torch.cuda.get_device_properties(runner.device)
        out["gpu"] = props.name
        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version()
        out["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    out.update(dtype=conf["dtype"], image_size=conf["image_size"], device=conf["device"])

    out["sample_output"] = runner.run([0, 1])
    for size in sizes:
        seeds = list(range(size))
        x = runner.batch(seeds)
        fwd = blocks(lambda x=x: runner.forward(x), runner.sync, args.seconds)
        synced = each(lambda x=x: (runner.forward(x), runner.sync()), args.seconds / 2)
        predict = each(lambda s=seeds: runner.run(s), args.seconds / 2)
        row: dict[str, Any] = {
            "forward_ms": round(statistics.median(fwd), 4),
            "forward_synced_ms": round(pct(synced, 50), 4),
            "predict_ms": round(pct(predict, 50), 4),
            "predict_p99_ms": round(pct(predict, 99), 4),
            "samples": {"blocks": len(fwd), "synced": len(synced), "predict": len(predict)},
        }
        row["images_per_s"] = round(size * 1000 / row["forward_ms"], 1)
        row["predict_images_per_s"] = round(size * 1000 / row["predict_ms"], 1)
        if runner.device.type == "cuda":
            row["graph_ms"] = graph_ms(runner, x, args.seconds / 2)
            if row["graph_ms"]:
                row["graph_images_per_s"] = round(size * 1000 / row["graph_ms"], 1)
        out[f"b{size}"] = row
        print(f"ceiling b{size}: {json.dumps(row)}", file=sys.stderr, flush=True)
    if runner.device.type == "cuda":
        try:
            out["bundled_vs_torchvision"] = compare_bundled(runner)
        except Exception as exc:
            out["bundled_vs_torchvision"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        out["max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
