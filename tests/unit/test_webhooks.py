"""Webhook signatures (Standard Webhooks): what a receiver checking them with
`coldbrew.verify_webhook` accepts and refuses."""

from __future__ import annotations

import base64

import pytest

from coldbrew.integrations.webhooks import TOLERANCE_S, new_secret, sign, verify_webhook

SECRET = "whsec_" + base64.b64encode(bytes(range(24))).decode()
BODY = b'{"id":"job-1","status":"COMPLETED","output":{"text":"hi"}}'
MSG_ID = "msg_job-1"
TS = 1_700_000_000


def _headers(
    secret: str = SECRET, msg_id: str = MSG_ID, ts: int = TS, body: bytes = BODY
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


def test_signed_delivery_verifies() -> None:
    assert verify_webhook(SECRET, _headers(), BODY) is True


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in _headers().items()}
    assert "Webhook-Signature" in headers
    assert verify_webhook(SECRET, headers, BODY) is True


def test_signature_is_v1_base64_hmac_sha256() -> None:
    version, digest = sign(SECRET, MSG_ID, TS, BODY).split(",", 1)
    assert version == "v1"
    assert len(base64.b64decode(digest)) == 32


def test_signature_depends_on_every_input() -> None:
    reference = sign(SECRET, MSG_ID, TS, BODY)
    assert sign(SECRET, MSG_ID, TS, BODY) == reference
    variants = {
        sign(new_secret(), MSG_ID, TS, BODY),
        sign(SECRET, "msg_job-2", TS, BODY),
        sign(SECRET, MSG_ID, TS + 1, BODY),
        sign(SECRET, MSG_ID, TS, BODY + b" "),
    }
    assert reference not in variants
    assert len(variants) == 4


def test_tampered_body_fails() -> None:
    tampered = BODY.replace(b"COMPLETED", b"FAILED")
    assert verify_webhook(SECRET, _headers(), tampered) is False


def test_wrong_secret_fails() -> None:
    assert verify_webhook(new_secret(), _headers(), BODY) is False


@pytest.mark.parametrize(
    ("header", "value"),
    [("webhook-id", "msg_job-2"), ("webhook-timestamp", str(TS + 1))],
)
def test_tampered_id_or_timestamp_fails(header: str, value: str) -> None:
    headers = _headers() | {header: value}
    assert verify_webhook(SECRET, headers, BODY) is False


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_fails(missing: str) -> None:
    headers = _headers()
    del headers[missing]
    assert verify_webhook(SECRET, headers, BODY) is False


@pytest.mark.parametrize("ts", ["", "soon", "-1700000000", "1.7e9"])
def test_non_integer_timestamp_fails(ts: str) -> None:
    assert verify_webhook(SECRET, _headers() | {"webhook-timestamp": ts}, BODY) is False


@pytest.mark.parametrize("sig", ["", "v1", "v1,", "garbage", "v1,AAAA"])
def test_malformed_signature_fails(sig: str) -> None:
    assert verify_webhook(SECRET, _headers() | {"webhook-signature": sig}, BODY) is False


def test_any_listed_signature_may_match() -> None:
    """Several space-separated signatures (e.g. during a secret rotation): one must match."""
    good = sign(SECRET, MSG_ID, TS, BODY)
    old = sign(new_secret(), MSG_ID, TS, BODY)
    assert verify_webhook(SECRET, _headers() | {"webhook-signature": f"{old} {good}"}, BODY)
    assert not verify_webhook(SECRET, _headers() | {"webhook-signature": f"{old} {old}"}, BODY)


@pytest.mark.parametrize(
    ("now", "ok"),
    [
        pytest.param(None, True, id="no-clock-no-age-check"),
        pytest.param(TS, True, id="fresh"),
        pytest.param(TS + TOLERANCE_S, True, id="at-tolerance"),
        pytest.param(TS + TOLERANCE_S + 1, False, id="stale"),
        pytest.param(TS - TOLERANCE_S - 1, False, id="from-the-future"),
        pytest.param(TS + 86_400, False, id="replayed-next-day"),
    ],
)
def test_timestamp_tolerance(now: float | None, ok: bool) -> None:
    assert verify_webhook(SECRET, _headers(), BODY, now=now) is ok


def test_tolerance_is_five_minutes() -> None:
    assert TOLERANCE_S == 300


def test_new_secret_format() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert new_secret() != secret


def test_non_ascii_signature_is_refused_not_raised() -> None:
    # ASGI servers decode header bytes as latin-1, so any byte >= 0x80 can arrive like this.
    headers = _headers() | {"webhook-signature": "v1,\u00e9"}
    assert verify_webhook(SECRET, headers, BODY) is False


def test_non_ascii_digit_timestamp_is_refused_not_raised() -> None:
    headers = _headers() | {"webhook-timestamp": "\u00b2"}
    assert verify_webhook(SECRET, headers, BODY) is False
