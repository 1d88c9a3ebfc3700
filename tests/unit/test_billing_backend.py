"""The SQL billing backend: idempotent upserts, charges, codings and merges; validation; totals; SQLite."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.billing.backend import AccountRow, Base, SqlBillingBackend
from adapters.billing.merge import lock_identifier
from adapters.convert import (
    account_from,
    aware_datetime,
    charge_from,
    coding_request_from,
    merge_request_from,
)
from canonical.errors import InvalidMessageError
from canonical.models import (
    Charge,
    CodingUpdate,
    Diagnosis,
    Drg,
    Encounter,
    EncounterStatus,
    Patient,
    PatientClass,
    PatientMerge,
    Procedure,
    TransactionType,
)
from foundation.sql import open_engine, write_transaction
from proto import billing_pb2

UpsertStatus = billing_pb2.UpsertAccountResponse.Status
ChargeStatus = billing_pb2.ChargeResult.Status
CodingStatus = billing_pb2.UpdateCodingResponse.Status
MergeStatus = billing_pb2.MergePatientResponse.Status

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
    key: str,
    status: str = "admitted",
    enc: Encounter | None = None,
    patient: Patient | None = PATIENT,
    *,
    version: int = 0,
) -> billing_pb2.UpsertAccountRequest:
    account = account_from(enc or encounter(), patient, status, f"evt-{key}", "corr-1", state_version=version)
    return billing_pb2.UpsertAccountRequest(idempotency_key=key, account=account)


def account_row(db_path: Path, account_id: str = "GH:V100") -> tuple[str, str, int, str | None]:
    """Return the stored status, department, state_version and discharge time of an account."""
    with sqlite3.connect(db_path) as raw:
        row = raw.execute(
            "SELECT status, department, state_version, discharged_at FROM billing_accounts"
            " WHERE account_id = ?",
            (account_id,),
        ).fetchone()
    assert row is not None, f"no account {account_id}"
    return (row[0], row[1], row[2], row[3])


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


def test_a_lower_state_version_is_stale_and_changes_nothing(
    backend: SqlBillingBackend, db_path: Path
) -> None:
    backend.upsert_account(upsert("k-1", "registered", version=1))
    backend.upsert_account(upsert("k-3", "discharged", version=3))
    late = backend.upsert_account(upsert("k-2", "admitted", encounter(department="WARD-2"), version=2))
    assert (late.account_id, late.status, late.version) == ("GH:V100", UpsertStatus.STALE, 2)
    assert backend.upsert_account(upsert("k-2", "admitted", encounter(department="WARD-2"), version=2)) == (
        billing_pb2.UpsertAccountResponse(account_id="GH:V100", status=UpsertStatus.DUPLICATE, version=2)
    )
    assert account_row(db_path)[:3] == ("discharged", "ICU", 3)
    assert [(row.status, row.account_count) for row in backend.totals().by_status] == [("discharged", 1)]


def test_an_event_whose_state_was_derived_again_is_applied_by_state_version_not_refused(
    backend: SqlBillingBackend, db_path: Path
) -> None:
    """After the embedded broker lost everything, the rebuilt table may take an encounter's events in
    another order: an event already applied comes again with the state of a larger set of events (the
    chaos run saw accounts left "registered" by a refused discharge). The state decides, not the key."""
    backend.upsert_account(upsert("k-a04", "registered", version=1))
    backend.upsert_account(upsert("k-a03", "discharged", version=2))  # A04 + A03
    ward = encounter(department="WARD-2")
    backend.upsert_account(upsert("k-a08", "registered", ward, version=2))  # A04 + A08
    assert account_row(db_path)[:3] == ("registered", "WARD-2", 2)
    # Rebuilt: the A03 now comes third, with A04 + A08 + A03 behind it.
    again = backend.upsert_account(upsert("k-a03", "discharged", encounter(department="WARD-2"), version=3))
    assert (again.status, again.version) == (UpsertStatus.UPDATED, 4)
    assert account_row(db_path)[:3] == ("discharged", "WARD-2", 3)
    # Its exact replay is the duplicate now; the state first sent under that key is stale, not an error.
    assert (
        backend.upsert_account(
            upsert("k-a03", "discharged", encounter(department="WARD-2"), version=3)
        ).status
        == UpsertStatus.DUPLICATE
    )
    assert backend.upsert_account(upsert("k-a03", "discharged", version=2)).status == UpsertStatus.STALE
    assert account_row(db_path)[:3] == ("discharged", "WARD-2", 3)


def test_a_key_reused_for_another_account_or_event_is_refused(backend: SqlBillingBackend) -> None:
    backend.upsert_account(upsert("k-1", version=1))
    with pytest.raises(InvalidMessageError, match="was already used for another account or another event"):
        backend.upsert_account(upsert("k-1", enc=encounter("GH:V200"), version=1))
    other_event = upsert("k-1", "discharged", version=2)
    other_event.account.source_event_id = "evt-other"
    with pytest.raises(InvalidMessageError) as refused:
        backend.upsert_account(other_event)
    assert refused.value.fault.field == "idempotency_key"


def test_status_follows_the_latest_state_even_backwards(backend: SqlBillingBackend, db_path: Path) -> None:
    discharged_at = dt.datetime(2025, 3, 4, 10, 0, tzinfo=dt.UTC)
    backend.upsert_account(upsert("k-1", "admitted", version=1))
    discharged = encounter().model_copy(update={"discharged_at": discharged_at})
    backend.upsert_account(upsert("k-2", "discharged", discharged, version=2))
    assert account_row(db_path)[0] == "discharged"
    assert account_row(db_path)[3] is not None

    # A cancelled discharge (A13): the encounter agent numbers it later and says "admitted" again.
    back = backend.upsert_account(upsert("k-3", "admitted", version=3))
    assert (back.status, back.version) == (UpsertStatus.UPDATED, 3)
    status, _, _, discharged_on = account_row(db_path)
    assert (status, discharged_on) == ("admitted", None)

    # An equal version still applies (and so does the legacy version 0 when nothing higher is stored).
    assert backend.upsert_account(upsert("k-4", "cancelled", version=3)).status == UpsertStatus.UPDATED
    assert account_row(db_path)[0] == "cancelled"
    assert backend.upsert_account(upsert("k-5", "closed", version=0)).status == UpsertStatus.STALE


@pytest.mark.parametrize("status", [status.value for status in EncounterStatus])
def test_every_encounter_status_is_accepted(backend: SqlBillingBackend, status: str) -> None:
    assert backend.upsert_account(upsert("k-1", status)).status == UpsertStatus.CREATED
    assert [(row.status, row.account_count) for row in backend.totals().by_status] == [(status, 1)]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "idempotency_key", ""), "idempotency_key"),
        (lambda r: r.ClearField("account"), "account"),
        (lambda r: setattr(r.account, "encounter_id", ""), "account.encounter_id"),
        (lambda r: setattr(r.account, "facility", ""), "account.facility"),
        (lambda r: setattr(r.account, "status", "archived"), "account.status"),
        (lambda r: setattr(r.account, "birth_date", "10/12/1815"), "account.birth_date"),
        (lambda r: setattr(r.account, "state_version", -1), "account.state_version"),
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
        (lambda c: setattr(c, "facility", ""), "charges[1].facility"),
        (lambda c: setattr(c, "charge_code", ""), "charges[1].charge_code"),
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
        backend.upsert_account(upsert("k-1", "discharged", encounter("GH:V200")))
    assert "k-1" in caplog.text
    # The account id is the visit number: an identifier, kept out of logs like the rest.
    for value in ("GH:V100", "GH:V200", "Lovelace", "Ada", "MRN-778899", "1815"):
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


CODED_AT = dt.datetime(2025, 3, 2, 12, 0, tzinfo=dt.UTC)


def coding(
    key: str,
    coded_at: dt.datetime = CODED_AT,
    *codes: str,
    encounter_id: str = "GH:V100",
    drg: str | None = "291",
    procedures: tuple[str, ...] = ("0JH606Z",),
) -> billing_pb2.UpdateCodingRequest:
    diagnoses = codes or ("I50.9", "E11.9")
    update = CodingUpdate(
        encounter_id=encounter_id,
        diagnoses=tuple(
            Diagnosis(sequence=n, code=code, diagnosis_type="F", priority=n)
            for n, code in enumerate(diagnoses, 1)
        ),
        procedures=tuple(
            Procedure(sequence=n, code=code, code_system="ICD10PCS", performed_at=coded_at)
            for n, code in enumerate(procedures, 1)
        ),
        drg=Drg(code=drg, description="Heart failure", code_system="MS-DRG") if drg else None,
    )
    return coding_request_from(update, coded_at, key, f"evt-{key}", "corr-3")


SURVIVOR = Patient(
    mrn="MRN-111",
    assigning_authority="GH",
    family_name="Byron",
    given_name="Ada",
    birth_date=dt.date(1815, 12, 10),
)


def merge(
    key: str, prior: str = "MRN-778899", into: Patient = SURVIVOR, prior_authority: str = ""
) -> billing_pb2.MergePatientRequest:
    canonical = PatientMerge(surviving=into, prior_mrn=prior, prior_assigning_authority=prior_authority)
    return merge_request_from(canonical, key, f"evt-{key}", "corr-4")


def identity(db_path: Path, account_id: str = "GH:V100") -> tuple[str, str, str, str, str]:
    """Return the stored mrn, authority, family name, given name and merge key of an account."""
    with sqlite3.connect(db_path) as raw:
        row = raw.execute(
            "SELECT mrn, assigning_authority, family_name, given_name, merged_by FROM billing_accounts"
            " WHERE account_id = ?",
            (account_id,),
        ).fetchone()
    assert row is not None, f"no account {account_id}"
    return (row[0], row[1], row[2], row[3], row[4])


def stored_codes(db_path: Path, encounter_id: str = "GH:V100") -> tuple[list[str], list[str], str | None]:
    with sqlite3.connect(db_path) as raw:
        diagnoses = [
            r[0]
            for r in raw.execute(
                "SELECT code FROM billing_diagnoses WHERE encounter_id = ? ORDER BY position", (encounter_id,)
            )
        ]
        procedures = [
            r[0]
            for r in raw.execute(
                "SELECT code FROM billing_procedures WHERE encounter_id = ? ORDER BY position",
                (encounter_id,),
            )
        ]
        drg = raw.execute(
            "SELECT drg_code FROM billing_codings WHERE encounter_id = ?", (encounter_id,)
        ).fetchone()
    return diagnoses, procedures, drg[0] if drg else None


def test_convert_carries_the_new_account_and_charge_fields() -> None:
    patient = PATIENT.model_copy(update={"assigning_authority": "GH"})
    account = account_from(encounter(), patient, "preadmitted", "e", "c", state_version=7)
    assert (account.status, account.state_version, account.assigning_authority) == ("preadmitted", 7, "GH")

    supply = Charge(
        charge_id="c-s",
        encounter_id="GH:V100",
        transaction_type=TransactionType.CHARGE,
        charge_code="SUP-1",
        amount_cents=-900,
        service_at=dt.datetime(2025, 3, 1, tzinfo=dt.UTC),
        facility="GH",
        procedure_code="99070",
        ndc_code="0409-4888-02",
        filler_order_number="F-9",
        unit_cost_cents=450,
        is_supply=True,
    )
    message = charge_from(supply, "e", "c")
    assert (message.transaction_type, message.amount_cents) == ("CG", -900)
    assert (message.procedure_code, message.ndc_code, message.filler_order_number) == (
        "99070",
        "0409-4888-02",
        "F-9",
    )
    assert message.is_supply and message.unit_cost_cents == 450
    assert not charge("c-1").HasField("unit_cost_cents")


def test_convert_builds_coding_and_merge_requests() -> None:
    request = coding("u-1")
    assert (request.encounter_id, request.coded_at.ToDatetime(dt.UTC)) == ("GH:V100", CODED_AT)
    assert [(d.sequence, d.code, d.priority) for d in request.diagnoses] == [(1, "I50.9", 1), (2, "E11.9", 2)]
    assert not request.diagnoses[0].HasField("diagnosed_at")
    assert request.procedures[0].performed_at.ToDatetime(dt.UTC) == CODED_AT
    assert (request.drg.code, request.drg.code_system) == ("291", "MS-DRG")
    assert not coding("u-2", drg=None).HasField("drg")

    merged = merge("m-1", prior_authority="GH")
    assert (merged.prior_mrn, merged.prior_assigning_authority) == ("MRN-778899", "GH")
    assert (merged.surviving.mrn, merged.surviving.family_name, merged.surviving.birth_date) == (
        "MRN-111",
        "Byron",
        "1815-12-10",
    )

    assert aware_datetime("2025-03-02T07:00:00-05:00", "coded_at") == CODED_AT
    with pytest.raises(ValueError, match="coded_at: '2025-03-02T12:00:00' has no UTC offset"):
        aware_datetime("2025-03-02T12:00:00", "coded_at")
    with pytest.raises(ValueError, match="is not an ISO 8601 date-time"):
        aware_datetime("yesterday", "coded_at")


def test_a_cg_reversal_is_accepted_and_counted(backend: SqlBillingBackend) -> None:
    backend.upsert_account(upsert("k-1"))
    reversal = charge("c-2", 12_500)
    reversal.amount_cents = -12_500  # still CG: FT1-6 says charge, the amount reverses it
    response = backend.post_charges(post("p-1", charge("c-1"), reversal))
    assert [r.status for r in response.results] == [ChargeStatus.ACCEPTED, ChargeStatus.ACCEPTED]
    totals = backend.totals()
    assert (totals.charge_count, totals.amount_cents, totals.reversal_count) == (2, 0, 1)


def test_supply_charges_keep_their_codes_and_are_totalled(backend: SqlBillingBackend, db_path: Path) -> None:
    backend.upsert_account(upsert("k-1"))
    supply = charge("c-2", 900)
    supply.is_supply = True
    supply.ndc_code = "0409-4888-02"
    supply.procedure_code = "99070"
    supply.unit_cost_cents = 450
    backend.post_charges(post("p-1", charge("c-1"), supply))
    totals = backend.totals()
    assert (totals.supply_charge_count, totals.supply_amount_cents) == (1, 900)
    with sqlite3.connect(db_path) as raw:
        row = raw.execute(
            "SELECT is_supply, ndc_code, procedure_code, unit_cost_cents FROM billing_charges"
            " WHERE charge_id = 'c-2'"
        ).fetchone()
    assert row == (1, "0409-4888-02", "99070", 450)


def test_coding_is_applied_replayed_and_replaced(backend: SqlBillingBackend, db_path: Path) -> None:
    backend.upsert_account(upsert("k-1"))
    first = backend.update_coding(coding("u-1"))
    assert (first.encounter_id, first.status, first.version) == ("GH:V100", CodingStatus.APPLIED, 1)
    assert stored_codes(db_path) == (["I50.9", "E11.9"], ["0JH606Z"], "291")
    assert backend.update_coding(coding("u-1")) == billing_pb2.UpdateCodingResponse(
        encounter_id="GH:V100", status=CodingStatus.DUPLICATE, version=1
    )

    # A later coding replaces the whole set: a diagnosis it leaves out is gone, and so is the DRG.
    later = backend.update_coding(
        coding("u-2", CODED_AT + dt.timedelta(hours=1), "I50.9", drg=None, procedures=())
    )
    assert (later.status, later.version) == (CodingStatus.APPLIED, 2)
    assert stored_codes(db_path) == (["I50.9"], [], None)
    totals = backend.totals()
    assert (totals.coded_account_count, totals.diagnosis_count, totals.procedure_count, totals.drg_count) == (
        1,
        1,
        0,
        0,
    )


def test_an_older_coding_arriving_late_is_stale(backend: SqlBillingBackend, db_path: Path) -> None:
    backend.update_coding(coding("u-2", CODED_AT, "I50.9", "N18.3"))
    late = backend.update_coding(coding("u-1", CODED_AT - dt.timedelta(minutes=1), "R07.9", drg="999"))
    assert (late.status, late.version) == (CodingStatus.STALE, 1)
    assert stored_codes(db_path) == (["I50.9", "N18.3"], ["0JH606Z"], "291")
    # Its replay is a duplicate like any other, and the same coding time again is applied (not stale).
    assert backend.update_coding(
        coding("u-1", CODED_AT - dt.timedelta(minutes=1), "R07.9", drg="999")
    ).status == (CodingStatus.DUPLICATE)
    same_time = backend.update_coding(coding("u-3", CODED_AT, "I50.9"))
    assert (same_time.status, same_time.version) == (CodingStatus.APPLIED, 2)
    # Offsets are compared as instants: 06:59-05:00 is 11:59Z, older than the stored 12:00Z.
    eastern = dt.timezone(dt.timedelta(hours=-5))
    assert backend.update_coding(coding("u-4", dt.datetime(2025, 3, 2, 6, 59, tzinfo=eastern))).status == (
        CodingStatus.STALE
    )
    assert backend.update_coding(coding("u-5", dt.datetime(2025, 3, 2, 7, 1, tzinfo=eastern))).status == (
        CodingStatus.APPLIED
    )


def test_coding_before_the_account_is_kept(backend: SqlBillingBackend) -> None:
    applied = backend.update_coding(coding("u-1", encounter_id="GH:V777"))
    assert applied.status == CodingStatus.APPLIED
    assert backend.totals().coded_account_count == 1
    assert backend.totals().account_count == 0
    assert backend.upsert_account(upsert("k-1", enc=encounter("GH:V777"))).status == UpsertStatus.CREATED


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "idempotency_key", ""), "idempotency_key"),
        (lambda r: setattr(r, "encounter_id", ""), "encounter_id"),
        (lambda r: r.ClearField("coded_at"), "coded_at"),
        (lambda r: setattr(r.diagnoses[1], "code", ""), "diagnoses[1].code"),
        (lambda r: setattr(r.procedures[0], "code", ""), "procedures[0].code"),
        (lambda r: setattr(r.drg, "code", ""), "drg.code"),
    ],
)
def test_invalid_coding_names_the_field(
    backend: SqlBillingBackend, mutate: Callable[[billing_pb2.UpdateCodingRequest], object], field: str
) -> None:
    request = coding("u-1")
    mutate(request)
    with pytest.raises(InvalidMessageError) as refused:
        backend.update_coding(request)
    assert refused.value.fault.field == field
    assert backend.totals().coded_account_count == 0


def test_a_reused_coding_key_with_other_content_is_refused(backend: SqlBillingBackend) -> None:
    backend.update_coding(coding("u-1"))
    with pytest.raises(InvalidMessageError) as refused:
        backend.update_coding(coding("u-1", CODED_AT, "Z00.0"))
    assert refused.value.fault.field == "idempotency_key"


def test_merge_moves_the_prior_accounts_and_replays(backend: SqlBillingBackend, db_path: Path) -> None:
    backend.upsert_account(upsert("k-1", enc=encounter("GH:V1")))
    backend.upsert_account(upsert("k-2", enc=encounter("GH:V2")))
    other = Patient(mrn="MRN-OTHER", family_name="Babbage")
    backend.upsert_account(upsert("k-3", enc=encounter("GH:V3"), patient=other))

    merged = backend.merge_patient(merge("m-1"))
    assert (merged.status, merged.accounts_moved) == (MergeStatus.MERGED, 2)
    assert identity(db_path, "GH:V1") == ("MRN-111", "GH", "Byron", "Ada", "m-1")
    assert identity(db_path, "GH:V2") == ("MRN-111", "GH", "Byron", "Ada", "m-1")
    assert identity(db_path, "GH:V3")[0] == "MRN-OTHER"
    assert backend.merge_patient(merge("m-1")) == billing_pb2.MergePatientResponse(
        status=MergeStatus.DUPLICATE, accounts_moved=2
    )
    totals = backend.totals()
    assert (totals.merge_count, totals.merged_account_count) == (1, 2)


def test_a_merge_before_the_account_moves_it_when_it_arrives(
    backend: SqlBillingBackend, db_path: Path
) -> None:
    nothing = backend.merge_patient(merge("m-1"))
    assert (nothing.status, nothing.accounts_moved) == (MergeStatus.MERGED, 0)

    created = backend.upsert_account(upsert("k-1", version=1))
    assert created.status == UpsertStatus.CREATED
    assert identity(db_path) == ("MRN-111", "GH", "Byron", "Ada", "m-1")
    # Later upserts of the prior record keep it under the survivor too.
    backend.upsert_account(upsert("k-2", "discharged", version=2))
    assert identity(db_path)[0] == "MRN-111"
    assert backend.totals().merged_account_count == 1


def test_merges_chain_in_whichever_order_they_arrive(backend: SqlBillingBackend, db_path: Path) -> None:
    third = Patient(mrn="MRN-222", assigning_authority="GH", family_name="King")
    backend.upsert_account(upsert("k-1", enc=encounter("GH:V1")))
    # B into C arrives before A into B: the account of A ends with C.
    backend.merge_patient(merge("m-2", prior="MRN-111", into=third))
    assert backend.merge_patient(merge("m-1")).accounts_moved == 1
    assert identity(db_path, "GH:V1") == ("MRN-222", "GH", "King", "Ada", "m-2")
    # And an account of A upserted after both lands there as well.
    backend.upsert_account(upsert("k-2", enc=encounter("GH:V2")))
    assert identity(db_path, "GH:V2")[:3] == ("MRN-222", "GH", "King")


def test_a_merge_back_does_not_loop(
    backend: SqlBillingBackend, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An odd bound: a chain that only stopped at the bound would end on the wrong side of the cycle.
    monkeypatch.setattr("adapters.billing.merge._MAX_CHAIN", 5)
    backend.merge_patient(merge("m-1"))
    back = Patient(mrn="MRN-778899")
    backend.merge_patient(merge("m-2", prior="MRN-111", into=back, prior_authority="GH"))
    backend.upsert_account(upsert("k-1"))
    # A into B, then B back into A: the account stays with A, as the latest merge says.
    assert identity(db_path)[:2] + identity(db_path)[4:] == ("MRN-778899", "GH", "m-2")


def test_a_merge_with_an_authority_moves_only_that_authoritys_accounts(
    backend: SqlBillingBackend, db_path: Path
) -> None:
    at_gh = PATIENT.model_copy(update={"assigning_authority": "GH"})
    at_nh = PATIENT.model_copy(update={"assigning_authority": "NH"})
    backend.upsert_account(upsert("k-1", enc=encounter("GH:V1"), patient=at_gh))
    backend.upsert_account(upsert("k-2", enc=encounter("NH:V2", "NH"), patient=at_nh))
    assert backend.merge_patient(merge("m-1", prior_authority="GH")).accounts_moved == 1
    assert identity(db_path, "GH:V1")[:2] == ("MRN-111", "GH")
    assert identity(db_path, "NH:V2")[:2] == ("MRN-778899", "NH")
    # The remembered merge is as selective for accounts that arrive later.
    backend.upsert_account(upsert("k-3", enc=encounter("NH:V3", "NH"), patient=at_nh))
    backend.upsert_account(upsert("k-4", enc=encounter("GH:V4"), patient=at_gh))
    assert identity(db_path, "NH:V3")[0] == "MRN-778899"
    assert identity(db_path, "GH:V4")[0] == "MRN-111"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "idempotency_key", ""), "idempotency_key"),
        (lambda r: setattr(r, "prior_mrn", ""), "prior_mrn"),
        (lambda r: r.ClearField("surviving"), "surviving"),
        (lambda r: setattr(r.surviving, "mrn", ""), "surviving.mrn"),
        (lambda r: setattr(r.surviving, "birth_date", "10/12/1815"), "surviving.birth_date"),
        (
            lambda r: (
                setattr(r.surviving, "mrn", r.prior_mrn) or r.surviving.ClearField("assigning_authority")
            ),
            "surviving.mrn",
        ),
    ],
)
def test_invalid_merge_names_the_field(
    backend: SqlBillingBackend, mutate: Callable[[billing_pb2.MergePatientRequest], object], field: str
) -> None:
    request = merge("m-1")
    mutate(request)
    with pytest.raises(InvalidMessageError) as refused:
        backend.merge_patient(request)
    assert refused.value.fault.field == field
    assert "10/12/1815" not in str(refused.value)
    assert backend.totals().merge_count == 0


def test_coding_and_merge_logs_carry_no_phi(
    backend: SqlBillingBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend.upsert_account(upsert("k-1"))
    backend.update_coding(coding("u-1"))
    backend.merge_patient(merge("m-1"))
    assert "patient merge m-1: MERGED, 1 accounts moved" in caplog.text
    assert "coding u-1: APPLIED version 1, 2 diagnoses, 1 procedures" in caplog.text
    for value in ("GH:V100", "MRN-778899", "MRN-111", "Byron", "Lovelace", "1815"):
        assert value not in caplog.text


_BILLING_1_0 = (
    """CREATE TABLE billing_accounts (
        account_id VARCHAR NOT NULL, facility VARCHAR NOT NULL, department VARCHAR NOT NULL,
        patient_class VARCHAR NOT NULL, status VARCHAR NOT NULL, mrn VARCHAR NOT NULL,
        family_name VARCHAR NOT NULL, given_name VARCHAR NOT NULL, birth_date DATE, admitted_at DATETIME,
        discharged_at DATETIME, attending_provider_id VARCHAR NOT NULL, source_event_id VARCHAR NOT NULL,
        correlation_id VARCHAR NOT NULL, version BIGINT NOT NULL, created_at DATETIME NOT NULL,
        updated_at DATETIME NOT NULL, PRIMARY KEY (account_id))""",
    """CREATE TABLE billing_charges (
        charge_id VARCHAR NOT NULL, posting_id VARCHAR NOT NULL, encounter_id VARCHAR NOT NULL,
        transaction_id VARCHAR NOT NULL, transaction_type VARCHAR NOT NULL, charge_code VARCHAR NOT NULL,
        code_system VARCHAR NOT NULL, description VARCHAR NOT NULL, quantity BIGINT NOT NULL,
        unit_amount_cents BIGINT, amount_cents BIGINT NOT NULL, currency VARCHAR NOT NULL,
        service_at DATETIME NOT NULL, facility VARCHAR NOT NULL, department VARCHAR NOT NULL,
        source_event_id VARCHAR NOT NULL, correlation_id VARCHAR NOT NULL, request_key VARCHAR NOT NULL,
        posted_at DATETIME NOT NULL, PRIMARY KEY (charge_id), UNIQUE (posting_id),
        FOREIGN KEY(encounter_id) REFERENCES billing_accounts (account_id))""",
    """INSERT INTO billing_accounts VALUES ('GH:V100', 'GH', 'ICU', 'I', 'discharged', 'MRN-778899',
        'Lovelace', 'Ada', NULL, NULL, NULL, '', '', '', 4, '2025-03-01 00:00:00', '2025-03-01 00:00:00')""",
    """INSERT INTO billing_charges VALUES ('c-old', 'BP-old', 'GH:V100', '', 'CG', '99213', 'CPT', '', 1,
        NULL, 500, 'USD', '2025-03-01 09:00:00', 'GH', 'ICU', '', '', 'p-old', '2025-03-01 09:00:00')""",
)


def test_a_database_of_the_previous_release_opens_and_gains_the_new_columns(db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        for statement in _BILLING_1_0:
            raw.execute(statement)
    upgraded = SqlBillingBackend(f"sqlite:///{db_path}")
    try:
        totals = upgraded.totals()
        assert (totals.account_count, totals.charge_count, totals.supply_charge_count) == (1, 1, 0)
        assert account_row(db_path) == ("discharged", "ICU", 0, None)
        # The old charge is still the posting of record, and the old account takes new-style updates.
        replay = upgraded.post_charges(post("p-new", charge("c-old", 500)))
        assert (replay.results[0].status, replay.results[0].posting_id) == (ChargeStatus.DUPLICATE, "BP-old")
        assert upgraded.upsert_account(upsert("k-1", "admitted", version=1)).version == 5
        assert upgraded.merge_patient(merge("m-1")).accounts_moved == 1
    finally:
        upgraded.close()
    # Opening it again finds nothing left to add.
    SqlBillingBackend(f"sqlite:///{db_path}").close()


def test_identifiers_are_locked_on_postgresql_only() -> None:
    executed: list[dict[str, str]] = []

    class Dialect:
        def __init__(self, name: str) -> None:
            self.name = name

    class FakeSession:
        def __init__(self, dialect: str) -> None:
            self.dialect = Dialect(dialect)

        def get_bind(self) -> FakeSession:
            return self

        def execute(self, statement: object, params: dict[str, str]) -> None:
            assert "pg_advisory_xact_lock" in str(statement)
            executed.append(params)

    lock_identifier(FakeSession("sqlite"), "MRN-1")  # type: ignore[arg-type]
    assert executed == []
    lock_identifier(FakeSession("postgresql"), "MRN-1")  # type: ignore[arg-type]
    assert executed == [{"key": "hcsync.mrn|MRN-1"}]
