"""One settings object, read from the environment, with working local defaults.

One module on purpose: the settings and the rules that refuse a bad combination of them (secrets,
TLS outside DEV_MODE, limits) are read together by whoever deploys the service.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from app.domain.frequency import Cap, parse_caps
from app.domain.pacing import Pace, parse_warmup

REPO_ROOT = Path(__file__).resolve().parent.parent

# Defaults that make a development machine work out of the box, refused outside DEV_MODE.
PLACEHOLDER_SECRETS = {"secret_key": "dev-secret-change-me", "auth_api_token": "dev-auth-token"}
MIN_SECRET_KEY_LENGTH = 32
# Settings that hold a secret (a URL's password included): each one can also be handed over as
# a file, NAME_FILE=/run/secrets/name (the Docker and Kubernetes secrets convention).
SECRET_SETTINGS = (
    "database_url",
    "celery_broker_url",
    "auth_api_token",
    "sendgrid_api_key",
    "smtp_url",
    "secret_key",
    "kafka_sasl_password",
    "kafka_ssl_key_password",
    "schema_registry_basic_auth",
)


class SecretFiles(PydanticBaseSettingsSource):
    """Secret settings read from the files that NAME_FILE variables point at."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"{field_name.upper()}_FILE")
        if not path:
            return None, field_name, False
        if field_name.upper() in os.environ:
            raise ValueError(f"set {field_name.upper()} or {field_name.upper()}_FILE, not both")
        try:
            # One trailing newline is the file's, not the secret's (echo, editors).
            return Path(path).read_text(encoding="utf-8").removesuffix("\n"), field_name, False
        except OSError as exc:
            raise ValueError(f"{field_name.upper()}_FILE: cannot read {path}: {exc}") from exc

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in SECRET_SETTINGS:
            value, _key, _complex = self.get_field_value(self.settings_cls.model_fields[name], name)
            if value is not None:
                values[name] = value
        return values


class Settings(BaseSettings):
    """Every knob of the service; each field is an environment variable of the same name."""

    # hide_input_in_errors: a refused value (a too-short SECRET_KEY, a URL with its password)
    # is never printed in the error that names it.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
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
        # A NAME_FILE variable counts as NAME itself: after the arguments, before .env.
        secret_files = SecretFiles(settings_cls)
        return init_settings, env_settings, secret_files, dotenv_settings, file_secret_settings

    # Infrastructure (defaults match `make services`).
    # URLs that may hold a password stay plain strings (every client takes them so) but are left
    # out of the settings' repr, as SecretStr values are masked in it.
    database_url: str = Field(
        default="postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify", repr=False
    )
    # Connections kept open per process. At least the busiest process's thread count (the e-mail
    # worker runs 16): a smaller pool closes and reopens connections on every busy moment.
    database_pool_size: int = Field(default=20, ge=1)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # How every Kafka client of ours connects (app/kafka/connection.py builds the configs): TLS
    # with a CA file (and a client certificate for mutual TLS), SASL with a mechanism and user.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_file: Path | None = None
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    kafka_ssl_key_password: SecretStr = SecretStr("")
    # The Schema Registry (Confluent REST API) that `notify schemas register` publishes our JSON
    # Schemas to, for producers that frame their events with a schema id. The local stack's is
    # Apicurio Registry's Confluent-compatible API; Confluent Cloud takes "API_KEY:API_SECRET"
    # as basic auth, and a private registry's CA goes in SCHEMA_REGISTRY_CA_FILE.
    schema_registry_url: str = "http://127.0.0.1:8085/apis/ccompat/v7"
    schema_registry_basic_auth: SecretStr = SecretStr("")
    schema_registry_ca_file: Path | None = None
    celery_broker_url: str = Field(default="amqp://notify:notify@127.0.0.1:5672/notify", repr=False)
    # amqps:// URLs: the CA that signed the broker's certificate (default: the system's CAs).
    # PostgreSQL's TLS goes in DATABASE_URL: ?sslmode=verify-full&sslrootcert=/path/ca.pem
    celery_broker_ca_file: Path | None = None

    # Outside systems.
    auth_api_url: str = "http://127.0.0.1:8081"
    auth_api_token: SecretStr = SecretStr("dev-auth-token")
    auth_api_timeout_s: float = 5.0

    # Mail.
    email_backend: Literal["outbox", "sendgrid", "smtp"] = "outbox"
    email_from: str = "Notifications <noreply@notify.local>"
    sendgrid_api_key: SecretStr = SecretStr("")
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_webhook_public_key: str = ""
    # A signed webhook request older (or newer) than this is a replay: refused. SendGrid documents
    # no window; five to ten minutes is what signed webhooks commonly allow for clock skew.
    sendgrid_webhook_max_age_s: int = Field(default=600, ge=30)
    smtp_url: str = Field(default="smtp://127.0.0.1:1025", repr=False)
    outbox_dir: Path = REPO_ROOT / "var" / "outbox"

    # Outages: one circuit per dependency and process (app/core/circuits.py). It opens after
    # this many outages in a row; while open, work is parked and one probe goes every interval.
    circuit_failure_threshold: int = Field(default=5, ge=1)
    circuit_probe_interval_s: float = Field(default=2.0, gt=0, le=60)
    # No retry of one unit (an address, a record, a task) waits longer than this, so none waits
    # long behind an outage that has ended.
    retry_max_wait_s: float = Field(default=30.0, gt=0, le=900)

    # E-mail worker: retries, timeouts, and when a claimed send counts as abandoned.
    email_max_attempts: int = Field(default=8, ge=1)
    email_retry_base_s: float = Field(default=2.0, gt=0)
    # Capped by RETRY_MAX_WAIT_S; countdowns stay well under RabbitMQ's 30 min consumer_timeout
    # (ETA tasks are held unacked).
    email_retry_max_s: float = Field(default=30.0, gt=0, le=900)
    email_timeout_s: float = Field(default=10.0, gt=0)
    # The `emails` queue carries chunks of up to this many e-mails: one task, one claim and one
    # record per wave of a chunk instead of per e-mail.
    email_chunk_size: int = Field(default=50, ge=1, le=500)
    # Provider calls one e-mail worker process has out at once (its send threads).
    email_send_concurrency: int = Field(default=16, ge=1, le=256)
    # A delivery left in 'sending' longer than this belonged to a worker that died: send it again.
    email_sending_timeout_s: float = Field(default=120.0, gt=0)
    # Failover: while the primary backend has been down for EMAIL_FAILOVER_WINDOW_S, mail goes
    # out through this one; every EMAIL_FAILOVER_PROBE_S one e-mail tries the primary again.
    email_fallback_backend: Literal["", "outbox", "sendgrid", "smtp"] = ""
    email_failover_window_s: float = Field(default=30.0, gt=0)
    email_failover_probe_s: float = Field(default=30.0, gt=0)
    # The global send rate (app/domain/pacing.py): mails per second across every e-mail worker,
    # 0 for none; and an optional daily warm-up quota, e.g. "2026-12-10:1000/d,+50%/d".
    email_max_rate: float = Field(default=0.0, ge=0)
    email_warmup: str = ""

    # Planning: a digest run is split into shards of about this many due rows (at most
    # PLAN_MAX_SHARDS), one Celery task each, so every jobs worker plans a part of it.
    plan_shard_rows: int = Field(default=50_000, ge=1)
    plan_max_shards: int = Field(default=64, ge=1, le=1024)
    # When mail goes out, in the user's own time zone.
    send_hour_local: int = Field(default=9, ge=0, le=23)
    quiet_hours: str = "22:00-08:00"
    default_timezone: str = "UTC"

    # Deliverability (docs/delivery-semantics.md "Suppressed addresses"): an address gets no more
    # mail after a hard bounce, a spam report, an invalid-address refusal, a provider's block, or
    # this many soft bounces within the window.
    suppress_after_soft_bounces: int = Field(default=3, ge=1)
    soft_bounce_window_days: int = Field(default=30, ge=1)
    # Welcome mail (a confirmation link) is suppressed too: a dead address is dead. False lets it
    # through to suppressed addresses.
    suppress_transactional: bool = True
    # At most N non-transactional mails per user in any window: "3/1d,10/7d" (m, h, d); empty:
    # no cap. A mail over it waits for the next free slot, or is skipped if its campaign says so.
    frequency_cap: str = ""
    # Shifts the service's clock (seconds); lets end-to-end tests reach a send hour without waiting.
    clock_offset_s: float = 0.0

    # Topics: names are settings (README "The producer contract").
    topic_user_registered: str = "auth.user_registered"
    topic_comment_liked: str = "ugc.comment_liked"
    topic_mailing: str = "admin.mailing"
    topic_dead_letter: str = "notifications.dead_letter"
    topic_partitions: int = Field(default=4, ge=1)
    max_event_bytes: int = Field(default=64 * 1024, ge=256)

    # Stream worker.
    faust_app_id: str = "notify"
    faust_store: str = "rocksdb://"
    faust_web_port: int = 6066
    faust_data_dir: Path = REPO_ROOT / "var" / "faust"
    # Faust's 60 s default makes every join or failover wait tens of seconds.
    faust_session_timeout_s: float = Field(default=10.0, gt=0)
    # One PostgreSQL transaction per batch: up to this many events, or what arrived within the wait.
    # A worker with unapplied events and no progress for this long has stalled (a known failure
    # of Faust consumers): it exits non-zero so its supervisor starts a fresh one.
    stream_stall_timeout_s: float = Field(default=60.0, gt=0)
    ingest_batch_size: int = Field(default=5000, ge=1)
    ingest_batch_within_s: float = Field(default=0.1, gt=0)
    # Likes wait longer for fuller batches (digests are daily or weekly): fewer transactions and
    # fewer table writes per event, since a key touched n times in a batch is set once.
    ingest_likes_batch_within_s: float = Field(default=0.5, gt=0)
    # The stream consumer's fetches: the broker answers once it has this many bytes for us, or
    # after the wait (the most a fetch adds to an event's latency when traffic is light). Fuller
    # fetches cost the consumer and the broker less CPU per event (app/stream/transport.py).
    stream_fetch_min_bytes: int = Field(default=65536, ge=1)
    stream_fetch_max_wait_ms: int = Field(default=100, ge=0, le=1500)

    # Development mode: the placeholder secrets below are accepted and session cookies also go
    # over plain HTTP. `make run` and `make test` set it; anywhere else real secrets are needed.
    dev_mode: bool = False
    # Outside DEV_MODE, connections to PostgreSQL, Kafka and RabbitMQ off this host must be
    # encrypted and verified; this says, on purpose, that a network is trusted without it.
    allow_plaintext_transport: bool = False

    # Portal and links in mail.
    public_base_url: str = "http://127.0.0.1:8000"
    # Signs unsubscribe links and portal sessions: whoever knows it can forge both.
    secret_key: SecretStr = SecretStr("dev-secret-change-me")
    # Admin portal: session lifetime, cookies only over HTTPS (on unless DEV_MODE), links.
    portal_session_max_age_s: int = Field(default=8 * 3600, ge=60)
    portal_secure_cookies: bool | None = None
    # Failed sign-ins allowed per username and per client address (`limits` notation; every
    # window must have room), where they are counted (memory:// is per portal process; e.g.
    # redis://host:6379 shares them), and how many password hashes (16 MiB each) run at once.
    portal_login_user_limits: str = "5 per minute; 20 per hour"
    portal_login_client_limits: str = "30 per minute; 300 per hour"
    portal_login_limits_storage: str = "memory://"
    portal_max_concurrent_hashes: int = Field(default=2, ge=1)
    # Sign-ins waiting for a hashing slot beyond this many are answered 503 at once.
    portal_max_waiting_logins: int = Field(default=32, ge=0)
    # The proxies in front of the portal (addresses or networks, comma-separated): the client
    # is the rightmost X-Forwarded-For hop that is not one of them. "*" is refused: it would
    # trust the leftmost hop, which the client writes itself.
    portal_trusted_proxies: str = "127.0.0.1"
    # Test sends of a campaign: per portal user (`limits` notation), and only to these
    # addresses or @domains (comma-separated; example.com is reserved and reaches no one).
    portal_test_send_limits: str = "20 per hour"
    portal_test_recipients: str = "@example.com"
    # The portal's /metrics reads its database gauges at most this often (a scrape flood stays
    # one query per interval).
    portal_metrics_cache_s: float = Field(default=15.0, ge=0)
    # Request bodies larger than this are refused unread (the sign-in, sign-out, preference and
    # unsubscribe forms take at most 16 KiB: app/portal/body_guard.py).
    portal_max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    flower_url: str = "http://127.0.0.1:5555"
    faust_web_url: str = "http://127.0.0.1:6066"
    # The dashboard reads the Auth circuit and the provider failover from the workers' /metrics
    # (the Procfile's jobs and e-mail workers; comma-separated), and reads those, Kafka's end
    # offsets and the queue depths at most once per DASHBOARD_PROBE_CACHE_S.
    dashboard_metrics_urls: str = (
        "http://127.0.0.1:9101/metrics,http://127.0.0.1:9102/metrics,http://127.0.0.1:9104/metrics,"
        "http://127.0.0.1:9105/metrics"
    )
    dashboard_probe_cache_s: float = Field(default=5.0, ge=0)
    # Received events older than this leave the users' timelines (the daily job deletes them).
    timeline_retention_days: int = Field(default=90, ge=1)

    # Observability: "json" writes one JSON object per log record. METRICS_PORT > 0 makes a
    # Celery worker or beat serve Prometheus /metrics and /healthz there (127.0.0.1).
    log_format: Literal["text", "json"] = "text"
    metrics_port: int = Field(default=0, ge=0, le=65535)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours_parse(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value

    @field_validator("email_warmup")
    @classmethod
    def _warmup_parse(cls, value: str) -> str:
        parse_warmup(value)
        return value

    @field_validator("frequency_cap")
    @classmethod
    def _frequency_cap_parse(cls, value: str) -> str:
        parse_caps(value)
        return value

    @model_validator(mode="after")
    def _sending_timeout_covers_provider_call(self) -> Settings:
        # A claimed e-mail may wait for one provider call of its thread before its own starts
        # (CLAIMS_PER_THREAD in app/delivery/send_pool.py). A shorter timeout would take a live
        # worker's send over and duplicate it.
        if self.email_sending_timeout_s <= 2 * self.email_timeout_s:
            raise ValueError(
                "EMAIL_SENDING_TIMEOUT_S must be longer than twice EMAIL_TIMEOUT_S: a claimed "
                "e-mail may wait for one provider call before its own"
            )
        return self

    @field_validator("portal_trusted_proxies")
    @classmethod
    def _trusted_proxies_parse(cls, value: str) -> str:
        for entry in _entries(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"PORTAL_TRUSTED_PROXIES: {entry[:50]!r} is not an address or a network "
                    '("*" is refused: it trusts what any client writes)'
                ) from exc
        return value

    @field_validator(
        "portal_login_user_limits", "portal_login_client_limits", "portal_test_send_limits"
    )
    @classmethod
    def _login_limits_parse(cls, value: str) -> str:
        parse_many(value)  # raises ValueError on a malformed window
        return value

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Settings:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL") and not self.kafka_sasl_username:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME")
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together")
        return self

    @model_validator(mode="after")
    def _real_secrets_outside_dev_mode(self) -> Settings:
        if self.dev_mode:
            return self
        for name, placeholder in PLACEHOLDER_SECRETS.items():
            if getattr(self, name).get_secret_value() == placeholder:
                raise ValueError(
                    f"{name.upper()} is the development placeholder: set a real secret, or "
                    "DEV_MODE=true on a development machine"
                )
        if len(self.secret_key.get_secret_value()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"SECRET_KEY needs at least {MIN_SECRET_KEY_LENGTH} characters")
        return self

    @model_validator(mode="after")
    def _ca_files_with_encrypted_schemes(self) -> Settings:
        # A CA file beside a plaintext scheme means someone expected TLS and is not getting it.
        if self.celery_broker_ca_file is not None and not self.celery_broker_url.startswith(
            "amqps://"
        ):
            raise ValueError("CELERY_BROKER_CA_FILE is set, but CELERY_BROKER_URL is not amqps://")
        if self.kafka_ssl_ca_file is not None and not self.kafka_security_protocol.endswith("SSL"):
            raise ValueError(
                "KAFKA_SSL_CA_FILE is set, but KAFKA_SECURITY_PROTOCOL is "
                f"{self.kafka_security_protocol} (SSL or SASL_SSL use it)"
            )
        return self

    @model_validator(mode="after")
    def _encrypted_transports_outside_dev_mode(self) -> Settings:
        if self.dev_mode or self.allow_plaintext_transport:
            return self
        problems = plaintext_transports(self)
        if problems:
            raise ValueError(
                "plaintext connections outside DEV_MODE: "
                + "; ".join(problems)
                + " (or ALLOW_PLAINTEXT_TRANSPORT=true, for a network you trust)"
            )
        return self

    @property
    def secure_cookies(self) -> bool:
        """Session cookies only over HTTPS: PORTAL_SECURE_COOKIES, else on unless DEV_MODE."""
        if self.portal_secure_cookies is None:
            return not self.dev_mode
        return self.portal_secure_cookies

    @property
    def pace(self) -> Pace:
        """EMAIL_MAX_RATE and EMAIL_WARMUP: what limits sending across the fleet."""
        return Pace(rate=self.email_max_rate or None, warmup=parse_warmup(self.email_warmup))

    @property
    def frequency_caps(self) -> tuple[Cap, ...]:
        """FREQUENCY_CAP as caps (empty: none)."""
        return parse_caps(self.frequency_cap)

    @property
    def quiet_hours_window(self) -> tuple[time, time] | None:
        """The quiet window as (start, end) local times, or None when empty."""
        return parse_quiet_hours(self.quiet_hours)

    @property
    def clock_offset(self) -> timedelta:
        return timedelta(seconds=self.clock_offset_s)

    @property
    def input_topics(self) -> tuple[str, str, str]:
        return (self.topic_user_registered, self.topic_comment_liked, self.topic_mailing)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _entries(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def _off_host(host: str | None) -> bool:
    """Whether a connection to `host` leaves this machine (a unix socket or loopback does not)."""
    if not host or host.startswith("/"):
        return False
    return host.strip("[]").lower() not in LOOPBACK_HOSTS


def plaintext_transports(settings: Settings) -> list[str]:
    """Each connection the settings would make in the clear (or unverified) off this host."""
    problems = []
    database = urlsplit(settings.database_url)
    query = parse_qs(database.query)
    database_host = database.hostname or (query.get("host") or [""])[0]
    if _off_host(database_host) and (query.get("sslmode") or [""])[-1] != "verify-full":
        problems.append(
            "DATABASE_URL needs ?sslmode=verify-full (libpq's default falls back to plaintext)"
        )
    brokers = [entry.rsplit(":", 1)[0] for entry in _entries(settings.kafka_bootstrap_servers)]
    if any(_off_host(host) for host in brokers) and not settings.kafka_security_protocol.endswith(
        "SSL"
    ):
        problems.append(
            f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} (SSL or SASL_SSL; a SASL "
            "password over SASL_PLAINTEXT goes in the clear)"
        )
    broker = urlsplit(settings.celery_broker_url)
    if _off_host(broker.hostname) and broker.scheme != "amqps":
        problems.append(f"CELERY_BROKER_URL is {broker.scheme}:// (amqps:// encrypts it)")
    return problems


@lru_cache(maxsize=32)  # planning asks for every row it plans
def parse_quiet_hours(value: str) -> tuple[time, time] | None:
    """Parse "HH:MM-HH:MM" (may span midnight); an empty string means no quiet hours."""
    value = value.strip()
    if not value:
        return None
    try:
        start_s, end_s = value.split("-")
        start, end = time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip())
    except ValueError as exc:
        raise ValueError(f"QUIET_HOURS must look like '22:00-08:00', got {value!r}") from exc
    return start, end


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache after changing the environment)."""
    return Settings()
