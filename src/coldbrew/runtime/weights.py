"""Memory-mapped weights: tensors that live in the page cache, shared by every worker.

`load_safetensors(path)` maps each tensor of a safetensors file read-only, without copying it:
loading costs microseconds whatever the file size, pages are read when first touched, and every
worker of a version (forked or spawned) reads the same physical pages.

In a template's `setup()` (`resident()`), large tensors are copied once into anonymous memory
backed by transparent huge pages instead. A fork does not copy the page tables of a shared file
mapping, so every forked worker faulted its weights in again on its first call: 15,650-16,200
faults and 75-93 ms for a 1 GB matrix against 36 ms warm. Anonymous memory's page tables come
with the fork (66 faults), and the pages stay one physical copy, shared copy-on-write by the
template and every worker (nobody writes them: the arrays are read-only).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import struct
from collections.abc import Iterator
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


#: Tensors at least this large are copied into memory in a template (smaller ones fault in
#: with a handful of faults; copying them is not worth a mapping each).
RESIDENT_MIN_BYTES = 4 << 20
_resident = False


@contextlib.contextmanager
def resident() -> Iterator[None]:
    """While open, `load_safetensors` copies large tensors into anonymous memory (the template
    opens it around `setup()`, so every fork shares the copy, page tables included)."""
    global _resident
    _resident = True
    try:
        yield
    finally:
        _resident = False


def _in_memory(array: Any) -> Any:
    """`array` copied into anonymous, huge-page-backed memory, read-only like the mapping."""
    import numpy as np

    if array.nbytes < RESIDENT_MIN_BYTES:
        return array
    buf = mmap.mmap(-1, array.nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(AttributeError, OSError):  # no THP here: 4 KB pages still fork
        buf.madvise(mmap.MADV_HUGEPAGE)
    copy = np.frombuffer(buf, dtype=array.dtype, count=array.size).reshape(array.shape)
    copy[...] = array
    copy.flags.writeable = False
    return copy


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
        if _resident:
            tensors[name] = _in_memory(tensors[name])
    return tensors
