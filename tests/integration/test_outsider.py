"""An outsider against the running embedded stack (issue 13): each attack, and the answer it gets.

The session's stack made its own CA, certificates and tokens at start (``<run>/grpc``). The attacks go
to the adapters the stack started, over the network, as someone on the host would make them: no TLS,
TLS without a client certificate, a client certificate without a token, a forged token, a read-only
token on a write, bodies that do not decode, and (with the workers' own write token, the worst case of
a stolen credential) values the backends cannot hold. Nothing here may change the books: every write
is one that must be refused. The same refusals are tested in depth on in-process servers in
test_grpc_security.py and test_adapter_refusals.py; this file proves the running stack is what they test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.clients import BillingClient, ErpClient
from adapters.credentials import READER, WORKER, LocalCredentials, sign_token
from adapters.security import LOCAL_CREDENTIALS_DIR
from cluster.stack import Stack
from proto import billing_pb2, billing_pb2_grpc, erp_pb2

_DEADLINE_S = 10.0


def _local(stack: Stack) -> LocalCredentials:
    return LocalCredentials(stack.run_dir / LOCAL_CREDENTIALS_DIR, stack.settings.grpc_token_issuer)


def _tls(local: LocalCredentials, caller: str | None) -> grpc.ChannelCredentials:
    """TLS trusting the run's CA, with ``caller``'s client certificate (None: no certificate)."""
    ca = local.ca_file.read_bytes()
    if caller is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    cert = (local.directory / f"{caller}.crt").read_bytes()
    key = (local.directory / f"{caller}.key").read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


async def _totals_code(channel: grpc.aio.Channel, token: str | None = None) -> grpc.StatusCode:
    """Call GetTotals on ``channel`` (with ``token`` as the bearer) and return the status code."""
    stub = billing_pb2_grpc.BillingAdapterStub(channel)
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
    try:
        await stub.GetTotals(billing_pb2.GetTotalsRequest(), timeout=_DEADLINE_S, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _charge(amount_cents: int) -> billing_pb2.Charge:
    message = billing_pb2.Charge(
        charge_id="outsider-c-1",
        encounter_id="GH:OUTSIDER-1",
        transaction_type="CG",
        charge_code="99213",
        quantity=1,
        amount_cents=amount_cents,
        currency="USD",
        facility="GH",
        source_event_id="outsider-evt-1",
    )
    message.service_at.FromDatetime(dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC))
    return message


def test_the_stacks_adapters_refuse_whoever_has_no_credentials(stack: Stack) -> None:
    local = _local(stack)
    worker_token = (local.directory / f"{WORKER}.token").read_text()
    address = stack.settings.billing_address

    async def attacks() -> dict[str, Any]:
        answers: dict[str, Any] = {}
        # 1. Plaintext, as before this issue: the TLS port does not speak it.
        async with grpc.aio.insecure_channel(address) as channel:
            answers["plaintext"] = await _totals_code(channel, worker_token)
        # 2. TLS with the stolen worker token but no client certificate: mutual TLS refuses the handshake.
        async with grpc.aio.secure_channel(address, _tls(local, None)) as channel:
            answers["no client certificate"] = await _totals_code(channel, worker_token)
        async with grpc.aio.secure_channel(address, _tls(local, READER)) as channel:
            # 3. A client certificate but no token; a token signed by a key of the outsider's own.
            answers["no token"] = await _totals_code(channel)
            forged = sign_token(
                ec.generate_private_key(ec.SECP256R1()),
                issuer=local.issuer,
                subject="outsider",
                audience=("billing", "erp"),
                scopes=("billing:read", "billing:write", "erp:read", "erp:write"),
            )
            answers["forged token"] = await _totals_code(channel, forged)
            answers["garbage token"] = await _totals_code(channel, "not-a-jwt")
            # 4. The health service answers without a token (probes), over TLS.
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=_DEADLINE_S)
            answers["health"] = reply.status
            # 5. The read-only token on a write.
            reader_token = (local.directory / f"{READER}.token").read_text()
            stub = billing_pb2_grpc.BillingAdapterStub(channel)
            try:
                await stub.PostCharges(
                    billing_pb2.PostChargesRequest(idempotency_key="outsider-p-1", charges=[_charge(100)]),
                    timeout=_DEADLINE_S,
                    metadata=(("authorization", f"Bearer {reader_token}"),),
                )
                answers["reader writes"] = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                answers["reader writes"] = exc.code()
            answers["reader reads"] = await _totals_code(channel, reader_token)
        return answers

    answers = asyncio.run(attacks())
    assert answers["plaintext"] == grpc.StatusCode.UNAVAILABLE, answers
    assert answers["no client certificate"] == grpc.StatusCode.UNAVAILABLE, answers
    assert answers["no token"] == grpc.StatusCode.UNAUTHENTICATED, answers
    assert answers["forged token"] == grpc.StatusCode.UNAUTHENTICATED, answers
    assert answers["garbage token"] == grpc.StatusCode.UNAUTHENTICATED, answers
    assert answers["health"] == health_pb2.HealthCheckResponse.SERVING, answers
    assert answers["reader writes"] == grpc.StatusCode.PERMISSION_DENIED, answers
    assert answers["reader reads"] == grpc.StatusCode.OK, answers


def test_the_stacks_adapters_refuse_what_their_backends_cannot_hold(stack: Stack, tmp_path: Path) -> None:
    """With the workers' own write credentials (a stolen one at worst): the outsider's values are refused."""
    local = _local(stack)
    writer = local.apply(stack.settings, **local.client_settings(WORKER))

    async def attacks() -> dict[str, str]:
        answers: dict[str, str] = {}
        async with BillingClient(writer) as billing, ErpClient(writer) as erp:
            before = await billing.get_totals()
            ledger_before = await erp.get_ledger_totals()
            for name, amount in (("int64 max", 2**63 - 1), ("over a line's bound", 10**12)):
                try:
                    await billing.post_charges(
                        billing_pb2.PostChargesRequest(
                            idempotency_key=f"outsider-{name}", charges=[_charge(amount)]
                        )
                    )
                    answers[name] = "accepted"
                except Exception as exc:  # the client's NotRetryableError, naming the code
                    answers[name] = str(exc)
            # Journal lines to an invented account and legal entity, PHI in the description.
            invented = erp_pb2.JournalBatch(
                batch_id="outsider-j-1",
                idempotency_key="outsider-j-1",
                lines=[
                    erp_pb2.JournalLine(
                        line_id=f"outsider-{side}",
                        journal_date="2025-03-01",
                        account=account,
                        cost_centre="GH-ICU",
                        facility="GH",
                        legal_entity="SHELL-CO",
                        business_unit="GH-ACUTE",
                        debit_cents=debit,
                        credit_cents=credit,
                        currency="USD",
                        encounter_ref="ENC-1-000000000000000000000000",
                        source_event_id="outsider-evt-1",
                        correlation_id="outsider",
                        description="Grace Hopper MRN-445566",
                    )
                    for side, account, debit, credit in (
                        ("dr", "9999-OUTSIDE", 100, 0),
                        ("cr", "4000", 0, 100),
                    )
                ],
            )
            try:
                ack = await erp.post_journal_batch(invented)
                answers["invented ledger"] = " | ".join(r.reason for r in ack.rejected) + (
                    f" accepted={len(ack.accepted)}"
                )
            except Exception as exc:
                answers["invented ledger"] = str(exc)
            after = await billing.get_totals()
            ledger_after = await erp.get_ledger_totals()
            answers["books unchanged"] = str(
                (after.charge_count, after.amount_cents) == (before.charge_count, before.amount_cents)
                and ledger_after.line_count == ledger_before.line_count
            )
        return answers

    answers = asyncio.run(attacks())
    assert "INVALID_ARGUMENT" in answers["int64 max"] and "amount_cents" in answers["int64 max"], answers
    assert "INVALID_ARGUMENT" in answers["over a line's bound"], answers
    assert "accepted=0" in answers["invented ledger"] or "INVALID_ARGUMENT" in answers["invented ledger"], (
        answers
    )
    assert "Grace" not in answers["invented ledger"] and "445566" not in answers["invented ledger"], answers
    assert answers["books unchanged"] == "True", answers


@pytest.mark.parametrize("service", ["billing", "erp"])
def test_an_undecodable_body_to_the_stack_is_invalid_argument(stack: Stack, service: str) -> None:
    local = _local(stack)
    token = (local.directory / f"{WORKER}.token").read_text()
    address = stack.settings.billing_address if service == "billing" else stack.settings.erp_address
    method = (
        "/hcsync.billing.v1.BillingAdapter/PostCharges"
        if service == "billing"
        else "/hcsync.erp.v1.ErpAdapter/PostJournalBatch"
    )

    async def send() -> grpc.StatusCode:
        async with grpc.aio.secure_channel(address, _tls(local, WORKER)) as channel:
            call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            try:
                await call(
                    b"\xff\xff\xff\xff\x0f",
                    timeout=_DEADLINE_S,
                    metadata=(("authorization", f"Bearer {token}"),),
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    assert asyncio.run(send()) == grpc.StatusCode.INVALID_ARGUMENT
