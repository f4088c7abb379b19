"""CLI tables (`cli/output.py`): plain aligned text when stdout is not a terminal."""

from __future__ import annotations

import io
import re
import sys

import pytest

from coldbrew.cli.output import print_table


def test_a_piped_table_is_plain_aligned_text(capsys: pytest.CaptureFixture[str]) -> None:
    long_name = "an-endpoint-name-" + "x" * 120  # wider than any terminal: never cut or wrapped
    print_table(["NAME", "QUEUE"], [["toy", 3], [long_name, 12]], right=["QUEUE"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [["NAME", "QUEUE"], ["toy", "3"], [long_name, "12"]]
    assert len({len(line.rstrip()) for line in lines}) == 1  # right-aligned numbers end together
    assert "\x1b" not in "".join(lines)


def test_an_empty_table_is_its_header_and_a_headless_one_its_rows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_table(["NAME", "VERSION"], [])
    assert capsys.readouterr().out.split() == ["NAME", "VERSION"]
    print_table(["NAME", "UPDATED"], [["HF_TOKEN", "2026-11-29 00:00"]], show_header=False)
    assert capsys.readouterr().out.split() == ["HF_TOKEN", "2026-11-29", "00:00"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_narrow_terminal_no_cell_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setenv("COLUMNS", "30")
    print_table(["ID", "ACCOUNT"], [["key_0123456789abcdef", "default-account"]])
    plain = re.sub(r"\x1b\[[0-9;]*m", "", screen.getvalue())
    assert "key_0123456789abcdef" in plain and "default-account" in plain and "…" not in plain
