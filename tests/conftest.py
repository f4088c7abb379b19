"""Shared test helpers: where the fixture models live, and the anyio backend."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
