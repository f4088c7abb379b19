"""The layers of docs/architecture.md hold: the import-linter contracts in pyproject.toml pass,
and the contract lists the same layers, in the same order, as the document."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _contract(contract_id: str) -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    found: dict[str, object] = next(c for c in contracts if c["id"] == contract_id)
    return found


def _documented_layers() -> list[str]:
    """The first code block under "### Layers": one layer a line, then an optional comment."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("### Layers", 1)[1]
    block = section.split("```", 2)[1]
    return [re.split(r"\s{2,}", line.strip())[0] for line in block.splitlines() if line.strip()]


def test_the_contract_is_the_documented_layering() -> None:
    layers = _contract("layers")["layers"]
    assert isinstance(layers, list)
    assert [" ".join(layer.split()) for layer in layers] == _documented_layers()


def test_every_import_points_down(capsys: pytest.CaptureFixture[str]) -> None:
    import importlinter.api  # noqa: F401  (configures import-linter's adapters)
    from importlinter.application.use_cases import lint_imports

    passed = lint_imports(
        config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True
    )
    report = capsys.readouterr().out
    assert passed, report
    assert "Contracts: 2 kept, 0 broken." in report
