"""Moved to `coldbrew.names` (below every layer, so the spec and the server need no `sdk`).

Kept so that code written against `coldbrew.sdk.names` keeps importing."""

from coldbrew.names import KNOWN_HARDWARE, NAME_PATTERN, SKIP_VALIDATION_ENV, Batch

__all__ = ["KNOWN_HARDWARE", "NAME_PATTERN", "SKIP_VALIDATION_ENV", "Batch"]
