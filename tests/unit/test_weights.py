"""Memory-mapped safetensors: same values as safetensors' own loader, read-only, no copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from coldbrew import load_safetensors
from coldbrew.errors import SpecError


def test_tensors_are_mapped_with_their_values_shapes_and_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    tensors = {
        "weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "bias": np.array([1, -2], dtype=np.int64),
        "mask": np.array([True, False]),
    }
    save_file(tensors, str(path))
    loaded = load_safetensors(path)
    assert set(loaded) == set(tensors)
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        np.testing.assert_array_equal(loaded[name], array)
    assert isinstance(loaded["weight"], np.memmap)
    with pytest.raises(ValueError, match="read-only"):
        loaded["weight"][0, 0] = 5


def test_a_dtype_numpy_cannot_map_says_what_to_use(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    path = tmp_path / "bf16.safetensors"
    save_torch({"w": torch.zeros(2, dtype=torch.bfloat16)}, str(path))
    with pytest.raises(SpecError, match="BF16") as caught:
        load_safetensors(path)
    assert "framework='pt'" in caught.value.hint
    assert load_safetensors(path, framework="pt")["w"].dtype == torch.bfloat16


def test_in_a_template_large_tensors_are_copied_into_shared_memory(tmp_path: Path) -> None:
    """A template's `setup()` runs inside `resident()`: large tensors become anonymous memory
    (its page tables come with a fork), still read-only, same values; small ones stay mapped."""
    import os

    from coldbrew.runtime import weights

    path = tmp_path / "w.safetensors"
    big = np.random.default_rng(0).standard_normal((1024, 1100), dtype=np.float32)  # 4.3 MB
    save_file({"big": big, "small": np.arange(4, dtype=np.float32)}, str(path))
    with weights.resident():
        loaded = load_safetensors(path)
    assert not isinstance(loaded["big"], np.memmap) and isinstance(loaded["small"], np.memmap)
    np.testing.assert_array_equal(loaded["big"], big)
    with pytest.raises(ValueError, match="read-only"):
        loaded["big"][0, 0] = 5
    assert isinstance(load_safetensors(path)["big"], np.memmap)  # outside a template: mapped
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked worker reads the template's copy
        os.write(write, str(float(loaded["big"].sum())).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert float(os.read(read, 100)) == pytest.approx(float(big.sum()))
