"""An environment gets coldbrew's source but only RUNTIME_REQUIREMENTS from PyPI: every package
the runtime imports must be among them (or what they need), or models in environments fail."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata

from coldbrew.backends.envs import RUNTIME_REQUIREMENTS

RUNTIME_MODULES = [  # what a template, a worker and the deploy's inspection load
    "coldbrew.spec",
    "coldbrew.runtime.loader",
    "coldbrew.runtime.adapters.runpod",
    "coldbrew.runtime.adapters.settings",
    "coldbrew.runtime.adapters.dockerfile",
    "coldbrew.runtime.boot",
    "coldbrew.runtime.inspect",
    "coldbrew.runtime.template",
    "coldbrew.runtime.worker",
]


def _closure(names: list[str]) -> set[str]:
    """Import names provided by these distributions and everything they require."""
    seen: set[str] = set()
    todo = list(names)
    provided: set[str] = set()
    while todo:
        name = re.split(r"[<>=!~;\[ ]", todo.pop(), maxsplit=1)[0].lower()
        if name in seen:
            continue
        seen.add(name)
        dist = metadata.distribution(name)
        top = (dist.read_text("top_level.txt") or "").split()
        files = [str(f).split("/")[0] for f in dist.files or [] if "/" in str(f)]
        provided |= set(top) | {f for f in files if not f.endswith((".dist-info", ".data"))}
        provided.add(name.replace("-", "_"))
        for req in dist.requires or []:
            if "extra ==" not in req:
                todo.append(req)
    return provided


def test_the_runtime_imports_nothing_an_environment_lacks() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in RUNTIME_MODULES)
        + "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    third_party = {
        m for m in loaded if m not in sys.stdlib_module_names and m != "coldbrew" and m[0] != "_"
    }
    missing = third_party - _closure(list(RUNTIME_REQUIREMENTS))
    assert not missing, f"add to RUNTIME_REQUIREMENTS (backends/envs.py): {sorted(missing)}"
