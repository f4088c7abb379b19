"""`python -S -m coldbrew.runtime.boot MODULE ARGS...`: how processes of a per-version
environment start (`backends/envs.py`).

The environment's packages are the user's, and a package's `.pth` file runs at interpreter
start-up, before any sandbox. So the interpreter starts with `-S` (no site-packages) and only
coldbrew on its path; this enters the sandbox, then activates site-packages (the `.pth` files run
sandboxed), then runs MODULE as `__main__`, whose own `enter_from_env()` finds the policy already
applied.
"""

from __future__ import annotations

import runpy
import site
import sys

from coldbrew.runtime.sandbox.enter import enter_from_env


def main() -> None:
    enter_from_env()
    if sys.flags.no_site:
        site.main()
    module = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
