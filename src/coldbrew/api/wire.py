"""Moved to `coldbrew.wire`, below the gateway and the webhook sender that both render jobs.

Kept so that older imports of `coldbrew.api.wire` keep working."""

from coldbrew.wire import iso, status_json

__all__ = ["iso", "status_json"]
