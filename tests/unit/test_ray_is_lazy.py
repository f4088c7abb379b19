"""The embedded default never loads Ray: only a `RayBackend` that connects imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from coldbrew.backends.ray_worker import bundle

_PROBE = """
import sys
import coldbrew.platform, coldbrew.cli.main, coldbrew.cli.serve, coldbrew.api.app
import coldbrew.backends.ray, coldbrew.backends.ray_agent
from coldbrew.backends.ray import ray_backend
from coldbrew.config import Settings
ray_backend(Settings(home=sys.argv[1], ray_address="127.0.0.1:1"))
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""


def test_importing_coldbrew_does_not_import_ray(tmp_path: Path) -> None:
    # a `ray` package that fails loudly when imported stands in for the real one
    fake = tmp_path / "fake" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('ray was imported')\n")
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "home")],
        env={"PYTHONPATH": str(fake.parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_hardware_class_is_a_ray_resource() -> None:
    assert bundle("cpu", 0) == {"CPU": 1.0}
    assert bundle("L4", 1) == {"L4": 1.0, "GPU": 1.0}
    assert bundle("L4", 0) == {"L4": 1.0}
