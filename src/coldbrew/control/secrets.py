"""Per-endpoint secrets (`coldbrew secrets set NAME KEY=VALUE`): what may be set, and the copy the
scheduler hands to each new worker as environment variables.

Secrets belong to an endpoint *name* in an account, like RunPod's template variables: they can
be set before the first deploy, survive redeploys and are kept when the endpoint is deleted
(`coldbrew secrets unset NAME --all` removes them). The store keeps them sealed; this module
keeps the opened values in memory so a worker launch costs no store call. A change applies to
workers started after it: running workers keep the environment they started with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from coldbrew.clock import Clock
from coldbrew.errors import InvalidRequest
from coldbrew.store.credentials import CredentialStore, SecretName

#: An environment variable name a shell can export.
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: Names the platform sets itself, or that change how the interpreter or the loader starts a
#: worker (a sandbox must not be loosened through a secret).
RESERVED_PREFIXES = ("COLDBREW_", "RUNPOD_", "LD_", "PYTHON")
RESERVED_NAMES = frozenset({"PATH", "HOME", "TMPDIR", "GCONV_PATH", "VIRTUAL_ENV"})
MAX_VALUE_BYTES = 32 << 10
MAX_SECRETS_PER_ENDPOINT = 100
#: Secrets may be set for names not deployed yet, so an account's total is bounded too.
MAX_SECRETS_PER_ACCOUNT = 1000


def validate_changes(body: Any) -> dict[str, str | None]:
    """A secrets patch (`{"NAME": "value", "OTHER": null}`: set NAME, remove OTHER), checked.

    Errors name the secret, never its value: they are logged and shown.
    """
    if not isinstance(body, dict) or not body:
        raise InvalidRequest(
            "the body must be a JSON object of secret names to values (null removes one)",
            hint='send e.g. {"HF_TOKEN": "…"} or {"HF_TOKEN": null}',
        )
    changes: dict[str, str | None] = {}
    for name, value in body.items():
        _check_name(name)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(
                f"the value of secret {name} must be a string (or null to remove it)",
                hint='quote it: {"NAME": "123"}',
            )
        if value is not None and ("\x00" in value or len(value.encode()) > MAX_VALUE_BYTES):
            raise InvalidRequest(
                f"the value of secret {name} is longer than {MAX_VALUE_BYTES} bytes or holds a "
                "NUL character",
                hint="environment variables cannot hold NUL; keep large files as uploads",
            )
        changes[name] = value
    return changes


def _check_name(name: str) -> None:
    if not SECRET_NAME.match(name):
        raise InvalidRequest(
            f"{name[:128]!r} is not a secret name",
            hint="use an environment variable name: letters, digits and '_', not starting with "
            "a digit, at most 128 characters",
        )
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        raise InvalidRequest(
            f"{name} is reserved for the platform",
            hint=f"choose another name; {', '.join(sorted(RESERVED_NAMES))} and names starting "
            f"with {', '.join(RESERVED_PREFIXES)} cannot be secrets",
        )


class EndpointSecrets:
    """Every endpoint's opened secrets in memory, loaded at start and updated on each change
    made through this gateway (one gateway owns a home; several gateways sharing a database
    would need a reload on change)."""

    def __init__(self, store: CredentialStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._values: dict[tuple[str, str], dict[str, str]] = {}

    async def load(self) -> None:
        """Read (and open) every endpoint's secrets; called once at start."""
        self._values = await self._store.all_secrets()

    def env(self, account: str, endpoint: str) -> dict[str, str]:
        """The variables a new worker of `account`'s `endpoint` gets: a copy, never shared."""
        return dict(self._values.get((account, endpoint), {}))

    async def change(
        self, account: str, endpoint: str, changes: Mapping[str, str | None]
    ) -> list[SecretName]:
        """Apply a validated patch; the endpoint's secret names after it."""
        current = self._values.get((account, endpoint), {})
        after = {**current, **changes}
        count = sum(1 for value in after.values() if value is not None)
        if count > MAX_SECRETS_PER_ENDPOINT:
            raise InvalidRequest(
                f"an endpoint has at most {MAX_SECRETS_PER_ENDPOINT} secrets; this would make "
                f"{count}",
                hint="remove some with `coldbrew secrets unset`",
            )
        elsewhere = sum(
            len(values)
            for (owner, name), values in self._values.items()
            if owner == account and name != endpoint
        )
        if count > len(current) and elsewhere + count > MAX_SECRETS_PER_ACCOUNT:
            raise InvalidRequest(
                f"an account has at most {MAX_SECRETS_PER_ACCOUNT} secrets over all its endpoints",
                hint="remove the secrets of endpoints you no longer use "
                "(`coldbrew secrets unset NAME --all`)",
            )
        await self._store.set_secrets(account, endpoint, changes, self._clock.time())
        # applied to the values as they are now: another change may have landed meanwhile
        merged = {**self._values.get((account, endpoint), {}), **changes}
        kept = {name: value for name, value in merged.items() if value is not None}
        if kept:
            self._values[(account, endpoint)] = kept
        else:
            self._values.pop((account, endpoint), None)
        return await self._store.secret_names(account, endpoint)

    async def names(self, account: str, endpoint: str) -> list[SecretName]:
        return await self._store.secret_names(account, endpoint)
