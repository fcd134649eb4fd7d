"""Configuration every service shares, read from `KAMI_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kami_events.topics import consumer_group_of


class ServiceSettings(BaseSettings):
    """A service's connection settings. Each service subclasses this with its own.

    `KAMI_KAFKA_BOOTSTRAP` and `KAMI_MONGODB_URI` name the servers; each
    service keeps its data in its own database (`kami_<service>` unless
    `KAMI_MONGODB_DATABASE` says otherwise).
    """

    model_config = SettingsConfigDict(env_prefix="KAMI_", extra="ignore")

    service_name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9-]*$")
    kafka_bootstrap: str = "127.0.0.1:19092"
    mongodb_uri: str = "mongodb://127.0.0.1:27018/"
    mongodb_database: str | None = None

    # Where the service's HTTP API listens (`python -m kami_<service>`).
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)

    # Outbox relay: it wakes at once for its own process's commits, and polls
    # this often for commits of other processes (replicas, CLI tools).
    outbox_poll_interval_seconds: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=200, ge=1, le=10_000)

    # The event store trusts a stream it wrote or read to its end this many
    # seconds ago without asking the database again (kami_events.store): only
    # another process's commit can be missed meanwhile, and a decision on the
    # older state loses its append race. 0: always ask.
    event_cache_trust_seconds: float = Field(default=2.0, ge=0, le=60)

    # Read-model documents a hot path reads again and again (an offer's terms,
    # a buyer's profile) are read once per this many seconds (kami_events.trusted):
    # this process's own writes count at once, another process's within this long.
    # 0: always read.
    read_model_trust_seconds: float = Field(default=1.0, ge=0, le=30)

    # Consumer: bounded retries with exponential backoff, then dead-letter.
    consumer_max_attempts: int = Field(default=5, ge=1, le=100)
    # Messages of different keys handled at once within a fetched batch (1:
    # one at a time), and the most messages one batch takes.
    consumer_concurrency: int = Field(default=32, ge=1, le=1_000)
    consumer_max_batch: int = Field(default=200, ge=1, le=10_000)
    consumer_retry_base_delay_seconds: float = Field(default=0.2, ge=0)
    consumer_retry_max_delay_seconds: float = Field(default=5.0, ge=0)
    # Another consumer group than `kami-<service>` (`KAMI_CONSUMER_GROUP_OVERRIDE`):
    # a fresh group re-reads every topic from the start (a replay); the inbox,
    # keyed by service, still makes every handler run once.
    consumer_group_override: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$"
    )

    # Logs: the level of the process's JSON log lines.
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")

    # Shutdown on SIGTERM: in-flight HTTP requests get `http_shutdown_grace_seconds`,
    # in-flight messages `consumer_shutdown_grace_seconds`, periodic jobs
    # `jobs_shutdown_grace_seconds`, and the final outbox flush
    # `outbox_flush_seconds` (the pod's terminationGracePeriodSeconds must cover the sum).
    http_shutdown_grace_seconds: float = Field(default=10.0, gt=0)
    consumer_shutdown_grace_seconds: float = Field(default=15.0, gt=0)
    jobs_shutdown_grace_seconds: float = Field(default=5.0, gt=0)
    outbox_flush_seconds: float = Field(default=10.0, gt=0)

    # How often the consumer lag gauge is measured against the broker.
    consumer_lag_refresh_seconds: float = Field(default=15.0, gt=0)

    @property
    def database_name(self) -> str:
        return self.mongodb_database or f"kami_{self.service_name.replace('-', '_')}"

    @property
    def consumer_group(self) -> str:
        return self.consumer_group_override or consumer_group_of(self.service_name)
