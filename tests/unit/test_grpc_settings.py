"""The gRPC security settings, the access tables of the adapters and where clients find credentials."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.credentials import issue_local
from adapters.security import client_files
from adapters.server import BILLING_ACCESS, ERP_ACCESS
from canonical.errors import ConfigurationError
from cluster.stack import Stack
from foundation.settings import Settings
from proto import billing_pb2, erp_pb2

EXTERNAL = {
    "kafka_bootstrap": "kafka:9092",
    "redis_url": "redis://redis:6379/0",
    "billing_target": "billing:50061",
    "erp_target": "erp:50062",
    "billing_database_url": "postgresql+psycopg://db/billing",
    "erp_database_url": "postgresql+psycopg://db/erp",
    "quarantine_database_url": "postgresql+psycopg://db/quarantine",
    "message_store_url": "postgresql+psycopg://db/messages",
}


def test_the_insecure_opt_out_is_for_the_embedded_default_only() -> None:
    assert Settings(grpc_insecure=True).grpc_insecure
    for name, value in EXTERNAL.items():
        # A real key: the key rules (refused outside the embedded stack) are another validator's.
        fields: dict[str, object] = {
            "grpc_insecure": True,
            name: value,
            "encounter_ref_key": secrets.token_hex(32),
        }
        with pytest.raises(ValidationError) as error:
            Settings.model_validate(fields)
        assert "HCSYNC_GRPC_INSECURE" in str(error.value) and f"HCSYNC_{name.upper()}" in str(error.value)


def test_certificates_and_keys_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="HCSYNC_GRPC_SERVER_CERT_FILE and HCSYNC_GRPC_SERVER_KEY_FILE"):
        Settings(grpc_server_cert_file=tmp_path / "tls.crt")
    with pytest.raises(ValidationError, match="HCSYNC_GRPC_CLIENT_CERT_FILE and HCSYNC_GRPC_CLIENT_KEY_FILE"):
        Settings(grpc_client_key_file=tmp_path / "tls.key")


@pytest.mark.parametrize(("access", "descriptor"), [(BILLING_ACCESS, billing_pb2), (ERP_ACCESS, erp_pb2)])
def test_every_rpc_has_a_verb_and_only_totals_are_reads(access: object, descriptor: object) -> None:
    from adapters.security import ServiceAccess

    assert isinstance(access, ServiceAccess)
    name = access.service.rsplit(".", 1)[1]
    methods = {m.name for m in descriptor.DESCRIPTOR.services_by_name[name].methods}  # type: ignore[attr-defined]
    assert set(access.verbs) == methods, "every RPC is named in the table"
    reads = {method for method, verb in access.verbs.items() if verb == "read"}
    assert reads == {method for method in methods if method.startswith("Get")}
    assert access.scope("NotYetWritten") == f"{access.audience}:write"  # deny by default


def test_a_client_without_credentials_is_refused_naming_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as error:
        client_files(Settings(home_dir=tmp_path))
    assert "HCSYNC_GRPC_CA_FILE" in str(error.value) and "HCSYNC_GRPC_TOKEN_FILE" in str(error.value)
    with pytest.raises(ConfigurationError, match="HCSYNC_GRPC_TOKEN_FILE"):
        client_files(Settings(home_dir=tmp_path, grpc_ca_file=tmp_path / "ca.crt"))
    assert client_files(Settings(grpc_insecure=True)) is None


def test_a_command_beside_the_stack_finds_the_runs_read_only_credentials(tmp_path: Path) -> None:
    latest = tmp_path / "runs" / "latest"
    issue_local(tmp_path / "runs" / "20260101-run" / "grpc")
    latest.symlink_to("20260101-run")
    found = client_files(Settings(home_dir=tmp_path))
    assert found is not None
    assert (
        found.token_file == latest / "grpc" / "reader.token"
        and found.cert_file == latest / "grpc" / "reader.crt"
    )
    in_run = client_files(
        Settings(home_dir=tmp_path / "elsewhere", run_dir=tmp_path / "runs" / "20260101-run")
    )
    assert in_run is not None and in_run.ca_file.is_file()
    # Against remote adapters, the embedded stack's files are never a fallback.
    with pytest.raises(ConfigurationError):
        client_files(
            Settings(
                home_dir=tmp_path, billing_target="billing:50061", encounter_ref_key=secrets.token_hex(32)
            )
        )


def test_the_stack_makes_credentials_and_gives_each_child_only_its_own(tmp_path: Path) -> None:
    stack = Stack(Settings(home_dir=tmp_path), tmp_path / "run")
    stack._secure_grpc()
    billing, worker = stack._grpc_env["billing"], stack._grpc_env["worker"]
    assert billing["HCSYNC_GRPC_SERVER_CERT_FILE"].endswith("billing.crt")
    assert billing["HCSYNC_GRPC_REQUIRE_CLIENT_CERT"] == "True"
    assert "HCSYNC_GRPC_TOKEN_FILE" not in billing
    assert worker["HCSYNC_GRPC_TOKEN_FILE"].endswith("worker.token")
    assert "HCSYNC_GRPC_SERVER_KEY_FILE" not in worker
    plan = {component.name: component.env for component in stack._plan()}
    assert "HCSYNC_GRPC_TOKEN_FILE" not in plan["mllp"] and "HCSYNC_GRPC_TOKEN_FILE" not in plan["forwarder"]


def test_a_stack_against_remote_adapters_needs_configured_credentials(tmp_path: Path) -> None:
    settings = Settings(
        home_dir=tmp_path,
        billing_target="billing:50061",
        erp_target="erp:50062",
        encounter_ref_key=secrets.token_hex(32),
    )
    with pytest.raises(ConfigurationError, match="HCSYNC_GRPC_CA_FILE"):
        Stack(settings, tmp_path / "run")._secure_grpc()
