"""resnet: ResNet-50 (random weights, bf16) on a GPU, as bench/gpu.py deploys it.

Three endpoints of one model, one GPU worker each at most:

- `resnet50-cold`: `{"seed": N}`, idle_timeout_s 1, so it is back at zero workers a second
  after its last request (bench/gpu.py times its cold starts);
- `resnet50`: the same, kept warm (idle_timeout_s 60) for the warm rows;
- `resnet50-batch`: `{"seed": N}` per request, batched by coldbrew (`Batch(max_size=32)`), so
  `predict` gets a list of seeds and runs them as one forward.

A seed picks one of 256 random images drawn on the device in `setup()` (resnet_model.py says
why). The output is the top-1 class and its logit; a worker's first answer also carries
`setup_ms`, the stages of its `setup()` (device context, weights, first forward), which the
server's coldStartDetail only has as one number.

bench/gpu.py copies this directory and writes `bench.json` beside it (hardware class, device,
dtype, image size); without it the defaults below are the H200 run's.
"""

import json
from pathlib import Path
from typing import Any

from resnet_model import Runner

import coldbrew

HERE = Path(__file__).parent
CONF: dict[str, Any] = {
    "hardware": "H200",
    "device": "cuda",
    "dtype": "bfloat16",
    "image_size": 224,
    "max_wait_ms": 5.0,
}
if (HERE / "bench.json").exists():
    CONF.update(json.loads((HERE / "bench.json").read_text()))

app = coldbrew.App("resnet")
COMMON: dict[str, Any] = {
    "hardware": CONF["hardware"],
    "max_workers": 1,
    "timeout_s": 120,
    # A GPU worker runs setup() after the fork in any case; on the CPU (bench/gpu.py --smoke)
    # this keeps that same path instead of forking a process that already ran setup().
    "snapshot": False,
}


class _ResNet:
    warm_sizes: tuple[int, ...] = (1,)

    def setup(self) -> None:
        weights = HERE / "weights.safetensors"
        if not weights.exists():
            raise FileNotFoundError(f"{weights} is missing; bench/gpu.py writes it")
        self.runner = Runner(weights, CONF["device"], CONF["dtype"], CONF["image_size"])
        self.runner.load(self.warm_sizes)
        self.first = True

    def _answer(self, seeds: list[int]) -> list[dict[str, Any]]:
        rows = self.runner.run(seeds)
        if self.first:
            rows[0]["setup_ms"] = self.runner.setup_ms
            self.first = False
        return rows


@app.model(name="resnet50-cold", idle_timeout_s=1, **COMMON)
class ResNetCold(_ResNet):
    def predict(self, seed: int) -> dict:
        return self._answer([seed])[0]


@app.model(name="resnet50", idle_timeout_s=60, **COMMON)
class ResNetWarm(_ResNet):
    def predict(self, seed: int) -> dict:
        return self._answer([seed])[0]


@app.model(
    name="resnet50-batch",
    idle_timeout_s=60,
    batch=coldbrew.Batch(max_size=32, max_wait_ms=CONF["max_wait_ms"]),
    **COMMON,
)
class ResNetBatched(_ResNet):
    warm_sizes = (1, 32)

    def predict(self, seed: list[int]) -> list[dict]:
        return self._answer(seed)
