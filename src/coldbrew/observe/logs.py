"""Server logs: plain lines for people, or JSON lines (`--log-json`) for log pipelines.

Log calls that concern a job or a worker pass `extra={"job": ..., "worker": ...}`; both formats
show those fields.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

_FIELDS = ("job", "worker", "endpoint")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, and job/worker/endpoint if set."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """`time level logger message [job=… worker=…]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = " ".join(f"{n}={getattr(record, n)}" for n in _FIELDS if getattr(record, n, None))
        return f"{line} [{tags}]" if tags else line


def configure(json_lines: bool) -> None:
    """Send the server's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
