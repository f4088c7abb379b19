"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real
`coldbrew serve` after real traffic: what it shows must equal what /v1/usage, /v1/stats and
/metrics say for the same key. Screenshots go to test-artifacts/ (git-ignored)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server
from tests.helpers import wait_until

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DASHBOARD = FIXTURES / "dashboard"


def usd(value: float) -> str:
    """As the dashboard's format.js writes dollars."""
    digits = 2 if value >= 1 else 4 if value >= 0.01 else 6
    return f"${value:.{digits}f}"


def ms(value: float | None) -> str:
    """As the dashboard's format.js writes milliseconds."""
    if value is None:
        return "\u2013"  # an en dash
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    return f"{math.floor(value + 0.5)} ms"


def metric_values(text: str, account: str, endpoint: str) -> dict[str, float]:
    """{name or name{status}: value} of one endpoint's series."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("account") != account or labels.get("endpoint") != endpoint:
                continue
            key = sample.name + (f"{{{labels['status']}}}" if "status" in labels else "")
            out[key] = sample.value
    return out


@pytest.fixture
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: Browser) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page, errors


def sign_in(page: Page, server: Server, key: str) -> None:
    page.goto(f"{server.url}/ui")
    page.fill("#key", key)
    page.click("#login-form button[type=submit]")


def traffic(http: httpx.Client) -> dict[str, Any]:
    """Cold starts, warm calls and a failure; returns the first (cold) job of resize."""

    def runsync(endpoint: str, payload: dict[str, Any]) -> Any:
        response = http.post(f"/v2/{endpoint}/runsync", json={"input": payload})
        assert response.status_code == 200, response.text
        return response.json()

    cold = runsync("resize", {"size": 32})
    assert cold["status"] == "COMPLETED" and cold["coldStart"] is True
    for size in (64, 128, 256):
        assert runsync("resize", {"size": size, "sleep_s": 0.1})["status"] == "COMPLETED"
    failed = runsync("resize", {"size": -1, "fail": True})
    assert failed["status"] == "FAILED"
    for text in ("hi", "a longer sentence", "ok"):
        assert runsync("classify", {"text": text})["status"] == "COMPLETED"
    return cold


def wait_until_idle(http: httpx.Client) -> None:
    """Until every worker has gone (keep-warm windows are seconds): usage stops growing."""
    wait_until(
        lambda: http.get("/v1/endpoints").json()["endpoints"],
        lambda endpoints: all(sum(e["workers"].values()) == 0 for e in endpoints),
        timeout_s=60,
        interval_s=0.25,
        what="no worker left",
    )


def check_overview(page: Page, http: httpx.Client) -> None:
    for period in ("today", "week", "month"):
        card = page.locator(f'[data-period="{period}"]')
        since = card.get_attribute("data-since")
        total = http.get("/v1/usage", params={"since": since}).json()["total"]
        for field in ("totalUsd", "coldStartUsd", "busyUsd", "idleUsd"):
            shown = card.locator(f'[data-field="{field}"]').inner_text()
            assert shown == usd(total[field]), (period, field, shown, total)
        assert total["idleUsd"] > 0 and total["coldStartUsd"] > 0 and total["busyUsd"] > 0

    since = page.locator('[data-period="week"]').get_attribute("data-since")
    week = http.get("/v1/usage", params={"since": since}).json()["rows"]
    top = max(week, key=lambda r: r["totalUsd"])
    assert f"Most this week: {top['endpoint'].split('/')[1]}," in page.inner_text("#top-cost")
    for line in week:
        row = page.locator(f'#week-cost tr[data-endpoint="{line["endpoint"].split("/")[1]}"]')
        for field in ("totalUsd", "coldStartUsd", "busyUsd", "idleUsd"):
            assert row.locator(f'[data-field="{field}"]').inner_text() == usd(line[field])

    metrics = http.get("/metrics").text
    stats = {s["endpoint"]: s for s in http.get("/v1/stats").json()["endpoints"]}
    for name in ("resize", "classify"):
        row = page.locator(f'#endpoints tr[data-endpoint="{name}"]')
        got = metric_values(metrics, "default", name)
        invocations = sum(v for k, v in got.items() if k.startswith("coldbrew_invocations_total{"))
        assert row.locator('[data-field="invocations"]').inner_text() == f"{invocations:g}"
        assert invocations == got["coldbrew_request_duration_seconds_count"]
        failed = got.get("coldbrew_invocations_total{FAILED}", 0)
        assert row.locator('[data-field="failed"]').inner_text() == f"{failed:g}"
        cold = got.get("coldbrew_cold_starts_total", 0)
        assert cold >= 1
        assert row.locator('[data-field="cold_starts"]').inner_text() == f"{cold:g}"
        assert row.locator('[data-field="cold_rate"]').inner_text() == (
            f"{cold / invocations * 100:.1f}%"
        )
        s = stats[name]
        assert row.locator('[data-field="latency"]').inner_text() == (
            f"{ms(s['latencyP50Ms'])} / {ms(s['latencyP99Ms'])}"
        )
        assert row.locator('[data-field="cold_wait"]').inner_text() == (
            f"{ms(s['coldStartWaitAvgMs'])} / {ms(s['coldStartWaitMaxMs'])}"
        )
        assert row.locator('[data-field="workers"]').inner_text() == "0 / 0 / 0"
        advice = http.get(f"/v1/endpoints/{name}/advice", params={"window": "7d"}).json()
        verdict = row.locator('[data-field="advice"]').inner_text()
        assert f"{advice['cheaper']} is cheaper" in verdict


def check_endpoint_page(page: Page, http: httpx.Client, cold: dict[str, Any]) -> None:
    metrics = metric_values(http.get("/metrics").text, "default", "resize")
    invocations = sum(v for k, v in metrics.items() if k.startswith("coldbrew_invocations_total{"))
    summary = page.locator('#summary [data-field="invocations"] .big')
    assert summary.inner_text() == f"{invocations:g}"
    waited = page.locator('#summary [data-field="cold_starts"] .big').inner_text()
    assert waited == f"{metrics['coldbrew_cold_starts_total']:g}"
    stats = http.get("/v1/endpoints/resize/timeseries", params={"window": "1h"}).json()
    cost = stats["costUsdPerHour"]
    total = sum(cost["cold_start"]) + sum(cost["busy"]) + sum(cost["idle"])
    assert page.locator('#summary [data-field="cost"] .big').inner_text() == usd(total)

    jobs = http.get("/v1/endpoints/resize/jobs").json()["jobs"]
    rows = page.locator("#jobs-table tr[data-job]")
    assert rows.count() == len(jobs) == 5
    assert [rows.nth(i).locator('[data-field="status"]').inner_text() for i in range(5)] == [
        j["status"] for j in jobs
    ]
    page.click(f'[data-logs="{cold["id"]}"]')
    detail = page.locator(f'[id="detail-{cold["id"]}"]')
    detail.locator("pre.logs", has_text="resizing to 32px").wait_for()
    breakdown = detail.locator(".cold-detail").inner_text()
    for key, label in (("setupMs", "setup()"), ("totalMs", "total")):
        assert f"{label} {ms(cold['coldStartDetail'][key])}" in breakdown

    versions = http.get("/v1/endpoints/resize/versions", params={"window": "1h"}).json()
    (only,) = versions["versions"]
    row = page.locator('#versions-table tr[data-version="1"]')
    assert row.locator('[data-field="status"]').inner_text() == "current" == only["status"]
    assert row.locator('[data-field="share"]').inner_text() == "100%"
    shown = row.locator('[data-field="invocations"]').inner_text()
    assert shown == f"{only['stats']['invocations']}" == f"{invocations:g}"

    advice = http.get("/v1/endpoints/resize/advice", params={"window": "7d"}).json()
    assert page.inner_text("#advice-arithmetic") == "\n".join(advice["arithmetic"])
    assert page.locator("#chart-cost canvas").count() == 1
    assert page.locator("#chart-workers canvas").count() == 1


def test_dashboard_shows_what_the_api_says_after_real_traffic(
    server: Server, browser: Browser
) -> None:
    server.start(DASHBOARD, COLDBREW_BUDGET_CHECK_S="0.5")
    with server.http() as http:
        cold = traffic(http)
        budget = http.post("/v1/budgets", json={"monthlyUsd": 0.000001, "alerts": [50, 100]})
        assert budget.status_code == 201, budget.text
        page, errors = open_page(browser)
        sign_in(page, server, server.key)
        page.wait_for_selector("#endpoints")
        notice = page.locator(".notice", has_text="reached 100% of its monthly budget")
        notice.wait_for()
        assert "Budget alert: the account" in notice.inner_text()
        page.screenshot(path=ARTIFACTS / "dashboard-overview-live.png", full_page=True)

        wait_until_idle(http)
        page.reload()  # the key stays in this tab's sessionStorage
        page.locator('#endpoints [data-field="workers"]', has_text="0 / 0 / 0").first.wait_for()
        check_overview(page, http)
        page.screenshot(path=ARTIFACTS / "dashboard-overview.png", full_page=True)

        page.click('#endpoints a:text-is("resize")')
        page.wait_for_selector("#jobs-table")
        page.wait_for_selector("#advice-arithmetic")
        check_endpoint_page(page, http, cold)
        with page.expect_response(lambda r: "window=15m" in r.url):
            page.click('[data-window="15m"]')
        page.wait_for_timeout(300)  # let the charts draw the new window
        page.screenshot(path=ARTIFACTS / "dashboard-endpoint.png", full_page=True)
        assert errors == []


def test_a_bad_key_is_refused_and_an_account_sees_only_its_own(
    server: Server, browser: Browser
) -> None:
    server.start(DASHBOARD)
    with server.http() as http:
        assert http.post("/v2/classify/runsync", json={"input": {}}).json()["status"] == (
            "COMPLETED"
        )
        other = http.post("/v1/keys", json={"account": "acme"}).json()["key"]

    page, errors = open_page(browser)
    sign_in(page, server, "cb_not-a-key")
    message = page.locator("#login-error")
    message.filter(has_text="Sign-in failed").wait_for()
    assert "unknown API key" in message.inner_text()
    assert page.evaluate("sessionStorage.getItem('coldbrew.key')") is None
    page.screenshot(path=ARTIFACTS / "dashboard-login-failed.png")

    page.fill("#key", other)
    page.click("#login-form button[type=submit]")
    page.locator("#account", has_text="acme").wait_for()
    page.wait_for_selector("text=No endpoints yet")
    assert page.locator("#endpoints").count() == 0
    assert "classify" not in page.inner_text("main")
    page.goto(f"{server.url}/ui/#/endpoint/classify")
    page.reload()
    page.locator("#page-error", has_text="no endpoint 'classify'").wait_for()
    page.screenshot(path=ARTIFACTS / "dashboard-other-account.png", full_page=True)
    page.click("#logout")
    page.wait_for_selector("#login-form")
    assert page.evaluate("sessionStorage.getItem('coldbrew.key')") is None
    # A 404 from the API is reported in the page, not as a script error.
    assert [e for e in errors if "404" not in e and "401" not in e] == []
