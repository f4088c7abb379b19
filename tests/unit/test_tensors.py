"""Open Inference Protocol tensors to predict arguments and back (api/tensors.py)."""

from __future__ import annotations

from typing import Any

import pytest

from coldbrew.api import tensors
from coldbrew.errors import InvalidInput

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "x": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "scale": {"type": "number", "default": 1.0},
        "tags": {"type": "array", "items": {"type": "string"}},
        "anything": {},
    },
}


def tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_flat_data_is_reshaped_and_scalars_unwrapped() -> None:
    request = {
        "inputs": [
            tensor("x", [2, 3], "FP64", [1, 2, 3, 4, 5, 6]),
            tensor("scale", [1], "FP32", [0.5]),
            tensor("tags", [2], "BYTES", ["a", "b"]),
        ]
    }
    assert tensors.arguments(request, SCHEMA) == {
        "x": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
        "scale": 0.5,
        "tags": ["a", "b"],
    }


def test_nested_data_and_integer_types() -> None:
    request = {"inputs": [tensor("x", [1, 2], "INT32", [[7, 8]])]}
    assert tensors.arguments(request, SCHEMA) == {"x": [[7, 8]]}


def test_an_argument_of_any_type_keeps_the_tensor_shape() -> None:
    request = {"inputs": [tensor("anything", [1], "INT64", [3])]}
    assert tensors.arguments(request, SCHEMA) == {"anything": [3]}


def test_request_parameters_fill_arguments_that_no_tensor_gave() -> None:
    request = {
        "inputs": [tensor("x", [1, 1], "FP64", [1])],
        "parameters": {"scale": 3, "x": "ignored", "unknown": 1},
    }
    assert tensors.arguments(request, SCHEMA) == {"x": [[1.0]], "scale": 3}


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({}, "needs 'inputs'"),
        ({"inputs": []}, "needs 'inputs'"),
        ({"inputs": ["x"]}, "inputs[0] must be an object"),
        ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, "needs a 'name'"),
        ({"inputs": [tensor("x", [2, 3], "FP32", [1, 2])]}, "holds 6 values, data has 2"),
        ({"inputs": [tensor("x", [-1], "FP32", [1])]}, "non-negative integers"),
        ({"inputs": [tensor("x", [1], "FLOAT", [1])]}, "datatype 'FLOAT' is not one of"),
        ({"inputs": [tensor("x", [1], "FP32", ["a"])]}, "not a flat or nested list of FP32"),
        ({"inputs": [tensor("x", [1], "INT64", [1.5])]}, "whole numbers"),
        ({"inputs": [tensor("tags", [1], "BYTES", [1])]}, "BYTES data must be strings"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}, "has no 'data'"),
        (
            {"inputs": [tensor("scale", [1], "FP32", [1]), tensor("scale", [1], "FP32", [2])]},
            "given twice",
        ),
        ({"inputs": [tensor("x", [1], "FP32", [1])], "outputs": ["sums"]}, "'outputs' must be"),
    ],
)
def test_bad_tensors_say_what_to_fix(request_body: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[")):
        tensors.arguments(request_body, SCHEMA)


def test_outputs_become_typed_tensors() -> None:
    output = {"sums": [1.5, 2.5], "count": 6, "ok": [True, False], "tag": "none", "grid": [[1, 2]]}
    by_name = {t["name"]: t for t in tensors.output_tensors(output)}
    assert by_name["sums"] == {"name": "sums", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]}
    assert by_name["count"] == {"name": "count", "shape": [], "datatype": "INT64", "data": [6]}
    assert by_name["ok"]["datatype"] == "BOOL"
    assert by_name["tag"] == {"name": "tag", "shape": [], "datatype": "BYTES", "data": ["none"]}
    assert by_name["grid"] == {"name": "grid", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}


def test_other_outputs_travel_as_json_and_a_bare_value_is_output0() -> None:
    (ragged,) = tensors.output_tensors([[1], [2, 3]])
    assert ragged["name"] == "output0"
    assert ragged == {**ragged, "shape": [1], "datatype": "BYTES", "data": ["[[1], [2, 3]]"]}
    (nested,) = tensors.output_tensors({"meta": {"a": 1}})
    assert nested["data"] == ['{"a": 1}']


def test_requested_outputs_are_picked_in_order_and_unknown_ones_refused() -> None:
    output = {"a": 1, "b": 2}
    picked = tensors.output_tensors(output, [{"name": "b"}])
    assert [t["name"] for t in picked] == ["b"]
    with pytest.raises(InvalidInput, match="'c' is not among the outputs: a, b"):
        tensors.output_tensors(output, [{"name": "c"}])


def test_metadata_from_the_input_schema() -> None:
    assert tensors.input_metadata(SCHEMA) == [
        {"name": "x", "datatype": "FP64", "shape": [-1, -1]},
        {"name": "scale", "datatype": "FP64", "shape": [1]},
        {"name": "tags", "datatype": "BYTES", "shape": [-1]},
        {"name": "anything", "datatype": "BYTES", "shape": [1]},
    ]


def test_the_binary_extension_puts_the_bytes_after_the_json_into_data() -> None:
    import numpy as np
    import orjson

    floats = np.arange(6, dtype="<f4").tobytes()
    words = b"".join(len(w).to_bytes(4, "little") + w for w in (b"a", b"bc"))
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(floats)},
                },
                {
                    "name": "tags",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(words)},
                },
            ]
        }
    )
    body = tensors.decode_request(header + floats + words, str(len(header)))
    assert tensors.arguments(body, SCHEMA) == {
        "x": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]],
        "tags": ["a", "bc"],
    }
    with pytest.raises(InvalidInput, match="24 binary bytes announced, fewer sent"):
        tensors.decode_request(header + floats[:-1], str(len(header)))
    with pytest.raises(InvalidInput, match="must be the length of the JSON part"):
        tensors.decode_request(header + floats, "many")
    assert tensors.decode_request(header, "158") == orjson.loads(header)  # a stale header
