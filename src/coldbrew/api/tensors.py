"""Typed tensors of the Open Inference Protocol (v2) to and from a model's JSON arguments.

An input tensor `{"name", "shape", "datatype", "data"}` becomes the `predict` argument of the same
name: `data` (flattened, or nested in row-major order) reshaped to `shape` as nested lists, or a
single value when the argument is not an array and the tensor holds one element. An output becomes
one tensor per key of a dict output, or one tensor `output0`; values that are not rectangular
numbers, booleans or strings travel as `BYTES` holding their JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from coldbrew.errors import InvalidInput
from coldbrew.runtime.adapters.kserve import BINARY_KEY as KSERVE_BINARY_KEY

#: OIP datatypes and the numpy dtype each one is read as.
DATATYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
_FROM_SCHEMA = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


#: KServe's binary tensor extension: the JSON header's length when binary data follows it.
BINARY_HEADER = "inference-header-content-length"


def decode_request(raw: bytes, json_length: str | None = None) -> Any:
    """An infer request body. With the binary extension (`json_length` from the
    `Inference-Header-Content-Length` header), each input whose `parameters.binary_data_size` is
    set takes that many bytes after the JSON, little-endian (BYTES: 4-byte length before each
    string), and gets them as its `data` list. BYTES elements must be UTF-8 text: they become
    JSON strings, as KServe's own server makes them (it refuses other bytes too)."""
    import orjson

    if json_length is None:
        return orjson.loads(raw or b"{}")
    try:  # kserve's client keeps the header in a headers dict it reuses for later JSON requests
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    if not json_length.isdigit() or not 0 < int(json_length) <= len(raw):
        raise _bad(f"{BINARY_HEADER} must be the length of the JSON part, got {json_length!r}")
    body = orjson.loads(raw[: int(json_length)])
    offset = int(json_length)
    for tensor in body.get("inputs", []) if isinstance(body, dict) else []:
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(params, dict) or params.get("binary_data_size") is None:
            continue
        size = params["binary_data_size"]
        if not isinstance(size, int) or size < 0:
            raise _bad(f"input {tensor.get('name')!r}: binary_data_size must be a byte count")
        chunk = raw[offset : offset + int(size)]
        if len(chunk) != size:
            raise _bad(f"input {tensor.get('name')!r}: {size} binary bytes announced, fewer sent")
        offset += len(chunk)
        tensor["data"] = _from_binary(str(tensor.get("name")), tensor.get("datatype"), chunk)
        del params["binary_data_size"]
    return body


def _from_binary(name: str, datatype: Any, chunk: bytes) -> list[Any]:
    import numpy as np

    if datatype == "BYTES":
        strings, at = [], 0
        while at + 4 <= len(chunk):
            length = int.from_bytes(chunk[at : at + 4], "little")
            element = chunk[at + 4 : at + 4 + length]
            try:
                strings.append(element.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"input {name!r}: BYTES element {len(strings)} is not UTF-8 text; over HTTP "
                    "a model gets BYTES as text (strings), as from KServe's own server, which "
                    "refuses other bytes too",
                    hint="send binary data such as images base64-encoded",
                ) from None
            at += 4 + length
        return strings
    if datatype not in DATATYPES:
        raise _bad(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    if len(chunk) % dtype.itemsize:
        raise _bad(f"input {name!r}: {len(chunk)} bytes is not a whole number of {datatype}")
    values: list[Any] = np.frombuffer(chunk, dtype=dtype).tolist()
    return values


#: The key of a native (KServe `Model`) job's input that carries the binary part of the request,
#: base64-encoded, so the model's `InferRequest` is built from the very bytes the client sent.
BINARY_KEY = KSERVE_BINARY_KEY


def native_request(raw: bytes, json_length: str | None) -> dict[str, Any]:
    """The job input for a KServe model: the JSON header as sent (with its `binary_data_size`
    parameters) plus the binary part as base64 under `BINARY_KEY`. Checked like any request,
    so a malformed body is a 400 here and not a failed job."""
    import base64

    import orjson

    body = decode_request(raw, json_length)
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object with an 'inputs' list")
    try:
        return dict(orjson.loads(raw))  # all JSON (a reused header): nothing binary
    except orjson.JSONDecodeError:
        pass
    length = int(str(json_length))
    header: dict[str, Any] = orjson.loads(raw[:length])
    header[BINARY_KEY] = base64.b64encode(raw[length:]).decode()
    return header


def _bad(message: str) -> InvalidInput:
    return InvalidInput(
        message, hint="each input is {name, shape, datatype, data}; GET /v2/models/NAME lists them"
    )


def _check_tensor(index: int, tensor: Any) -> tuple[str, list[int], str, Any]:
    if not isinstance(tensor, dict):
        raise _bad(f"inputs[{index}] must be an object")
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str) or not name:
        raise _bad(f"inputs[{index}] needs a 'name' (string)")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _bad(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if datatype not in DATATYPES:
        raise _bad(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    if "data" not in tensor:
        raise _bad(f"input {name!r} has no 'data'")
    return name, shape, datatype, tensor["data"]


def tensor_value(tensor: Any, index: int = 0, as_array: bool = True) -> tuple[str, Any]:
    """`(name, value)` for one input tensor; `InvalidInput` says what is wrong with it."""
    import numpy as np

    name, shape, datatype, data = _check_tensor(index, tensor)
    try:
        values = np.asarray(data, dtype=DATATYPES[datatype]).reshape(-1)
    except (ValueError, TypeError, OverflowError):
        raise _bad(f"input {name!r}: data is not a flat or nested list of {datatype}") from None
    if datatype[0] in "IU" and not np.array_equal(values, np.asarray(data, dtype=float).ravel()):
        raise _bad(f"input {name!r}: {datatype} data must be whole numbers in range")
    if datatype == "BYTES" and not all(isinstance(v, str) for v in values.tolist()):
        raise _bad(f"input {name!r}: BYTES data must be strings")
    if values.size != math.prod(shape):
        raise _bad(
            f"input {name!r}: shape {shape} holds {math.prod(shape)} values, data has {values.size}"
        )
    if not as_array and values.size == 1:
        return name, values.tolist()[0]
    return name, values.reshape(shape).tolist()


def schema_is_array(schema: dict[str, Any], name: str) -> bool:
    """Whether argument `name` of an input schema takes an array (or anything)."""
    prop = schema.get("properties", {}).get(name)
    if prop is None:
        return True
    types = [prop.get("type")] + [alt.get("type") for alt in prop.get("anyOf", [])]
    return "array" in types or all(t is None for t in types)


def arguments(request: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """The `predict` arguments of an OIP infer request: one per input tensor, then any request
    `parameters` whose names are arguments too."""
    if not isinstance(request, dict):
        raise _bad("the body must be a JSON object with an 'inputs' list")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("the body needs 'inputs': a non-empty list of tensors")
    values: dict[str, Any] = {}
    for index, tensor in enumerate(inputs):
        name = tensor.get("name") if isinstance(tensor, dict) else None
        as_array = schema_is_array(schema, name) if isinstance(name, str) else True
        name, value = tensor_value(tensor, index, as_array)
        if name in values:
            raise _bad(f"input {name!r} is given twice")
        values[name] = value
    _requested_names(request.get("outputs"))
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _bad("'parameters' must be an object")
    known = schema.get("properties", {})
    for key, value in parameters.items():
        if key in known and key not in values:
            values[key] = value
    return values


def _tensor(name: str, value: Any) -> dict[str, Any]:
    import numpy as np

    try:
        array = np.asarray(value)
    except ValueError:  # ragged
        array = np.asarray(None, dtype=object)
    if array.dtype.kind in "biuf":
        kind = {"b": "BOOL", "i": "INT", "u": "UINT", "f": "FP"}[array.dtype.kind]
        datatype = kind if kind == "BOOL" else f"{kind}{array.dtype.itemsize * 8}"
        return {
            "name": name,
            "shape": list(array.shape),
            "datatype": datatype,
            "data": array.reshape(-1).tolist(),
        }
    if array.dtype.kind == "U":
        return {
            "name": name,
            "shape": list(array.shape),
            "datatype": "BYTES",
            "data": array.reshape(-1).tolist(),
        }
    text = json.dumps(value, ensure_ascii=False, default=str)
    return {"name": name, "shape": [1], "datatype": "BYTES", "data": [text]}


def _requested_names(requested: Any) -> list[str]:
    if requested is None:
        return []
    if not isinstance(requested, list) or not all(
        isinstance(r, dict) and isinstance(r.get("name"), str) for r in requested
    ):
        raise _bad("'outputs' must be a list of {\"name\": ...} objects")
    return [r["name"] for r in requested]


def output_tensors(output: Any, requested: Any = None) -> list[dict[str, Any]]:
    """Tensors for a job's output, limited to the `outputs` the request asked for."""
    items = output.items() if isinstance(output, dict) else [("output0", output)]
    tensors = [_tensor(str(name), value) for name, value in items]
    names = _requested_names(requested)
    if not names:
        return tensors
    by_name = {t["name"]: t for t in tensors}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise _bad(
            f"requested output {missing[0]!r} is not among the outputs: {', '.join(by_name)}"
        )
    return [by_name[n] for n in names]


def input_metadata(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """`{name, datatype, shape}` per argument of an input schema (`-1`: any length)."""
    described = []
    for name, prop in schema.get("properties", {}).items():
        shape: list[int] = []
        while isinstance(prop, dict) and prop.get("type") == "array":
            shape.append(-1)
            prop = prop.get("items", {})
        kind = prop.get("type") if isinstance(prop, dict) else None
        described.append(
            {"name": name, "datatype": _FROM_SCHEMA.get(str(kind), "BYTES"), "shape": shape or [1]}
        )
    return described
