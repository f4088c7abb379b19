"""`coldbrew keys` and `coldbrew secrets` against a real server: keys are listed and revoked by
id, secrets are set before a deploy and reach the workers, and a value is printed nowhere."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server


def test_secrets_from_the_command_line_reach_the_worker_and_are_never_printed(
    server: Server,
) -> None:
    value = "sv-" + secrets.token_hex(16)
    server.start()
    outputs = [server.cli("secrets", "set", "vault", f"API_TOKEN={value}", "OTHER=x")]
    outputs.append(server.cli("secrets", "list", "vault"))
    assert outputs[-1].stdout.split()[::3] == ["API_TOKEN", "OTHER"]
    outputs.append(server.cli("secrets", "unset", "vault", "OTHER"))
    outputs.append(server.cli("deploy", str(FIXTURES / "secretive")))
    run = server.cli("run", "vault", "--input", json.dumps({"names": ["API_TOKEN", "OTHER"]}))
    outputs.append(run)
    env = json.loads(run.stdout)["output"]["env"]
    assert env == {"API_TOKEN": hashlib.sha256(value.encode()).hexdigest(), "OTHER": None}
    bad = server.cli("secrets", "set", "vault", value, check=False)  # no '=': not echoed
    assert bad.returncode != 0
    outputs.append(bad)
    outputs.append(server.cli("secrets", "unset", "vault", "--all"))
    assert server.cli("secrets", "list", "vault").stdout == ""
    server.stop()
    for done in outputs:
        assert value not in done.stdout + done.stderr
    assert value not in server.output


def test_keys_from_the_command_line(server: Server) -> None:
    server.start()
    made = server.cli("keys", "create", "--account", "acme", "--expires", "30d")
    key = made.stdout.strip()
    assert key.startswith("cb_") and "id " in made.stderr
    listing = server.cli("keys", "list").stdout
    assert key not in listing and server.key not in listing
    (row,) = [line for line in listing.splitlines() if " acme " in line]
    key_id = row.split()[0]
    assert row.split()[1] == key[:7] + "…" and row.endswith("active")

    as_acme = dict(server.env, COLDBREW_API_KEY=key)
    works = _cli(as_acme, "keys", "list")
    assert works.returncode == 0 and server.key not in works.stdout
    revoked = server.cli("keys", "revoke", key_id)
    assert f"revoked {key_id}" in revoked.stdout
    refused = _cli(as_acme, "endpoints")
    assert refused.returncode == 1
    assert "unknown API key" in refused.stderr and "Traceback" not in refused.stderr

    (admin_row,) = [
        line for line in server.cli("keys", "list").stdout.splitlines() if " yes " in line
    ]
    last = server.cli("keys", "revoke", admin_row.split()[0], check=False)
    assert last.returncode == 1 and "last active admin key" in last.stderr


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coldbrew", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_secrets_key_that_does_not_open_the_database_stops_the_start(server: Server) -> None:
    server.start()
    server.stop()
    key_file = server.home / "secrets.key"
    key_file.write_text(key_file.read_text().replace(key_file.read_text()[:8], "AAAAAAAA"))
    done = subprocess.run(
        [sys.executable, "-m", "coldbrew", "serve", "--port", "1"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "does not open with this server's secrets key" in done.stderr
    assert "hint: the key file was replaced or lost" in done.stderr
    assert "Traceback" not in done.stderr
