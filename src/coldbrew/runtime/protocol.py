"""Frames between the gateway and a worker: a 4-byte big-endian length, then one JSON object.

Frames are dicts with a type tag `t`:
- gateway → worker: `job` {id, input}, `stop`
- worker → gateway: `ready` {import_s, setup_s}, `setup_failed` {error}, `log` {id, ts, stream,
  line}, `done` {id, output} or {id, error}

Errors cross the boundary as records {type, message, traceback}, never pickled exceptions.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 256 * 1024 * 1024


def encode(frame: dict[str, Any]) -> bytes:
    """Serialise one frame (numpy arrays become lists)."""
    body = orjson.dumps(frame, option=orjson.OPT_SERIALIZE_NUMPY)
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    """Parse one frame body (without its header)."""
    frame: dict[str, Any] = orjson.loads(body)
    return frame
