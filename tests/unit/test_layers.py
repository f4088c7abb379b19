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


@pytest.mark.parametrize(
    ("contract_id", "importer", "imported"),
    [
        pytest.param(
            "layers", "coldbrew.integrations.webhooks", "coldbrew.api.wire", id="webhooks"
        ),
        pytest.param("layers", "coldbrew.spec", "coldbrew.control.warmth", id="spec"),
        pytest.param("layers", "coldbrew.sdk.spec", "coldbrew.control.warmth", id="sdk"),
        pytest.param("layers", "coldbrew.platform", "coldbrew.api.cache", id="platform"),
        pytest.param("layers", "coldbrew.store.models", "coldbrew.errors", id="down-is-fine"),
        pytest.param(
            "job-service", "coldbrew.control.scheduler", "coldbrew.control.jobs", id="jobs"
        ),
    ],
)
def test_an_import_back_up_breaks_the_contract(
    contract_id: str, importer: str, imported: str
) -> None:
    """The imports that ran back up before the contract existed would each break it (the fourth,
    control.scheduler -> observe.stats, is ignored until the scheduler split removes it)."""
    import grimp
    import importlinter.api  # noqa: F401  (configures import-linter's adapters)
    from importlinter.application.use_cases import read_user_options
    from importlinter.contracts.layers import LayersContract

    options = read_user_options(str(ROOT / "pyproject.toml"))
    raw = next(c for c in options.contracts_options if c["id"] == contract_id)
    fields = {k: v for k, v in raw.items() if k not in ("id", "name", "type")}
    graph = grimp.build_graph("coldbrew")
    graph.add_import(importer=importer, imported=imported)
    contract = LayersContract(contract_id, options.session_options, fields)
    kept = contract.check(graph, verbose=False).kept
    assert kept is (imported == "coldbrew.errors")
