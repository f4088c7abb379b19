"""Make the README's dashboard screenshots from real traffic (about two minutes).

    .venv/bin/python docs/img/capture.py

Starts `coldbrew serve` on a free loopback port with examples/echo, examples/digits and the
browser test's fixture models, sends uneven traffic (gaps longer than the fixture's keep-warm
windows, so some requests wait for cold starts; one failure), then signs in to /ui in Debian's
chromium and saves docs/img/dashboard-overview.png and docs/img/dashboard-endpoint.png.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402
from tests.e2e.conftest import Server, free_port  # noqa: E402
from tests.e2e.test_dashboard import CHROMIUM, LAUNCH_ARGS  # noqa: E402

OUT = Path(__file__).resolve().parent
DIGIT = [0, 0, 5, 13, 9, 1, 0, 0] * 8  # any 64 pixel values 0..16


def main(duration_s: float = 110.0) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(home=Path(tmp) / "home", port=free_port())
        server.start(
            ROOT / "examples/echo", ROOT / "examples/digits", ROOT / "tests/fixtures/dashboard"
        )
        try:
            with server.http() as http:
                http.post("/v1/budgets", json={"monthlyUsd": 0.0002, "alerts": [50, 80, 100]})
                end = time.monotonic() + duration_s
                sent = 0
                while time.monotonic() < end:
                    burst = rng.choice([1, 1, 2, 4])
                    for _ in range(burst):
                        fail = sent == 12
                        http.post(
                            "/v2/resize/runsync",
                            json={
                                "input": {
                                    "size": rng.choice([64, 128, 512]),
                                    "sleep_s": rng.uniform(0.02, 0.3),
                                    "fail": fail,
                                }
                            },
                        )
                        sent += 1
                    if rng.random() < 0.5:
                        http.post("/v2/classify/runsync", json={"input": {"text": "hello there"}})
                    if rng.random() < 0.3:
                        http.post("/v2/echo/runsync", json={"input": {"message": "hi"}})
                    if rng.random() < 0.2:
                        http.post("/v2/digits/runsync", json={"input": {"pixels": DIGIT}})
                    time.sleep(rng.choice([0.5, 1.0, 3.0, 6.0]))
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{server.url}/ui")
                page.fill("#key", server.key)
                page.click("#login-form button[type=submit]")
                page.wait_for_selector("#endpoints")
                page.wait_for_timeout(500)
                page.screenshot(path=OUT / "dashboard-overview.png", full_page=True)
                page.click('#endpoints a:text-is("resize")')
                page.wait_for_selector("#advice-arithmetic")
                page.click('[data-window="15m"]')
                page.wait_for_timeout(4000)  # the next poll draws the 15-minute window
                cold = page.locator("#jobs-table tr[data-job] button").last
                cold.click()
                page.wait_for_timeout(500)
                page.screenshot(path=OUT / "dashboard-endpoint.png", full_page=True)
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
