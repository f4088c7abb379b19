"""`coldbrew secrets set NAME KEY=-` takes the value from stdin, so it is never on a command
line (`/proc/<pid>/cmdline` is readable by every local user) or in the shell's history."""

from __future__ import annotations

import io
import sys

import click
import pytest

from coldbrew.cli.credentials import _pairs


def test_a_value_of_dash_is_read_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret value\n"))
    assert _pairs(("API_TOKEN=-", "REGION=eu")) == {"API_TOKEN": "s3cret value", "REGION": "eu"}


def test_only_one_value_can_come_from_stdin() -> None:
    with pytest.raises(click.BadParameter, match="only one value"):
        _pairs(("A=-", "B=-"))
