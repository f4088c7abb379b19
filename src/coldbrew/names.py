"""Names and classes that user code and the server share, without importing pydantic."""

import re
from dataclasses import dataclass

#: Endpoint and account names: 1-63 lower-case letters, digits, '-' or '_'.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")

#: Hardware classes coldbrew knows how to price and schedule out of the box.
KNOWN_HARDWARE = ("cpu", "RTX4090", "L4", "L40S", "A100", "H100", "H200")

#: Set in worker and template processes: the deploy already validated the spec there, and not
#: importing pydantic saves ~190 ms of every spawned worker's start.
SKIP_VALIDATION_ENV = "COLDBREW_SKIP_SPEC_VALIDATION"


@dataclass(frozen=True)
class Batch:
    """Dynamic batching: `predict` gets each input as a list, one element per job.

    Jobs that are queued when a worker frees up go out together, up to `max_size`; when the
    last batch was full (the endpoint is busy), the gateway waits up to `max_wait_ms` for more.
    A lone request on a quiet endpoint never waits.
    """

    max_size: int = 32
    max_wait_ms: float = 5.0
