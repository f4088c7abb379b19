"""Memory-mapped weights: tensors that live in the page cache, shared by every worker.

`load_safetensors(path)` maps each tensor of a safetensors file read-only, without copying it:
loading costs microseconds whatever the file size, pages are read when first touched, and every
worker of a version (forked or spawned) reads the same physical pages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from coldbrew.errors import SpecError

#: safetensors dtype tags → numpy dtype names (bfloat16 has no numpy dtype).
_NUMPY_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """The byte offset where tensor data starts, and the file's JSON header."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header: dict[str, Any] = json.loads(handle.read(length))
    return 8 + length, header


def load_safetensors(path: str | Path, framework: str = "numpy") -> dict[str, Any]:
    """Every tensor in the file, memory-mapped read-only (numpy arrays, or torch tensors).

    Writing to the arrays raises; copy one (`array.copy()`) to change it.
    """
    path = Path(path)
    if framework == "pt":
        from safetensors.torch import load_file  # maps lazily as well

        tensors: dict[str, Any] = load_file(str(path))
        return tensors
    if framework != "numpy":
        raise SpecError(f"framework {framework!r} is not supported", hint="use 'numpy' or 'pt'")
    import numpy as np

    start, header = read_header(path)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _NUMPY_DTYPES.get(info["dtype"])
        if dtype is None:
            raise SpecError(
                f"tensor {name!r} in {path.name} is {info['dtype']}, which numpy cannot map",
                hint="load it with framework='pt'",
            )
        begin, _ = info["data_offsets"]
        shape = tuple(info["shape"])
        tensors[name] = np.memmap(path, dtype=dtype, mode="r", offset=start + begin, shape=shape)
    return tensors
