"""Server log lines: JSON lines name the job and the worker; text lines tag them."""

from __future__ import annotations

import logging

import orjson

from coldbrew.observe.logs import JsonFormatter, TextFormatter


def _record(**extra: str) -> logging.LogRecord:
    record = logging.LogRecord(
        "coldbrew.scheduler", logging.WARNING, __file__, 1, "job %s retried", ("j-1",), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_message_level_job_and_worker() -> None:
    line = JsonFormatter().format(_record(job="j-1", worker="w-9"))
    entry = orjson.loads(line)
    assert entry["message"] == "job j-1 retried"
    assert (entry["level"], entry["logger"]) == ("warning", "coldbrew.scheduler")
    assert (entry["job"], entry["worker"]) == ("j-1", "w-9")
    assert entry["ts"].endswith("+00:00")


def test_text_lines_tag_job_and_worker_only_when_known() -> None:
    assert (
        TextFormatter()
        .format(_record(job="j-1", worker="w-9"))
        .endswith("job j-1 retried [job=j-1 worker=w-9]")
    )
    assert TextFormatter().format(_record()).endswith("job j-1 retried")
