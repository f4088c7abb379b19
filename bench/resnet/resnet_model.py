"""ResNet-50 for bench/gpu.py: the network, its weight file, and the code that runs it.

Shared by the served model (app.py, in a worker) and the in-process ceiling
(bench/gpu_ceiling.py), so both time the same code on the same weights.

The network is torchvision's `resnet50()` when torchvision imports (it does on the GPU machine);
otherwise `ResNet50` below, the same architecture (v1.5: stride on the 3x3 convolution) with the
same state-dict keys, so one weight file loads into either. torchvision's CUDA wheels do not
import next to the CPU-only torch of the development machines, which is what the fallback is for;
bench/gpu_ceiling.py checks on the GPU that both give the same logits.

Inputs: a request carries an integer seed, not an image. `setup()` draws a bank of random images
on the device once and a seed picks one (`seed % bank`), so the HTTP payload is a few bytes and no
image decoding or host-to-device copy is measured: the figures are the model and the serving path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

try:  # torchvision's CUDA build fails to import next to a CPU-only torch (RuntimeError)
    import torchvision
    from torchvision.models import resnet50 as _torchvision_resnet50

    SOURCE = f"torchvision {torchvision.__version__}"
except Exception:
    _torchvision_resnet50 = None
    SOURCE = "bundled (torchvision did not import)"


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (expansion 4), same attribute names."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    """torchvision's resnet50() architecture and state-dict layout, without torchvision."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._layer(64, 3)
        self.layer2 = self._layer(128, 4, stride=2)
        self.layer3 = self._layer(256, 6, stride=2)
        self.layer4 = self._layer(512, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, num_classes)

    def _layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def architecture(bundled: bool = False) -> nn.Module:
    """torchvision's resnet50() when it imported (and `bundled` is false), else ResNet50."""
    if _torchvision_resnet50 is not None and not bundled:
        net: nn.Module = _torchvision_resnet50(weights=None)
        return net
    return ResNet50()


def make_weights(path: Path, dtype: str) -> int:
    """Random weights (torchvision's initialisation, seed 0) saved once in `dtype`; returns the
    parameter count. No download: the figures do not depend on trained values."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = ResNet50()
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    cast = getattr(torch, dtype)
    state = {
        k: (v.to(cast) if v.is_floating_point() else v).contiguous()
        for k, v in net.state_dict().items()
    }
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.rename(path)
    return sum(p.numel() for p in net.parameters())


class Runner:
    """ResNet-50 in eval mode on one device, channels-last, with a bank of random images."""

    def __init__(
        self, weights: Path, device: str, dtype: str, image_size: int, bank: int = 256
    ) -> None:
        self.weights, self.device = weights, torch.device(device)
        self.dtype = getattr(torch, dtype)
        self.image_size, self.bank = image_size, bank
        self.net: nn.Module | None = None
        self.images: torch.Tensor | None = None
        self.setup_ms: dict[str, float] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def load(self, warm_sizes: tuple[int, ...] = (1,), bundled: bool = False) -> None:
        """Create the device context, load the weights onto it, draw the image bank, and run one
        forward per batch size in `warm_sizes`; each stage's time goes into `setup_ms`."""
        from safetensors.torch import load_file

        began = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.init()
            torch.empty(1, device=self.device)  # the context exists from here on
        context = time.perf_counter()
        state = load_file(str(self.weights), device=str(self.device))
        with torch.device("meta"):
            net = architecture(bundled)
        net.load_state_dict(state, assign=True)
        self.net = net.eval().to(dtype=self.dtype, memory_format=torch.channels_last)
        generator = torch.Generator(device=self.device).manual_seed(0)
        shape = (self.bank, 3, self.image_size, self.image_size)
        images = torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)
        self.images = images.contiguous(memory_format=torch.channels_last)
        self.sync()
        loaded = time.perf_counter()
        for size in warm_sizes:
            self.run(list(range(size)))
        warmed = time.perf_counter()
        self.setup_ms = {
            "context_ms": round((context - began) * 1000, 1),
            "load_ms": round((loaded - context) * 1000, 1),
            "first_forward_ms": round((warmed - loaded) * 1000, 1),
        }

    def batch(self, seeds: list[int]) -> torch.Tensor:
        """The images the seeds pick, as one channels-last batch on the device."""
        assert self.images is not None
        if len(seeds) == 1:
            i = seeds[0] % self.bank
            return self.images[i : i + 1]
        index = torch.tensor([s % self.bank for s in seeds], device=self.device)
        return self.images.index_select(0, index).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.net is not None
        out: torch.Tensor = self.net(x)
        return out

    @torch.inference_mode()
    def run(self, seeds: list[int]) -> list[dict[str, Any]]:
        """What predict does: forward the seeds' images, top-1 class and logit per image (one
        device-to-host copy, which waits for the forward)."""
        logits = self.forward(self.batch(seeds)).float()
        score, label = logits.max(dim=1)
        rows = torch.stack([label.float(), score]).cpu().tolist()
        return [
            {"label": int(lab), "score": round(float(val), 4)}
            for lab, val in zip(rows[0], rows[1], strict=True)
        ]
