"""The deployment spec a user declares with `@app.model(...)`, validated with the fix in errors.

Below every layer: user code declares it (`sdk/`), the server reads it (`control/`, `api/`), and
the runtime's adapters build it from other platforms' settings; it imports none of them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coldbrew.cron import CronWindow
from coldbrew.errors import SpecError
from coldbrew.names import KNOWN_HARDWARE, NAME_PATTERN, Batch

__all__ = [
    "KNOWN_HARDWARE",
    "NAME_PATTERN",
    "DeploymentSpec",
    "Scaler",
    "WarmWindow",
    "parse_spec",
]


class Scaler(StrEnum):
    """How the autoscaler turns load into a worker count."""

    REQUEST_COUNT = "request_count"  # ceil((queued + running) / concurrency) workers
    QUEUE_DELAY = "queue_delay"  # add a worker when the oldest queued job waited > target


class WarmWindow(BaseModel):
    """A cron-style window with its own floor of warm workers, e.g. weekdays 08:00-17:59."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str = Field(description="minutes the window is open, e.g. '* 8-17 * * mon-fri'")
    min_workers: int = Field(default=1, ge=0, le=1000)
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _valid(self) -> WarmWindow:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        CronWindow.parse(self.cron)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {self.timezone!r}; use an IANA name like 'Europe/Paris'"
            ) from None
        return self


class DeploymentSpec(BaseModel):
    """How one endpoint runs: its hardware, scaling bounds, timeouts and retries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, description="endpoint name; default: class name")
    hardware: str = "cpu"
    min_workers: int = Field(default=0, ge=0, le=1000)
    max_workers: int = Field(default=4, ge=1, le=1000)
    reserved_workers: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="workers always up on reserved slots, billed at the hardware's discounted "
        "reserved rate whether busy or idle; traffic beyond them bursts onto per-second workers",
    )
    buffer_workers: int = Field(default=0, ge=0, le=100)
    idle_timeout_s: float = Field(default=300.0, ge=0)
    concurrency: int = Field(default=1, ge=1, le=1024)
    timeout_s: float = Field(default=600.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    snapshot: bool = Field(
        default=True,
        description="CPU models: fork workers from a process that already ran setup(); turn off "
        "when setup() opens sockets, threads or files that must not be shared",
    )
    preload: tuple[str, ...] = Field(
        default=(), description="modules to import before forking workers (besides the model's)"
    )
    memory_mb: int = Field(
        default=2048,
        ge=64,
        le=1_048_576,
        description="each worker's memory limit; a worker past it is killed and its job fails "
        "with a clear error",
    )
    network: bool = Field(
        default=False,
        description="let the model's code reach the network (egress); off by default: "
        "workers see only their own job channel",
    )
    batch: Batch | None = Field(
        default=None, description="coldbrew.Batch(max_size, max_wait_ms): lists in, lists out"
    )
    cache_ttl_s: float = Field(
        default=0.0, ge=0, description="keep outputs this long, keyed by the exact input; 0: off"
    )
    warm_schedule: tuple[WarmWindow, ...] = Field(
        default=(), description="windows with their own min_workers (times in their timezone)"
    )
    prewarm: Literal["off", "auto"] = Field(
        default="off", description="auto: learn traffic by time of day, warm up before bursts"
    )
    prewarm_lead_s: float = Field(default=120.0, gt=0, description="how early prewarm starts")
    scaler: Scaler = Scaler.REQUEST_COUNT
    scaler_target_s: float = Field(
        default=2.0, gt=0, description="queue_delay scaler: oldest queued wait that adds a worker"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSpec:
        if self.min_workers > self.max_workers:
            raise ValueError(
                f"min_workers ({self.min_workers}) is above max_workers ({self.max_workers}); "
                "raise max_workers or lower min_workers"
            )
        if self.reserved_workers > self.max_workers:
            raise ValueError(
                f"reserved_workers ({self.reserved_workers}) is above max_workers "
                f"({self.max_workers}); raise max_workers or reserve fewer workers"
            )
        if self.name is not None and not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"name {self.name!r} is not a valid endpoint name; use 1-63 lower-case letters, "
                "digits, '-' or '_', starting with a letter or digit"
            )
        if self.batch is not None and not (1 <= self.batch.max_size <= 1024):
            raise ValueError(
                f"batch.max_size must be between 1 and 1024, got {self.batch.max_size}"
            )
        if self.batch is not None and self.batch.max_wait_ms < 0:
            raise ValueError("batch.max_wait_ms must be >= 0")
        if self.hardware not in KNOWN_HARDWARE:
            raise ValueError(
                f"unknown hardware {self.hardware!r}; choose one of {', '.join(KNOWN_HARDWARE)}"
            )
        return self


def parse_spec(fields: dict[str, Any], *, where: str) -> DeploymentSpec:
    """Validate spec fields, turning pydantic's errors into one `SpecError` that says the fix."""
    try:
        return DeploymentSpec(**fields)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "spec"
            if err["type"] == "extra_forbidden":
                valid = ", ".join(sorted(DeploymentSpec.model_fields))
                problems.append(f"unknown field {loc!r}; valid fields are: {valid}")
            else:
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"{loc}: {msg}" if loc != "spec" else msg)
        raise SpecError(
            f"invalid spec for {where}: " + "; ".join(problems),
            hint="fix the arguments of @app.model(...) and deploy again",
        ) from None
