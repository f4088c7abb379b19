"""One tree of errors; the gateway maps each to a status code and a JSON body.

ColdbrewError                  500  internal_error
├── ClientError (4xx: the caller can fix it)
│   ├── InvalidInput          400  invalid_input        the job input does not match the schema
│   ├── InvalidRequest        400  invalid_request      a malformed body, query or transition
│   ├── SpecError             400  invalid_spec         a deployment spec or model directory
│   ├── InvalidPipeline       400  invalid_pipeline     a pipeline definition (unknown endpoint, …)
│   ├── Unauthorized          401  unauthorized         no key or an unknown key
│   ├── Forbidden             403  forbidden            the key lacks the right (admin only)
│   ├── NotFound              404  not_found            no such endpoint, job or artifact
│   ├── Conflict              409  conflict             the request clashes with current state
│   ├── PayloadTooLarge       413  payload_too_large    a body, upload or output past its limit
│   ├── BudgetExceeded        402  budget_exceeded      a hard-stop budget is spent
│   └── QueueFull             429  queue_full           the account's queue is at its limit
├── SandboxUnavailable        500  sandbox_unavailable  `--sandbox strict` lacks a protection
└── ServerError (5xx: the platform or the model failed)
    ├── WorkerCrashed         500  worker_crashed       the worker died while running the job
    ├── SetupFailed           500  setup_failed         the model's imports or setup() raised
    ├── JobTimedOut           504  timed_out            the job ran past its execution timeout
    ├── HandlerError          500  handler_error        a RunPod handler answered with an error
    ├── NotStorable           500  not_storable         the job's result cannot be stored
    ├── StageFailed           500  stage_failed         a pipeline's stage job did not complete
    ├── SecretUnreadable      500  secret_unreadable    a sealed secret does not open
    ├── StorageUnavailable    503  storage_unavailable  the database cannot take writes
    └── ClusterUnavailable    503  cluster_unavailable  a Ray call (a node's agent) timed out

The third column is `error_type`: one spelling for one error, wherever it appears. An HTTP error
body is `{"error": {"type": error_type, "message", "hint", ...}}`; a job that fails carries an
error record (`errorDetail` on the wire, `{"type", "message", "hint", "traceback", ...}`) built by
`job_error` or, in a worker, from the exception. A record's `type` is one of these spellings when
coldbrew made the error, or the exception's class name (`ValueError`) when the model's own code
raised it: the record then says whose fault it was. Records cross processes, never exceptions.
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


class InvalidPipeline(ClientError):
    """A pipeline definition that cannot run: an unknown endpoint, a step that reads a later
    step's output (a cycle), a field path that does not parse. `where` names the step."""

    error_type = "invalid_pipeline"


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
    """The worker process died (exit, signal, memory limit) while it held the job."""

    error_type = "worker_crashed"


class SetupFailed(ServerError):
    """The model's imports or `setup()` raised, so no worker of the version came up."""

    error_type = "setup_failed"


class JobTimedOut(ServerError):
    """The job ran past its execution timeout; its worker was replaced."""

    status_code = 504
    error_type = "timed_out"


class HandlerError(ServerError):
    """A RunPod handler answered a job with an error of its own (`{"error": "..."}`), not an
    exception: RunPod's SDK sends no class name for it."""

    error_type = "handler_error"


class NotStorable(ServerError):
    """The job's result cannot be kept (nested past the store's depth, not JSON): that job fails,
    nothing else does (`control/poison.py`)."""

    error_type = "not_storable"


class StageFailed(ServerError):
    """A pipeline run stopped because one stage's job failed, timed out or was cancelled; the
    record names the stage, its endpoint and job, and `/retry` resumes from that stage."""

    error_type = "stage_failed"


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


def job_error(cls: type[ColdbrewError], message: str, **fields: Any) -> dict[str, Any]:
    """The error record a job carries (`errorDetail`) for an error coldbrew itself made.

    `fields` are `hint`, `traceback` and anything the error adds; the type is `cls.error_type`,
    so a job's error and an HTTP error of the same kind are spelled alike.
    """
    return {"type": cls.error_type, "message": message, **fields}


class ClusterUnavailable(ServerError):
    """The Ray cluster, or the agent of one of its nodes, did not answer in time (a lost node):
    the worker is not started, or counted as gone."""

    status_code = 503
    error_type = "cluster_unavailable"
