"""Checks a job's input against its version's JSON Schema, with messages that name the field,
the bound it broke and what the endpoint takes (one compiled validator per version)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from coldbrew.errors import InvalidInput
from coldbrew.store.models import Version

#: Problems reported per request; the rest are usually consequences of the first ones.
MAX_PROBLEMS = 5
#: Schema keywords whose bound is worth echoing next to jsonschema's message.
_SHOWN_CONSTRAINTS = frozenset(
    {
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
    }
)


def _field_path(path: Any) -> str:
    return "input" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


class InputValidator:
    """Validates inputs against versions' schemas; compiles each schema once."""

    def __init__(self) -> None:
        self._validators: dict[int, Draft202012Validator] = {}

    def validate(self, version: Version, payload: Any) -> None:
        """Raise InvalidInput (a 400 naming each bad field) unless `payload` fits the schema."""
        validator = self._validators.get(version.id)
        if validator is None:
            validator = Draft202012Validator(version.input_schema)
            self._validators[version.id] = validator
        errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
        if not errors:
            return
        shown = errors[:MAX_PROBLEMS]
        problems = [
            f"{_field_path(e.absolute_path)}: {e.message} ({e.validator}: {e.validator_value})"
            if e.validator in _SHOWN_CONSTRAINTS
            else f"{_field_path(e.absolute_path)}: {e.message}"
            for e in shown
        ]
        props = version.input_schema.get("properties", {})
        expected = ", ".join(f"{k} ({v.get('type', 'any')})" for k, v in props.items())
        raise InvalidInput(
            "; ".join(problems),
            hint=f"endpoint {version.endpoint!r} takes: {expected or 'no fields'}",
            fields=[list(e.absolute_path) for e in shown],
        )
