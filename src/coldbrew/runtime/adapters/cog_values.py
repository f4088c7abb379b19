"""A Cog job's values: file inputs checked and downloaded, union inputs passed as received, and
outputs turned into JSON (files as `data:` URIs), as Cog's own server does."""

from __future__ import annotations

import base64
import dataclasses
import enum
import ipaddress
import mimetypes
import pathlib
import urllib.parse
from typing import Any

_LOOPBACK_NAMES = frozenset({"localhost"})


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_file_url(value: str) -> bool:
    """A `data:` URI or an http(s) URL on this machine: what a file input may name."""
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme == "data":
        return True
    return parsed.scheme in ("http", "https") and _is_loopback(parsed.hostname)


def check_file_url(field: str, value: Any) -> None:
    """A `cog.Path` input must be a `data:` URI or an http URL on this machine (loopback).

    The worker's own check, before it downloads: the gateway refuses such inputs with 400 at the
    edge (`api/file_inputs.py`); this keeps a job that reached the worker anyway from fetching
    another host's URL (an endpoint with `network=True` could reach it)."""
    if not isinstance(value, str) or is_local_file_url(value):
        return
    raise ValueError(
        f"{field}: file inputs must be a data: URI, a /v1/files URL or an http URL on this "
        f"machine (loopback); got {value[:80]!r}"
    )


def file_fields(info: Any) -> set[str]:
    from cog import _adt

    return {
        name
        for name, field in info.inputs.items()
        if field.type.primitive in (_adt.PrimitiveType.PATH, _adt.PrimitiveType.FILE)
    }


def union_values(info: Any, payload: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
    """Union inputs (`str | float | None`) as Cog's server passes them: the JSON value itself.

    cog's Python `check_input` validates a union against its members and converts the value to
    the first member that takes it (an integer `1` becomes `1.0` for `float`); Cog's own server
    hands the predictor the value it received. Union members are plain JSON types (cog refuses
    files and secrets in unions), so the value needs no conversion once it is valid.
    """
    for name, field in info.inputs.items():
        if getattr(field.type, "union_variants", None) and payload.get(name) is not None:
            checked[name] = payload[name]
    return checked


def materialise(value: Any, temps: list[Any]) -> Any:
    """Download a URL input (cog's `URLPath`) to a temporary file and pass its `cog.Path`."""
    from cog.types import URLPath

    if isinstance(value, URLPath):
        temps.append(value)
        return value.convert()
    if isinstance(value, list):
        return [materialise(v, temps) for v in value]
    return value


def _data_uri(path: pathlib.Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def to_json(value: Any) -> Any:
    """An output as JSON: files become `data:` URIs, dataclasses objects, enums their value."""
    if isinstance(value, pathlib.Path):
        return _data_uri(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if hasattr(value, "get_secret_value"):  # cog.Secret
        return value.get_secret_value()
    return value
