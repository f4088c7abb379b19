"""File inputs (`cog.Path` fields, a `format: uri` schema): checked at the edge, before a job.

A file input is a `data:` URI or an http URL on this machine (the signed `/v1/files` links the
gateway hands out): workers fetch nothing else. The gateway refuses any other URL with 400
before a job exists, so the caller learns the fix at once instead of from a failed job.
"""

from __future__ import annotations

from typing import Any

from coldbrew.errors import InvalidInput
from coldbrew.runtime.adapters.cog_values import is_local_file_url


def file_fields(schema: dict[str, Any]) -> set[str]:
    """Inputs whose schema is a URI (cog.Path), directly, optionally or as list items."""
    found = set()
    for name, prop in schema.get("properties", {}).items():
        options = [prop, *prop.get("anyOf", [])]
        options += [o["items"] for o in options if isinstance(o.get("items"), dict)]
        if any(o.get("format") == "uri" for o in options):
            found.add(name)
    return found


def check_file_url(field: str, value: Any) -> None:
    """Raise `InvalidInput` unless `value` is a `data:` URI or an http URL on loopback."""
    if not isinstance(value, str) or is_local_file_url(value):
        return  # a non-string: the schema check reports the type
    raise InvalidInput(
        f"input.{field}: file inputs must be a data: URI, a /v1/files URL or an http URL on "
        f"this machine (loopback); got {value[:80]!r}",
        hint="upload the file with POST /v1/files",
        fields=[[field]],
    )


def check_file_inputs(schema: dict[str, Any], payload: dict[str, Any]) -> None:
    """Check every file input of `payload` (single values and lists) against `schema`."""
    for field in file_fields(schema) & payload.keys():
        value = payload[field]
        for one in value if isinstance(value, list) else [value]:
            check_file_url(field, one)
