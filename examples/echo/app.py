"""echo: returns its input. `sleep_s` waits first (try timeouts), `fail` raises (try errors)."""

import time
from typing import Any

import coldbrew

app = coldbrew.App("echo")


@app.model(max_workers=4, idle_timeout_s=60, timeout_s=30, retries=1)
class Echo:
    def setup(self) -> None:
        print("echo worker ready")

    def predict(self, sleep_s: float = 0.0, fail: bool | str = False, **fields: Any) -> dict:
        if sleep_s:
            print(f"sleeping {sleep_s} s")
            time.sleep(sleep_s)
        if fail:
            raise RuntimeError(fail if isinstance(fail, str) else "failed on request")
        return {"sleep_s": sleep_s, **fields} if sleep_s else fields
