"""Encryption at rest for what coldbrew must keep secret yet read back: endpoint secrets,
webhook signing secrets and the file-signing key.

One key (AES-256-GCM) lives in a file of its own, `$COLDBREW_HOME/secrets.key` by default, mode
0600; `secrets_key_path` moves it off the data disk, so a copy of the database or a backup of
the home without that file reveals none of these values. Each sealed value is bound to where it
belongs (the *context*, AES-GCM's associated data: "account default webhook secret"), so a
ciphertext copied into another row — another account's endpoint, say — does not open there.
This does not protect against anyone who can read the key file too (the server's own user,
root) or the gateway's memory; see docs/architecture.md, "Encryption at rest".
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import sqlite3
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coldbrew.errors import SecretUnreadable

log = logging.getLogger("coldbrew.crypto")

#: What every sealed value starts with, so a plaintext one (from before encryption at rest) is
#: told apart and sealed on start.
SEALED_PREFIX = "cbenc1:"
_KEY_BYTES = 32
_NONCE_BYTES = 12


def is_sealed(text: str) -> bool:
    """Whether `text` is a sealed value (else it is plaintext from before encryption at rest)."""
    return text.startswith(SEALED_PREFIX)


class Sealer:
    """Seals and opens short secrets with the server's key (AES-256-GCM, random 96-bit nonce)."""

    def __init__(self, key: bytes, path: Path | None = None) -> None:
        if len(key) != _KEY_BYTES:
            raise ValueError(f"the key must be {_KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.path = path  # where the key came from, for error messages

    @classmethod
    def generate(cls) -> Sealer:
        """A sealer with a fresh random key that lives only in memory (unit tests)."""
        return cls(AESGCM.generate_key(bit_length=8 * _KEY_BYTES))

    @classmethod
    def from_file(cls, path: Path, sealed_in: Path | None = None) -> Sealer:
        """The key in `path`, created (0600) when the file does not exist yet.

        Not created when the database `sealed_in` already holds values sealed with a key: a new
        key would not open them, so the start fails anyway, and the stray key left behind would
        pass for the real one on the next start. A key file readable by others is tightened to
        0600 with a warning rather than refused: the server made it, and refusing would only stop
        the platform.
        """
        if not path.exists():
            if sealed_in is not None and holds_sealed_values(sealed_in):
                raise SecretUnreadable(
                    f"the secrets key {path} is missing, and the database {sealed_in} holds "
                    "values sealed with it",
                    hint="restore the key file from your backup, or point secrets_key_path at "
                    "it; a new key cannot open these values, so coldbrew does not make one",
                )
            _create_key_file(path)
        try:
            mode = path.stat().st_mode
            if mode & 0o077:
                log.warning("the secrets key %s was mode %o; set to 0600", path, mode & 0o777)
                os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
            key = base64.b64decode(path.read_text().strip(), validate=True)
        except (OSError, binascii.Error, UnicodeDecodeError) as exc:
            raise SecretUnreadable(
                f"cannot read the secrets key {path}: {exc}",
                hint="restore the key file from your backup (it must hold the base64 key "
                "coldbrew wrote), or point secrets_key_path at it",
            ) from None
        if len(key) != _KEY_BYTES:
            raise SecretUnreadable(
                f"the secrets key {path} holds {len(key)} bytes, not {_KEY_BYTES}",
                hint="restore the key file coldbrew wrote; it cannot be replaced by another key",
            )
        return cls(key, path)

    def seal(self, plaintext: str, context: str) -> str:
        """`plaintext` encrypted and bound to `context`, as text for a database column or file."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str, context: str) -> str:
        """The plaintext sealed in `token` for `context`; `SecretUnreadable` when it does not open.

        The error names the context and the key file, never any part of the value.
        """
        if not is_sealed(token):
            raise SecretUnreadable(f"the {context} is not sealed", hint="restart the server")
        try:
            raw = base64.urlsafe_b64decode(token[len(SEALED_PREFIX) :])
            nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
            return self._aead.decrypt(nonce, sealed, context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            where = f" ({self.path})" if self.path else ""
            raise SecretUnreadable(
                f"the {context} does not open with this server's secrets key{where}",
                hint="the key file was replaced or lost: restore the one this database was "
                "written with (secrets_key_path)",
            ) from None

    def file_secret(self, path: Path, context: str) -> str:
        """The secret kept sealed in `path`: made (random, 256 bits) when the file is missing,
        and sealed in place when it holds plaintext from before encryption at rest."""
        if not path.exists():
            write_private(path, self.seal(secrets.token_hex(32), context) + "\n")
        stored = path.read_text().strip()
        if is_sealed(stored):
            return self.open(stored, context)
        write_private(path, self.seal(stored, context) + "\n")
        log.info("sealed the %s in %s", context, path)
        return stored


def holds_sealed_values(db_path: Path) -> bool:
    """Whether the database at `db_path` holds a sealed webhook or endpoint secret (read only;
    False for a missing or unreadable database, whose start fails on its own terms)."""
    if not db_path.exists():
        return False
    try:
        db = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    like = SEALED_PREFIX + "%"
    try:
        for sql in (
            "SELECT 1 FROM accounts WHERE webhook_secret LIKE ? LIMIT 1",
            "SELECT 1 FROM endpoint_secrets WHERE value LIKE ? LIMIT 1",
        ):
            try:
                if db.execute(sql, (like,)).fetchone() is not None:
                    return True
            except sqlite3.Error:  # a table an older database does not have
                continue
        return False
    finally:
        db.close()


def _create_key_file(path: Path) -> None:
    """Write a new random key with mode 0600 from the first byte (never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = base64.b64encode(AESGCM.generate_key(bit_length=8 * _KEY_BYTES)).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
        out.flush()
        os.fsync(out.fileno())
    log.info("created the secrets key %s (back it up with the database)", path)


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically, mode 0600 from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
