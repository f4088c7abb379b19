"""The platform's settings: one typed tree, read once at start-up.

Sources, highest first: explicit values (CLI flags), environment variables `COLDBREW_*`
(dicts as JSON: `COLDBREW_HARDWARE_SLOTS='{"cpu": 2, "L4": 1}'`),
then the TOML file at `$COLDBREW_HOME/config.toml` if present.
"""

from __future__ import annotations

import os
import re
import secrets
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from coldbrew.prices import DEFAULT_PRICES_PER_HOUR_USD, DEFAULT_RESERVED_DISCOUNT


def _default_slots() -> dict[str, int]:
    return {"cpu": os.cpu_count() or 1}


def _new_gateway_id() -> str:
    """A gateway id, new on every start: `g` and 8 hex digits."""
    return "g" + secrets.token_hex(4)


_GATEWAY_ID = re.compile(r"[a-z0-9]{1,32}")


def _home_from_env() -> Path:
    return Path(os.environ.get("COLDBREW_HOME", ".coldbrew"))


class Settings(BaseSettings):
    """Everything an operator can set. Invalid values fail at start-up with the fix."""

    model_config = SettingsConfigDict(env_prefix="COLDBREW_")

    home: Path = Field(default_factory=_home_from_env, description="state directory")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    hardware_slots: dict[str, int] = Field(default_factory=_default_slots)
    prices_per_hour_usd: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES_PER_HOUR_USD)
    )
    reserved_discount: dict[str, float] = Field(
        default_factory=dict,
        description="per hardware class, the discount of the reserved hourly rate on the "
        f"per-second price, a fraction in [0, 1); classes not listed: {DEFAULT_RESERVED_DISCOUNT}",
    )
    account_concurrency_cap: int = Field(default=100, ge=1)
    worker_blas_threads: int | None = Field(
        default=None,
        ge=1,
        description="BLAS threads in each worker (OPENBLAS_NUM_THREADS, MKL_NUM_THREADS); "
        "default: one fewer than the cores, at least 1, so the gateway keeps a core to itself "
        "(on 2 shared cores a worker with 2 BLAS threads computed 2.3-2.6x slower: docs/busy.md); "
        "OMP_NUM_THREADS, OPENBLAS_NUM_THREADS or MKL_NUM_THREADS set for the server win",
    )
    batch_pipeline_depth: int = Field(
        default=2,
        ge=1,
        le=8,
        description="batches a batched worker may hold at once (and jobs a one-at-a-time "
        "worker of short jobs): the one it computes and the next ones, already sent, so it "
        "starts the next the instant it finishes (1: one at a time, the worker idles while "
        "answers go out and the next job comes in)",
    )
    account_max_queued_jobs: int = Field(
        default=50_000,
        ge=1,
        description="queued jobs an account may have before new ones get 429 (an admin can "
        "set one account's own limit: PATCH /v1/accounts/{name})",
    )
    job_log_max_bytes: int = Field(
        default=1_000_000, ge=0, description="log output kept per job; the rest is cut"
    )
    job_log_lines_per_s: int = Field(
        default=1_000, ge=1, description="log lines per second a job may send; the rest dropped"
    )
    job_ttl_s: float = Field(default=86_400.0, gt=0)
    runsync_wait_ms: int = Field(default=90_000, ge=0)
    webhook_max_attempts: int = Field(default=6, ge=1)
    webhook_backoff_s: float = Field(default=1.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    setup_backoff_s: float = Field(default=1.0, gt=0, description="first wait after a failed setup")
    setup_backoff_max_s: float = Field(default=60.0, gt=0)
    budget_check_s: float = Field(default=5.0, gt=0, description="how often budgets are checked")
    canary_check_s: float = Field(
        default=2.0, gt=0, description="how often canaries are judged against their split's rule"
    )
    cache_url: str | None = Field(
        default=None, description="redis://… for a shared result cache (default: redis_url)"
    )
    database_url: str | None = Field(
        default=None,
        description="postgresql://user@host:5432/db to keep jobs, accounts and usage in "
        "PostgreSQL, shared by several gateways (needs coldbrew[cluster]); unset: SQLite in home",
    )
    cache_max_mb: int = Field(default=256, ge=0, description="result cache size in this process")
    state_url: str | None = Field(
        default=None,
        description="redis://… to keep `coldbrew.state` in Redis (several gateways); "
        "default: redis_url, else state.db in the home",
    )
    state_quota_mb: int = Field(default=100, ge=1, description="state bytes per endpoint")
    state_value_max_kb: int = Field(default=1024, ge=1, description="largest state value")
    fast_start: bool = Field(default=True, description="fork workers from per-version templates")
    fork_ready_timeout_s: float = Field(default=10.0, gt=0)
    template_load_wait_s: float = Field(
        default=120.0,
        ge=0,
        description="a deploy, and a cold start, wait this long for a loading template, so "
        "the first request forks instead of importing the model again (0: do not wait)",
    )
    worker_stop_grace_s: float = Field(default=5.0, ge=0)
    tick_interval_s: float = Field(default=0.1, gt=0)
    sandbox: Literal["strict", "standard", "off"] = Field(
        default="standard",
        description="isolation of tenant code: strict refuses to start without every layer, "
        "standard applies what the kernel allows, off runs tenant code as the server",
    )
    sandbox_scratch_mb: int = Field(default=1024, ge=16, description="per-process scratch space")
    sandbox_pids_max: int = Field(default=512, ge=16, description="processes per worker")
    sandbox_open_files: int = Field(default=4096, ge=64, description="open files per process")
    template_backoff_s: float = Field(default=1.0, gt=0, description="first wait to recreate")
    template_backoff_max_s: float = Field(default=60.0, gt=0)
    log_json: bool = False
    # what several gateways share (docs/shared.md); unset: everything stays in this process
    redis_url: str | None = Field(
        default=None,
        description="redis://… shared by every gateway: account caps, budget stops, job "
        "wake-ups and (unless cache_url says otherwise) the result cache",
    )
    redis_prefix: str = Field(
        default="coldbrew", min_length=1, description="prefix of every key coldbrew sets in Redis"
    )
    shared_dir: Path | None = Field(
        default=None,
        description="where deploy artifacts and uploaded files live, one directory every "
        "gateway mounts (default: the home)",
    )
    slot_lease_s: float = Field(
        default=15.0,
        gt=0,
        description="a running job's hold on its account's concurrency cap, renewed while it "
        "runs: a dead gateway's slots are free again this long after it stopped renewing",
    )
    webhook_claim_s: float = Field(
        default=30.0,
        gt=0,
        description="a gateway's claim on a webhook it delivers: another gateway retries it "
        "this long after the one that owed it stopped (a crash)",
    )
    webhook_poll_s: float = Field(
        default=1.0, gt=0, description="how often a gateway looks for webhooks due to it"
    )
    # several gateways on one database (docs/cluster.md)
    gateway_id: str = Field(
        default_factory=_new_gateway_id,
        description="this gateway's id (worker ids and leases carry it); default: new per start",
    )
    advertise_url: str | None = Field(
        default=None,
        description="where the other gateways reach this one (default http://host:port)",
    )
    lease_ttl_s: float = Field(
        default=10.0,
        ge=1.0,
        le=300.0,
        description="an endpoint lease's time to live: a dead gateway's endpoints move within it",
    )
    # keys and secrets (docs/architecture.md, "Encryption at rest")
    key_cache_ttl_s: float = Field(
        default=5.0, gt=0, le=3600, description="a revoked or expired key stops working within this"
    )
    secrets_key_path: Path | None = Field(
        default=None,
        description="the key sealing secrets at rest (default $COLDBREW_HOME/secrets.key)",
    )
    tls_cert: Path | None = Field(default=None, description="PEM certificate (chain): serve HTTPS")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    # Limits (docs/limits.md): each refusal names its setting. Sizes in MB (2**20 bytes).
    run_body_max_mb: float = Field(default=10, gt=0, description="POST /v2/{e}/run body")
    runsync_body_max_mb: float = Field(default=20, gt=0, description="POST /v2/{e}/runsync body")
    body_max_mb: float = Field(default=20, gt=0, description="any other request body")
    upload_max_mb: float = Field(default=100, gt=0, description="POST /v1/files upload")
    artifact_max_mb: float = Field(default=2048, gt=0, description="PUT /v1/artifacts tar")
    artifact_unpacked_max_mb: float = Field(default=8192, gt=0, description="its files, unpacked")
    artifact_max_ratio: float = Field(default=200, gt=0, description="unpacked / packed size")
    artifact_max_files: int = Field(default=20_000, ge=1)
    json_max_depth: int = Field(default=64, ge=2, le=200, description="nesting of JSON bodies")
    output_max_mb: float = Field(default=50, gt=0, description="one job's output")
    max_connections: int = Field(default=2048, ge=1, description="open HTTP connections")
    header_timeout_s: float = Field(default=10.0, gt=0, description="to send a request's head")
    webhook_allow_private: bool = Field(default=False, description="webhooks to private ranges")
    webhook_allow_loopback: bool | None = Field(
        default=None, description="webhooks to loopback; unset: only when `host` is loopback"
    )
    # Workers on a Ray cluster (docs/ray.md): set `ray_address` and the gateway places every
    # worker through Ray, forked by a node agent, its frames on the worker socket below.
    ray_address: str | None = Field(
        default=None, description="a Ray cluster's address (host:port): run workers there"
    )
    advertise_host: str | None = Field(
        default=None,
        description="the address workers on other machines dial (default: `host`, or this "
        "machine's Ray address when `host` is 0.0.0.0)",
    )
    worker_port: int = Field(default=0, ge=0, le=65535, description="worker socket; 0: any")
    ray_gpus_per_worker: dict[str, int] = Field(
        default_factory=dict, description="GPUs one worker of a class holds (default: 1, cpu 0)"
    )
    ray_call_timeout_s: float = Field(
        default=10.0, gt=0, description="bound on each call to a node agent (a dead one hangs)"
    )
    ray_placement_timeout_s: float = Field(
        default=300.0, gt=0, description="how long a worker waits for Ray (or its autoscaler)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_home_from_env() / "config.toml")
        return (init_settings, env_settings, toml)

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        """Relative homes are taken from the directory coldbrew started in, once."""
        return value.expanduser().resolve()

    @field_validator("gateway_id")
    @classmethod
    def _gateway_id_plain(cls, value: str) -> str:
        if not _GATEWAY_ID.fullmatch(value):
            raise ValueError(
                f"gateway_id {value!r} must be 1 to 32 lowercase letters and digits (worker ids "
                "embed it); e.g. gw1, or leave it unset for a new random one per start"
            )
        return value

    @field_validator("state_url")
    @classmethod
    def _state_on_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"state_url must be a redis:// URL (or unset for state.db), not {value!r}"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            scheme = value.split("://", 1)[0] if "://" in value else value[:20]
            raise ValueError(
                f"database_url must be a PostgreSQL URL, not {scheme!r}: give "
                "postgresql://USER[:PASSWORD]@HOST:5432/DATABASE, or leave it unset for SQLite"
            )
        return value

    @field_validator("hardware_slots")
    @classmethod
    def _slots_positive(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if v < 0}
        if bad:
            raise ValueError(f"slot counts must be >= 0, got {bad}; e.g. {{'cpu': 2, 'L4': 1}}")
        return value

    @field_validator("reserved_discount")
    @classmethod
    def _discount_fraction(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0 <= v < 1}
        if bad:
            raise ValueError(
                f"reserved discounts are fractions in [0, 1), got {bad}; e.g. {{'L4': 0.3}} "
                "for a reserved rate 30% under the per-second price"
            )
        return value

    @model_validator(mode="after")
    def _priced(self) -> Settings:
        unpriced = sorted(set(self.hardware_slots) - set(self.prices_per_hour_usd))
        if unpriced:
            raise ValueError(
                f"hardware classes {unpriced} have slots but no price; add them to "
                "prices_per_hour_usd (COLDBREW_PRICES_PER_HOUR_USD)"
            )
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "give both tls_cert and tls_key (--tls-cert and --tls-key), or neither"
            )
        for name, path in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key)):
            if path is not None and not os.access(path, os.R_OK):
                why = "does not exist" if not path.exists() else "is not readable by this user"
                raise ValueError(f"{name} {path} {why}; give the path of a readable PEM file")
        if self.tls_cert is not None and self.tls_key is not None:
            try:  # the check uvicorn makes, here, so a bad pair is one line and not a traceback
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.tls_cert, self.tls_key)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(
                    f"tls_cert {self.tls_cert} and tls_key {self.tls_key} are not a PEM "
                    f"certificate and its private key ({exc}); give the pair your certificate "
                    "authority issued, or make one with openssl req -x509"
                ) from None
        return self

    @field_validator("shared_dir")
    @classmethod
    def _absolute_shared(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @property
    def shared_cache_url(self) -> str | None:
        """Where the result cache lives: `cache_url`, else the shared Redis, else in-process."""
        return self.cache_url or self.redis_url

    @property
    def shared_state_url(self) -> str | None:
        """Where `coldbrew.state` lives: `state_url`, else the shared Redis, else state.db."""
        return self.state_url or self.redis_url

    @property
    def shared_root(self) -> Path:
        """Artifacts and uploaded files: `shared_dir` when several gateways share one, else
        the home."""
        return self.shared_dir or self.home

    @property
    def files_dir(self) -> Path:
        """Uploaded files (`POST /v1/files`, Replicate's file API)."""
        return self.shared_root / "files"

    @property
    def secrets_key_file(self) -> Path:
        """Where the key that seals secrets at rest lives."""
        return (self.secrets_key_path or self.home / "secrets.key").expanduser().resolve()

    @property
    def gateway_url(self) -> str:
        """Where the other gateways forward this gateway's requests."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        scheme = "https" if self.tls_cert is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.home / "coldbrew.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.shared_root / "artifacts"

    def artifact_dir(self, account: str, sha: str) -> Path:
        """Where an account's unpacked upload with content hash `sha` lives."""
        return self.artifacts_dir / account / sha

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def admin_key_path(self) -> Path:
        return self.home / "admin.key"

    def price_per_second_usd(self, hardware: str) -> float:
        """The per-second price of one slot of `hardware` (0 for an unpriced class)."""
        return self.prices_per_hour_usd.get(hardware, 0.0) / 3600.0

    def reserved_discount_for(self, hardware: str) -> float:
        """The reserved rate's discount for `hardware` (the default when not configured)."""
        return self.reserved_discount.get(hardware, DEFAULT_RESERVED_DISCOUNT)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once; `overrides` are CLI flags and win over everything else."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
