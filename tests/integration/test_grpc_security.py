"""gRPC authentication and TLS against real servers: who gets in, who is refused, and with which code.

The adapters run in-process (tests/grpc_security.py) with their real interceptors and TLS; clients are
our own (adapters.clients) or raw grpc channels when a test needs to send what our clients never would
(no token, no certificate, plaintext). The last test runs on the session's embedded stack.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.clients import BillingClient, ErpClient
from adapters.credentials import READER, new_signing_key, public_key_pem
from adapters.security import BearerTokens, ServiceAccess, TokenVerifier, current_caller, secure_aio_channel
from adapters.server import build_server
from canonical.errors import ConfigurationError, RetryableError
from cluster.send import send_messages
from cluster.stack import Stack
from foundation.settings import Settings
from proto import billing_pb2, billing_pb2_grpc, erp_pb2
from streams.dispatch import BillingDispatcher
from tests.grpc_security import GrpcSecurity, serving
from tests.integration.conftest import ed_day, report_now, wait_for_charges
from tests.unit.test_dispatch import FakeRedis, upsert

GET_TOTALS = "/hcsync.billing.v1.BillingAdapter/GetTotals"
Code = grpc.StatusCode


@pytest.fixture
def security(tmp_path: Path) -> GrpcSecurity:
    return GrpcSecurity.create(tmp_path / "grpc")


def tls(security: GrpcSecurity, *, certificate: bool = True) -> grpc.ChannelCredentials:
    """TLS channel credentials trusting the test CA, with the worker's client certificate unless told not."""
    directory = security.local.directory
    return grpc.ssl_channel_credentials(
        root_certificates=(directory / "ca.crt").read_bytes(),
        private_key=(directory / "worker.key").read_bytes() if certificate else None,
        certificate_chain=(directory / "worker.crt").read_bytes() if certificate else None,
    )


async def raw_totals(
    address: str, credentials: grpc.ChannelCredentials | None, metadata: tuple[tuple[str, str], ...] = ()
) -> billing_pb2.BillingTotals:
    """GetTotals over a channel of exactly these credentials and metadata (None: plaintext)."""
    channel = (
        grpc.aio.insecure_channel(address)
        if credentials is None
        else grpc.aio.secure_channel(address, credentials)
    )
    async with channel:
        stub = billing_pb2_grpc.BillingAdapterStub(channel)
        response: billing_pb2.BillingTotals = await stub.GetTotals(
            billing_pb2.GetTotalsRequest(), metadata=metadata, timeout=10
        )
        return response


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as answer:
        await call
    return answer.value


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_a_call_without_a_token_is_unauthenticated(security: GrpcSecurity, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(security, "billing", tmp_path) as adapter:
            error = await refused(raw_totals(adapter.address, tls(security)))
            assert error.code() is Code.UNAUTHENTICATED
            assert "no bearer token" in str(error.details())
            error = await refused(raw_totals(adapter.address, tls(security), (("authorization", "Basic x"),)))
            assert error.code() is Code.UNAUTHENTICATED
            assert "not 'Bearer <token>'" in str(error.details())
            # Without a token, a method that does not exist looks like one that does: nothing is revealed.
            async with grpc.aio.secure_channel(adapter.address, tls(security)) as channel:
                nope = channel.unary_unary("/hcsync.billing.v1.BillingAdapter/Nope")
                assert (await refused(nope(b"", timeout=10))).code() is Code.UNAUTHENTICATED

    run(scenario)


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ({"lifetime_s": -120.0}, "expired"),
        ({"not_before_s": 3600.0}, "not valid yet"),
        ({"issuer": "someone-else"}, "issuer"),
        ({"key": "other signer"}, "signature does not verify"),
        ({"garbage": True}, "not a well-formed signed JWT"),
    ],
)
def test_a_bad_token_is_unauthenticated_and_never_echoed(
    security: GrpcSecurity, tmp_path: Path, shape: dict[str, Any], reason: str
) -> None:
    if shape.get("garbage"):
        token = "not-a-jwt-at-all"
    elif shape.get("key"):
        token = security.token(key=new_signing_key())  # well formed, signed by a key the server does not know
    else:
        token = security.token(**shape)

    async def scenario() -> None:
        async with serving(security, "billing", tmp_path) as adapter:
            settings = security.settings_with_token(token, "bad")
            async with BillingClient(settings, adapter.address) as client:
                with pytest.raises(ConfigurationError, match="UNAUTHENTICATED") as error:
                    await client.get_totals()
            assert reason in str(error.value)
            assert token not in str(error.value)
            for part in token.split("."):
                assert part not in str(error.value)

    run(scenario)


def test_wrong_audience_or_scope_is_permission_denied(security: GrpcSecurity, tmp_path: Path) -> None:
    erp_only = security.token(subject="erp-writer", audience=["erp"], scopes=["erp:read", "erp:write"])
    # Billing's audience but ERP's scopes: the audience admits, the scope does not.
    scoped_wrong = security.token(subject="confused", audience=["billing"], scopes=["erp:write"])

    async def scenario() -> None:
        async with serving(security, "billing", tmp_path) as adapter:
            async with BillingClient(
                security.settings_with_token(erp_only, "erp-only"), adapter.address
            ) as c:
                with pytest.raises(
                    ConfigurationError, match=r"PERMISSION_DENIED.*not for the billing service"
                ):
                    await c.get_totals()
            async with BillingClient(
                security.settings_with_token(scoped_wrong, "wrong"), adapter.address
            ) as c:
                with pytest.raises(
                    ConfigurationError, match=r"PERMISSION_DENIED.*needs the scope billing:read"
                ):
                    await c.get_totals()
            # The reader token reads, and is refused every write.
            async with BillingClient(security.client_settings(READER), adapter.address) as reader:
                assert (await reader.get_totals()).account_count == 0
                with pytest.raises(
                    ConfigurationError, match=r"PostCharges.*PERMISSION_DENIED.*needs the scope billing:write"
                ):
                    await reader.post_charges(billing_pb2.PostChargesRequest(idempotency_key="p-1"))
                with pytest.raises(ConfigurationError, match=r"ApplyBatch.*PERMISSION_DENIED"):
                    await reader.apply_batch(billing_pb2.BillingBatchRequest(idempotency_key="b-1"))
            async with BillingClient(security.client_settings(), adapter.address) as writer:
                assert (await writer.get_totals()).account_count == 0
        async with (
            serving(security, "erp", tmp_path) as adapter,
            ErpClient(security.client_settings(READER), adapter.address) as reader,
        ):
            assert (await reader.get_ledger_totals()).line_count == 0
            assert (await reader.get_inventory_totals()).movement_count == 0
            with pytest.raises(ConfigurationError, match=r"PostJournalBatch.*PERMISSION_DENIED"):
                await reader.post_journal_batch(erp_pb2.JournalBatch(idempotency_key="j-1"))

    run(scenario)


def test_a_dispatcher_with_refused_credentials_stalls_and_quarantines_nothing(
    security: GrpcSecurity, tmp_path: Path
) -> None:
    """A refused token is the operator's to fix: the dispatcher raises (its agent retries the batch until
    the token file is fixed) instead of quarantining every command as refused by the adapter."""
    expired = security.token(lifetime_s=-120.0)

    async def scenario() -> None:
        async with serving(security, "billing", tmp_path) as adapter:
            token_settings = security.settings_with_token(expired, "expired")
            for settings in (security.client_settings(READER), token_settings):
                async with BillingClient(settings, adapter.address) as client:
                    dispatcher = BillingDispatcher(client, FakeRedis(), "t.")  # type: ignore[arg-type]
                    with pytest.raises(ConfigurationError, match="refused this caller's credentials"):
                        await dispatcher.dispatch([upsert("u-1").model_dump_json().encode()])
            # The token file is fixed in place: the same client settings now get through.
            (security.local.directory / "expired.token").write_text(security.token(), "utf-8")
            async with BillingClient(token_settings, adapter.address) as client:
                report = await BillingDispatcher(client, FakeRedis(), "t.").dispatch(  # type: ignore[arg-type]
                    [upsert("u-1").model_dump_json().encode()]
                )
                assert report.exceptions == [] and report.counts["accounts_upserted"] == 1

    run(scenario)


def test_plaintext_against_a_tls_server_fails(security: GrpcSecurity, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(security, "billing", tmp_path) as adapter:
            token = (("authorization", f"Bearer {security.token()}"),)
            error = await refused(raw_totals(adapter.address, None, token))
            assert error.code() is Code.UNAVAILABLE  # no TLS handshake, no call

    run(scenario)


def test_mutual_tls_requires_a_client_certificate(security: GrpcSecurity, tmp_path: Path) -> None:
    token = (("authorization", f"Bearer {security.token()}"),)

    async def scenario() -> None:
        async with serving(security, "billing", tmp_path, mutual=True) as adapter:
            error = await refused(raw_totals(adapter.address, tls(security, certificate=False), token))
            assert error.code() is Code.UNAVAILABLE  # the handshake fails
            assert (await raw_totals(adapter.address, tls(security), token)).account_count == 0
            # Our client without a certificate fails the same way, and says where.
            settings = security.client_settings(certificate=False, grpc_retry_attempts=1)
            async with BillingClient(settings, adapter.address) as client:
                with pytest.raises(RetryableError, match="UNAVAILABLE"):
                    await client.get_totals()
        async with serving(security, "billing", tmp_path, mutual=False) as adapter:
            # TLS without client certificates: the token alone admits.
            assert (
                await raw_totals(adapter.address, tls(security, certificate=False), token)
            ).account_count == 0

    run(scenario)


def test_health_answers_without_a_token(security: GrpcSecurity, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            serving(security, "erp", tmp_path) as adapter,
            grpc.aio.secure_channel(adapter.address, tls(security)) as channel,
        ):
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "hcsync.erp.v1.ErpAdapter"):
                answer = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
            # The business methods on the same channel still need a token.
            call = channel.unary_unary("/hcsync.erp.v1.ErpAdapter/GetLedgerTotals")
            error = await refused(call(b"", timeout=10))
            assert error.code() is Code.UNAUTHENTICATED

    run(scenario)


def test_a_server_without_tls_or_token_settings_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as error:
        build_server("billing", Settings(), f"sqlite:///{tmp_path / 'billing.db'}", port=0)
    for name in (
        "HCSYNC_GRPC_SERVER_CERT_FILE",
        "HCSYNC_GRPC_SERVER_KEY_FILE",
        "HCSYNC_GRPC_TOKEN_PUBLIC_KEY_FILE",
    ):
        assert name in str(error.value)
    assert not (tmp_path / "billing.db").exists()  # refused before it opened anything


def test_the_insecure_opt_out_serves_plaintext_without_tokens(tmp_path: Path) -> None:
    """HCSYNC_GRPC_INSECURE (a developer's machine): plaintext, no token asked."""
    settings = Settings(grpc_insecure=True, grpc_host="127.0.0.1", grpc_timeout_s=5.0)

    async def scenario() -> None:
        adapter = build_server("billing", settings, f"sqlite:///{tmp_path / 'billing.db'}", port=0)
        await adapter.start()
        try:
            assert not adapter.secure
            assert (await raw_totals(adapter.address, None)).account_count == 0
            async with BillingClient(settings, adapter.address) as client:
                assert (await client.get_totals()).account_count == 0
        finally:
            await adapter.stop(grace_s=1.0)

    run(scenario)


def test_a_service_added_later_registers_its_table_and_handlers_see_the_caller(
    security: GrpcSecurity, tmp_path: Path
) -> None:
    """The one interceptor serves any service: a read method, a method not in the table (write), and the
    caller's subject visible to the handler."""
    table = ServiceAccess(service="test.Payer", audience="payer", verbs={"Who": "read"})

    async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        caller = current_caller()
        return (caller.subject if caller else "nobody").encode()

    handlers = grpc.method_handlers_generic_handler(
        "test.Payer",
        {
            "Who": grpc.unary_unary_rpc_method_handler(who),
            "Pay": grpc.unary_unary_rpc_method_handler(who),  # not in the table: needs payer:write
        },
    )
    verifier = TokenVerifier.from_file(security.local.public_key_file, security.local.issuer)
    directory = security.local.directory
    key_and_cert = ((directory / "billing.key").read_bytes(), (directory / "billing.crt").read_bytes())
    reader = security.token(subject="payer-reader", audience=["payer"], scopes=["payer:read"])

    async def scenario() -> None:
        server = grpc.aio.server(interceptors=[BearerTokens(verifier, [table])])
        server.add_generic_rpc_handlers((handlers,))
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([key_and_cert]))
        await server.start()
        try:
            settings = security.settings_with_token(reader, "payer-reader")
            async with secure_aio_channel(f"127.0.0.1:{port}", settings) as channel:
                assert await channel.unary_unary("/test.Payer/Who")(b"", timeout=10) == b"payer-reader"
                error = await refused(channel.unary_unary("/test.Payer/Pay")(b"", timeout=10))
                assert error.code() is Code.PERMISSION_DENIED
                assert "needs the scope payer:write" in str(error.details())
            assert current_caller() is None  # the caller is the call's only
        finally:
            await server.stop(None)

    run(scenario)


def test_tokens_of_a_rotated_key_verify_while_both_keys_are_listed(
    security: GrpcSecurity, tmp_path: Path
) -> None:
    new_key = new_signing_key()
    both = tmp_path / "both.pub"
    both.write_bytes(security.local.public_key_file.read_bytes() + public_key_pem(new_key))

    async def scenario() -> None:
        async with serving(security, "billing", tmp_path, grpc_token_public_key_file=both) as adapter:
            for name, token in (("old", security.token()), ("new", security.token(key=new_key))):
                async with BillingClient(
                    security.settings_with_token(token, name), adapter.address
                ) as client:
                    assert (await client.get_totals()).account_count == 0, name

    run(scenario)


def test_the_embedded_stack_runs_with_tls_and_tokens(stack: Stack, settings: Settings) -> None:
    """The session's stack: its adapters refuse plaintext and callers without a token; commands beside it
    read with the run's read-only token and cannot write; the workers post with theirs."""
    local = stack.run_dir / "grpc"
    assert (local / "ca.crt").is_file() and (local / "worker.token").is_file()
    assert (local / "token-signing.key").stat().st_mode & 0o077 == 0
    assert (local / "reader.token").stat().st_mode & 0o077 == 0
    address = settings.billing_address

    async def probe_refusals() -> None:
        error = await refused(raw_totals(address, None, (("authorization", "Bearer x"),)))
        assert error.code() is Code.UNAVAILABLE
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(local / "ca.crt").read_bytes(),
            private_key=(local / "reader.key").read_bytes(),
            certificate_chain=(local / "reader.crt").read_bytes(),
        )
        error = await refused(raw_totals(address, credentials))
        assert error.code() is Code.UNAUTHENTICATED
        # `hcsync report` beside the stack: it finds the run's read-only credentials by itself.
        async with BillingClient(settings) as client:
            await client.get_totals()
            with pytest.raises(ConfigurationError, match="PERMISSION_DENIED"):
                await client.post_charges(billing_pb2.PostChargesRequest(idempotency_key="p-x"))

    asyncio.run(probe_refusals())
    before = int(report_now(settings).billing.get("chargeCount", 0))
    messages, count, _ = ed_day(uuid.uuid4().hex[:6].upper(), 3)
    assert asyncio.run(send_messages(settings, messages)) == len(messages)
    wait_for_charges(settings, "the secured stack posts", count=before + count)
