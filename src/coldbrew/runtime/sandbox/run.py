"""`python -m coldbrew.runtime.sandbox.run WORKDIR SCRIPT`: enter the sandbox (with its line to
the gateway, `line.py`), then become `python SCRIPT` (a RunPod handler file, run unmodified)."""

from __future__ import annotations

import os
import sys

from coldbrew.runtime.sandbox.enter import enter_from_env


def main() -> None:
    workdir, script = sys.argv[1:3]
    enter_from_env()
    os.chdir(workdir)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, script])


if __name__ == "__main__":
    main()
