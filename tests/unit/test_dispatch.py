"""The dispatchers: every command kind to its RPC, order, counters, quarantine, cache and retry behaviour.

Billing's upserts, codings, merges, person updates and moves go in ApplyBatch calls. The clients here
call the real SQL backends in this process (an InvalidMessageError becomes the
NotRetryableError the gRPC client raises for INVALID_ARGUMENT), and Redis is a dict.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters import refusal_code
from adapters.billing.backend import SqlBillingBackend
from adapters.erp.backend import SqlErpBackend
from canonical import ids
from canonical.errors import InvalidMessageError, NotRetryableError, RetryableError
from canonical.models import (
    AccountMove,
    Charge,
    CodingUpdate,
    Diagnosis,
    Encounter,
    EncounterStatus,
    InventoryMovement,
    JournalLine,
    MovementType,
    MoveScope,
    Patient,
    PatientClass,
    PatientMerge,
    TransactionType,
)
from canonical.quarantine import ExceptionRecord
from proto import billing_pb2, erp_pb2
from streams.commands import (
    InventoryCommand,
    JournalCommand,
    MergePatientCommand,
    MoveAccountCommand,
    PostChargeCommand,
    UpdateCodingCommand,
    UpdatePatientCommand,
    UpsertAccountCommand,
)
from streams.dispatch import BillingDispatcher, DispatchReport, ErpDispatcher
from streams.stats import done_key
from tests.masterdata import ledger_set

PREFIX = "t."
WHEN = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
PATIENT = Patient(mrn="MRN-1", family_name="Lovelace", given_name="Ada")


class FakeRedis:
    """The two calls the done-cache makes, over a dict; ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.down = False

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        if self.down:
            raise RedisConnectionError("down")
        return [self.data.get(key) for key in keys]

    def pipeline(self, transaction: bool = False) -> FakePipeline:
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self._redis = redis
        self._sets: list[tuple[str, bytes]] = []

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: bytes, ex: int | None = None) -> None:
        self._sets.append((key, value))

    async def execute(self) -> None:
        if self._redis.down:
            raise RedisConnectionError("down")
        self._redis.data.update(self._sets)


class InProcess:
    """A client surface over a backend: records each call as (rpc, key); ``fail`` by key or rpc name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, Exception] = {}

    async def _call(self, rpc: str, key: str, work: Callable[[Any], Message], request: Message) -> Any:
        self.calls.append((rpc, key))
        for name in (key, rpc):
            if name in self.fail:
                raise self.fail[name]
        try:
            return work(request)
        except InvalidMessageError as exc:
            # As the gRPC client raises it: the status (INVALID_ARGUMENT, ALREADY_EXISTS for a reused key)
            # is the cause's code.
            code = refusal_code(exc.fault)
            status = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=str(exc))
            raise NotRetryableError(f"{rpc}: {code.name}: {exc}") from status

    def rpcs(self) -> list[str]:
        return [rpc for rpc, _ in self.calls]


class Billing(InProcess):
    address = "in-process"

    def __init__(self, backend: SqlBillingBackend, backend_path: Path | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.backend_path = backend_path
        self.batches: list[list[tuple[str, str]]] = []  # each ApplyBatch call's items: (kind, key)

    async def apply_batch(self, req: Any) -> Any:
        items = [
            (kind, getattr(item, kind).idempotency_key)
            for item in req.items
            for kind in [item.WhichOneof("command")]
        ]
        self.batches.append(items)
        for _, key in items:  # a command whose key is in ``fail`` fails the whole call, as a server bug would
            if key in self.fail:
                self.calls.append(("ApplyBatch", req.idempotency_key))
                raise self.fail[key]
        return await self._call("ApplyBatch", req.idempotency_key, self.backend.apply_batch, req)

    async def upsert_account(self, req: Any) -> Any:
        return await self._call("UpsertAccount", req.idempotency_key, self.backend.upsert_account, req)

    async def post_charges(self, req: Any) -> Any:
        return await self._call("PostCharges", req.idempotency_key, self.backend.post_charges, req)

    async def update_coding(self, req: Any) -> Any:
        return await self._call("UpdateCoding", req.idempotency_key, self.backend.update_coding, req)

    async def merge_patient(self, req: Any) -> Any:
        return await self._call("MergePatient", req.idempotency_key, self.backend.merge_patient, req)

    async def update_patient(self, req: Any) -> Any:
        return await self._call("UpdatePatient", req.idempotency_key, self.backend.update_patient, req)

    async def move_account(self, req: Any) -> Any:
        return await self._call("MoveAccount", req.idempotency_key, self.backend.move_account, req)


class Erp(InProcess):
    def __init__(self, backend: SqlErpBackend) -> None:
        super().__init__()
        self.backend = backend

    async def post_journal_batch(self, req: Any) -> Any:
        return await self._call("PostJournalBatch", req.idempotency_key, self.backend.post_journal_batch, req)

    async def post_inventory_movements(self, req: Any) -> Any:
        return await self._call(
            "PostInventoryMovements", req.idempotency_key, self.backend.post_inventory_movements, req
        )


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
def billing(tmp_path: Path) -> Iterator[Billing]:
    backend = SqlBillingBackend(f"sqlite:///{tmp_path / 'billing.db'}")
    try:
        yield Billing(backend, tmp_path / "billing.db")
    finally:
        backend.close()


@pytest.fixture
def erp(tmp_path: Path) -> Iterator[Erp]:
    backend = SqlErpBackend(f"sqlite:///{tmp_path / 'erp.db'}", ledger_set)
    try:
        yield Erp(backend)
    finally:
        backend.close()


def run_billing(client: Billing, redis: FakeRedis, *commands: Any) -> DispatchReport:
    dispatcher = BillingDispatcher(client, redis, PREFIX)  # type: ignore[arg-type]
    return asyncio.run(
        dispatcher.dispatch([c if isinstance(c, bytes) else c.model_dump_json().encode() for c in commands])
    )


def run_erp(client: Erp, redis: FakeRedis, *commands: Any) -> DispatchReport:
    dispatcher = ErpDispatcher(client, redis, PREFIX, "USD")  # type: ignore[arg-type]
    return asyncio.run(dispatcher.dispatch([c.model_dump_json().encode() for c in commands]))


def records(report: DispatchReport) -> list[ExceptionRecord]:
    return [ExceptionRecord.model_validate_json(raw) for raw in report.exceptions]


def upsert(
    cid: str,
    encounter_id: str = "GH:V1",
    status: EncounterStatus = EncounterStatus.ADMITTED,
    version: int = 1,
    patient: Patient = PATIENT,
) -> UpsertAccountCommand:
    encounter = Encounter(
        encounter_id=encounter_id, facility="GH", department="ICU", patient_class=PatientClass.INPATIENT
    )
    return UpsertAccountCommand(
        command_id=cid,
        encounter=encounter,
        patient=patient,
        status=status,
        state_version=version,
        source_event_id=f"evt-{cid}",
        correlation_id="corr",
    )


def charge(cid: str, encounter_id: str = "GH:V1", amount_cents: int = 1_000) -> PostChargeCommand:
    return PostChargeCommand(
        command_id=cid,
        charge=Charge(
            charge_id=f"ch-{cid}",
            encounter_id=encounter_id,
            transaction_type=TransactionType.CHARGE,
            charge_code="99213",
            amount_cents=amount_cents,
            service_at=WHEN,
            facility="GH",
        ),
        source_event_id=f"evt-{cid}",
        correlation_id="corr",
    )


def coding(
    cid: str, coded_at: str = "2025-03-02T12:00:00+00:00", encounter_id: str = "GH:V1", code: str = "I50.9"
) -> UpdateCodingCommand:
    return UpdateCodingCommand(
        command_id=cid,
        coding=CodingUpdate(encounter_id=encounter_id, diagnoses=(Diagnosis(sequence=1, code=code),)),
        coded_at=coded_at,
        source_event_id=f"evt-{cid}",
        correlation_id="corr",
    )


def merge(cid: str, prior: str = "MRN-1", surviving: str = "MRN-2") -> MergePatientCommand:
    return MergePatientCommand(
        command_id=cid,
        merge=PatientMerge(surviving=Patient(mrn=surviving, family_name="Byron"), prior_mrn=prior),
        source_event_id=f"evt-{cid}",
        correlation_id="corr",
    )


def journal(cid: str, cents: int = 1_000) -> JournalCommand:
    def leg(side: str, account: str, debit: int, credit: int) -> JournalLine:
        return JournalLine(
            line_id=f"{cid}-{side}",
            journal_date=WHEN.date(),
            account=account,
            debit_cents=debit,
            credit_cents=credit,
            legal_entity="GHC",
            encounter_ref="ENC-1",
            source_event_id=f"evt-{cid}",
            correlation_id="corr",
        )

    return JournalCommand(
        command_id=cid,
        lines=(leg("dr", "1200", cents, 0), leg("cr", "4000", 0, cents)),
        source_event_id=f"evt-{cid}",
        correlation_id="corr",
    )


def stock(cid: str, *items: tuple[str, MovementType, int]) -> InventoryCommand:
    return InventoryCommand(
        command_id=cid,
        movements=tuple(
            InventoryMovement(
                movement_id=f"{cid}-{n}",
                movement_type=kind,
                item_code=item,
                quantity_milli=quantity,
                facility="GH",
                cost_centre="GH-ICU",
                legal_entity="GHC",
                occurred_at=WHEN,
                encounter_ref="ENC-1",
                source_event_id=f"evt-{cid}",
                correlation_id="corr",
            )
            for n, (item, kind, quantity) in enumerate(items)
        ),
        source_event_id=f"evt-{cid}",
        correlation_id="corr",
    )


def test_every_billing_kind_goes_to_its_rpc_in_command_order(billing: Billing, redis: FakeRedis) -> None:
    report = run_billing(
        billing,
        redis,
        charge("c-1"),
        upsert("u-1", version=1),
        coding("d-1"),
        merge("m-1"),
        upsert("u-2", status=EncounterStatus.DISCHARGED, version=2),
        coding("d-2", "2025-03-02T13:00:00+00:00", code="I10"),
    )
    # Upserts, codings and merges in one ApplyBatch call in command order; the charges after it in one call.
    assert billing.rpcs() == ["ApplyBatch", "PostCharges"]
    assert billing.batches == [
        [
            ("upsert_account", "u-1"),
            ("update_coding", "d-1"),
            ("merge_patient", "m-1"),
            ("upsert_account", "u-2"),
            ("update_coding", "d-2"),
        ]
    ]
    assert report.exceptions == []
    assert report.counts == {
        "dispatch_cache_hits": 0,
        "accounts_upserted": 2,
        "coding_updates": 2,
        "merges": 1,
        "accounts_merged": 1,
        "charges_posted": 1,
    }
    totals = billing.backend.totals()
    assert (totals.account_count, totals.charge_count, totals.diagnosis_count, totals.merge_count) == (
        1,
        1,
        1,
        1,
    )
    assert [(s.status, s.account_count) for s in totals.by_status] == [("discharged", 1)]
    # Every command is remembered as dispatched.
    for cid in ("c-1", "u-1@v1", "d-1", "m-1", "u-2@v2", "d-2"):  # an upsert with its state_version
        assert done_key(PREFIX, cid) in redis.data


def test_a_replayed_batch_is_answered_from_the_cache(billing: Billing, redis: FakeRedis) -> None:
    batch = (upsert("u-1"), coding("d-1"), merge("m-1"), charge("c-1"))
    run_billing(billing, redis, *batch)
    billing.calls.clear()
    report = run_billing(billing, redis, *batch)
    assert billing.calls == []
    assert report.counts == {"dispatch_cache_hits": 4}


def test_an_upsert_derived_again_with_another_state_version_is_not_a_cache_hit(
    billing: Billing, redis: FakeRedis
) -> None:
    """The same event's upsert comes again with a larger state when the tables are rebuilt after the broker
    lost everything; only billing can tell it from a replay (the long chaos run saw an account keep an
    older state because the cache answered for it)."""
    run_billing(
        billing,
        redis,
        upsert("u-a04", version=1),
        upsert("u-a03", status=EncounterStatus.DISCHARGED, version=2),
    )
    run_billing(
        billing, redis, upsert("u-a08", status=EncounterStatus.ADMITTED, version=2)
    )  # a rebuilt table
    billing.calls.clear()
    again = run_billing(billing, redis, upsert("u-a03", status=EncounterStatus.DISCHARGED, version=3))
    assert len(billing.calls) == 1 and again.counts.get("dispatch_cache_hits", 0) == 0
    assert [(s.status, s.account_count) for s in billing.backend.totals().by_status] == [("discharged", 1)]
    billing.calls.clear()
    replayed = run_billing(billing, redis, upsert("u-a03", status=EncounterStatus.DISCHARGED, version=3))
    assert billing.calls == [] and replayed.counts == {"dispatch_cache_hits": 1}


def test_without_the_cache_the_adapters_answer_duplicate(billing: Billing, redis: FakeRedis) -> None:
    batch = (upsert("u-1"), coding("d-1"), merge("m-1"), charge("c-1"))
    run_billing(billing, redis, *batch)
    redis.data.clear()
    redis.down = True  # a hint only: without it every command is asked again, and nothing is posted twice
    report = run_billing(billing, redis, *batch)
    assert report.counts == {
        "dispatch_cache_hits": 0,
        "accounts_duplicate": 1,
        "coding_duplicate": 1,
        "merges_duplicate": 1,
        "charges_duplicate": 1,
    }
    assert billing.backend.totals().charge_count == 1


def test_stale_upserts_and_codings_are_counted_not_quarantined(billing: Billing, redis: FakeRedis) -> None:
    run_billing(billing, redis, upsert("u-2", status=EncounterStatus.DISCHARGED, version=2), coding("d-2"))
    report = run_billing(
        billing, redis, upsert("u-1", version=1), coding("d-1", "2025-03-02T11:00:00+00:00", code="R07.9")
    )
    assert report.exceptions == []
    assert report.counts == {"dispatch_cache_hits": 0, "accounts_stale": 1, "coding_stale": 1}


def test_a_merge_before_the_account_still_moves_it(billing: Billing, redis: FakeRedis) -> None:
    run_billing(billing, redis, merge("m-1"))
    run_billing(billing, redis, upsert("u-1"))
    assert billing.backend.totals().merged_account_count == 1


def test_a_refused_command_is_quarantined_alone(billing: Billing, redis: FakeRedis) -> None:
    bad_merge = merge("m-bad", prior="MRN-1", surviving="MRN-1")  # merging a patient into itself
    report = run_billing(billing, redis, upsert("u-1"), bad_merge, coding("d-1"), charge("c-1"))
    [record] = records(report)
    assert (record.stage, record.rule, record.source_message_id) == (
        "billing",
        "ADAPTER-REFUSED",
        "evt-m-bad",
    )
    # Worded as the single call's refusal: the code, the call and the field, never a value.
    assert "refused an item: INVALID_ARGUMENT: MergePatient: surviving.mrn: " in record.reason
    assert record.original == bad_merge.model_dump_json().encode()
    # The rest of the batch went through, and the refused command is not asked again.
    totals = billing.backend.totals()
    assert (totals.account_count, totals.coded_account_count, totals.charge_count, totals.merge_count) == (
        1,
        1,
        1,
        0,
    )
    assert done_key(PREFIX, "m-bad") in redis.data


def test_a_coding_without_a_utc_offset_is_unsendable(billing: Billing, redis: FakeRedis) -> None:
    report = run_billing(billing, redis, coding("d-1", "2025-03-02T12:00:00"), upsert("u-1"))
    [record] = records(report)
    assert (record.rule, record.encounter_id) == ("COMMAND-UNSENDABLE", "GH:V1")
    assert "coded_at: '2025-03-02T12:00:00' has no UTC offset" in record.reason
    assert billing.backend.totals().account_count == 1


def test_a_charge_without_an_account_is_quarantined(billing: Billing, redis: FakeRedis) -> None:
    report = run_billing(billing, redis, charge("c-1", encounter_id="GH:V404"))
    [record] = records(report)
    assert (record.rule, record.encounter_id, record.reason) == (
        "BILLING-REJECTED",
        "GH:V404",
        "message evt-c-1: [BILLING-REJECTED] no account for encounter GH:V404",
    )
    assert report.counts["charges_rejected"] == 1


def test_a_credit_before_its_original_is_held_then_counted_posted_when_released(
    billing: Billing, redis: FakeRedis
) -> None:
    run_billing(billing, redis, upsert("u-1"))
    credit = charge("c-2", amount_cents=-1_000)
    credit = credit.model_copy(
        update={"charge": credit.charge.model_copy(update={"transaction_type": TransactionType.CREDIT})}
    )
    report = run_billing(billing, redis, credit)
    assert (report.exceptions, report.counts.get("charges_held")) == (
        [],
        1,
    )  # billing keeps it: not quarantined
    assert done_key(PREFIX, "c-2") in redis.data
    report = run_billing(billing, redis, charge("c-1"))
    assert (report.counts["charges_posted"], report.counts["credits_released"]) == (2, 1)
    totals = billing.backend.totals()
    assert (totals.charge_count, totals.amount_cents, totals.held_credit_count) == (2, 0, 0)


def test_an_undecodable_command_is_quarantined(billing: Billing, redis: FakeRedis) -> None:
    report = run_billing(billing, redis, b'{"kind": "refund_everyone", "command_id": "x"}', upsert("u-1"))
    [record] = records(report)
    assert record.rule == "COMMAND-INVALID"
    assert billing.rpcs() == ["ApplyBatch"]


def test_a_transient_failure_propagates_for_a_whole_batch_retry(billing: Billing, redis: FakeRedis) -> None:
    billing.fail["ApplyBatch"] = RetryableError("ApplyBatch: UNAVAILABLE")
    with pytest.raises(RetryableError):
        run_billing(billing, redis, upsert("u-1"), coding("d-1"), charge("c-1"))
    # Nothing after the failed call was sent, and nothing of the batch is marked done.
    assert billing.rpcs() == ["ApplyBatch"]
    assert not redis.data
    del billing.fail["ApplyBatch"]
    report = run_billing(billing, redis, upsert("u-1"), coding("d-1"), charge("c-1"))
    assert report.counts["coding_updates"] == 1 and report.counts["charges_posted"] == 1


def test_erp_sends_journals_and_inventory_in_their_own_batches(erp: Erp, redis: FakeRedis) -> None:
    report = run_erp(
        erp,
        redis,
        journal("j-1"),
        stock("s-1", ("HEP", MovementType.ISSUE, 2_000), ("HEP", MovementType.RETURN, 500)),
        journal("j-2", 250),
        stock("s-2", ("GAUZE", MovementType.ISSUE, 1_000)),
    )
    assert erp.rpcs() == ["PostJournalBatch", "PostInventoryMovements"]
    assert report.exceptions == []
    assert report.counts == {
        "dispatch_cache_hits": 0,
        "journal_lines_accepted": 4,
        "journal_lines_duplicate": 0,
        "inventory_movements": 3,
        "inventory_duplicates": 0,
    }
    totals = erp.backend.inventory_totals()
    assert [(i.item_code, i.net_milli) for i in totals.by_item] == [("GAUZE", 1_000), ("HEP", 1_500)]

    # The same movements in another batch (a replay after a Redis loss) are duplicates, not new stock.
    redis.data.clear()
    again = run_erp(
        erp, redis, stock("s-1", ("HEP", MovementType.ISSUE, 2_000), ("HEP", MovementType.RETURN, 500))
    )
    assert (again.counts["inventory_movements"], again.counts["inventory_duplicates"]) == (0, 2)
    assert erp.backend.inventory_totals().movement_count == 3


def test_a_rejected_movement_is_quarantined_with_its_command(erp: Erp, redis: FakeRedis) -> None:
    good = stock("s-1", ("HEP", MovementType.ISSUE, 2_000))
    # The canonical model allows an empty facility; the ERP contract does not.
    bad = stock("s-2", ("GAUZE", MovementType.ISSUE, 1_000))
    bad = bad.model_copy(update={"movements": (bad.movements[0].model_copy(update={"facility": ""}),)})
    report = run_erp(erp, redis, good, bad)
    [record] = records(report)
    assert (record.stage, record.rule, record.source_message_id) == (
        "erp",
        "ERP-INVENTORY-REJECTED",
        "evt-s-2",
    )
    assert record.reason == "message evt-s-2: [ERP-INVENTORY-REJECTED] movement s-2-0: facility is empty"
    assert record.original == bad.model_dump_json().encode()
    assert (report.counts["inventory_movements"], report.counts["inventory_rejected"]) == (1, 1)
    # Answered for good: marked done, so the next replay does not ask again.
    assert done_key(PREFIX, "s-2") in redis.data


def test_an_erp_transient_failure_propagates_and_what_went_before_stays_done(
    erp: Erp, redis: FakeRedis
) -> None:
    erp.fail["PostInventoryMovements"] = RetryableError("PostInventoryMovements: UNAVAILABLE")
    with pytest.raises(RetryableError):
        run_erp(erp, redis, journal("j-1"), stock("s-1", ("HEP", MovementType.ISSUE, 2_000)))
    assert erp.rpcs() == ["PostJournalBatch", "PostInventoryMovements"]
    assert done_key(PREFIX, "j-1") in redis.data
    assert done_key(PREFIX, "s-1") not in redis.data


def test_an_erp_refusal_quarantines_the_command_at_fault(erp: Erp, redis: FakeRedis) -> None:
    erp.fail["PostInventoryMovements"] = NotRetryableError(
        "PostInventoryMovements: INVALID_ARGUMENT: batch_id"
    )
    report = run_erp(erp, redis, journal("j-1"), stock("s-1", ("HEP", MovementType.ISSUE, 2_000)))
    [record] = records(report)
    assert (record.rule, record.source_message_id) == ("ADAPTER-REFUSED", "evt-s-1")
    assert erp.backend.ledger_totals().line_count == 2


def person(cid: str, family: str = "King", at: dt.datetime = WHEN) -> UpdatePatientCommand:
    return UpdatePatientCommand(
        command_id=cid,
        patient=PATIENT.model_copy(update={"family_name": family}),
        updated_at=at,
        source_event_id=f"evt-{cid}",
        correlation_id="corr",
    )


def visit_move(cid: str, encounter_id: str = "GH:V1", at: dt.datetime = WHEN) -> MoveAccountCommand:
    return MoveAccountCommand(
        command_id=cid,
        move=AccountMove(
            scope=MoveScope.VISIT,
            target=Patient(mrn="MRN-2", family_name="Babbage"),
            prior_mrn=PATIENT.mrn,
            prior_visit_number=encounter_id.rpartition(":")[2],
            encounter_id=encounter_id,
        ),
        moved_at=at,
        source_event_id=f"evt-{cid}",
        correlation_id="corr",
    )


def test_person_updates_and_moves_go_to_their_rpcs_in_command_order(
    billing: Billing, redis: FakeRedis
) -> None:
    report = run_billing(
        billing,
        redis,
        upsert("u-1"),
        person("p-1"),
        upsert("u-2", encounter_id="GH:V2", version=1),
        visit_move("m-1", "GH:V2", WHEN + dt.timedelta(hours=1)),
    )
    assert billing.rpcs() == ["ApplyBatch"]
    assert [kind for kind, _ in billing.batches[0]] == [
        "upsert_account",
        "update_patient",
        "upsert_account",
        "move_account",
    ]
    assert report.exceptions == []
    assert report.counts == {
        "dispatch_cache_hits": 0,
        "accounts_upserted": 2,
        "patient_updates": 1,
        "accounts_updated_by_patient": 1,
        "account_moves": 1,
        "accounts_moved": 1,
    }
    totals = billing.backend.totals()
    assert (totals.patient_update_count, totals.account_move_count, totals.moved_account_count) == (1, 1, 1)
    # Replayed without the cache: the adapter answers duplicate; a late older update is stale.
    redis.data.clear()
    again = run_billing(
        billing, redis, person("p-1"), visit_move("m-1", "GH:V2", WHEN + dt.timedelta(hours=1))
    )
    assert again.counts == {
        "dispatch_cache_hits": 0,
        "patient_updates_duplicate": 1,
        "account_moves_duplicate": 1,
    }
    late = run_billing(billing, redis, person("p-0", "Byron", WHEN - dt.timedelta(hours=1)))
    assert late.counts == {"dispatch_cache_hits": 0, "patient_updates_stale": 1}


def test_a_refused_move_is_quarantined_with_its_visit(billing: Billing, redis: FakeRedis) -> None:
    bad = visit_move("m-bad").model_copy(
        update={"move": visit_move("m-bad").move.model_copy(update={"prior_mrn": ""})}
    )
    report = run_billing(billing, redis, bad, upsert("u-1"))
    [record] = records(report)
    assert (record.rule, record.encounter_id) == ("ADAPTER-REFUSED", "GH:V1")
    assert "INVALID_ARGUMENT: MoveAccount: prior_mrn: is empty" in record.reason
    assert billing.backend.totals().account_count == 1


def test_an_upsert_carries_its_snapshot_time_to_billing(billing: Billing, redis: FakeRedis) -> None:
    run_billing(billing, redis, person("p-1", "King", WHEN))
    older = upsert("u-1").model_copy(update={"snapshot_at": WHEN - dt.timedelta(hours=1)})
    newer = upsert("u-2", encounter_id="GH:V2").model_copy(
        update={"snapshot_at": WHEN + dt.timedelta(hours=1)}
    )
    run_billing(billing, redis, older, newer)
    with sqlite3.connect(billing.backend_path) as raw:
        names = dict(raw.execute("SELECT account_id, family_name FROM billing_accounts").fetchall())
    assert names == {"GH:V1": "King", "GH:V2": PATIENT.family_name}


def test_one_apply_batch_call_per_chunk_in_command_order(billing: Billing, redis: FakeRedis) -> None:
    dispatcher = BillingDispatcher(billing, redis, PREFIX, max_batch_items=2)  # type: ignore[arg-type]
    commands = (
        upsert("u-1"),
        charge("c-1"),
        coding("d-1"),
        upsert("u-2", encounter_id="GH:V2"),
        coding("d-2", encounter_id="GH:V2"),
        person("p-1"),
    )
    report = asyncio.run(dispatcher.dispatch([c.model_dump_json().encode() for c in commands]))
    assert billing.rpcs() == ["ApplyBatch", "ApplyBatch", "ApplyBatch", "PostCharges"]
    assert [[key for _, key in batch] for batch in billing.batches] == [
        ["u-1", "d-1"],
        ["u-2", "d-2"],
        ["p-1"],
    ]
    assert report.exceptions == []
    assert report.counts == {
        "dispatch_cache_hits": 0,
        "accounts_upserted": 2,
        "coding_updates": 2,
        "patient_updates": 1,
        "accounts_updated_by_patient": 2,
        "charges_posted": 1,
    }


def test_an_unsendable_command_is_quarantined_without_failing_the_call(
    billing: Billing, redis: FakeRedis
) -> None:
    too_big = upsert("u-big", encounter_id="GH:V9", version=2**63)  # no int64 holds it
    report = run_billing(billing, redis, upsert("u-1"), too_big, coding("d-1"))
    [record] = records(report)
    assert (record.rule, record.encounter_id, record.source_message_id) == (
        "COMMAND-UNSENDABLE",
        "GH:V9",
        "evt-u-big",
    )
    assert record.reason.startswith("message evt-u-big: [COMMAND-UNSENDABLE] ValueError: ")
    # One call with the others, not a failed call and a resend one by one.
    assert billing.rpcs() == ["ApplyBatch"] and billing.batches == [
        [("upsert_account", "u-1"), ("update_coding", "d-1")]
    ]
    assert (billing.backend.totals().account_count, report.counts["coding_updates"]) == (1, 1)
    assert done_key(PREFIX, "u-big@v" + str(2**63)) in redis.data


def test_a_key_reused_for_another_account_is_refused_alone_inside_the_batch(
    billing: Billing, redis: FakeRedis
) -> None:
    run_billing(billing, redis, upsert("u-1"))
    redis.data.clear()
    # Passes the up-front checks; billing refuses it while applying it (its savepoint rolls back).
    reused = upsert("u-1", encounter_id="GH:V2")
    report = run_billing(billing, redis, upsert("u-2", encounter_id="GH:V3"), reused, coding("d-1"))
    [record] = records(report)
    assert (record.rule, record.encounter_id) == ("IDEMPOTENCY-KEY-REUSED", "GH:V2")
    assert "ALREADY_EXISTS: UpsertAccount: idempotency_key: u-1 was already used" in record.reason
    assert billing.rpcs()[-1] == "ApplyBatch" and len(billing.batches) == 2
    assert report.counts == {"dispatch_cache_hits": 0, "accounts_upserted": 1, "coding_updates": 1}
    totals = billing.backend.totals()
    assert (totals.account_count, totals.coded_account_count) == (2, 1)
    assert done_key(PREFIX, "u-1@v1") in redis.data


def test_a_whole_call_failure_falls_back_one_by_one_to_the_culprit(
    billing: Billing, redis: FakeRedis
) -> None:
    # The adapter fails the whole call (say INTERNAL) over one command: the dispatcher resends one by one.
    billing.fail["m-1"] = NotRetryableError("ApplyBatch to billing adapter at in-process failed: INTERNAL")
    report = run_billing(billing, redis, upsert("u-1"), merge("m-1"), coding("d-1"), charge("c-1"))
    [record] = records(report)
    assert (record.rule, record.source_message_id) == ("ADAPTER-REFUSED", "evt-m-1")
    assert "INTERNAL" in record.reason
    assert [[key for _, key in batch] for batch in billing.batches] == [
        ["u-1", "m-1", "d-1"],
        ["u-1"],
        ["m-1"],
        ["d-1"],
    ]
    totals = billing.backend.totals()
    assert (totals.account_count, totals.coded_account_count, totals.charge_count, totals.merge_count) == (
        1,
        1,
        1,
        0,
    )
    assert done_key(PREFIX, "m-1") in redis.data


def test_a_reused_charges_key_is_quarantined_with_the_key_not_resent(
    billing: Billing, redis: FakeRedis
) -> None:
    run_billing(billing, redis, upsert("u-1"))
    # Another call took the key this dispatch derives for its two charges, with other content.
    key = ids.derived_id("c-1|c-2", "billing.batch")
    billing.backend.post_charges(billing_pb2.PostChargesRequest(idempotency_key=key))
    report = run_billing(billing, redis, charge("c-1"), charge("c-2", amount_cents=5))
    # One call: not retried, and not resent one by one under other keys (that would post what was refused).
    assert billing.rpcs().count("PostCharges") == 1
    found = records(report)
    assert [(r.rule, r.source_message_id, r.encounter_id) for r in found] == [
        ("IDEMPOTENCY-KEY-REUSED", "evt-c-1", "GH:V1"),
        ("IDEMPOTENCY-KEY-REUSED", "evt-c-2", "GH:V1"),
    ]
    assert all(f"idempotency key {key} refused as reused" in r.reason for r in found)
    assert "PostCharges: ALREADY_EXISTS" in found[0].reason and "another set of charges" in found[0].reason
    assert report.counts["key_reuse_refused"] == 2
    assert billing.backend.totals().charge_count == 0
    assert done_key(PREFIX, "c-1") in redis.data  # answered for good: a replay of the batch asks no more


def test_a_reused_journal_key_is_quarantined_with_the_key(erp: Erp, redis: FakeRedis) -> None:
    key = ids.derived_id("j-1", "erp.batch")
    erp.backend.post_journal_batch(erp_pb2.JournalBatch(batch_id=key, idempotency_key=key, currency="USD"))
    report = run_erp(erp, redis, journal("j-1"))
    [record] = records(report)
    assert (record.rule, record.stage) == ("IDEMPOTENCY-KEY-REUSED", "erp")
    assert f"idempotency key {key} refused as reused" in record.reason
    assert erp.backend.ledger_totals().line_count == 0
