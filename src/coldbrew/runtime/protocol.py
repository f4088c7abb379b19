"""Frames between the gateway and a worker.

A frame is a 4-byte big-endian length, then a 4-byte length of its JSON part (top bit set when
arrays follow), the JSON part, and the raw bytes of the numpy arrays the frame carries. An array
(a numeric or bool dtype) travels as its own bytes in C order, referenced from the JSON as
`{"__ndarray__": [offset, nbytes, dtype, shape]}`, and arrives as a numpy array over the frame's
bytes: no JSON lists, no base64, no per-element work on either side. Other arrays (objects,
strings, big-endian) and numpy scalars become plain JSON values. The receiver needs numpy only
when a frame actually carries arrays.

Frames are dicts with a type tag `t`:
- gateway → worker: `job` {id, input}, `batch` {ids, inputs}, `stop`, `limits`
  {log_max_bytes, log_lines_per_s} (once, after `ready`: the caps of its print capture),
  `state_reply` {rid, entry | deleted | keys | error}
- worker → gateway: `ready` {import_s, setup_s}, `setup_failed` {error}, `log` {id, ts, stream,
  line}, `chunk` {id, output}, `done` {id, output} or {id, error}, `state` {rid, op, key, ...}
  (a `coldbrew.state` call; `runtime/calls.py`)

Errors cross the boundary as records {type, message, traceback}, never pickled exceptions.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

HEADER = struct.Struct(">I")
_JSON_LENGTH = struct.Struct(">I")
_HAS_ARRAYS = 1 << 31  # set in the JSON length when arrays follow (even empty ones)
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: The gateway tells each worker the most bytes one job's output may take (`output_max_mb`);
#: a larger output fails the job in the worker, before it crosses the socket.
OUTPUT_MAX_ENV = "COLDBREW_WORKER_OUTPUT_MAX_BYTES"
DEFAULT_OUTPUT_MAX_BYTES = 50 << 20
ARRAY_KEY = "__ndarray__"
_RAW_KINDS = frozenset("biuf")  # bool, signed, unsigned, float: their bytes are the data


def encode(frame: dict[str, Any]) -> bytes:
    """Serialise one frame; numpy arrays travel as raw bytes after the JSON part."""
    buffers: list[memoryview] = []
    offset = 0

    def default(value: Any) -> Any:
        nonlocal offset
        if type(value).__module__ != "numpy":
            raise TypeError(f"{type(value).__name__} is not JSON serialisable")
        if not hasattr(value, "shape") or value.ndim == 0:  # a numpy scalar
            return value.item()
        if value.dtype.kind not in _RAW_KINDS or value.dtype.byteorder == ">":
            return value.tolist()
        if not value.flags.c_contiguous:
            value = value.copy(order="C")
        data = memoryview(value.reshape(-1).view("u1"))  # flat bytes (empty arrays too)
        marker = [offset, data.nbytes, value.dtype.str, list(value.shape)]
        buffers.append(data)
        offset += data.nbytes
        return {ARRAY_KEY: marker}

    body = orjson.dumps(frame, default=default)
    length = _JSON_LENGTH.size + len(body) + offset
    json_length = len(body) | (_HAS_ARRAYS if buffers else 0)
    return b"".join([HEADER.pack(length), _JSON_LENGTH.pack(json_length), body, *buffers])


def decode(data: bytes) -> dict[str, Any]:
    """Parse one frame (without its 4-byte header); arrays come back as numpy arrays."""
    (field,) = _JSON_LENGTH.unpack_from(data)
    end = _JSON_LENGTH.size + (field & ~_HAS_ARRAYS)
    frame: dict[str, Any] = orjson.loads(memoryview(data)[_JSON_LENGTH.size : end])
    if field & _HAS_ARRAYS:
        revived: dict[str, Any] = _revive(frame, memoryview(data)[end:])
        return revived
    return frame


def _revive(value: Any, raw: memoryview) -> Any:
    if isinstance(value, dict):
        marker = value.get(ARRAY_KEY)
        if marker is not None and len(value) == 1:
            import numpy as np

            offset, nbytes, dtype, shape = marker
            return np.frombuffer(raw[offset : offset + nbytes], dtype=dtype).reshape(shape)
        return {k: _revive(v, raw) for k, v in value.items()}
    if isinstance(value, list):
        return [_revive(v, raw) for v in value]
    return value


#: The deepest result (a `done` frame's output or error, a `chunk`) the gateway keeps. The
#: store's encoder (orjson) refuses values nested past 254 levels, and an API answer wraps a
#: result in up to 3 more (`{"stream": [{"output": chunk}]}`); parsers accept 1024 levels.
RESULT_MAX_DEPTH = 250


def nests_deeper(value: Any, max_depth: int = RESULT_MAX_DEPTH) -> bool:
    """Whether `value` nests lists and objects more than `max_depth` levels (`[]` is 1).

    Iterative (a worker's 1024-deep value must not exhaust the stack), stops at the first
    branch that is too deep; anything but a list or dict (a numpy array too) is a leaf.
    """
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False
