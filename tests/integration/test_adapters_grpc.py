"""The adapters over real gRPC: in-process grpc.aio servers on free ports, SQLite in tmp_path, our clients.

Servers and clients are secured as everywhere (mutual TLS and bearer tokens, tests/grpc_security.py); the
security itself is tested in test_grpc_security.py.

The dispatchers run here too, over the real clients, with the command builders of tests/unit/test_dispatch.

These start only the two adapters, not the embedded stack, so they use none of conftest's fixtures.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from adapters.clients import BillingClient, ErpClient
from adapters.security import secure_aio_channel
from adapters.server import AdapterServer, ServiceName, build_server
from canonical.errors import NotRetryableError, RetryableError, StackError
from canonical.models import MovementType
from canonical.quarantine import ExceptionRecord
from foundation.settings import Settings
from proto import billing_pb2, erp_pb2
from streams.commands import InventoryCommand
from streams.dispatch import BillingDispatcher, ErpDispatcher
from tests.grpc_security import client_settings, running_adapter, shared
from tests.unit.test_dispatch import FakeRedis, stock
from tests.unit.test_dispatch import charge as dispatch_charge
from tests.unit.test_dispatch import coding as dispatch_coding
from tests.unit.test_dispatch import journal as dispatch_journal
from tests.unit.test_dispatch import merge as dispatch_merge
from tests.unit.test_dispatch import upsert as dispatch_upsert

ROOT = Path(__file__).resolve().parents[2]
UpsertStatus = billing_pb2.UpsertAccountResponse.Status
ChargeStatus = billing_pb2.ChargeResult.Status


def free_port() -> int:
    """Return a TCP port that is free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def adapter_settings(**overrides: object) -> Settings:
    """Return settings of a writing client of local adapters, with short deadlines so failures show fast."""
    return client_settings(**overrides)


@asynccontextmanager
async def running(service: ServiceName, tmp_path: Path, port: int = 0) -> AsyncIterator[AdapterServer]:
    """Run one secured adapter server on 127.0.0.1 with its SQLite database in ``tmp_path``."""
    async with running_adapter(service, tmp_path, port=port) as adapter:
        yield adapter


def account_request(
    key: str, encounter_id: str = "GH:V100", status: str = "admitted"
) -> billing_pb2.UpsertAccountRequest:
    account = billing_pb2.Account(
        encounter_id=encounter_id,
        facility="GH",
        department="ICU",
        patient_class="I",
        status=status,
        mrn="MRN-445566",
        family_name="Hopper",
        given_name="Grace",
        birth_date="1906-12-09",
        source_event_id=f"evt-{key}",
        correlation_id="corr-1",
    )
    return billing_pb2.UpsertAccountRequest(idempotency_key=key, account=account)


def charge(charge_id: str, amount_cents: int = 12_500, encounter_id: str = "GH:V100") -> billing_pb2.Charge:
    message = billing_pb2.Charge(
        charge_id=charge_id,
        encounter_id=encounter_id,
        transaction_type="CG",
        charge_code="99213",
        code_system="CPT",
        quantity=1,
        amount_cents=amount_cents,
        currency="USD",
        facility="GH",
        department="ICU",
        source_event_id=f"evt-{charge_id}",
        correlation_id="corr-2",
    )
    message.service_at.FromDatetime(dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC))
    return message


def journal_batch(key: str, event: str, debit: int, credit: int) -> erp_pb2.JournalBatch:
    def leg(side: str, account: str, debit_cents: int, credit_cents: int) -> erp_pb2.JournalLine:
        return erp_pb2.JournalLine(
            line_id=f"{event}-{side}",
            journal_date="2025-03-01",
            account=account,
            legal_entity="GH-LE",
            business_unit="GH-ACUTE",
            debit_cents=debit_cents,
            credit_cents=credit_cents,
            currency="USD",
            encounter_ref="ENC-1",
            source_event_id=event,
        )

    return erp_pb2.JournalBatch(
        batch_id=f"batch-{key}",
        idempotency_key=key,
        currency="USD",
        lines=[leg("dr", "1200", debit, 0), leg("cr", "4000", 0, credit)],
    )


def test_billing_duplicates_return_the_original_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with (
            running("billing", tmp_path) as adapter,
            BillingClient(adapter_settings(), adapter.address) as client,
        ):
            await client.wait_ready(5.0)
            created = await client.upsert_account(account_request("k-1"))
            replay = await client.upsert_account(account_request("k-1"))
            assert (created.status, created.version) == (UpsertStatus.CREATED, 1)
            assert (replay.status, replay.version) == (UpsertStatus.DUPLICATE, 1)

            posted = await client.post_charges(
                billing_pb2.PostChargesRequest(idempotency_key="p-1", charges=[charge("c-1")])
            )
            again = await client.post_charges(
                billing_pb2.PostChargesRequest(idempotency_key="p-1", charges=[charge("c-1")])
            )
            assert posted.results[0].status == ChargeStatus.ACCEPTED
            assert again.results[0].status == ChargeStatus.DUPLICATE
            assert again.results[0].posting_id == posted.results[0].posting_id

            orphan = await client.post_charges(
                billing_pb2.PostChargesRequest(
                    idempotency_key="p-2", charges=[charge("c-2", encounter_id="GH:V404")]
                )
            )
            assert orphan.results[0].status == ChargeStatus.REJECTED
            assert orphan.results[0].reason == "no account for encounter GH:V404"

            totals = await client.get_totals()
            assert (totals.account_count, totals.charge_count, totals.amount_cents) == (1, 1, 12_500)

    asyncio.run(scenario())
    # The server ran in this process: nothing it logged names the patient.
    for value in ("Hopper", "Grace", "MRN-445566", "1906-12-09"):
        assert value not in caplog.text


def test_concurrent_duplicate_post_charges_store_exactly_one_row(tmp_path: Path) -> None:
    charge_ids = [f"c-{n}" for n in range(20)]

    async def scenario() -> list[tuple[billing_pb2.PostChargesResponse, billing_pb2.PostChargesResponse]]:
        async with running("billing", tmp_path) as adapter:
            settings = adapter_settings()
            # Two clients, two channels: the two posts really travel side by side.
            async with (
                BillingClient(settings, adapter.address) as one,
                BillingClient(settings, adapter.address) as two,
            ):
                await one.upsert_account(account_request("k-1"))

                async def both(
                    charge_id: str,
                ) -> tuple[billing_pb2.PostChargesResponse, billing_pb2.PostChargesResponse]:
                    return await asyncio.gather(
                        one.post_charges(
                            billing_pb2.PostChargesRequest(
                                idempotency_key=f"a-{charge_id}", charges=[charge(charge_id)]
                            )
                        ),
                        two.post_charges(
                            billing_pb2.PostChargesRequest(
                                idempotency_key=f"b-{charge_id}", charges=[charge(charge_id)]
                            )
                        ),
                    )

                outcomes = await asyncio.gather(*(both(charge_id) for charge_id in charge_ids))
                totals = await one.get_totals()
                assert totals.charge_count == len(charge_ids)
                return outcomes

    outcomes = asyncio.run(scenario())
    for first, second in outcomes:
        statuses = sorted(ChargeStatus.Name(r.status) for r in (*first.results, *second.results))
        assert statuses == ["ACCEPTED", "DUPLICATE"]
        assert first.results[0].posting_id == second.results[0].posting_id
    with sqlite3.connect(tmp_path / "billing.db") as raw:
        rows = raw.execute("SELECT charge_id, count(*) FROM billing_charges GROUP BY charge_id").fetchall()
    assert sorted(rows) == sorted((charge_id, 1) for charge_id in charge_ids)


def test_erp_replays_return_the_original_ack(tmp_path: Path, erp_masterdata: str) -> None:
    async def scenario() -> None:
        async with (
            running("erp", tmp_path) as adapter,
            ErpClient(adapter_settings(), adapter.address) as client,
        ):
            await client.wait_ready(5.0)
            ack = await client.post_journal_batch(journal_batch("b-1", "evt-1", 500, 500))
            assert [a.duplicate for a in ack.accepted] == [False, False]
            assert await client.post_journal_batch(journal_batch("b-1", "evt-1", 500, 500)) == ack

            again = await client.post_journal_batch(journal_batch("b-2", "evt-1", 500, 500))
            assert [a.duplicate for a in again.accepted] == [True, True]
            assert [a.posting_id for a in again.accepted] == [a.posting_id for a in ack.accepted]

            unbalanced = await client.post_journal_batch(journal_batch("b-3", "evt-2", 500, 499))
            assert list(unbalanced.accepted) == []
            assert all("evt-2 does not balance" in r.reason for r in unbalanced.rejected)

            totals = await client.get_ledger_totals()
            assert (totals.line_count, totals.batch_count) == (2, 3)
            assert totals.total_debit_cents == totals.total_credit_cents == 500
            assert [(a.legal_entity, a.account, a.line_count) for a in totals.by_account] == [
                ("GH-LE", "1200", 1),
                ("GH-LE", "4000", 1),
            ]

    asyncio.run(scenario())


def test_an_invalid_request_is_not_retryable_and_names_the_field(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            running("billing", tmp_path) as adapter,
            BillingClient(adapter_settings(), adapter.address) as client,
        ):
            with pytest.raises(
                NotRetryableError, match=r"UpsertAccount.*INVALID_ARGUMENT.*account\.encounter_id"
            ):
                await client.upsert_account(account_request("k-1", encounter_id=""))
        async with running("erp", tmp_path) as adapter, ErpClient(adapter_settings(), adapter.address) as erp:
            bad = journal_batch("b-1", "evt-1", 1, 1)
            bad.currency = ""
            with pytest.raises(NotRetryableError, match=r"PostJournalBatch.*INVALID_ARGUMENT.*currency"):
                await erp.post_journal_batch(bad)

    asyncio.run(scenario())


def test_an_undecodable_body_is_invalid_argument_and_the_server_goes_on(
    tmp_path: Path, erp_masterdata: str
) -> None:
    """Bytes that are not the method's message: INVALID_ARGUMENT naming the method, never UNKNOWN."""

    async def refused(address: str, method: str) -> None:
        async with secure_aio_channel(address, adapter_settings()) as channel:
            call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.aio.AioRpcError) as answer:
                await call(b"\xff\xff\xff\xff not a protobuf message", timeout=5)
        assert answer.value.code() is grpc.StatusCode.INVALID_ARGUMENT, answer.value
        assert method in str(answer.value.details())

    async def scenario() -> None:
        async with running("billing", tmp_path) as adapter:
            await refused(adapter.address, "/hcsync.billing.v1.BillingAdapter/PostCharges")
            async with BillingClient(adapter_settings(), adapter.address) as client:
                upserted = await client.upsert_account(account_request("k-after-garbage"))
                assert upserted.account_id == "GH:V100"
        async with running("erp", tmp_path) as adapter:
            await refused(adapter.address, "/hcsync.erp.v1.ErpAdapter/PostJournalBatch")
            async with ErpClient(adapter_settings(), adapter.address) as erp:
                ack = await erp.post_journal_batch(journal_batch("b-after-garbage", "evt-1", 100, 100))
                assert len(ack.accepted) == 2

    asyncio.run(scenario())


def test_a_server_that_is_down_raises_retryable_quickly() -> None:
    settings = adapter_settings(grpc_timeout_s=0.3, grpc_retry_attempts=3)
    address = f"127.0.0.1:{free_port()}"

    async def scenario() -> None:
        async with BillingClient(settings, address) as billing, ErpClient(settings, address) as erp:
            started = time.monotonic()
            with pytest.raises(RetryableError, match=r"GetTotals.*after 3 attempts.*UNAVAILABLE"):
                await billing.get_totals()
            with pytest.raises(RetryableError, match=r"PostJournalBatch.*after 3 attempts"):
                await erp.post_journal_batch(journal_batch("b-1", "evt-1", 1, 1))
            assert time.monotonic() - started < 5.0
            with pytest.raises(StackError, match=r"not ready after 0\.5s"):
                await billing.wait_ready(0.5)

    asyncio.run(scenario())


def test_retries_reach_a_server_that_starts_late(tmp_path: Path) -> None:
    port = free_port()
    settings = adapter_settings(grpc_timeout_s=1.0, grpc_retry_attempts=8)

    async def scenario() -> None:
        async with BillingClient(settings, f"127.0.0.1:{port}", backoff_s=0.1) as client:
            call = asyncio.create_task(client.upsert_account(account_request("k-1")))
            await asyncio.sleep(0.5)
            assert not call.done()
            async with running("billing", tmp_path, port=port):
                response = await call
                assert response.status == UpsertStatus.CREATED

    asyncio.run(scenario())


def test_a_client_of_the_wrong_service_fails_fast(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            running("billing", tmp_path) as adapter,
            ErpClient(adapter_settings(), adapter.address) as client,
        ):
            with pytest.raises(NotRetryableError, match=r"GetLedgerTotals.*UNIMPLEMENTED"):
                await client.get_ledger_totals()
            with pytest.raises(StackError, match="is not serving"):
                await client.wait_ready(5.0)

    asyncio.run(scenario())


def test_two_servers_cannot_share_a_port(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running("billing", tmp_path) as adapter:
            with pytest.raises(StackError, match="cannot listen"):
                build_server(
                    "erp",
                    shared().server_settings("erp"),
                    f"sqlite:///{tmp_path / 'erp.db'}",
                    port=adapter.port,
                )

    asyncio.run(scenario())


def test_serve_logs_ready_and_stops_on_sigterm(tmp_path: Path, erp_masterdata: str) -> None:
    port = free_port()
    server = {f"HCSYNC_{k.upper()}": str(v) for k, v in shared().local.server_settings("erp").items()}
    env = os.environ | server | {"HCSYNC_HOME_DIR": str(tmp_path), "HCSYNC_GRPC_HOST": "127.0.0.1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.server", "erp", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        ready = ""
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while "ready" not in ready and time.monotonic() < deadline:
            ready = process.stderr.readline()
            lines.append(ready)
            assert ready or process.poll() is None, (
                f"server exited before it was ready; stderr: {lines[-20:]}"
            )
        assert f"ready: erp adapter on 127.0.0.1:{port}" in ready, (
            f"expected 'ready: erp adapter on 127.0.0.1:{port}' within 60s; stderr: {lines[-20:]}"
        )

        async def call() -> int:
            async with ErpClient(adapter_settings(), f"127.0.0.1:{port}") as client:
                ack = await client.post_journal_batch(journal_batch("b-1", "evt-1", 100, 100))
                return len(ack.accepted)

        assert asyncio.run(call()) == 2
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
        assert process.returncode == 0, rest
        assert "stopped: erp adapter" in rest
        # With no database URL set, the default is a SQLite file under the home directory.
        assert (tmp_path / "adapters" / "erp.db").is_file()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def coding_request(
    key: str, coded_at: dt.datetime, *codes: str, encounter_id: str = "GH:V100"
) -> billing_pb2.UpdateCodingRequest:
    request = billing_pb2.UpdateCodingRequest(
        idempotency_key=key,
        encounter_id=encounter_id,
        diagnoses=[billing_pb2.Diagnosis(sequence=n, code=code) for n, code in enumerate(codes, 1)],
        procedures=[billing_pb2.Procedure(sequence=1, code="0JH606Z")],
        drg=billing_pb2.Drg(code="291", code_system="MS-DRG"),
        source_event_id=f"evt-{key}",
    )
    request.coded_at.FromDatetime(coded_at)
    return request


def merge_request(
    key: str, prior: str = "MRN-445566", surviving: str = "MRN-990000"
) -> billing_pb2.MergePatientRequest:
    return billing_pb2.MergePatientRequest(
        idempotency_key=key,
        prior_mrn=prior,
        surviving=billing_pb2.Patient(mrn=surviving, family_name="Hopper", given_name="Grace"),
        source_event_id=f"evt-{key}",
    )


def movement(
    movement_id: str,
    item_code: str = "HEP",
    quantity_milli: int = 2_000,
    kind: str = "issue",
    unit_cost_cents: int | None = 125,
) -> erp_pb2.InventoryMovement:
    message = erp_pb2.InventoryMovement(
        movement_id=movement_id,
        movement_type=kind,
        item_code=item_code,
        quantity_milli=quantity_milli,
        unit="mL",
        facility="GH",
        cost_centre="GH-ICU",
        legal_entity="GH-LE",
        business_unit="GH-ACUTE",
        inventory_account="1400",
        movement_date="2025-03-01",
        encounter_ref="ENC-1",
        source_event_id=f"evt-{movement_id}",
    )
    if unit_cost_cents is not None:
        message.unit_cost_cents = unit_cost_cents
    return message


def test_billing_coding_merge_and_versions_over_grpc(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    coded_at = dt.datetime(2025, 3, 2, 12, 0, tzinfo=dt.UTC)
    CodingStatus = billing_pb2.UpdateCodingResponse.Status
    MergeStatus = billing_pb2.MergePatientResponse.Status

    async def scenario() -> None:
        async with (
            running("billing", tmp_path) as adapter,
            BillingClient(adapter_settings(), adapter.address) as client,
        ):
            await client.wait_ready(5.0)
            # Coding and the merge arrive before the account they concern.
            applied = await client.update_coding(coding_request("d-2", coded_at, "I50.9", "E11.9"))
            assert (applied.status, applied.version) == (CodingStatus.APPLIED, 1)
            stale = await client.update_coding(
                coding_request("d-1", coded_at - dt.timedelta(hours=1), "R07.9")
            )
            assert (stale.status, stale.version) == (CodingStatus.STALE, 1)
            replay = await client.update_coding(coding_request("d-2", coded_at, "I50.9", "E11.9"))
            assert replay.status == CodingStatus.DUPLICATE
            merged = await client.merge_patient(merge_request("m-1"))
            assert (merged.status, merged.accounts_moved) == (MergeStatus.MERGED, 0)
            assert (await client.merge_patient(merge_request("m-1"))).status == MergeStatus.DUPLICATE

            newer = account_request("k-2", status="discharged")
            newer.account.state_version = 2
            assert (await client.upsert_account(newer)).status == UpsertStatus.CREATED
            older = account_request("k-1", status="admitted")
            older.account.state_version = 1
            assert (await client.upsert_account(older)).status == UpsertStatus.STALE
            back = account_request("k-3", status="admitted")
            back.account.state_version = 3
            assert (await client.upsert_account(back)).status == UpsertStatus.UPDATED

            reversal = charge("c-2", -12_500)  # a CG with a negative amount: a reversal
            posted = await client.post_charges(
                billing_pb2.PostChargesRequest(idempotency_key="p-1", charges=[charge("c-1"), reversal])
            )
            assert [r.status for r in posted.results] == [ChargeStatus.ACCEPTED, ChargeStatus.ACCEPTED]

            with pytest.raises(
                NotRetryableError, match=r"UpdateCoding.*INVALID_ARGUMENT.*diagnoses\[0\]\.code"
            ):
                await client.update_coding(coding_request("d-3", coded_at, ""))
            with pytest.raises(NotRetryableError, match=r"MergePatient.*INVALID_ARGUMENT.*prior_mrn"):
                await client.merge_patient(merge_request("m-2", prior=""))

            totals = await client.get_totals()
            assert (
                totals.account_count,
                totals.charge_count,
                totals.amount_cents,
                totals.reversal_count,
            ) == (
                1,
                2,
                0,
                1,
            )
            assert [(s.status, s.account_count) for s in totals.by_status] == [("admitted", 1)]
            assert (totals.coded_account_count, totals.diagnosis_count, totals.procedure_count) == (1, 2, 1)
            assert (totals.drg_count, totals.merge_count, totals.merged_account_count) == (1, 1, 1)

    asyncio.run(scenario())
    for value in ("Hopper", "Grace", "MRN-445566", "MRN-990000", "1906-12-09", "GH:V100"):
        assert value not in caplog.text


def test_erp_inventory_over_grpc(tmp_path: Path, erp_masterdata: str) -> None:
    async def scenario() -> None:
        async with (
            running("erp", tmp_path) as adapter,
            ErpClient(adapter_settings(), adapter.address) as client,
        ):
            await client.wait_ready(5.0)
            batch = erp_pb2.InventoryMovementBatch(
                batch_id="inv-1",
                idempotency_key="s-1",
                movements=[
                    movement("m-1"),
                    movement("m-2", kind="return", quantity_milli=500),
                    movement("m-3", quantity_milli=0),
                ],
            )
            ack = await client.post_inventory_movements(batch)
            assert [(a.movement_id, a.duplicate) for a in ack.accepted] == [("m-1", False), ("m-2", False)]
            assert [(r.movement_id, r.reason) for r in ack.rejected] == [
                ("m-3", "movement m-3: quantity_milli must be above zero, got 0")
            ]
            assert await client.post_inventory_movements(batch) == ack
            again = await client.post_inventory_movements(
                erp_pb2.InventoryMovementBatch(
                    batch_id="inv-2", idempotency_key="s-2", movements=[movement("m-1")]
                )
            )
            assert again.accepted[0].duplicate and again.accepted[0].posting_id == ack.accepted[0].posting_id

            with pytest.raises(
                NotRetryableError, match=r"PostInventoryMovements.*INVALID_ARGUMENT.*batch_id"
            ):
                await client.post_inventory_movements(erp_pb2.InventoryMovementBatch(idempotency_key="s-3"))

            totals = await client.get_inventory_totals()
            assert (
                totals.movement_count,
                totals.batch_count,
                totals.issued_milli,
                totals.returned_milli,
            ) == (
                2,
                2,
                2_000,
                500,
            )
            assert [(i.facility, i.item_code, i.net_milli, i.movement_count) for i in totals.by_item] == [
                ("GH", "HEP", 1_500, 2)
            ]
            # 2.000 mL issued at 1.25 (2.50), 0.500 returned (0.625, rounded half up to 0.63).
            assert (totals.value_cents, totals.by_item[0].value_cents) == (187, 187)
            assert [
                (a.legal_entity, a.inventory_account, a.value_cents, a.movement_count)
                for a in totals.by_inventory_account
            ] == [("GH-LE", "1400", 187, 2)]
            # The ledger is untouched by inventory.
            assert (await client.get_ledger_totals()).line_count == 0

    asyncio.run(scenario())


def test_dispatchers_over_grpc(tmp_path: Path, erp_masterdata: str) -> None:
    """Both dispatchers with the real clients against real servers; Redis is a dict (a hint only)."""
    redis = FakeRedis()

    def encoded(*commands: object) -> list[bytes]:
        return [command.model_dump_json().encode() for command in commands]  # type: ignore[attr-defined]

    async def scenario() -> None:
        settings = adapter_settings()
        async with (
            running("billing", tmp_path) as billing_adapter,
            running("erp", tmp_path) as erp_adapter,
            BillingClient(settings, billing_adapter.address) as billing,
            ErpClient(settings, erp_adapter.address) as erp,
        ):
            to_billing = BillingDispatcher(billing, redis, "t.")  # type: ignore[arg-type]
            report = await to_billing.dispatch(
                encoded(
                    dispatch_merge("m-1"),
                    dispatch_upsert("u-1"),
                    dispatch_coding("d-1"),
                    dispatch_charge("c-1"),
                )
            )
            assert report.exceptions == []
            assert report.counts == {
                "dispatch_cache_hits": 0,
                "merges": 1,
                "accounts_merged": 0,
                "accounts_upserted": 1,
                "coding_updates": 1,
                "charges_posted": 1,
            }
            totals = await billing.get_totals()
            assert (totals.account_count, totals.merged_account_count, totals.coded_account_count) == (
                1,
                1,
                1,
            )

            to_erp = ErpDispatcher(erp, redis, "t.", "USD")  # type: ignore[arg-type]
            journal = dispatch_journal("j-1")
            report = await to_erp.dispatch(encoded(journal, dispatch_stock("s-1")))
            assert report.exceptions == []
            assert (report.counts["journal_lines_accepted"], report.counts["inventory_movements"]) == (2, 1)
            inventory = await erp.get_inventory_totals()
            assert [(i.item_code, i.net_milli) for i in inventory.by_item] == [("HEP", 2_000)]
            assert inventory.value_cents == 250
            ledger = await erp.get_ledger_totals()
            assert {a.legal_entity for a in ledger.by_account} == {
                line.legal_entity for line in journal.lines
            }

    asyncio.run(scenario())


def dispatch_stock(command_id: str) -> InventoryCommand:
    """The dispatch test's stock command, its movements costed by the item master."""
    command = stock(command_id, ("HEP", MovementType.ISSUE, 2_000))
    enrichment = {"inventory_account": "1400", "unit_cost_cents": 125}
    movements = tuple(moved.model_copy(update=enrichment) for moved in command.movements)
    return command.model_copy(update={"movements": movements})


def batch_item(request: object) -> billing_pb2.BillingBatchItem:
    """The ApplyBatch item that carries ``request``."""
    if isinstance(request, billing_pb2.UpsertAccountRequest):
        return billing_pb2.BillingBatchItem(upsert_account=request)
    if isinstance(request, billing_pb2.UpdateCodingRequest):
        return billing_pb2.BillingBatchItem(update_coding=request)
    assert isinstance(request, billing_pb2.MergePatientRequest)
    return billing_pb2.BillingBatchItem(merge_patient=request)


def test_billing_apply_batch_over_grpc(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    coded_at = dt.datetime(2025, 3, 2, 12, 0, tzinfo=dt.UTC)
    CodingStatus = billing_pb2.UpdateCodingResponse.Status
    MergeStatus = billing_pb2.MergePatientResponse.Status

    async def scenario() -> None:
        async with (
            running("billing", tmp_path) as adapter,
            BillingClient(adapter_settings(), adapter.address) as client,
        ):
            await client.wait_ready(5.0)
            request = billing_pb2.BillingBatchRequest(
                idempotency_key="b-1",
                items=[
                    batch_item(account_request("k-1")),
                    batch_item(coding_request("d-1", coded_at, "I50.9")),
                    batch_item(coding_request("d-2", coded_at, "")),  # refused: diagnoses[0].code
                    batch_item(account_request("k-1", encounter_id="GH:V200")),  # refused: key reused
                    batch_item(merge_request("m-1")),
                ],
            )
            applied = await client.apply_batch(request)
            assert [r.WhichOneof("outcome") for r in applied.results] == [
                "upsert_account",
                "update_coding",
                "error",
                "error",
                "merge_patient",
            ]
            assert applied.results[0].upsert_account.status == UpsertStatus.CREATED
            assert applied.results[1].update_coding.status == CodingStatus.APPLIED
            assert applied.results[4].merge_patient.status == MergeStatus.MERGED
            assert [(r.error.code, r.error.field) for r in applied.results[2:4]] == [
                ("INVALID_ARGUMENT", "diagnoses[0].code"),
                ("ALREADY_EXISTS", "idempotency_key"),
            ]
            assert applied.results[3].error.message == (
                "UpsertAccount: idempotency_key: k-1 was already used for another account or another event"
            )

            replay = await client.apply_batch(request)
            assert replay.results[0].upsert_account.status == UpsertStatus.DUPLICATE
            assert replay.results[1].update_coding.status == CodingStatus.DUPLICATE
            assert replay.results[4].merge_patient.status == MergeStatus.DUPLICATE
            assert replay.results[2:4] == applied.results[2:4]

            with pytest.raises(NotRetryableError, match=r"ApplyBatch.*INVALID_ARGUMENT.*idempotency_key"):
                await client.apply_batch(billing_pb2.BillingBatchRequest(items=request.items))

            totals = await client.get_totals()
            assert (totals.account_count, totals.coded_account_count, totals.merge_count) == (1, 1, 1)
            assert totals.merged_account_count == 1

    asyncio.run(scenario())
    # The refusals name fields, never values: nothing the server logged names the patient or the visit.
    for value in ("Hopper", "Grace", "MRN-445566", "MRN-990000", "1906-12-09", "GH:V100", "GH:V200"):
        assert value not in caplog.text


def test_the_billing_dispatcher_quarantines_a_refused_item_over_grpc(tmp_path: Path) -> None:
    """A refused item comes back in its ApplyBatch result: the dispatcher quarantines it, the rest commit."""
    redis = FakeRedis()

    async def scenario() -> None:
        settings = adapter_settings()
        async with (
            running("billing", tmp_path) as adapter,
            BillingClient(settings, adapter.address) as billing,
        ):
            dispatcher = BillingDispatcher(billing, redis, "t.")  # type: ignore[arg-type]
            bad = dispatch_merge("m-bad", prior="MRN-1", surviving="MRN-1")  # a patient into itself
            commands = (dispatch_upsert("u-1"), bad, dispatch_coding("d-1"), dispatch_charge("c-1"))
            report = await dispatcher.dispatch([c.model_dump_json().encode() for c in commands])
            [raw] = report.exceptions
            record = ExceptionRecord.model_validate_json(raw)
            assert (record.rule, record.source_message_id) == ("ADAPTER-REFUSED", "evt-m-bad")
            assert record.reason == (
                "message evt-m-bad: [ADAPTER-REFUSED] NotRetryableError: ApplyBatch to billing adapter at "
                f"{adapter.address} refused an item: INVALID_ARGUMENT: MergePatient: surviving.mrn: "
                "is the prior identifier: nothing to merge"
            )
            assert report.counts == {
                "dispatch_cache_hits": 0,
                "accounts_upserted": 1,
                "coding_updates": 1,
                "charges_posted": 1,
            }
            totals = await billing.get_totals()
            assert (totals.account_count, totals.coded_account_count, totals.charge_count) == (1, 1, 1)
            assert totals.merge_count == 0

    asyncio.run(scenario())
