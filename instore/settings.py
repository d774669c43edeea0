"""All configuration, read once from the environment and `.env` (pydantic-settings).

No other module reads ``os.environ``. Secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from instore.errors import InstoreError

LOOPBACK = "127.0.0.1"  # where every internal service listens, whatever INSTORE_HOST says

DEV_KEYS = {
    "marketer": "dev-marketer-key",
    "analyst": "dev-analyst-key",
    "ops": "dev-ops-key",
    "kiosk": "dev-kiosk-key",
    "cashier": "dev-cashier-key",
}
DEV_ABLY_KEY = "instore-dev.embedded:dev-secret-not-for-production"
DEV_SHOPPER_TOKEN_SECRET = "dev-shopper-token-secret"  # noqa: S105 (development only; refused in production)


MIN_SECRET_BYTES = 32


def is_loopback(host: str) -> bool:
    """A host name or address of this machine only (127.x, ::1, localhost)."""
    host = host.strip().strip("[]").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _loopback(address: str) -> bool:
    """A host:port on this machine only."""
    return is_loopback(address.strip().rsplit(":", 1)[0])


def _weak(value: SecretStr | None, dev_value: str) -> bool:
    """Unset, a development value, or shorter than MIN_SECRET_BYTES."""
    if value is None:
        return True
    secret = value.get_secret_value()
    return secret == dev_value or len(secret.encode()) < MIN_SECRET_BYTES


class Settings(BaseSettings):
    # Fields with a prefixed environment name (INSTORE_ENV, INSTORE_HOST, ...) also validate by
    # their field name, so that ``Settings.model_validate(settings.model_dump())`` round-trips.
    # Frozen: a part that needs other values makes a copy (``model_copy(update=...)``), so what
    # one part changed can never leak into another sharing the same settings.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8",
                                      validate_by_name=True, validate_by_alias=True, frozen=True)

    # development (dev keys and secrets allowed) or production (they are refused).
    environment: Literal["development", "production"] = Field(
        default="development", validation_alias="INSTORE_ENV"
    )

    # Kafka: unset bootstrap servers = the embedded broker started by `instore up`.
    kafka_bootstrap_servers: str | None = None
    # How clients reach Kafka: SASL_SSL on Confluent Cloud, SSL for a TLS-only broker.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # SASL mechanism (PLAIN on Confluent Cloud).
    kafka_sasl_mechanism: str = "PLAIN"
    # SASL user (a Confluent Cloud API key).
    kafka_sasl_username: str | None = None
    # SASL password (the API key's secret).
    kafka_sasl_password: SecretStr | None = None
    # CA bundle that signed the broker's certificate (unset: the system's).
    kafka_ssl_ca_location: str | None = None
    # Partitions of every topic the project creates.
    kafka_partitions: int = Field(default=4, ge=1, le=256)
    # Replicas of every topic (3 on a three-node embedded cluster or in the cloud).
    kafka_replication_factor: int = Field(default=1, ge=1, le=5)
    # Streams keep records this long (the privacy bound erasure states; DESIGN.md: <= 24 h).
    stream_retention_ms: int = Field(default=24 * 3600 * 1000, ge=1000)
    # Compacted tables: a superseded record or tombstone is compacted away within about three
    # times this (segment roll, max compaction lag, tombstone retention); see instore/topics.py.
    compaction_ms: int = Field(default=600_000, ge=100)

    # Redis serving store: unset = the embedded redis-server (loopback only), which then asks
    # for REDIS_PASSWORD when it is set (required in production).
    redis_url: str | None = None
    # Password of the serving store (the embedded redis-server is started with it).
    redis_password: SecretStr | None = None

    # Ably: unset host = the local push hub.
    ably_api_key: SecretStr | None = None
    # Another Ably-compatible REST host (unset with an Ably key: Ably itself).
    ably_rest_host: str | None = None
    # Its port.
    ably_port: int | None = None
    # Whether it speaks TLS.
    ably_tls: bool | None = None
    # The push sink's static group membership (Kafka's group.instance.id): a sink restarted
    # with the same id takes its partitions back at once, without a rebalance and without
    # waiting for its old session to end. Give every sink its own (two with one id fence each
    # other); `instore up` gives its sink one. Unset: a dynamic member.
    push_sink_instance_id: str | None = Field(default=None, min_length=1, max_length=200,
                                              pattern=r"^[A-Za-z0-9._-]+$")
    # The sink's consumer-group session: how long the group keeps its partitions while it is
    # silent, longer than a broker takes to restart (a session that ends meanwhile costs a
    # rebalance). A dynamic sink that died holds its partitions this long.
    push_sink_session_timeout_s: float = Field(default=15.0, ge=1, le=300)
    # Ably publishes the sink has in flight at once (one per channel of a batch; more queue).
    push_publish_concurrency: int = Field(default=16, ge=1, le=256)

    # ksqlDB: unset = the local ksqlDB-compatible endpoint.
    ksqldb_url: str | None = None
    # ksqlDB API key (Confluent Cloud).
    ksqldb_api_key: str | None = None
    # ksqlDB API secret.
    ksqldb_api_secret: SecretStr | None = None

    # Confluent Cloud resource-management key: only `instore cloud` (Terraform) uses it.
    confluent_cloud_api_key: str | None = None
    # Confluent Cloud API secret (Terraform, `instore cloud`).
    confluent_cloud_api_secret: SecretStr | None = None

    # The public address of the API and the push hub (e.g. a LAN address so that a phone can
    # reach the pages). Every other service (Kafka, Redis, the ksqlDB-compatible endpoint,
    # Faust's web server) listens on LOOPBACK only.
    host: str = Field(default=LOOPBACK, validation_alias="INSTORE_HOST")
    # The embedded Kafka: node i (from 0) listens on broker_port + 2i, its controller on the
    # port after it; `instore up --brokers 3` runs three nodes.
    broker_port: int = 19092
    # Nodes of the embedded Kafka (3: replicated topics, survives a node).
    kafka_brokers: int = Field(default=1, ge=1, le=5)
    # Java heap of each embedded Kafka node.
    kafka_heap_mb: int = Field(default=512, ge=128)
    # Extra JVM flags for the embedded Kafka nodes (the tests set -XX:TieredStopAtLevel=1).
    kafka_jvm_flags: str = ""
    # Where `make setup` puts the broker's jars (default ~/.cache/instore/kafka-<version>).
    kafka_libs_dir: Path | None = None
    # The Java 17+ that runs the embedded Kafka (unset: `java` on PATH).
    java_home: Path | None = Field(default=None, validation_alias="JAVA_HOME")
    # Port of the embedded redis-server (loopback).
    redis_port: int = 16379
    # Port of the local push hub and the phone and kiosk pages.
    hub_port: int = 8090
    # Port of the HTTP API and the dashboard.
    api_port: int = 8080
    # Port of the local ksqlDB-compatible endpoint (loopback).
    ksql_port: int = 8088
    # Port of Faust's web server (off: the worker runs without it).
    worker_web_port: int = 6066
    # Where `instore up` keeps the broker's and Redis's data and the services' logs.
    data_dir: Path = Field(default_factory=lambda: Path(".instore"),
                           validation_alias="INSTORE_DATA_DIR")
    # Where `instore bench ...` appends its figures (unset: bench/results/ in the repository,
    # which docs/benchmarks.md is made from).
    bench_results_dir: Path | None = Field(default=None,
                                           validation_alias="INSTORE_BENCH_RESULTS_DIR")

    # Offer policy (see DESIGN.md "From near to offer").
    dwell_s: float = Field(default=5.0, ge=0)
    # A shopper out of range of a product this long ends their dwell there.
    dwell_gap_s: float = Field(default=5.0, gt=0)
    # No second offer of the same product to the same shopper within this.
    cooldown_s: float = Field(default=1800.0, ge=0)
    # At most this many offers per shopper per hour.
    cap_per_hour: int = Field(default=3, ge=0)
    # An offer expires this long after it is made.
    offer_ttl_s: float = Field(default=900.0, gt=0)
    # A position this far outside a store's floor still counts as in it (GPS noise).
    geofence_margin_m: float = Field(default=30.0, ge=0)

    # Faust worker.
    app_id: str = Field(default="instore-stream", validation_alias="INSTORE_APP_ID")
    # Producers' compression (consumers here read all of these: aiokafka through the
    # lz4/zstandard/cramjam packages, librdkafka natively).
    kafka_compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "none"
    # Largest batch an agent takes at once.
    worker_batch: int = Field(default=500, ge=1)
    # How long an agent waits to fill a batch. Faust hands over ~7 events per ms at best, so
    # 10 ms makes batches of ~70 under load and adds at most 10 ms when traffic is light.
    worker_batch_within_s: float = Field(default=0.01, gt=0)
    # How many batches an agent may run ahead of the broker's acknowledgements of their outputs
    # (their events stay unacknowledged, so uncommitted, meanwhile): past it the agent waits.
    worker_max_in_flight: int = Field(default=64, ge=1)
    # linger.ms of the worker's librdkafka outputs (NEARBY rows, offers): longer means fewer,
    # larger batches for the broker at the price of that much latency when traffic is light.
    worker_output_linger_ms: float = Field(default=5.0, ge=5, le=1000)
    # Exempt what the worker loads at start (catalog, promotions, consents) from garbage
    # collection once loaded (gc.freeze): full collections then skip it. See gc_pauses.py.
    worker_gc_freeze: bool = True
    # Faust's rebalance timeout (a restarted worker rejoins within it).
    worker_rebalance_timeout_s: float = Field(default=3.0, gt=0)
    # Consumer-group session timeout of the worker: a worker that died without leaving (kill -9)
    # holds its partitions this long. The embedded broker allows down to 1 s.
    worker_session_timeout_s: float = Field(default=6.0, gt=0)
    # Longest a consumer's fetch waits for records (Kafka answers as soon as one arrives).
    consumer_fetch_wait_ms: int = Field(default=100, ge=1, le=5000)
    # The same for the worker's consumer, kept short: its client (aiokafka) keeps one fetch in
    # flight per broker, and a fetch for partitions with nothing new (the quiet topics beside
    # the positions) holds the busy ones back this long (Faust's own 1.5 s kept positions 1-2 s
    # at 2,000/s).
    worker_fetch_wait_ms: int = Field(default=20, ge=1, le=5000)
    # Which agents a worker runs (benchmarks isolate one): proximity, policy.
    worker_agents: str = "proximity,policy,analytics"
    # How often the worker logs its totals.
    worker_report_interval_s: float = Field(default=30.0, gt=0)
    # Liveness: a worker whose positions partition has not moved for this long while events
    # wait on it exits so that its supervisor restarts it (0 = off). See stream_apps/watchdog.py.
    worker_stall_s: float = Field(default=30.0, ge=0)
    # /readyz and `instore status`: not ready while a consumer is further behind than this.
    ready_max_lag: int = Field(default=20_000, ge=0)
    # Which engine writes NEARBY_CUSTOMERS: the Faust worker (its proximity agent) or ksqlDB
    # (the query `instore ksql migrate` starts). The other engine's path reads the topic.
    nearby_engine: Literal["faust", "ksqldb"] = "faust"

    # The archive (cold storage): a folder, or any fsspec URL (s3://bucket/prefix, gs://...).
    # Unset: <data dir>/archive.
    archive_url: str | None = None
    # The archiver writes a file set at least this often while records arrive...
    archive_flush_s: float = Field(default=60.0, gt=0)
    # ...or as soon as this many records wait in one topic partition.
    archive_flush_records: int = Field(default=50_000, ge=1)
    # Daily reports: `instore up` renders yesterday's report of every store once a day, after
    # this hour (UTC), into <archive>/reports (off: -1).
    report_hour_utc: int = Field(default=2, ge=-1, le=23)
    # Data quality: a source topic whose dead letters exceed this share of its records over the
    # last DQ_WINDOW_S marks the stack degraded (`instore status`, /readyz). Per topic:
    # DQ_THRESHOLDS='{"customers_locations": 0.01}'; topics not named use DQ_MAX_DEAD_LETTER_SHARE.
    dq_max_dead_letter_share: float = Field(default=0.05, ge=0, le=1)
    # Per-topic overrides of DQ_MAX_DEAD_LETTER_SHARE.
    dq_thresholds: dict[str, float] = Field(default_factory=dict)
    # The window the data-quality shares are computed over.
    dq_window_s: int = Field(default=900, ge=60, le=86_400)
    # A position whose event time is this far behind the newest one seen from the same shopper
    # counts as out of order; this far behind its arrival (the Kafka record time), as late.
    dq_late_ms: int = Field(default=10_000, ge=0)

    # "Bought together": two redemptions of one shopper at most this far apart (one visit).
    basket_window_s: int = Field(default=7200, ge=60, le=86_400)
    # grid = the spatial index; naive = the seed demo's scan of the country (benchmark baseline).
    proximity_index: Literal["grid", "naive"] = "grid"

    # API keys per role.
    api_key_marketer: SecretStr | None = None
    # API key of the analyst role (read-only analytics).
    api_key_analyst: SecretStr | None = None
    # API key of the ops role (erasure on request, operations).
    api_key_ops: SecretStr | None = None
    # API key kiosks are provisioned with.
    api_key_kiosk: SecretStr | None = None
    # API key of the tills (role cashier): redeems the code an offer shows on the phone.
    api_key_cashier: SecretStr | None = None
    # HMAC secret for shopper session tokens (scoped to one uid), and how long one lives
    # (renewed by GET /shoppers/{uid}/consent; revoked by opt-out and erasure).
    shopper_token_secret: SecretStr | None = None
    # Lifetime of a shopper token (renewed by GET /shoppers/{uid}/consent).
    shopper_token_ttl_s: int = Field(default=12 * 3600, ge=60, le=7 * 24 * 3600)

    # HTTPS for the API and the push hub (both files, or neither: plain HTTP on loopback).
    tls_cert_file: Path | None = None
    # Its private key (PEM).
    tls_key_file: Path | None = None
    # Largest request body the API and the push hub read (413 before any route or credential
    # check): the API takes catalog CSV uploads, the hub only token requests and publishes.
    api_max_body_bytes: int = Field(default=16 * 2**20, ge=1024)
    # Largest request body the push hub accepts.
    hub_max_body_bytes: int = Field(default=2**20, ge=1024)
    # Rate limits per client address: token/registration routes, and failed authentications.
    api_token_rate_per_min: int = Field(default=60, ge=1)
    # Failed authentications per client per minute before the API answers 429.
    api_auth_failures_per_min: int = Field(default=30, ge=1)
    # Token requests (`POST /keys/{name}/requestToken`) per client address per minute at the
    # local push hub, bursts up to as many; past it the hub answers 429 (Ably error 42910).
    hub_token_rate_per_min: int = Field(default=120, ge=1)
    # Failed authentications (401/403) per client address per minute at the push hub before it
    # answers that address's requests with a credential 429 until the budget refills.
    hub_auth_failures_per_min: int = Field(default=60, ge=1)

    @model_validator(mode="after")
    def _no_default_secrets_outside_development(self) -> Settings:
        if self.environment == "production":
            weak = [
                f"API_KEY_{role.upper()}"
                for role in DEV_KEYS
                if _weak(getattr(self, f"api_key_{role}"), DEV_KEYS[role])
            ]
            if _weak(self.shopper_token_secret, DEV_SHOPPER_TOKEN_SECRET):
                weak.append("SHOPPER_TOKEN_SECRET")
            if self.ably_api_key is not None and self.ably_api_key.get_secret_value() == DEV_ABLY_KEY:
                weak.append("ABLY_API_KEY")
            if self.redis_url is None and _weak(self.redis_password, ""):
                weak.append("REDIS_PASSWORD")  # the embedded Redis
            if weak:
                msg = (f"INSTORE_ENV=production needs {', '.join(weak)} set, not a development "
                       f"value, and at least {MIN_SECRET_BYTES} bytes long")
                raise ValueError(msg)
            if self.kafka_security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and not all(
                _loopback(h) for h in self.bootstrap_servers.split(",")
            ):
                msg = (
                    "INSTORE_ENV=production refuses KAFKA_SECURITY_PROTOCOL="
                    f"{self.kafka_security_protocol} to a broker off this machine: use SSL or "
                    "SASL_SSL"
                )
                raise ValueError(msg)
        return self

    # Derived addresses -------------------------------------------------------------------
    @property
    def worker_agent_set(self) -> set[str]:
        """The agents WORKER_AGENTS names (proximity, policy, analytics)."""
        return {a.strip() for a in self.worker_agents.split(",") if a.strip()}

    @property
    def archive_location(self) -> str:
        """ARCHIVE_URL, else the archive folder under the data dir `instore up` uses."""
        if self.archive_url:
            return self.archive_url
        from instore.embedded import resolve_data_dir  # noqa: PLC0415

        return str((resolve_data_dir(self, None) / "archive").resolve())

    def dq_threshold(self, topic: str) -> float:
        """The dead-letter share above which ``topic`` marks the stack degraded."""
        return self.dq_thresholds.get(topic, self.dq_max_dead_letter_share)

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def bootstrap_servers(self) -> str:
        """KAFKA_BOOTSTRAP_SERVERS, else every embedded node (always on loopback)."""
        if self.kafka_bootstrap_servers:
            return self.kafka_bootstrap_servers
        return ",".join(f"127.0.0.1:{self.broker_port + 2 * i}" for i in range(self.kafka_brokers))

    @property
    def redis_address(self) -> str:
        if self.redis_url:
            return self.redis_url
        auth = f":{self.redis_password.get_secret_value()}@" if self.redis_password else ""
        return f"redis://{auth}{LOOPBACK}:{self.redis_port}/0"

    @property
    def ksqldb_address(self) -> str:
        return self.ksqldb_url or f"http://{LOOPBACK}:{self.ksql_port}"

    @property
    def ably_key(self) -> str:
        """The Ably API key; in development the local push hub's well-known dev key."""
        if self.ably_api_key is not None:
            return self.ably_api_key.get_secret_value()
        if self.environment == "development":
            return DEV_ABLY_KEY
        msg = "ABLY_API_KEY is not set"
        raise ValueError(msg)

    @property
    def push_hub_local(self) -> bool:
        """True when the SDK talks to the local push hub rather than Ably itself."""
        return self.ably_rest_host is None and self.ably_api_key is None

    @property
    def shopper_secret(self) -> bytes:
        if self.shopper_token_secret is not None:
            return self.shopper_token_secret.get_secret_value().encode()
        if self.environment == "development":
            return DEV_SHOPPER_TOKEN_SECRET.encode()
        msg = "SHOPPER_TOKEN_SECRET is not set"
        raise ValueError(msg)

    def public_scheme(self) -> str:
        """``https`` when the API and the push hub serve TLS (TLS_CERT_FILE, TLS_KEY_FILE)."""
        return "https" if self.uvicorn_tls() else "http"

    def uvicorn_tls(self) -> dict[str, str]:
        """uvicorn's ssl_certfile/ssl_keyfile when TLS_CERT_FILE and TLS_KEY_FILE are set."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return {}
        return {"ssl_certfile": str(self.tls_cert_file), "ssl_keyfile": str(self.tls_key_file)}

    def api_key(self, role: str) -> str | None:
        """The API key for a role; development falls back to well-known dev keys."""
        value: SecretStr | None = getattr(self, f"api_key_{role}")
        if value is not None:
            return value.get_secret_value()
        return DEV_KEYS[role] if self.environment == "development" else None


class SettingsError(InstoreError, ValueError):
    """A setting in the environment (or .env) that is not valid: one line naming each."""


def describe(exc: ValidationError) -> str:
    """``exc`` as one line: each bad variable and what is wrong with it, never its value (it may
    be a secret)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = str(error["loc"][0]).upper() if error["loc"] else "the settings"
        parts.append(f"{where}: {error['msg']}")
    return "bad setting " + "; ".join(parts) + " (see docs/configuration.md)"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment (and .env); :class:`SettingsError` when one is bad."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None
