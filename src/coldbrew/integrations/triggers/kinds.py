"""The built-in source and sink kinds: importing a kind's module registers it.

Sources and sinks that need a client library not every install has (the brokers') are
imported only when that library is present, so a missing package disables that kind alone.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger("coldbrew.triggers")

#: Modules that register kinds; a module whose client library is missing is skipped.
MODULES = (
    "coldbrew.integrations.triggers.cron",
    "coldbrew.integrations.triggers.push",
    "coldbrew.integrations.triggers.redis_streams",
    "coldbrew.integrations.triggers.postgres",
    "coldbrew.integrations.triggers.webhook_sink",
    # the brokers' modules import without their clients (they load them in `open()`), and
    # their configs refuse with "pip install 'coldbrew[triggers]'" when the client is missing
    "coldbrew.integrations.triggers.nats_jetstream",
    "coldbrew.integrations.triggers.rabbitmq",
    "coldbrew.integrations.triggers.mqtt",
    "coldbrew.integrations.triggers.kafka",
)


def load() -> None:
    """Register every kind whose module imports."""
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.info("trigger kinds of %s are unavailable: %s", name, exc)
