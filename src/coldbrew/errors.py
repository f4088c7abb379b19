"""One tree of errors; the gateway maps each to a status code and a JSON body.

ColdbrewError
├── ClientError (4xx: the caller can fix it)
│   ├── InvalidInput          400  the job input does not match the endpoint's schema
│   ├── InvalidRequest        400  a malformed body, query or state transition
│   ├── SpecError             400  a deployment spec or model directory is invalid
│   ├── Unauthorized          401  no key or an unknown key
│   ├── Forbidden             403  the key lacks the right (admin only)
│   ├── NotFound              404  no such endpoint, job or artifact (for this account)
│   ├── Conflict              409  the request clashes with current state
│   ├── PayloadTooLarge       413  a body, upload, artifact or output passes its limit
│   ├── BudgetExceeded        402  a hard-stop budget of the account or endpoint is spent
│   └── QueueFull             429  the account's queue is at its limit (with Retry-After)
└── ServerError (5xx: the platform or the model failed)
    ├── WorkerCrashed         500  the worker process died while running the job
    ├── SetupFailed           500  the model's setup() raised
    ├── JobTimedOut           504  the job ran past its execution timeout
    ├── NoCapacity            503  no hardware slot can be freed for the job
    ├── SecretUnreadable      500  a secret sealed at rest does not open with this key
    └── StorageUnavailable    503  the database cannot take writes (disk full, read-only, locked)
"""

from __future__ import annotations

from typing import Any


class ColdbrewError(Exception):
    """Root of every error coldbrew raises on purpose."""

    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, hint: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields

    def to_json(self) -> dict[str, Any]:
        """The body every error response carries: `{"error": {type, message, hint, ...}}`."""
        body: dict[str, Any] = {"type": self.error_type, "message": self.message}
        body["hint"] = self.hint
        body.update(self.fields)
        return {"error": body}

    def headers(self) -> dict[str, str]:
        """HTTP headers the error's response carries (Retry-After on a 429)."""
        return {}


class ClientError(ColdbrewError):
    """The request is wrong; retrying it unchanged will fail again."""

    status_code = 400
    error_type = "bad_request"


class InvalidInput(ClientError):
    error_type = "invalid_input"


class InvalidRequest(ClientError):
    error_type = "invalid_request"


class SpecError(ClientError):
    error_type = "invalid_spec"


class Unauthorized(ClientError):
    status_code = 401
    error_type = "unauthorized"


class Forbidden(ClientError):
    status_code = 403
    error_type = "forbidden"


class NotFound(ClientError):
    status_code = 404
    error_type = "not_found"


class Conflict(ClientError):
    status_code = 409
    error_type = "conflict"


class PayloadTooLarge(ClientError):
    status_code = 413
    error_type = "payload_too_large"


class BudgetExceeded(ClientError):
    status_code = 402
    error_type = "budget_exceeded"


class SandboxUnavailable(ColdbrewError):
    """`--sandbox strict` on a machine that cannot give every protection."""

    error_type = "sandbox_unavailable"


class ServerError(ColdbrewError):
    """The platform or the model failed; the job may succeed on retry."""


class WorkerCrashed(ServerError):
    error_type = "worker_crashed"


class SetupFailed(ServerError):
    error_type = "setup_failed"


class JobTimedOut(ServerError):
    status_code = 504
    error_type = "timed_out"


class NoCapacity(ServerError):
    status_code = 503
    error_type = "no_capacity"


class SecretUnreadable(ServerError):
    """A value sealed at rest does not open with this server's key (the key file was replaced or
    lost); the message names what and where, never any part of the value."""

    error_type = "secret_unreadable"


class QueueFull(ClientError):
    """The account has as many jobs queued as it may; the caller should retry later."""

    status_code = 429
    error_type = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int, hint: str = "", **fields: Any):
        super().__init__(message, hint=hint, retryAfterS=retry_after_s, **fields)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class StorageUnavailable(ServerError):
    """The database cannot take writes now; nothing accepted is lost, new work waits."""

    status_code = 503
    error_type = "storage_unavailable"
    retry_after_s = 5

    @classmethod
    def because(cls, reason: str) -> StorageUnavailable:
        return cls(
            f"the job store cannot take writes: {reason}",
            hint="retry after the Retry-After seconds; an operator must free the disk, make the "
            "database writable or end the lock (the node recovers by itself)",
        )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}
