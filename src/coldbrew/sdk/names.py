"""Names and classes that user code and the server share, without importing pydantic."""

import re

#: Endpoint and account names: 1-63 lower-case letters, digits, '-' or '_'.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")

#: Hardware classes coldbrew knows how to price and schedule out of the box.
KNOWN_HARDWARE = ("cpu", "RTX4090", "L4", "L40S", "A100", "H100")

#: Set in worker and template processes: the deploy already validated the spec there, and not
#: importing pydantic saves ~190 ms of every spawned worker's start.
SKIP_VALIDATION_ENV = "COLDBREW_SKIP_SPEC_VALIDATION"
