"""The SQL billing backend: idempotent upserts and charges, rejection, validation and totals, on SQLite."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters import open_engine, write_transaction
from adapters.billing.backend import AccountRow, Base, SqlBillingBackend
from adapters.convert import account_from, charge_from
from canonical.errors import InvalidMessageError
from canonical.models import Charge, Encounter, Patient, PatientClass, TransactionType
from proto import billing_pb2

UpsertStatus = billing_pb2.UpsertAccountResponse.Status
ChargeStatus = billing_pb2.ChargeResult.Status

ADMITTED_AT = dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
PATIENT = Patient(
    mrn="MRN-778899", family_name="Lovelace", given_name="Ada", birth_date=dt.date(1815, 12, 10)
)


def encounter(encounter_id: str = "GH:V100", facility: str = "GH", department: str = "ICU") -> Encounter:
    return Encounter(
        encounter_id=encounter_id,
        facility=facility,
        department=department,
        patient_class=PatientClass.INPATIENT,
        attending_provider_id="1234567890",
        admitted_at=ADMITTED_AT,
    )


def upsert(
    key: str, status: str = "admitted", enc: Encounter | None = None, patient: Patient | None = PATIENT
) -> billing_pb2.UpsertAccountRequest:
    account = account_from(enc or encounter(), patient, status, f"evt-{key}", "corr-1")
    return billing_pb2.UpsertAccountRequest(idempotency_key=key, account=account)


def charge(
    charge_id: str, amount_cents: int = 12_500, encounter_id: str = "GH:V100", facility: str = "GH"
) -> billing_pb2.Charge:
    kind = TransactionType.CREDIT if amount_cents < 0 else TransactionType.CHARGE
    canonical = Charge(
        charge_id=charge_id,
        encounter_id=encounter_id,
        transaction_type=kind,
        charge_code="99213",
        code_system="CPT",
        description="Office visit",
        quantity=1,
        unit_amount_cents=abs(amount_cents),
        amount_cents=amount_cents,
        service_at=dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC),
        facility=facility,
        department="ICU",
    )
    return charge_from(canonical, f"evt-{charge_id}", "corr-2")


def post(key: str, *charges: billing_pb2.Charge) -> billing_pb2.PostChargesRequest:
    return billing_pb2.PostChargesRequest(idempotency_key=key, charges=charges)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "billing.db"


@pytest.fixture
def backend(db_path: Path) -> Iterator[SqlBillingBackend]:
    opened = SqlBillingBackend(f"sqlite:///{db_path}")
    try:
        yield opened
    finally:
        opened.close()


def test_convert_builds_the_account_and_charge_messages() -> None:
    account = upsert("k").account
    assert account.encounter_id == "GH:V100"
    assert account.patient_class == "I"
    assert account.birth_date == "1815-12-10"
    assert account.admitted_at.ToDatetime(dt.UTC) == ADMITTED_AT
    assert not account.HasField("discharged_at")
    no_patient = account_from(encounter(), None, "registered", "e", "c")
    assert (no_patient.mrn, no_patient.family_name, no_patient.birth_date) == ("", "", "")
    with pytest.raises(ValueError):
        account_from(encounter(), None, "archived", "e", "c")

    credit = charge("c-1", -500)
    assert (credit.transaction_type, credit.amount_cents, credit.unit_amount_cents) == ("CD", -500, 500)
    assert credit.HasField("unit_amount_cents")


def test_upsert_creates_then_replays_the_original_version(backend: SqlBillingBackend) -> None:
    created = backend.upsert_account(upsert("k-1"))
    assert (created.account_id, created.status, created.version) == ("GH:V100", UpsertStatus.CREATED, 1)
    updated = backend.upsert_account(upsert("k-2"))
    assert (updated.status, updated.version) == (UpsertStatus.UPDATED, 2)

    replay = backend.upsert_account(upsert("k-1"))
    assert (replay.account_id, replay.status, replay.version) == ("GH:V100", UpsertStatus.DUPLICATE, 1)
    assert backend.totals().account_count == 1


def test_status_only_moves_forward(backend: SqlBillingBackend) -> None:
    backend.upsert_account(upsert("k-1", "registered"))
    backend.upsert_account(upsert("k-2", "discharged"))
    late = backend.upsert_account(upsert("k-3", "admitted", encounter(department="WARD-2")))
    assert (late.status, late.version) == (UpsertStatus.UPDATED, 3)

    totals = backend.totals()
    assert [(row.status, row.account_count) for row in totals.by_status] == [("discharged", 1)]


def test_a_reused_key_with_other_content_is_refused(backend: SqlBillingBackend) -> None:
    backend.upsert_account(upsert("k-1", "admitted"))
    with pytest.raises(InvalidMessageError) as refused:
        backend.upsert_account(upsert("k-1", "discharged"))
    assert refused.value.fault.field == "idempotency_key"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "idempotency_key", ""), "idempotency_key"),
        (lambda r: r.ClearField("account"), "account"),
        (lambda r: setattr(r.account, "encounter_id", ""), "account.encounter_id"),
        (lambda r: setattr(r.account, "facility", ""), "account.facility"),
        (lambda r: setattr(r.account, "status", "archived"), "account.status"),
        (lambda r: setattr(r.account, "birth_date", "10/12/1815"), "account.birth_date"),
    ],
)
def test_invalid_upsert_names_the_field(
    backend: SqlBillingBackend, mutate: Callable[[billing_pb2.UpsertAccountRequest], object], field: str
) -> None:
    request = upsert("k-1")
    mutate(request)
    with pytest.raises(InvalidMessageError) as refused:
        backend.upsert_account(request)
    assert refused.value.fault.field == field
    # A bad birth date is still PHI: the error names the field but never repeats the value.
    assert "10/12/1815" not in str(refused.value)


def test_charges_are_idempotent_on_charge_id(backend: SqlBillingBackend) -> None:
    backend.upsert_account(upsert("k-1"))
    first = backend.post_charges(post("p-1", charge("c-1"), charge("c-2", -2_500)))
    assert [r.status for r in first.results] == [ChargeStatus.ACCEPTED, ChargeStatus.ACCEPTED]
    assert all(r.posting_id for r in first.results)

    # A replay under a new request key, and a repeat within one request, both find the original posting.
    again = backend.post_charges(post("p-2", charge("c-2", -2_500), charge("c-3"), charge("c-3")))
    assert [(r.charge_id, r.status) for r in again.results] == [
        ("c-2", ChargeStatus.DUPLICATE),
        ("c-3", ChargeStatus.ACCEPTED),
        ("c-3", ChargeStatus.DUPLICATE),
    ]
    assert again.results[0].posting_id == first.results[1].posting_id
    assert again.results[2].posting_id == again.results[1].posting_id

    totals = backend.totals()
    assert (totals.charge_count, totals.amount_cents) == (3, 12_500 - 2_500 + 12_500)


def test_a_charge_without_an_account_is_rejected_not_stored(backend: SqlBillingBackend) -> None:
    backend.upsert_account(upsert("k-1"))
    response = backend.post_charges(post("p-1", charge("c-1"), charge("c-9", encounter_id="GH:V999")))
    assert [r.status for r in response.results] == [ChargeStatus.ACCEPTED, ChargeStatus.REJECTED]
    assert response.results[1].reason == "no account for encounter GH:V999"
    assert response.results[1].posting_id == ""
    assert backend.totals().charge_count == 1

    # Once the account exists the same charge goes through: the rejection left nothing behind.
    backend.upsert_account(upsert("k-2", enc=encounter("GH:V999")))
    retried = backend.post_charges(post("p-2", charge("c-9", encounter_id="GH:V999")))
    assert retried.results[0].status == ChargeStatus.ACCEPTED


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: setattr(c, "charge_id", ""), "charges[1].charge_id"),
        (lambda c: setattr(c, "encounter_id", ""), "charges[1].encounter_id"),
        (lambda c: setattr(c, "transaction_type", "XX"), "charges[1].transaction_type"),
        (lambda c: setattr(c, "amount_cents", -1), "charges[1].amount_cents"),
        (lambda c: c.ClearField("service_at"), "charges[1].service_at"),
        (lambda c: setattr(c, "currency", ""), "charges[1].currency"),
    ],
)
def test_invalid_charge_names_the_field(
    backend: SqlBillingBackend, mutate: Callable[[billing_pb2.Charge], object], field: str
) -> None:
    backend.upsert_account(upsert("k-1"))
    bad = charge("c-2")
    mutate(bad)
    with pytest.raises(InvalidMessageError) as refused:
        backend.post_charges(post("p-1", charge("c-1"), bad))
    assert refused.value.fault.field == field
    # The request is refused whole: not even its valid charge was stored.
    assert backend.totals().charge_count == 0


def test_a_positive_credit_is_invalid(backend: SqlBillingBackend) -> None:
    credit = charge("c-1", -100)
    credit.amount_cents = 100
    with pytest.raises(InvalidMessageError) as refused:
        backend.post_charges(post("p-1", credit))
    assert refused.value.fault.field == "charges[0].amount_cents"


def test_totals_by_facility_and_status(backend: SqlBillingBackend) -> None:
    assert backend.totals() == billing_pb2.BillingTotals()
    backend.upsert_account(upsert("k-1", "admitted", encounter("GH:V1", "GH")))
    backend.upsert_account(upsert("k-2", "discharged", encounter("NH:V2", "NH")))
    backend.upsert_account(upsert("k-3", "registered", encounter("NH:V3", "NH")))
    backend.post_charges(
        post(
            "p-1",
            charge("c-1", 1_000, "GH:V1", "GH"),
            charge("c-2", 2_000, "NH:V2", "NH"),
            charge("c-3", -300, "NH:V2", "NH"),
        )
    )
    totals = backend.totals()
    assert (totals.account_count, totals.charge_count, totals.amount_cents) == (3, 3, 2_700)
    assert [(f.facility, f.charge_count, f.amount_cents) for f in totals.by_facility] == [
        ("GH", 1, 1_000),
        ("NH", 2, 1_700),
    ]
    assert [(s.status, s.account_count) for s in totals.by_status] == [
        ("admitted", 1),
        ("discharged", 1),
        ("registered", 1),
    ]


def test_state_survives_a_restart_in_a_wal_database(db_path: Path) -> None:
    first = SqlBillingBackend(f"sqlite:///{db_path}")
    first.upsert_account(upsert("k-1"))
    posted = first.post_charges(post("p-1", charge("c-1")))
    first.close()

    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    second = SqlBillingBackend(f"sqlite:///{db_path}")
    try:
        assert second.upsert_account(upsert("k-1")).status == UpsertStatus.DUPLICATE
        replay = second.post_charges(post("p-1", charge("c-1")))
        assert replay.results[0].status == ChargeStatus.DUPLICATE
        assert replay.results[0].posting_id == posted.results[0].posting_id
    finally:
        second.close()


def test_concurrent_posts_of_one_charge_store_one_row(backend: SqlBillingBackend, db_path: Path) -> None:
    backend.upsert_account(upsert("k-1"))
    workers = 8
    barrier = threading.Barrier(workers)
    results: list[billing_pb2.ChargeResult] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        barrier.wait()
        response = backend.post_charges(post(f"p-{index}", charge("c-race")))
        with lock:
            results.extend(response.results)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(ChargeStatus.Name(r.status) for r in results) == ["ACCEPTED"] + ["DUPLICATE"] * (
        workers - 1
    )
    assert len({r.posting_id for r in results}) == 1
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT count(*) FROM billing_charges WHERE charge_id = 'c-race'").fetchone() == (
            1,
        )


def test_logs_carry_keys_and_counts_not_phi(
    backend: SqlBillingBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend.upsert_account(upsert("k-1"))
    backend.post_charges(post("p-1", charge("c-1")))
    with pytest.raises(InvalidMessageError):
        backend.upsert_account(upsert("k-1", "discharged"))
    assert "k-1" in caplog.text
    # The account id is the visit number: an identifier, kept out of logs like the rest.
    for value in ("GH:V100", "Lovelace", "Ada", "MRN-778899", "1815"):
        assert value not in caplog.text


def test_a_lost_unique_key_race_reruns_the_transaction(db_path: Path) -> None:
    engine = open_engine(f"sqlite:///{db_path}")
    Base.metadata.create_all(engine)
    now = dt.datetime.now(dt.UTC)

    def row() -> AccountRow:
        return AccountRow(
            account_id="GH:V1",
            facility="GH",
            department="",
            patient_class="I",
            status="admitted",
            mrn="",
            family_name="",
            given_name="",
            birth_date=None,
            admitted_at=None,
            discharged_at=None,
            attending_provider_id="",
            source_event_id="",
            correlation_id="",
            version=1,
            created_at=now,
            updated_at=now,
        )

    write_transaction(engine, lambda session: session.add(row()))
    attempts: list[int] = []

    def work(session: Session) -> str:
        # The first attempt acts on a stale read, as a writer that lost a race to a concurrent one does.
        attempts.append(1)
        if len(attempts) > 1 and session.get(AccountRow, "GH:V1") is not None:
            return "found"
        session.add(row())
        session.flush()
        return "inserted"

    try:
        assert write_transaction(engine, work) == "found"
        assert len(attempts) == 2

        # A race lost on every attempt is not hidden: the IntegrityError reaches the caller.
        def blind_insert(session: Session) -> None:
            session.add(row())
            session.flush()

        with pytest.raises(IntegrityError):
            write_transaction(engine, blind_insert)
    finally:
        engine.dispose()
