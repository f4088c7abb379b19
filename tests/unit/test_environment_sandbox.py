"""The sandbox grants a per-version environment read-only, and no other venv in the home."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coldbrew.runtime.sandbox import enter


def _venv(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (path / "bin" / "python").write_text("")
    return path / "bin" / "python"


def test_an_environment_under_envs_is_granted_with_the_coldbrew_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setattr(sys, "executable", str(_venv(home / "envs" / "abc")))
    granted = enter._environment_paths(str(home))
    assert granted[0] == str(home / "envs" / "abc")
    assert Path(granted[1], "runtime", "sandbox", "enter.py").is_file()  # the package itself


@pytest.mark.parametrize("where", ["elsewhere", "envs-not"])
def test_a_venv_elsewhere_in_the_home_is_not_granted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    home = tmp_path / "home"
    monkeypatch.setattr(sys, "executable", str(_venv(home / where / "abc")))
    assert enter._environment_paths(str(home)) == []


def test_the_servers_own_interpreter_adds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(_venv(tmp_path / "server-venv")))
    assert enter._environment_paths(str(tmp_path / "home")) == []
