"""Frames: numpy arrays travel as raw bytes after the JSON part and come back as arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from coldbrew.runtime import protocol


def round_trip(frame: dict[str, Any]) -> dict[str, Any]:
    data = protocol.encode(frame)
    (length,) = protocol.HEADER.unpack_from(data)
    assert length == len(data) - protocol.HEADER.size
    return protocol.decode(data[protocol.HEADER.size :])


def test_a_frame_without_arrays_is_plain_json() -> None:
    frame = {"t": "done", "id": "j1", "output": {"text": "hi", "n": [1, 2.5, None]}}
    assert round_trip(frame) == frame


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.arange(5, dtype=np.int64),
        np.array([True, False, True]),
        np.zeros((0, 3), dtype=np.float64),
        np.arange(6, dtype=np.uint8).reshape(2, 3, 1),
    ],
)
def test_arrays_come_back_equal_with_their_dtype_and_shape(array: np.ndarray) -> None:
    back = round_trip({"t": "done", "id": "j", "output": {"a": array, "rest": [array]}})
    for got in (back["output"]["a"], back["output"]["rest"][0]):
        assert isinstance(got, np.ndarray)
        assert got.dtype == array.dtype and got.shape == array.shape
        assert np.array_equal(got, array)


def test_arrays_are_bytes_not_json() -> None:
    array = np.arange(10_000, dtype=np.float32)
    data = protocol.encode({"t": "done", "id": "j", "output": array})
    assert len(data) < array.nbytes + 200  # about 4 bytes a number, not ~10 characters
    assert b"9999" not in data[: len(data) - array.nbytes]  # no number in the JSON part


def test_other_values_become_json() -> None:
    frame = {
        "column": np.arange(6).reshape(3, 2)[:, 1],  # not contiguous: copied, still raw
        "big_endian": np.arange(3, dtype=">i4"),
        "words": np.array(["a", "b"]),
        "scalar": np.float32(1.5),
        "integer": np.int64(7),
    }
    back = round_trip(frame)
    assert np.array_equal(back["column"], [1, 3, 5])
    assert back["big_endian"] == [0, 1, 2]
    assert back["words"] == ["a", "b"]
    assert (back["scalar"], back["integer"]) == (1.5, 7)


def test_a_value_json_cannot_carry_is_refused() -> None:
    with pytest.raises(TypeError):
        protocol.encode({"t": "done", "output": object()})
