"""No default secret outside the embedded stack: the encounter reference key and its rotation settings, and
Redis and database credentials kept out of URLs (foundation/settings.py)."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator

import pytest
import redis
from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import make_url

from cluster.stack import settings_env
from foundation.settings import DEMO_ENCOUNTER_REF_KEY, Settings

GOOD_KEY = secrets.token_hex(32)

# One setting at a time, each pointing at a system on another host.
REMOTE = {
    "kafka_bootstrap": ("HCSYNC_KAFKA_BOOTSTRAP", "kafka-1.prod:9092,kafka-2.prod:9092"),
    "redis_url": ("HCSYNC_REDIS_URL", "rediss://redis.prod:6380/0"),
    "ray_address": ("HCSYNC_RAY_ADDRESS", "ray://ray-head:10001"),
    "billing_target": ("HCSYNC_BILLING_TARGET", "hcsync-billing:50061"),
    "erp_target": ("HCSYNC_ERP_TARGET", "dns:///hcsync-erp:50062"),
    "billing_database_url": ("HCSYNC_BILLING_DATABASE_URL", "postgresql+psycopg://billing@db:5432/b"),
    "erp_database_url": ("HCSYNC_ERP_DATABASE_URL", "postgresql+psycopg://erp@db:5432/e"),
    "quarantine_database_url": ("HCSYNC_QUARANTINE_DATABASE_URL", "postgresql+psycopg://q@10.1.2.3/q"),
    "message_store_url": ("HCSYNC_MESSAGE_STORE_URL", "postgresql+psycopg://m@db/m"),
    "audit_database_url": ("HCSYNC_AUDIT_DATABASE_URL", "postgresql+psycopg://a@db/a"),
}
# Settings of a developer's machine: this host's loopback and SQLite files are not a deployment.
LOCAL = {
    "kafka_bootstrap": "127.0.0.1:9092,localhost:9093",
    "redis_url": "redis://127.0.0.1:6379/0",
    "ray_address": "127.0.0.1:6379",
    "billing_target": "[::1]:50061",
    "erp_target": "localhost:50062",
    "billing_database_url": "sqlite:////var/lib/hcsync/billing.db",
    "quarantine_database_url": "postgresql+psycopg://q@localhost/q",
    "message_store_url": "sqlite:///messages.db",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("HCSYNC_") or name == "RAY_ADDRESS":
            monkeypatch.delenv(name)
    yield


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]  # settings by keyword


def test_the_embedded_stack_needs_no_secret() -> None:
    settings = _settings(**LOCAL)
    assert settings.embedded and settings.external_settings() == []
    assert settings.encounter_ref_key.get_secret_value() == DEMO_ENCOUNTER_REF_KEY
    assert _settings(ray_address="auto").embedded


@pytest.mark.parametrize("field", sorted(REMOTE))
def test_any_remote_system_refuses_the_demo_key_naming_the_setting(field: str) -> None:
    env_name, value = REMOTE[field]
    with pytest.raises(ValidationError) as refused:
        _settings(**{field: value})
    message = str(refused.value)
    assert "HCSYNC_ENCOUNTER_REF_KEY is the public demo key" in message and env_name in message
    assert "openssl rand -hex 32" in message
    # With a key of its own, the same deployment starts.
    assert _settings(**{field: value}, encounter_ref_key=GOOD_KEY).external_settings() == [env_name]


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("CHANGE-ME-output-of-openssl-rand-hex-32", "placeholder"),  # secret.example.yaml's, as shipped
        ("9f2c4be1a07d5e36" * 2 + "_placeholder", "placeholder"),
        ("Example-Key-" + secrets.token_hex(16), "placeholder"),
        (secrets.token_hex(31), "62 hex digits, fewer than 64"),
        ("Zq8#t!", "6 bytes, fewer than 32"),
        ("xy" * 24, "too repetitive"),
        ("a-key-of-our-own-" * 2, "too repetitive"),
    ],
)
def test_outside_the_embedded_stack_a_weak_key_is_refused_without_echoing_it(key: str, problem: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(kafka_bootstrap="kafka:9092", encounter_ref_key=key)
    message = str(refused.value)
    assert "HCSYNC_ENCOUNTER_REF_KEY" in message and problem in message
    assert key not in message


@pytest.mark.parametrize(
    "key",
    [
        secrets.token_hex(32),
        secrets.token_urlsafe(32),
        base64.b64encode(secrets.token_bytes(32)).decode(),
        "correct horse battery staple, " + secrets.token_urlsafe(12),
    ],
)
def test_generated_keys_are_accepted(key: str) -> None:
    assert (
        _settings(kafka_bootstrap="kafka:9092", encounter_ref_key=key).encounter_ref_keys()["1"]
        == key.encode()
    )


def test_a_placeholder_secret_is_refused_even_on_the_embedded_stack() -> None:
    with pytest.raises(ValidationError, match="HCSYNC_ENCOUNTER_REF_KEY holds a placeholder"):
        _settings(encounter_ref_key="CHANGE-ME")
    with pytest.raises(ValidationError, match="HCSYNC_REDIS_PASSWORD holds a placeholder"):
        _settings(redis_url="redis://127.0.0.1:6379/0", redis_password="CHANGE-ME-redis-password")


@pytest.mark.parametrize(
    ("field", "url", "password_setting"),
    [
        ("redis_url", "redis://:hunter2@redis.prod:6379/0", "HCSYNC_REDIS_PASSWORD"),
        ("billing_database_url", "postgresql+psycopg://u:hunter2@db/b", "HCSYNC_BILLING_DATABASE_PASSWORD"),
        ("erp_database_url", "postgresql+psycopg://u:hunter2@db/e", "HCSYNC_ERP_DATABASE_PASSWORD"),
        ("quarantine_database_url", "postgresql://u:hunter2@db/q", "HCSYNC_QUARANTINE_DATABASE_PASSWORD"),
        ("message_store_url", "postgresql://u:hunter2@127.0.0.1/m", "HCSYNC_MESSAGE_STORE_PASSWORD"),
        ("audit_database_url", "postgresql://u:hunter2@db/a", "HCSYNC_AUDIT_DATABASE_PASSWORD"),
    ],
)
def test_a_url_holding_a_password_is_refused(field: str, url: str, password_setting: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(**{field: url}, encounter_ref_key=GOOD_KEY)
    message = str(refused.value)
    assert f"HCSYNC_{field.upper()} holds a password" in message and password_setting in message
    assert "hunter2" not in message


def test_a_password_without_a_server_to_give_it_to_is_refused() -> None:
    with pytest.raises(ValidationError, match="HCSYNC_BILLING_DATABASE_PASSWORD is set but"):
        _settings(billing_database_password=GOOD_KEY)
    with pytest.raises(ValidationError, match="HCSYNC_MESSAGE_STORE_PASSWORD is set but"):
        _settings(message_store_url="sqlite:///m.db", message_store_password=GOOD_KEY)
    with pytest.raises(ValidationError, match="HCSYNC_REDIS_PASSWORD is set but"):
        _settings(redis_password=GOOD_KEY)
    with pytest.raises(ValidationError, match="HCSYNC_REDIS_USERNAME is set but"):
        _settings(redis_username="hcsync")


def test_redis_clients_get_the_credentials_and_messages_do_not() -> None:
    password = "p@ss:w/rd %" + secrets.token_hex(4)
    settings = _settings(
        redis_url="rediss://redis.prod:6380/2",
        redis_username="hcsync",
        redis_password=password,
        encounter_ref_key=GOOD_KEY,
    )
    client = redis.Redis.from_url(settings.redis)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["host"], kwargs["port"], kwargs["db"]) == (
        "hcsync",
        password,
        "redis.prod",
        6380,
        2,
    )
    assert settings.redis_location == "rediss://redis.prod:6380/2"
    only_password = _settings(redis_url="redis://127.0.0.1:6379/0", redis_password=password)
    kwargs = redis.Redis.from_url(only_password.redis).connection_pool.connection_kwargs
    assert kwargs.get("username") is None and kwargs["password"] == password
    assert password not in repr(only_password)


def test_database_urls_get_their_passwords() -> None:
    password = "s3cr/t@" + secrets.token_hex(4)
    settings = _settings(
        erp_database_url="postgresql+psycopg://erp@db:5432/hcsync_erp?sslmode=require",
        erp_database_password=password,
        encounter_ref_key=GOOD_KEY,
    )
    url = settings.database_url("erp")
    assert url is not None
    parsed = make_url(url)
    assert (parsed.username, parsed.password, parsed.host, parsed.database) == (
        "erp",
        password,
        "db",
        "hcsync_erp",
    )
    assert parsed.query == {"sslmode": "require"}
    assert settings.erp_database_url is not None and password not in settings.erp_database_url
    assert settings.database_url("billing") is None  # unset: the store's default applies
    assert password not in repr(settings) and password not in settings.model_dump_json()


def test_previous_keys_and_key_ids() -> None:
    old = secrets.token_hex(32)
    settings = _settings(
        encounter_ref_key=GOOD_KEY,
        encounter_ref_key_id="k2",
        encounter_ref_previous_keys=json.dumps({"k1": old, "legacy": DEMO_ENCOUNTER_REF_KEY}),
        kafka_bootstrap="kafka:9092",
    )
    # The current key first; an earlier key may be weak (it only resolves what it once made).
    assert settings.encounter_ref_keys() == {
        "k2": GOOD_KEY.encode(),
        "k1": old.encode(),
        "legacy": DEMO_ENCOUNTER_REF_KEY.encode(),
    }
    assert old not in repr(settings) and old not in settings.model_dump_json()
    for bad, problem in [
        ("not json", "HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS is not JSON"),
        ('["k1"]', "must be a JSON object"),
        (json.dumps({old: "k1"}), "a key id (64 characters) does not match"),  # swapped: not echoed
        (json.dumps({"k1": ""}), "the key of id 'k1' must be a non-empty string"),
        (json.dumps({"k2": old}), "HCSYNC_ENCOUNTER_REF_KEY_ID 'k2' is also in"),
        (json.dumps({"k1": "CHANGE-ME"}), "HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS holds a placeholder"),
    ]:
        with pytest.raises(ValidationError) as refused:
            _settings(encounter_ref_key=GOOD_KEY, encounter_ref_key_id="k2", encounter_ref_previous_keys=bad)
        assert problem in str(refused.value) and old not in str(refused.value)
    with pytest.raises(ValidationError, match="encounter_ref_key_id"):
        _settings(encounter_ref_key_id="Key-1")


def test_the_stack_hands_every_secret_to_its_children(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        redis_url="redis://127.0.0.1:6379/0",
        redis_password=secrets.token_hex(16),
        message_store_url="postgresql+psycopg://m@127.0.0.1/m",
        message_store_password=secrets.token_hex(16),
        encounter_ref_key=GOOD_KEY,
        encounter_ref_key_id="k2",
        encounter_ref_previous_keys=SecretStr(json.dumps({"k1": secrets.token_hex(32)})),
    )
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    child = Settings(_env_file=None)
    assert child.encounter_ref_keys() == settings.encounter_ref_keys()
    assert child.redis == settings.redis
    assert child.database_url("message_store") == settings.database_url("message_store")


def test_an_address_that_cannot_be_read_counts_as_external() -> None:
    with pytest.raises(ValidationError, match="HCSYNC_KAFKA_BOOTSTRAP point"):
        _settings(kafka_bootstrap="[kafka-1:9092")
