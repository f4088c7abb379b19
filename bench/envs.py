"""Per-version environments: what a deploy with one small package costs, and what a cold start
from such an environment costs against one in the server's own virtualenv.

Measured in-process (the integration tests' harness: a real `Platform`, real worker processes,
the default sandbox and fork-based fast path), on two models that differ only in where
`packaging` comes from: `own` lists `packaging==24.2` in its `requirements.txt` (an environment
built with uv), `server` has no requirements and imports the server's own `packaging`.

- deploy, cold uv cache: a fresh home (nothing downloaded yet);
- deploy, warm uv cache: the endpoint deleted (its environment removed), the same requirements
  deployed from another directory: the wheels are in uv's cache, the venv is rebuilt from links;
- deploy, shared: another directory with the same requirements while the environment exists;
- deploy, no requirements: the `server` model, for reference;
- cold start: `runsync` from zero workers, `--tries` times per model, alternating, after two
  untimed warm-up cold starts each (templates load in the background after a deploy); with
  `--spawn`, every worker is a fresh process (`fast_start=False`).

    .venv/bin/python bench/envs.py --tries 10
    .venv/bin/python bench/envs.py --tries 10 --spawn

Needs PyPI. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import Running, running, wait_for

from coldbrew.sdk.package import package

MODEL = """
import packaging

import coldbrew

app = coldbrew.App("bench")


@app.model(name="{name}", idle_timeout_s=0, max_workers=1)
class Probe:
    def predict(self) -> dict:
        return {{"packaging": packaging.__version__}}
"""


def _model(root: Path, name: str, requirements: str | None) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "app.py").write_text(textwrap.dedent(MODEL.format(name=name)))
    if requirements:
        (path / "requirements.txt").write_text(requirements)
    return path


async def _deploy_s(cb: Running, directory: Path) -> float:
    data, sha = package(directory)
    began = time.perf_counter()
    assert (await cb.http.put(f"/v1/artifacts/{sha}", content=data)).status_code == 200
    made = await cb.http.post(
        "/v1/deployments", json={"artifact": sha, "directory": directory.name}
    )
    assert made.status_code == 200, made.text
    return time.perf_counter() - began


async def _cold_start_s(cb: Running, name: str) -> tuple[float, dict[str, Any]]:
    await wait_for(lambda: asyncio.sleep(0, cb.live_workers(name)), lambda n: n == 0, 60)
    began = time.perf_counter()
    answer = await cb.runsync(name, {})
    took = time.perf_counter() - began
    assert answer["status"] == "COMPLETED", answer
    return took, answer


async def main(tries: int, spawn: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"fast_start": not spawn}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with running(root / "home", fast_start=not spawn) as cb:
            out["deploy_cold_cache_s"] = await _deploy_s(
                cb, _model(root, "own", "packaging==24.2\n")
            )
            out["deploy_shared_s"] = await _deploy_s(cb, _model(root, "own2", "packaging==24.2\n"))
            out["deploy_no_requirements_s"] = await _deploy_s(cb, _model(root, "server", None))
            await cb.http.delete("/v1/endpoints/own2")
            await cb.http.delete("/v1/endpoints/own")  # its environment goes; the cache stays
            out["deploy_warm_cache_s"] = await _deploy_s(
                cb, _model(root, "own3", "packaging==24.2\n")
            )
            samples: dict[str, list[float]] = {"own3": [], "server": []}
            details: dict[str, Any] = {}
            for name in samples:
                for _ in range(2):
                    await _cold_start_s(cb, name)
            for _ in range(tries):
                for name in samples:
                    took, answer = await _cold_start_s(cb, name)
                    samples[name].append(took)
                    details[name] = answer.get("coldStartDetail")
                    out[f"packaging_{name}"] = answer["output"]["packaging"]
    for name, label in (("own3", "own_env"), ("server", "server_env")):
        values = sorted(samples[name])
        out[f"cold_start_{label}_p50_ms"] = 1000 * statistics.median(values)
        out[f"cold_start_{label}_p90_ms"] = 1000 * values[int(0.9 * (len(values) - 1))]
        out[f"cold_start_{label}_detail"] = details[name]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--spawn", action="store_true", help="fresh worker processes, no fork")
    args = parser.parse_args()
    result = asyncio.run(main(args.tries, args.spawn))
    for key, value in result.items():
        if isinstance(value, float):
            print(f"{key:<36}{value:>10.3f}")
        else:
            print(f"{key:<36}{value}")
    print(json.dumps(result))
