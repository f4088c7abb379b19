"""`bench/chaos.py --quick` runs a bounded chaos suite end to end and loses no accepted job.

Each fault (kill -9 of a worker and a template, SIGSTOP, an external lock, poison inputs, and,
as root, a full disk and a read-only database) must end with every accepted job final and the
node serving new work without a restart; the gateway kill row restarts it on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "chaos.py"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_chaos_quick_loses_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDBREW_")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "worker,lock,poison,disk"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=580,  # a hang guard only, under pytest's own timeout
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "lost: 0; not recovered: none" in done.stdout
