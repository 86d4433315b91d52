"""The one typed settings object; the only reader of the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.logs import LogFormat
from shared.redis_connection import is_sentinel, parse_sentinel_url

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Service configuration, read from `LSTMGEN_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LSTMGEN_", frozen=True, populate_by_name=True)

    # Where things are.
    redis_url: str = "redis://127.0.0.1:6379/0"  # broker and job store
    # With a sentinel://host:port;sentinel://... URL: the master's name the sentinels monitor.
    redis_sentinel_master: str = ""
    # A 201 waits (WAIT) until this many replicas hold the job; 0: the primary alone.
    redis_min_replicas: int = Field(0, ge=0)
    redis_replica_timeout_s: float = Field(1.0, gt=0)  # longest such wait before a 503
    host: str = "127.0.0.1"  # API bind address; 0.0.0.0 needs API keys
    port: int = Field(8000, ge=1, le=65535)  # API port
    public_url: str = ""  # base of job URLs; empty means http://{host}:{port}
    model_dir: Path = Path("models")  # folder of named models
    model_cache_dir: Path = Path("var/model-cache")  # a worker's copies of uploaded models
    data_dir: Path = Path("var")  # where `make run` keeps its redis-server's append-only file
    default_model: str = "default"  # model used when a request names none
    environment: Literal["development", "production"] = "development"

    # Who may call.
    api_keys: CommaList = []  # "key" or "name:key" entries; empty: no auth, localhost only
    api_key: str = ""  # the key the client and CLI send (server side: api_keys)
    cors_origins: CommaList = []  # origins whose pages may call the API; `*`: any (no cookies)

    # The Node server's `GET /?inputText=...` (and its clients' model names).
    compat_model: str = ""  # model when a request names none; empty: default_model
    compat_length: int = Field(100, ge=1)  # outputLength when a request sends none
    compat_temperature: float = Field(0.75, ge=0)  # temperature when a request sends none
    model_aliases: CommaList = []  # "old=new" pairs: a job naming `old` runs model `new`

    # Limits on one request.
    max_length: int = Field(100_000, ge=1)  # characters generated per sample
    max_seed_chars: int = Field(10_000, ge=1)
    max_n: int = Field(16, ge=1)  # samples per job
    max_body_bytes: int = Field(65_536, ge=1024)
    max_queue_depth: int = Field(10_000, ge=1)  # queued jobs before 429 (all keys together)
    # What each API key may do (0: no limit); `key_limits` overrides them per key name, as JSON:
    # {"alice": {"max_queued": 50, "max_running_samples": 16, "submit_rate": 2, "weight": 2}}.
    key_max_queued: int = Field(1_000, ge=0)  # jobs waiting to start
    key_max_running_samples: int = Field(0, ge=0)  # samples running at once
    key_submit_rate: float = Field(20.0, ge=0)  # submissions per second, sustained
    key_submit_burst: int = Field(100, ge=1)  # submissions in a burst above the rate
    key_limits: dict[str, dict[str, float]] = {}
    max_wait_s: float = Field(60.0, gt=0)  # longest `Prefer: wait=N`
    predict_timeout_s: float = Field(5.0, gt=0)  # how long a predict waits for a worker
    retry_after_s: int = Field(5, ge=1)  # Retry-After sent with 429 and 503

    # Uploaded models (`POST /v1/models`).
    max_model_bytes: int = Field(64 * 2**20, ge=1024)  # an upload, and its files unpacked
    max_model_files: int = Field(64, ge=1)  # files in an uploaded archive
    max_model_ratio: float = Field(100.0, ge=1)  # unpacked / packed size of one archive member
    max_model_vocab: int = Field(1024, ge=1)  # characters in an uploaded model's vocabulary
    model_check_timeout_s: float = Field(60.0, gt=0)  # how long an upload waits for its check

    # Job lifecycle.
    job_time_limit_s: float = Field(600.0, gt=0)  # running longer ends `timed_out`
    queue_ttl_s: float = Field(3600.0, gt=0)  # queued longer ends `expired`
    retention_s: int = Field(86_400, ge=1)  # how long finished jobs stay readable
    max_attempts: int = Field(3, ge=1)  # deliveries before a job that kills workers fails
    visibility_timeout_s: int = Field(300, ge=1)  # a stopped worker's jobs come back after this
    progress_interval_s: float = Field(0.1, gt=0, le=0.2)  # partial output flush period

    # Training jobs (`POST /v1/trainings`), run by `--training` workers.
    training_time_limit_s: float = Field(3600.0, gt=0)  # training longer ends `timed_out`
    max_training_chars: int = Field(10 * 2**20, ge=1)  # characters of one training corpus
    max_training_epochs: int = Field(100, ge=1)  # epochs one training may ask for
    training_progress_interval_s: float = Field(0.5, gt=0)  # progress writes, at most this often

    # API server (gunicorn).
    api_processes: int = Field(2, ge=1)  # gunicorn worker processes
    api_threads: int = Field(32, ge=1)  # threads per process (each SSE stream holds one)

    # Workers.
    workers: int = Field(1, ge=1)  # generation worker processes `make run` starts
    worker_models: CommaList = []  # models this worker serves; empty: all in model_dir
    worker_slots: int = Field(64, ge=1)  # jobs one worker process runs at once
    worker_heartbeat_s: float = Field(2.0, gt=0)
    worker_uploads: bool = True  # also serve uploaded models (and check uploads)

    # Webhooks.
    webhook_secrets: CommaList = Field(
        [],
        validation_alias=AliasChoices("LSTMGEN_WEBHOOK_SECRET", "LSTMGEN_WEBHOOK_SECRETS"),
    )  # whsec_... ; several (comma-separated) while rotating
    webhook_allow_private: bool = False  # allow loopback/private targets (development only)
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_retry_schedule: CommaList = [
        "5",
        "30",
        "120",
        "600",
        "1800",
        "3600",
        "7200",
        "14400",
        "28800",
        "43200",
    ]  # seconds before each retry; sums to more than a day

    log_format: LogFormat = "json"  # console: short lines for a terminal (`make run`)

    @field_validator(
        "api_keys",
        "cors_origins",
        "model_aliases",
        "worker_models",
        "webhook_secrets",
        "webhook_retry_schedule",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: list[str]) -> list[str]:
        for part in value:
            if float(part) < 0:
                raise ValueError("retry delays must be >= 0 seconds")
        return value

    @model_validator(mode="after")
    def _check_sentinel(self) -> Settings:
        if is_sentinel(self.redis_url):
            parse_sentinel_url(self.redis_url)  # a ValueError names the bad entry
            if not self.redis_sentinel_master:
                raise ValueError(
                    "a sentinel:// LSTMGEN_REDIS_URL needs LSTMGEN_REDIS_SENTINEL_MASTER"
                )
        return self

    @field_validator("model_aliases")
    @classmethod
    def _check_aliases(cls, value: list[str]) -> list[str]:
        for pair in value:
            old, sep, new = pair.partition("=")
            if not (sep and old.strip() and new.strip()):
                raise ValueError(f"model aliases are old=new pairs, not {pair!r}")
        return value

    @field_validator("key_limits")
    @classmethod
    def _check_key_limits(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        known = {"max_queued", "max_running_samples", "submit_rate", "submit_burst", "weight"}
        for name, limits in value.items():
            unknown = set(limits) - known
            if unknown:
                raise ValueError(f"key {name!r}: unknown limits {sorted(unknown)}")
            if any(amount < 0 for amount in limits.values()) or limits.get("weight", 1) <= 0:
                raise ValueError(f"key {name!r}: limits are >= 0 and weights > 0")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and (
                not origin.startswith(("http://", "https://")) or origin.count("/") != 2
            ):
                raise ValueError(f"CORS origins are scheme://host[:port] or *, not {origin!r}")
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _check_secrets(cls, value: list[str]) -> list[str]:
        for secret in value:
            if not secret.startswith("whsec_"):
                raise ValueError("webhook secrets must start with 'whsec_'")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.visibility_timeout_s < 3 * self.worker_heartbeat_s:
            # Running jobs' deliveries are renewed at every heartbeat.
            raise ValueError("visibility_timeout_s must be at least 3 x worker_heartbeat_s")
        if self.environment == "production" and not self.webhook_secrets:
            raise ValueError("production needs LSTMGEN_WEBHOOK_SECRETS")
        if self.host not in ("127.0.0.1", "localhost", "::1") and not self.api_keys:
            raise ValueError("listening beyond localhost needs LSTMGEN_API_KEYS")
        return self

    @property
    def base_url(self) -> str:
        """Return the URL clients use to reach the API."""
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    @property
    def aliases(self) -> dict[str, str]:
        """Return the model aliases as a mapping from old name to model name."""
        pairs = (pair.partition("=") for pair in self.model_aliases)
        return {old.strip(): new.strip() for old, _, new in pairs}

    @property
    def retry_delays(self) -> list[float]:
        """Return the webhook retry schedule in seconds."""
        return [float(part) for part in self.webhook_retry_schedule]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once."""
    return Settings()
