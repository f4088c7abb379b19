"""The public SDK: `coldbrew.__all__` is sorted, complete and resolvable.

The same check as httpx's `tests/test_exported_members.py`.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import types

import pytest

import coldbrew


def _names_imported_by_init() -> set[str]:
    """Every name `coldbrew/__init__.py` imports from coldbrew, eagerly or for type checkers."""
    tree = ast.parse(inspect.getsource(coldbrew))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("coldbrew"):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def test_all_is_sorted() -> None:
    assert coldbrew.__all__ == sorted(coldbrew.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(set(coldbrew.__all__)) == len(coldbrew.__all__)


def test_every_reexported_name_is_in_all() -> None:
    public = {n for n in _names_imported_by_init() if not n.startswith("_")}
    public |= set(coldbrew._LAZY)
    assert set(coldbrew.__all__) == public


def test_every_public_attribute_is_in_all() -> None:
    """Anything of coldbrew's own reachable as `coldbrew.X` is listed (modules aside)."""
    own = {
        name
        for name, value in vars(coldbrew).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", "").startswith("coldbrew")
    }
    assert own <= set(coldbrew.__all__)


@pytest.mark.parametrize("name", coldbrew.__all__)
def test_every_name_in_all_resolves(name: str) -> None:
    value = getattr(coldbrew, name)
    if isinstance(value, types.ModuleType):  # `coldbrew.state`: a module of functions
        assert value.__name__ == f"coldbrew.sdk.{name}"
        return
    assert value.__name__ == name
    assert value.__module__.startswith("coldbrew.")


@pytest.mark.parametrize("name", ["APIError", "Client", "verify_webhook"])
def test_lazy_names_import_with_from(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from coldbrew import {name}", namespace)
    assert namespace[name] is getattr(coldbrew, name)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'coldbrew' has no attribute 'Missing'"):
        coldbrew.Missing  # noqa: B018


def test_version_matches_the_installed_package() -> None:
    assert coldbrew.__version__ == importlib.metadata.version("coldbrew")
