"""`coldbrew serve --tls-cert/--tls-key`: HTTPS on loopback with a certificate made in the test,
verified by httpx against that certificate; bad files are one clear line, not a traceback."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import Server


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and localhost) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coldbrew test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_serve_over_https_verified_against_the_certificate(server: Server, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    output = server.start(COLDBREW_TLS_CERT=str(cert), COLDBREW_TLS_KEY=str(key))
    url = f"https://127.0.0.1:{server.port}"
    assert f"serving on {url}" in output
    trusting = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=trusting, timeout=30) as client:
        assert client.get(f"{url}/healthz").json()["status"] == "ok"
        keys = client.get(f"{url}/v1/keys", headers={"Authorization": f"Bearer {server.key}"})
        assert keys.status_code == 200
    cli = subprocess.run(  # the CLI trusts it through SSL_CERT_FILE, as httpx does
        [sys.executable, "-m", "coldbrew", "keys", "list"],
        env=dict(server.env, COLDBREW_URL=url, SSL_CERT_FILE=str(cert)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "default" in cli.stdout
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=10) as untrusting:
        untrusting.get(f"{url}/healthz")  # the system roots do not know this certificate
    with pytest.raises(httpx.HTTPError), httpx.Client(timeout=10) as plain:
        plain.get(f"http://127.0.0.1:{server.port}/healthz")  # no plaintext HTTP on the port


def _serve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coldbrew", "serve", "--port", "1", *args],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("COLDBREW_")},
            "COLDBREW_HOME": str(home),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("missing", "does not exist", id="missing-cert"),
        pytest.param("only-cert", "give both tls_cert and tls_key", id="no-key"),
        pytest.param("swapped", "are not a PEM certificate and its private key", id="not-pem"),
    ],
)
def test_a_bad_certificate_is_one_clear_error(tmp_path: Path, case: str, message: str) -> None:
    cert, key = self_signed(tmp_path)
    args = {
        "missing": ["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key)],
        "only-cert": ["--tls-cert", str(cert)],
        "swapped": ["--tls-cert", str(key), "--tls-key", str(cert)],
    }[case]
    done = _serve(tmp_path / "home", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
