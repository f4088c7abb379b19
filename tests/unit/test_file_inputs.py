"""File inputs are refused at the edge unless they are data: URIs or URLs on this machine."""

from __future__ import annotations

from typing import Any

import pytest

from coldbrew.api.file_inputs import check_file_inputs, check_file_url, file_fields
from coldbrew.errors import InvalidInput

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "uri"},
        "mask": {"anyOf": [{"type": "string", "format": "uri"}, {"type": "null"}]},
        "frames": {"type": "array", "items": {"type": "string", "format": "uri"}},
        "prompt": {"type": "string"},
    },
}


def test_file_fields_are_uri_inputs_direct_optional_or_listed() -> None:
    assert file_fields(SCHEMA) == {"image", "mask", "frames"}


@pytest.mark.parametrize(
    "url",
    ["data:,hi", "http://127.0.0.1:8000/x", "http://localhost/x", "http://[::1]/x"],
)
def test_data_uris_and_loopback_urls_pass(url: str) -> None:
    check_file_url("image", url)


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/x", "https://example.com/a.png", "file:///etc/passwd", "/tmp/x"],
)
def test_other_urls_are_invalid_input_naming_the_field_and_the_fix(url: str) -> None:
    with pytest.raises(InvalidInput, match=r"input\.image: file inputs") as caught:
        check_file_url("image", url)
    assert caught.value.hint == "upload the file with POST /v1/files"
    assert caught.value.to_json()["error"]["fields"] == [["image"]]


def test_every_file_input_of_a_payload_is_checked_lists_included() -> None:
    ok = {"image": "data:,a", "frames": ["data:,b", "http://localhost/c"], "prompt": "http://x"}
    check_file_inputs(SCHEMA, ok)  # prompt is not a file input: any text
    with pytest.raises(InvalidInput, match=r"input\.frames"):
        check_file_inputs(SCHEMA, {"frames": ["data:,b", "https://example.com/c"]})
