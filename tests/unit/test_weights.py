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
