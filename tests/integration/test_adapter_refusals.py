"""What the adapters refuse over real gRPC (issue 13): each refusal an outsider's call met, as clients see it.

In-process grpc.aio servers on free ports built by adapters.server.build_server, SQLite in tmp_path, our
clients; the ERP reads its master data from a real redis-server of ours holding the adapter tests' set (the
demo set plus the GH/NH network), loaded as `hcsync masterdata load` loads it. These start only the
adapters and Redis, not the embedded stack, so they use none of conftest's fixtures.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from adapters.bounds import MAX_CALL_CENTS, MAX_LINE_CENTS
from adapters.clients import BillingClient, ErpClient
from adapters.server import AdapterServer, ServiceName
from canonical import ids
from canonical.errors import NotRetryableError, RetryableError
from canonical.quarantine import ExceptionRecord
from foundation.settings import Settings
from foundation.sql import INT64_MAX
from proto import billing_pb2, erp_pb2
from streams.dispatch import KEY_REUSED, BillingDispatcher, ErpDispatcher
from tests.grpc_security import client_settings, running_adapter
from tests.masterdata import ledger_set, settings_redis
from tests.unit.test_dispatch import FakeRedis
from tests.unit.test_dispatch import charge as charge_command
from tests.unit.test_dispatch import journal as journal_command
from tests.unit.test_dispatch import upsert as upsert_command

ChargeStatus = billing_pb2.ChargeResult.Status
PHI = "Grace Hopper MRN-445566"  # what the outsider wrote into codes and free text


def adapter_settings(**overrides: object) -> Settings:
    """Return settings of a writing client of local adapters, with short deadlines so failures show fast."""
    return client_settings(**{"grpc_retry_attempts": 2} | overrides)


@asynccontextmanager
async def running(service: ServiceName, tmp_path: Path) -> AsyncIterator[AdapterServer]:
    """Run one secured adapter server on 127.0.0.1 with its SQLite database in ``tmp_path``."""
    async with running_adapter(service, tmp_path) as adapter:
        yield adapter


def account(key: str = "k-1", encounter_id: str = "GH:V100") -> billing_pb2.UpsertAccountRequest:
    return billing_pb2.UpsertAccountRequest(
        idempotency_key=key,
        account=billing_pb2.Account(
            encounter_id=encounter_id,
            facility="GH",
            department="ICU",
            patient_class="I",
            status="admitted",
            mrn="MRN-445566",
            family_name="Hopper",
            given_name="Grace",
            source_event_id=f"evt-{key}",
        ),
    )


def charge(charge_id: str, amount_cents: int = 12_500, code: str = "99213") -> billing_pb2.Charge:
    message = billing_pb2.Charge(
        charge_id=charge_id,
        encounter_id="GH:V100",
        transaction_type="CD" if amount_cents < 0 else "CG",
        charge_code=code,
        quantity=1,
        amount_cents=amount_cents,
        currency="USD",
        facility="GH",
        source_event_id=f"evt-{charge_id}",
    )
    message.service_at.FromDatetime(dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC))
    return message


def lines(event: str, cents: int, **changes: str) -> list[erp_pb2.JournalLine]:
    """Return the balanced receivable/revenue pair of one event; ``changes`` apply to the revenue line."""

    def leg(side: str, account: str, debit: int, credit: int) -> erp_pb2.JournalLine:
        return erp_pb2.JournalLine(
            line_id=f"{event}-{side}",
            journal_date="2025-03-01",
            account=account,
            cost_centre="GH-ICU",
            facility="GH",
            legal_entity="GH-LE",
            business_unit="GH-ACUTE",
            debit_cents=debit,
            credit_cents=credit,
            currency="USD",
            encounter_ref="ENC-1",
            source_event_id=event,
            description="99213",
        )

    revenue = leg("cr", "4000", 0, cents)
    for name, value in changes.items():
        setattr(revenue, name, value)
    return [leg("dr", "1200", cents, 0), revenue]


def journal(key: str, *journal_lines: erp_pb2.JournalLine) -> erp_pb2.JournalBatch:
    return erp_pb2.JournalBatch(batch_id=key, idempotency_key=key, currency="USD", lines=journal_lines)


def test_a_charge_beyond_the_line_bound_is_invalid_argument_naming_the_field(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            running("billing", tmp_path) as billing,
            BillingClient(adapter_settings(), billing.address) as client,
        ):
            await client.upsert_account(account())
            with pytest.raises(NotRetryableError) as refused:
                await client.post_charges(
                    billing_pb2.PostChargesRequest(
                        idempotency_key="p-1", charges=[charge("c-1"), charge("c-2", 2**63 - 1)]
                    )
                )
            assert str(refused.value).endswith(
                "failed: INVALID_ARGUMENT: PostCharges: charges[1].amount_cents: exceeds the bound of "
                f"{MAX_LINE_CENTS} cents in absolute value"
            )
            over = [charge(f"c-{n}", MAX_LINE_CENTS) for n in range(MAX_CALL_CENTS // MAX_LINE_CENTS + 1)]
            with pytest.raises(
                NotRetryableError, match="INVALID_ARGUMENT: PostCharges: charges: amount_cents"
            ):
                await client.post_charges(billing_pb2.PostChargesRequest(idempotency_key="p-2", charges=over))
            assert (await client.get_totals()).charge_count == 0

    asyncio.run(scenario())


def test_a_credit_without_an_original_is_held_until_its_original_comes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            running("billing", tmp_path) as billing,
            BillingClient(adapter_settings(), billing.address) as client,
        ):
            await client.upsert_account(account())
            response = await client.post_charges(
                billing_pb2.PostChargesRequest(idempotency_key="p-1", charges=[charge("c-1", -123_456_789)])
            )
            [result] = response.results
            assert (result.status, result.posting_id) == (ChargeStatus.HELD, "")
            assert result.reason.startswith("charges[0].amount_cents: a credit needs an original")
            totals = await client.get_totals()
            assert (totals.charge_count, totals.amount_cents, totals.held_credit_count) == (0, 0, 1)
            # Its original comes: both are in the books, the credit posted by the original's call.
            response = await client.post_charges(
                billing_pb2.PostChargesRequest(idempotency_key="p-2", charges=[charge("c-2", 123_456_789)])
            )
            assert [(r.charge_id, r.status) for r in response.released] == [("c-1", ChargeStatus.ACCEPTED)]
            totals = await client.get_totals()
            assert (totals.charge_count, totals.amount_cents, totals.reversal_count) == (2, 0, 1)
            assert totals.held_credit_count == 0

    asyncio.run(scenario())


def test_a_reused_key_is_already_exists_naming_it_and_a_replay_is_duplicate(
    tmp_path: Path, erp_masterdata: str
) -> None:
    async def scenario() -> None:
        async with (
            running("billing", tmp_path) as billing,
            running("erp", tmp_path) as erp,
            BillingClient(adapter_settings(), billing.address) as client,
            ErpClient(adapter_settings(), erp.address) as erp_client,
        ):
            await client.upsert_account(account())
            request = billing_pb2.PostChargesRequest(idempotency_key="p-1", charges=[charge("c-1")])
            first = await client.post_charges(request)
            reused = billing_pb2.PostChargesRequest(idempotency_key="p-1", charges=[charge("c-1", 99)])
            with pytest.raises(NotRetryableError) as refused:
                await client.post_charges(reused)
            assert str(refused.value).endswith(
                "ALREADY_EXISTS: PostCharges: idempotency_key: p-1 was already used for another set of "
                "charges"
            )
            replay = await client.post_charges(request)
            assert [(r.status, r.posting_id) for r in replay.results] == [
                (ChargeStatus.DUPLICATE, first.results[0].posting_id)
            ]
            with pytest.raises(
                NotRetryableError, match="ALREADY_EXISTS: UpsertAccount: idempotency_key: k-1"
            ):
                await client.upsert_account(account("k-1", "GH:V200"))

            ack = await erp_client.post_journal_batch(journal("j-1", *lines("evt-1", 100)))
            assert len(ack.accepted) == 2
            with pytest.raises(NotRetryableError) as refused:
                await erp_client.post_journal_batch(journal("j-1", *lines("evt-1", 200)))
            assert str(refused.value).endswith(
                "ALREADY_EXISTS: PostJournalBatch: idempotency_key: j-1 was already used for another "
                "journal batch"
            )
            assert await erp_client.post_journal_batch(journal("j-1", *lines("evt-1", 100))) == ack

    asyncio.run(scenario())


def test_totals_answer_after_int64_max_rows(tmp_path: Path, erp_masterdata: str) -> None:
    async def scenario() -> None:
        async with (
            running("billing", tmp_path) as billing,
            running("erp", tmp_path) as erp,
            BillingClient(adapter_settings(), billing.address) as client,
            ErpClient(adapter_settings(), erp.address) as erp_client,
        ):
            await client.upsert_account(account())
            await client.post_charges(
                billing_pb2.PostChargesRequest(idempotency_key="p-1", charges=[charge("c-1")])
            )
            await erp_client.post_journal_batch(journal("j-1", *lines("evt-1", 100)))
            # What the outsider's two calls left before the bounds: rows at the int64 maximum.
            with sqlite3.connect(tmp_path / "billing.db") as raw:
                for n in (1, 2):
                    raw.execute(
                        "INSERT INTO billing_charges SELECT charge_id || ?, posting_id || ?, encounter_id, "
                        "transaction_id, transaction_type, charge_code, code_system, description, quantity, "
                        "unit_amount_cents, ?, currency, service_at, facility, department, source_event_id, "
                        "correlation_id, request_key, posted_at, procedure_code, ndc_code, is_supply, "
                        "filler_order_number, unit_cost_cents FROM billing_charges WHERE charge_id = 'c-1'",
                        (n, n, INT64_MAX),
                    )
            with sqlite3.connect(tmp_path / "erp.db") as raw:
                for n in (1, 2):
                    raw.execute(
                        "INSERT INTO erp_journal_lines SELECT line_id || ?, posting_id || ?, batch_key, "
                        "journal_date, account, cost_centre, facility, ?, 0, currency, encounter_ref, "
                        "source_event_id, correlation_id, description, posted_at, legal_entity, "
                        "business_unit FROM erp_journal_lines WHERE line_id = 'evt-1-dr'",
                        (n, n, INT64_MAX),
                    )
            totals = await client.get_totals()
            assert (totals.charge_count, totals.amount_cents) == (3, INT64_MAX)
            ledger = await erp_client.get_ledger_totals()
            assert (ledger.line_count, ledger.total_debit_cents, ledger.total_credit_cents) == (
                4,
                INT64_MAX,
                100,
            )
            assert (await erp_client.get_inventory_totals()).movement_count == 0

    asyncio.run(scenario())


def test_the_erp_rejects_lines_outside_master_data_and_free_text(tmp_path: Path, erp_masterdata: str) -> None:
    async def scenario() -> None:
        async with (
            running("erp", tmp_path) as erp,
            ErpClient(adapter_settings(), erp.address) as client,
        ):
            ack = await client.post_journal_batch(
                journal(
                    "j-1",
                    *lines("evt-1", 100, account="7777"),
                    *lines("evt-2", 100, legal_entity=PHI),
                    *lines("evt-3", 100, cost_centre="CC-INVENTED"),
                    *lines("evt-4", 100, facility=PHI),
                    *lines("evt-5", 100, description=f"99213 {PHI}"),
                    *lines("evt-6", 100),
                )
            )
            assert [a.line_id for a in ack.accepted] == ["evt-6-dr", "evt-6-cr"]
            reasons = {r.line_id: r.reason for r in ack.rejected}
            version = ledger_set().version
            assert (
                reasons["evt-1-cr"]
                == f"line evt-1-cr: account is not in the chart of accounts of master data {version}"
            )
            assert (
                reasons["evt-2-cr"]
                == f"line evt-2-cr: legal_entity is not in the legal entities of master data {version}"
            )
            assert (
                reasons["evt-3-cr"]
                == f"line evt-3-cr: cost_centre is not in the cost centres of master data {version}"
            )
            assert (
                reasons["evt-4-cr"]
                == f"line evt-4-cr: facility is not in the facilities of master data {version}"
            )
            assert reasons["evt-5-cr"].startswith("line evt-5-cr: description is not master-data text")
            assert not [reason for reason in reasons.values() if "Hopper" in reason or "445566" in reason]
            movement = erp_pb2.InventoryMovement(
                movement_id="m-1",
                movement_type="issue",
                item_code="HEP",
                quantity_milli=1_000,
                facility="GH",
                legal_entity=PHI,
                movement_date="2025-03-01",
            )
            inventory = await client.post_inventory_movements(
                erp_pb2.InventoryMovementBatch(batch_id="s-1", idempotency_key="s-1", movements=[movement])
            )
            [rejected] = inventory.rejected
            assert (
                rejected.reason
                == f"movement m-1: legal_entity is not in the legal entities of master data {version}"
            )

    asyncio.run(scenario())


def test_the_erp_without_master_data_answers_unavailable(
    tmp_path: Path, erp_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with (
            running("erp", tmp_path) as erp,
            ErpClient(adapter_settings(), erp.address) as client,
        ):
            with pytest.raises(
                RetryableError, match="UNAVAILABLE: PostJournalBatch: unavailable: no master data"
            ):
                await client.post_journal_batch(journal("j-1", *lines("evt-1", 100)))
            assert (await client.get_ledger_totals()).line_count == 0  # totals need no master data

    with settings_redis(erp_redis, monkeypatch):  # Redis empty: no set loaded yet
        asyncio.run(scenario())


def test_the_dispatchers_quarantine_a_reused_key_refusal(tmp_path: Path, erp_masterdata: str) -> None:
    async def scenario() -> None:
        async with (
            running("billing", tmp_path) as billing,
            running("erp", tmp_path) as erp,
            BillingClient(adapter_settings(), billing.address) as billing_client,
            ErpClient(adapter_settings(), erp.address) as erp_client,
        ):
            redis = FakeRedis()
            dispatcher = BillingDispatcher(billing_client, redis, "t.")  # type: ignore[arg-type]
            await dispatcher.dispatch([upsert_command("u-1").model_dump_json().encode()])
            # Another call took the key the dispatcher derives for this charge, with other content.
            command = charge_command("c-1", amount_cents=1_000)
            key = ids.derived_id(command.command_id, "billing.batch")
            await billing_client.post_charges(
                billing_pb2.PostChargesRequest(idempotency_key=key, charges=[charge("other", 5)])
            )
            report = await dispatcher.dispatch([command.model_dump_json().encode()])
            [record] = [ExceptionRecord.model_validate_json(raw) for raw in report.exceptions]
            assert (record.rule, record.stage, record.encounter_id) == (KEY_REUSED, "billing", "GH:V1")
            assert f"idempotency key {key} refused as reused" in record.reason
            assert "ALREADY_EXISTS" in record.reason
            # Quarantined for good: a replay of the batch is not sent again (and nothing was posted).
            again = await dispatcher.dispatch([command.model_dump_json().encode()])
            assert (again.exceptions, again.counts["dispatch_cache_hits"]) == ([], 1)
            assert (await billing_client.get_totals()).charge_count == 0

            erp_dispatcher = ErpDispatcher(erp_client, redis, "t.", "USD")  # type: ignore[arg-type]
            entry = journal_command("j-1")
            erp_key = ids.derived_id(entry.command_id, "erp.batch")
            await erp_client.post_journal_batch(journal(erp_key, *lines("evt-other", 100)))
            report = await erp_dispatcher.dispatch([entry.model_dump_json().encode()])
            [record] = [ExceptionRecord.model_validate_json(raw) for raw in report.exceptions]
            assert (record.rule, record.stage) == (KEY_REUSED, "erp")
            assert f"idempotency key {erp_key} refused as reused" in record.reason

    asyncio.run(scenario())
