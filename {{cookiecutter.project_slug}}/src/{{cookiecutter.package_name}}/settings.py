"""Settings shared by the web app and the worker: one class, read from the environment and `.env`.

Both processes must agree on the Redis URL and the queue name, so both read them from here.
"""

{% if cookiecutter.use_sentry -%}
import re
{% endif -%}
from functools import lru_cache
from typing import Annotated, Literal, Self
from urllib.parse import unquote

from pydantic import (
{%- if cookiecutter.use_tracing %}
    AnyHttpUrl,
{%- endif %}
    Field,
    FilePath,
    RedisDsn,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .webhooks import secret_bytes as webhook_key
{%- if cookiecutter.database == "postgres" %}

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
"""DATABASE_URL's schemes: each means asyncpg (the one driver the service installs)."""
{%- endif %}
{% if cookiecutter.use_sentry %}
DSN = re.compile(r"https?://[^@/\s:]+@[^/\s]+/(?:[^/\s]+/)*\d+")
"""A Sentry DSN: scheme, public key, host (and port), an optional path, the project's number."""


def sentry_dsn_parses(text: str) -> bool:
    """Whether sentry-sdk takes `text` as a DSN (it would fail the process's start otherwise)."""
    from sentry_sdk.utils import Dsn  # (here: only a DSN given pays for the import)

    if not DSN.fullmatch(text):
        return False
    try:
        return Dsn(text).port > 0
    except Exception:  # whatever sentry-sdk refuses a DSN with
        return False

{% endif %}
# The placeholder of .env.example: a copied .env must not run with it.
WEAK_KEYS = frozenset({"replace-with-a-generated-key"})
GENERATE_KEY = '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'


def weak(key: SecretStr | None) -> bool:
    """A placeholder, or too few different characters to be a generated key."""
    value = key.get_secret_value() if key else None
    return value is not None and (len(set(value)) < 8 or value.lower() in WEAK_KEYS)


SHUTDOWN_MARGIN = 5
"""Seconds a worker needs after its completion wait: cancel and re-queue jobs, shut down, exit."""

Address = tuple[str, int]


def addresses(value: object) -> object:
    """`host:port,host:port` (as an environment variable gives it) as a list of addresses."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    found: list[tuple[str, str]] = []
    for part in filter(None, (item.strip() for item in value.split(","))):
        host, colon, port = part.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ValueError("each Sentinel is host:port, separated by commas")
        found.append((host.strip("[]"), port))
    return found


QueueKey = Literal["default", "bulk"]
"""`default` for short jobs; `bulk` for long ones, on workers of their own (see worker.options)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # A refused value is named, never shown: it may be a password in a Redis URL, or a key.
        hide_input_in_errors=True,
    )

    app_name: str = Field(
        default="{{ cookiecutter.project_slug }}",
        description="The service's name: the API docs' title (and, if traced, the spans' service).",
    )
    redis_url: RedisDsn = Field(
        default=RedisDsn("redis://localhost:6379/0"),
        description="Redis for the queue: redis:// or rediss:// (TLS), credentials allowed.",
    )
    redis_tls_ca_file: FilePath | None = Field(
        default=None,
        description="CA certificate (PEM) that signed the rediss:// server's certificate.",
    )
    # High availability (README "Redis that survives a node"): with Sentinels the master's
    # address comes from them; REDIS_URL still gives the database, the credentials and TLS.
    redis_sentinels: Annotated[list[Address] | None, NoDecode] = Field(
        default=None,
        max_length=20,
        description=(
            "Sentinels that name the master, host:port comma-separated; unset: Redis is at "
            "REDIS_URL's host."
        ),
    )
    redis_sentinel_master: str = Field(
        default="mymaster",
        min_length=1,
        max_length=200,
        description="The master's name in the Sentinels' configuration.",
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None, description="Password of the Sentinels (requirepass), if they have one."
    )
    redis_sentinel_tls: bool = Field(
        default=False,
        description="Talk TLS to the Sentinels too (REDIS_TLS_CA_FILE applies to them).",
    )
    # Sharding by queue (README "More than one Redis"): the bulk queue's jobs, records, events
    # and dead letters live on a server of their own; ids of its jobs say so (queue.shards).
    bulk_redis_url: RedisDsn | None = Field(
        default=None,
        description=(
            "Redis of the bulk queue, if not REDIS_URL's: redis:// or rediss://; its workers "
            "connect there, the web reads its jobs there."
        ),
    )
    durable_enqueue_replicas: int = Field(
        default=0,
        ge=0,
        le=16,
        description=(
            "Replicas that must have a job before the web answers 202 (Redis WAIT); 0: answer "
            "once the master has it."
        ),
    )
    # Under the web's 5 s socket timeout: the WAIT holds its connection that long at most.
    durable_enqueue_timeout: float = Field(
        default=1.0,
        gt=0,
        le=4,
        description="Seconds to wait for those replicas; fewer in time: 503, retry the request.",
    )
    queue_name: str = Field(
        default="{{ cookiecutter.project_slug }}:queue",
        min_length=1,
        max_length=200,
        description="The queue the web enqueues to and the worker reads.",
    )

    bulk_queue_name: str = Field(
        default="{{ cookiecutter.project_slug }}:bulk",
        min_length=1,
        max_length=200,
        description="The queue of long tasks, served by workers of their own.",
    )
    job_retention: int = Field(
        default=7 * 86_400,
        ge=60,
        description="Seconds a job's record and events stay readable after its last change.",
    )
    idempotency_window: int = Field(
        default=86_400, ge=1, description="Seconds an Idempotency-Key returns the same job."
    )
    max_request_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body the web accepts (413 above)."
    )
    stream_ping_interval: float = Field(
        default=15, gt=0, le=300, description="Seconds between keep-alive pings of event streams."
    )
    # Bounds of one web process (README "Connections and streams"): streams share one Redis
    # reader, so its connections do not grow with its clients.
    max_streams: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Event streams one web process serves at once (503 with Retry-After above).",
    )
    redis_max_connections: int = Field(
        default=50,
        ge=2,
        le=10_000,
        description="Redis connections one web process opens at most, plus one its streams share.",
    )
    redis_idle_timeout: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="Seconds a web process keeps an unused Redis connection open.",
    )

    # Worker tuning. Workers wake on enqueue and when a slot frees (worker.process), so the poll
    # delay is only the fallback for jobs from plain arq clients: an idle worker costs a few Redis
    # commands per poll. 50 slots keep I/O-bound jobs flowing (arq's default is 10).
    worker_max_jobs: int = Field(
        default=50, ge=1, le=10_000, description="Jobs one worker runs at once."
    )
    worker_poll_delay: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Seconds between queue polls of an idle worker (it also wakes on enqueue).",
    )
    # A crashed worker's job runs again only after the longest task timeout + 10 s: keep it short
    # and give long tasks their own timeout.
    job_timeout: float = Field(
        default=30, gt=0, le=86_400, description="Default task timeout, seconds."
    )
    bulk_job_timeout: float = Field(
        default=3600, gt=0, le=86_400, description="Default timeout of bulk queue tasks, seconds."
    )
    # Every start counts as a try, a re-queue at shutdown too: with 1 try a deploy fails running
    # jobs for good (refused below).
    job_max_tries: int = Field(default=3, ge=1, le=100, description="Starts allowed per job.")
    job_keep_result: int = Field(
        default=3600, ge=0, description="Seconds a result stays readable (and its id stays taken)."
    )
    # The one shutdown number: compose's stop_grace_period and Kubernetes'
    # terminationGracePeriodSeconds are set from the same STOP_GRACE_PERIOD variable.
    stop_grace_period: int = Field(
        default=30,
        ge=SHUTDOWN_MARGIN,
        le=3600,
        description="Seconds the platform waits after SIGTERM before it kills a worker.",
    )
    job_completion_wait: int | None = Field(
        default=None,
        ge=0,
        le=3600,
        description=(
            "Seconds a stopping worker lets running jobs finish before it re-queues them; "
            "STOP_GRACE_PERIOD - 10 when unset."
        ),
    )
    dead_letter_limit: int = Field(
        default=10_000, ge=1, description="Dead letters kept; the oldest go beyond this."
    )
    worker_heartbeat_interval: float = Field(
        default=10, gt=0, le=300, description="Seconds between a worker's liveness writes."
    )
    worker_id: str | None = Field(
        default=None,
        max_length=200,
        description=(
            "Name of this worker in its liveness key and on the dashboard; host name and process"
            " id when unset."
        ),
    )

{%- if cookiecutter.use_metrics %}
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65_535,
        description="Port of a worker's Prometheus metrics (/metrics); off when unset.",
    )
{%- endif %}
    bulk_worker_max_jobs: int = Field(
        default=4, ge=1, le=10_000, description="Long jobs one bulk worker runs at once."
    )

{%- if cookiecutter.use_api_key %}
    # Only the web needs it, and refuses to start without one (web.app); workers never see it.
    api_key: SecretStr | None = Field(
        default=None,
        min_length=24,
        description="The key clients send in X-API-Key to use the job endpoints (web only).",
    )

    @model_validator(mode="after")
    def _refuse_weak_key(self) -> Self:
        if weak(self.api_key):
            raise ValueError(
                f"API_KEY is a placeholder or too simple: generate one, e.g. {GENERATE_KEY}"
            )
        return self
{%- endif %}

    # The operator surface is closed while this is unset: a forgotten setting must never mean an
    # open door (README, "Security"). Web only, like API_KEY.
    operator_key: SecretStr | None = Field(
        default=None,
        min_length=24,
        description=(
            "The key operators send in X-Operator-Key (or log in to the dashboard with, if there is"
            " one) to use the dead letters and the dashboard; unset, those answer 403 (web only)."
        ),
    )
{%- if cookiecutter.use_dashboard %}
    dashboard_session_lifetime: int = Field(
        default=8 * 3600,
        ge=1,
        le=30 * 86_400,
        description="Seconds a dashboard login lasts; logging out ends it sooner.",
    )
{%- endif %}
    # Completion webhooks (webhooks.py): a job's callback_url is refused while this is unset.
    webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Signs completion webhooks (Standard Webhooks): whsec_ and at least 24 bytes in "
            "base64; unset, a job's callback_url is refused (422)."
        ),
    )
    webhook_allow_http: bool = Field(
        default=False, description="Let callbacks be http, not only https (a test receiver)."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description=(
            "Let callbacks reach loopback, private and link-local addresses (refused by "
            "default: a client could otherwise make the service call its own network)."
        ),
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, le=60, description="Seconds a receiver has to answer a delivery."
    )
    # uvicorn reads the same variable, so the server and the app trust the same peers.
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        max_length=2000,
        description=(
            "Proxies whose X-Forwarded-Proto and -For are believed: addresses or networks, "
            "comma-separated, * for any (web only)."
        ),
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level logged, by web and workers."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: JSON lines unless the output is a terminal."
    )
    log_job_arguments: bool = Field(
        default=False,
        description="Show job arguments in the worker's job start lines (redacted ones hidden).",
    )
{%- if cookiecutter.use_tracing %}

    # The standard OpenTelemetry names, so collectors' docs apply as written (see tracing.py).
    otel_exporter_otlp_endpoint: AnyHttpUrl | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL (spans go to /v1/traces); unset: no export.",
    )
    otel_service_name: str | None = Field(
        default=None, description="service.name of the spans; unset: the project name and role."
    )
{%- endif %}
{%- if cookiecutter.use_sentry %}

    # Sentry's own names (error_reports.py). A DSN holds its project's key: kept as a secret.
    sentry_dsn: SecretStr | None = Field(
        default=None,
        description="Where failed jobs and requests are reported (Sentry's DSN); unset: nowhere.",
    )
    sentry_environment: str = Field(
        default="production",
        min_length=1,
        max_length=64,
        description="The environment Sentry files the events under.",
    )

    @field_validator("sentry_dsn", mode="before")
    @classmethod
    def _a_dsn_or_none(cls, value: object) -> object:
        if value == "":
            return None  # compose and the ConfigMap pass an empty value for "not set"
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not sentry_dsn_parses(text):
            # (Not quoted: the key in it is a secret.)
            raise ValueError("SENTRY_DSN is not a DSN: https://<key>@<host>/<project id>")
        return value
{%- endif %}
{%- if cookiecutter.database == "postgres" %}

    # The tasks' own data (database/). Holds a password: a secret, never shown or logged.
    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "PostgreSQL for the tasks' data: postgresql://user:password@host:5432/name "
            "(postgres:// and postgresql+asyncpg:// too); unset: no database routes or relay."
        ),
    )
    database_pool_size: int = Field(
        default=5, ge=1, le=100, description="Connections each web or worker process may hold."
    )
    database_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        allow_inf_nan=False,
        description="Seconds to connect, to wait for a free connection, and for one statement.",
    )

    @field_validator("database_url", mode="before")
    @classmethod
    def _an_asyncpg_url(cls, value: object) -> object:
        if value == "":
            return None  # compose passes an empty value for "not set"
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            return value
        scheme, separator, rest = text.partition("://")
        if not separator or scheme not in POSTGRES_SCHEMES or not rest.strip("/"):
            # (Not quoted: the password is in it.)
            raise ValueError("DATABASE_URL is not a PostgreSQL URL: postgresql://user:pw@host/db")
        # libpq's name for TLS, as managed databases hand their URLs out, is asyncpg's `ssl`
        # (the same modes: require, verify-ca, verify-full, ...).
        rest = re.sub(r"([?&])sslmode=", r"\1ssl=", rest)
        return SecretStr(f"postgresql+asyncpg://{rest}")
{%- endif %}

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _sentinel_addresses(cls, value: object) -> object:
        return addresses(value)

    @field_validator("redis_sentinel_password", "bulk_redis_url", mode="before")
    @classmethod
    def _unset_if_empty(cls, value: object) -> object:
        # compose and the ConfigMap pass an empty value for "not set".
        return None if value == "" else value

    @model_validator(mode="after")
    def _bulk_redis_elsewhere(self) -> Self:
        # Both queues' stores on one database would list every job twice (each shard lists its
        # own): leaving BULK_REDIS_URL unset is that setup, done right.
        bulk, sentinels = self.bulk_redis_url, self.redis_sentinels
        if bulk is not None and sentinels is None and same_database(bulk, self.redis_url):
            raise ValueError("BULK_REDIS_URL names REDIS_URL's database: unset it for one Redis")
        return self

    def with_queue_redis(self, key: QueueKey) -> Self:
        """These settings with REDIS_URL at the Redis of queue `key`: the settings of that
        queue's workers, and of the web's connection to it. The bulk queue's own Redis is
        reached by its URL (a managed endpoint or a proxy with failover behind it), not through
        the Sentinels, which name the default queue's master."""
        if key == "default" or self.bulk_redis_url is None:
            return self
        return self.model_copy(update={"redis_url": self.bulk_redis_url, "redis_sentinels": None})

    @property
    def redis_database(self) -> int:
        return database_of(self.redis_url)

    @property
    def redis_username(self) -> str | None:
        """The URL's user name, percent-escapes decoded (RedisSettings.from_dsn does not)."""
        return unquote(self.redis_url.username) if self.redis_url.username else None

    @property
    def redis_password(self) -> str | None:
        return unquote(self.redis_url.password) if self.redis_url.password else None

    @property
    def completion_wait(self) -> int:
        """JOB_COMPLETION_WAIT, or what STOP_GRACE_PERIOD leaves for it."""
        if self.job_completion_wait is not None:
            return self.job_completion_wait
        return max(0, self.stop_grace_period - 10)

    @model_validator(mode="after")
    def _no_lost_work_at_shutdown(self) -> Self:
        # Refuse, at start-up, settings under which a deploy or a scale-in loses running jobs.
        if self.job_max_tries < 2:
            raise ValueError(
                "JOB_MAX_TRIES must be at least 2: a worker that stops mid-job re-queues it, "
                "and that counts as a try; with 1 every deploy fails the jobs it interrupts"
            )
        if self.completion_wait + SHUTDOWN_MARGIN > self.stop_grace_period:
            raise ValueError(
                f"JOB_COMPLETION_WAIT ({self.completion_wait} s) + {SHUTDOWN_MARGIN} s must fit "
                f"in STOP_GRACE_PERIOD ({self.stop_grace_period} s), or running jobs are killed "
                "before the worker re-queues them"
            )
        return self

    @field_validator("operator_key", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # compose passes `${OPERATOR_KEY:-}`: an empty value means "not set", not a short key.
        return None if value == "" else value

    @field_validator("webhook_secret")
    @classmethod
    def _a_usable_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value()
        if not text.startswith("whsec_") or len(webhook_key(text)) < 24:
            raise ValueError(
                "WEBHOOK_SECRET is whsec_ followed by at least 24 random bytes in base64, e.g. "
                "whsec_$(openssl rand -base64 32)"
            )
        return value

    @model_validator(mode="after")
    def _refuse_weak_operator_key(self) -> Self:
        if weak(self.operator_key):
            raise ValueError(
                f"OPERATOR_KEY is a placeholder or too simple: generate one, e.g. {GENERATE_KEY}"
            )
        return self

    @model_validator(mode="after")
    def _replays_find_their_job(self) -> Self:
        # A replayed Idempotency-Key points to its earlier job: that job's record must still exist.
        if self.idempotency_window > self.job_retention:
            raise ValueError(
                f"IDEMPOTENCY_WINDOW ({self.idempotency_window} s) must not exceed "
                f"JOB_RETENTION ({self.job_retention} s)"
            )
        return self

    def queue_for(self, key: QueueKey) -> str:
        """The queue name of a task's queue key (`default` or `bulk`)."""
        return self.bulk_queue_name if key == "bulk" else self.queue_name


LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def database_of(url: RedisDsn) -> int:
    """The database number a Redis URL names (0 when it names none)."""
    return int((url.path or "/0").lstrip("/") or 0)


def same_database(one: RedisDsn, other: RedisDsn) -> bool:
    """Whether two URLs name one database of one server, as far as the URLs tell (queue.shards
    also compares the servers' run ids once both answer)."""

    def where(url: RedisDsn) -> tuple[str, int, int]:
        host = (url.host or "localhost").lower()
        return ("loopback" if host in LOOPBACK else host, url.port or 6379, database_of(url))

    return where(one) == where(other)


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
