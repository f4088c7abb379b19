"""Moved to `coldbrew.spec`: the deployment spec sits below every layer, the server included.

Kept so that users' code and older imports of `coldbrew.sdk.spec` keep working."""

from coldbrew.spec import (
    KNOWN_HARDWARE,
    NAME_PATTERN,
    DeploymentSpec,
    Scaler,
    WarmWindow,
    parse_spec,
)

__all__ = [
    "KNOWN_HARDWARE",
    "NAME_PATTERN",
    "DeploymentSpec",
    "Scaler",
    "WarmWindow",
    "parse_spec",
]
