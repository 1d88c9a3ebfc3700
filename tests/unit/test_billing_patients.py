"""Billing person updates (ADT^A28/A31) and account and visit moves (ADT^A44/A45): every account of the
patient, idempotent on the key, and the same end state whatever order they and the upserts arrive in."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import sqlite3
from pathlib import Path

import pytest
from google.protobuf.message import Message

from adapters.billing.backend import Base, SqlBillingBackend
from adapters.convert import account_from, move_request_from, patient_update_request_from
from canonical.errors import InvalidMessageError
from canonical.models import AccountMove, Encounter, MoveScope, Patient, PatientClass
from proto import billing_pb2

PatientStatus = billing_pb2.UpdatePatientResponse.Status
MoveStatus = billing_pb2.MoveAccountResponse.Status
T0 = dt.datetime(2025, 3, 2, 12, 0, tzinfo=dt.UTC)
ADA = Patient(mrn="MRN-1", assigning_authority="GH", family_name="Lovelace", given_name="Ada")
BOB = Patient(mrn="MRN-2", assigning_authority="GH", family_name="Babbage", given_name="Charles")
CAT = Patient(mrn="MRN-3", assigning_authority="GH", family_name="Somerville", given_name="Mary")


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def upsert(
    key: str,
    encounter_id: str = "GH:V1",
    patient: Patient = ADA,
    as_of: dt.datetime | None = T0,
    *,
    account_number: str = "ACC-1",
    version: int = 1,
) -> billing_pb2.UpsertAccountRequest:
    encounter = Encounter(
        encounter_id=encounter_id,
        facility="GH",
        department="ICU",
        patient_class=PatientClass.INPATIENT,
        account_number=account_number,
    )
    account = account_from(
        encounter, patient, "admitted", f"evt-{key}", "corr-1", state_version=version, patient_as_of=as_of
    )
    return billing_pb2.UpsertAccountRequest(idempotency_key=key, account=account)


def person(key: str, patient: Patient, when: dt.datetime) -> billing_pb2.UpdatePatientRequest:
    return patient_update_request_from(patient, when, key, f"evt-{key}", "corr-2")


def move(
    key: str,
    when: dt.datetime,
    target: Patient = BOB,
    prior: Patient = ADA,
    *,
    visit: str = "",
    account_number: str = "",
) -> billing_pb2.MoveAccountRequest:
    canonical = AccountMove(
        scope=MoveScope.VISIT if visit else MoveScope.ACCOUNT,
        target=target,
        prior_mrn=prior.mrn,
        prior_assigning_authority=prior.assigning_authority,
        prior_account_number=account_number,
        prior_visit_number=visit.rpartition(":")[2],
        encounter_id=visit,
    )
    return move_request_from(canonical, when, key, f"evt-{key}", "corr-3")


def accounts(db_path: Path) -> dict[str, tuple[str, str, str]]:
    """Return account id -> (mrn, family name, given name)."""
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute("SELECT account_id, mrn, family_name, given_name FROM billing_accounts").fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def ends_in_every_order(
    db_path: Path, requests: tuple[Message, ...], account_id: str
) -> set[tuple[str, str, str]]:
    """Return the end states of one account over every order of the requests, on one emptied database."""
    ends = set()
    backend = SqlBillingBackend(f"sqlite:///{db_path}")
    try:
        for order in itertools.permutations(requests):
            with sqlite3.connect(db_path) as raw:
                for table in reversed(Base.metadata.sorted_tables):
                    raw.execute(f"DELETE FROM {table.name}")  # table names from our metadata
            for request in order:
                send(backend, request)
            ends.add(accounts(db_path)[account_id])
    finally:
        backend.close()
    return ends


def send(backend: SqlBillingBackend, request: Message) -> Message:
    if isinstance(request, billing_pb2.UpsertAccountRequest):
        return backend.upsert_account(request)
    if isinstance(request, billing_pb2.UpdatePatientRequest):
        return backend.update_patient(request)
    assert isinstance(request, billing_pb2.MoveAccountRequest)
    return backend.move_account(request)


# --- person updates -------------------------------------------------------------------------------


def test_a_person_update_reaches_every_account_of_the_patient(
    backend: SqlBillingBackend, db_path: Path
) -> None:
    backend.upsert_account(upsert("u-1", "GH:V1"))
    backend.upsert_account(upsert("u-2", "GH:V2"))
    backend.upsert_account(upsert("u-3", "GH:V3", BOB))
    backend.upsert_account(upsert("u-4", "OH:V4", ADA.model_copy(update={"assigning_authority": "OH"})))
    renamed = ADA.model_copy(update={"family_name": "King", "birth_date": dt.date(1815, 12, 10)})
    response = backend.update_patient(person("p-1", renamed, at(10)))
    assert (response.status, response.accounts_updated) == (PatientStatus.UPDATED, 2)
    assert accounts(db_path) == {
        "GH:V1": ("MRN-1", "King", "Ada"),
        "GH:V2": ("MRN-1", "King", "Ada"),
        "GH:V3": ("MRN-2", "Babbage", "Charles"),
        "OH:V4": ("MRN-1", "Lovelace", "Ada"),  # the same MRN under another authority is someone else
    }
    assert backend.update_patient(person("p-1", renamed, at(10))) == billing_pb2.UpdatePatientResponse(
        status=PatientStatus.DUPLICATE, accounts_updated=2
    )
    with pytest.raises(InvalidMessageError, match="already used"):
        backend.update_patient(person("p-1", ADA, at(10)))
    assert backend.totals().patient_update_count == 1


def test_an_update_without_authority_matches_the_mrn_under_any(
    backend: SqlBillingBackend, db_path: Path
) -> None:
    backend.upsert_account(upsert("u-1", "GH:V1"))
    backend.upsert_account(upsert("u-2", "OH:V2", ADA.model_copy(update={"assigning_authority": "OH"})))
    unqualified = ADA.model_copy(update={"assigning_authority": "", "family_name": "King"})
    assert backend.update_patient(person("p-1", unqualified, at(10))).accounts_updated == 2


def test_an_older_update_is_stale_and_newer_demographics_stand(
    backend: SqlBillingBackend, db_path: Path
) -> None:
    backend.update_patient(person("p-2", ADA.model_copy(update={"family_name": "King"}), at(20)))
    stale = backend.update_patient(person("p-1", ADA.model_copy(update={"family_name": "Byron"}), at(10)))
    assert (stale.status, stale.accounts_updated) == (PatientStatus.STALE, 0)
    # An account upserted later with demographics older than the update takes the update's ...
    backend.upsert_account(upsert("u-1", "GH:V1", as_of=at(15)))
    assert accounts(db_path)["GH:V1"][1] == "King"
    # ... one with newer demographics keeps its own, and a later older upsert does not undo them.
    backend.upsert_account(
        upsert("u-2", "GH:V1", ADA.model_copy(update={"family_name": "Lord"}), at(30), version=2)
    )
    backend.upsert_account(upsert("u-3", "GH:V1", as_of=at(25), version=3))
    assert accounts(db_path)["GH:V1"][1] == "Lord"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.ClearField("patient"), "patient"),
        (lambda r: setattr(r.patient, "mrn", ""), "patient.mrn"),
        (lambda r: setattr(r.patient, "birth_date", "1815-13-40"), "patient.birth_date"),
        (lambda r: r.ClearField("updated_at"), "updated_at"),
        (lambda r: setattr(r, "idempotency_key", ""), "idempotency_key"),
    ],
)
def test_an_invalid_person_update_names_the_field(
    backend: SqlBillingBackend, change: object, field: str
) -> None:
    request = person("p-1", ADA, at(0))
    change(request)  # type: ignore[operator]
    with pytest.raises(InvalidMessageError) as info:
        backend.update_patient(request)
    assert info.value.fault.field == field


# --- moves --------------------------------------------------------------------------------------


def test_a_visit_moves_to_the_target_patient(backend: SqlBillingBackend, db_path: Path) -> None:
    backend.upsert_account(upsert("u-1", "GH:V1"))
    backend.upsert_account(upsert("u-2", "GH:V2"))
    response = backend.move_account(move("m-1", at(10), visit="GH:V1"))
    assert (response.status, response.accounts_moved) == (MoveStatus.MOVED, 1)
    assert accounts(db_path) == {
        "GH:V1": ("MRN-2", "Babbage", "Charles"),
        "GH:V2": ("MRN-1", "Lovelace", "Ada"),
    }
    assert backend.move_account(move("m-1", at(10), visit="GH:V1")).status == MoveStatus.DUPLICATE
    totals = backend.totals()
    assert (totals.account_move_count, totals.moved_account_count) == (1, 1)


def test_an_account_move_takes_every_visit_of_that_account_number_of_the_prior_patient(
    backend: SqlBillingBackend, db_path: Path
) -> None:
    backend.upsert_account(upsert("u-1", "GH:V1", account_number="ACC-7"))
    backend.upsert_account(upsert("u-2", "GH:V2", account_number="ACC-7"))
    backend.upsert_account(upsert("u-3", "GH:V3", account_number="ACC-8"))
    backend.upsert_account(upsert("u-4", "GH:V4", CAT, account_number="ACC-7"))  # another patient's ACC-7
    assert backend.move_account(move("m-1", at(10), account_number="ACC-7")).accounts_moved == 2
    assert {k: v[0] for k, v in accounts(db_path).items()} == {
        "GH:V1": "MRN-2",
        "GH:V2": "MRN-2",
        "GH:V3": "MRN-1",
        "GH:V4": "MRN-3",
    }


def test_a_move_before_its_account_moves_it_when_it_arrives(
    backend: SqlBillingBackend, db_path: Path
) -> None:
    backend.move_account(move("m-1", at(10), visit="GH:V1"))
    backend.move_account(move("m-2", at(10), account_number="ACC-9"))
    backend.upsert_account(upsert("u-1", "GH:V1", as_of=at(5)))
    backend.upsert_account(upsert("u-2", "GH:V2", as_of=at(5), account_number="ACC-9"))
    backend.upsert_account(upsert("u-3", "GH:V3", as_of=at(15), account_number="ACC-9"))  # after the move
    assert {k: v[0] for k, v in accounts(db_path).items()} == {
        "GH:V1": "MRN-2",
        "GH:V2": "MRN-2",
        "GH:V3": "MRN-1",
    }
    # An older upsert of a moved account does not move it back.
    backend.upsert_account(upsert("u-4", "GH:V1", as_of=at(8), version=2))
    assert accounts(db_path)["GH:V1"] == ("MRN-2", "Babbage", "Charles")
    assert backend.totals().moved_account_count == 2


def test_the_latest_move_of_a_visit_wins_whatever_order(tmp_path: Path) -> None:
    requests = (
        upsert("u-1", "GH:V1", as_of=at(0)),
        move("m-1", at(10), BOB, ADA, visit="GH:V1"),
        move("m-2", at(20), CAT, BOB, visit="GH:V1"),
    )
    ends = ends_in_every_order(tmp_path / "billing.db", requests, "GH:V1")
    assert ends == {("MRN-3", "Somerville", "Mary")}


def test_account_moves_chain_in_either_order(tmp_path: Path) -> None:
    requests = (
        upsert("u-1", "GH:V1", as_of=at(0), account_number="ACC-1"),
        move("m-1", at(10), BOB, ADA, account_number="ACC-1"),
        move("m-2", at(20), CAT, BOB, account_number="ACC-1"),
    )
    ends = ends_in_every_order(tmp_path / "billing.db", requests, "GH:V1")
    assert ends == {("MRN-3", "Somerville", "Mary")}


def test_upserts_person_updates_and_moves_end_the_same_in_every_order(tmp_path: Path) -> None:
    requests = (
        upsert("u-1", "GH:V1", as_of=at(0)),
        person("p-1", BOB.model_copy(update={"family_name": "Babbage-Lovelace"}), at(30)),
        move("m-1", at(10), BOB, ADA, visit="GH:V1"),
        upsert("u-2", "GH:V1", BOB.model_copy(update={"given_name": "Chas"}), at(20), version=2),
        person("p-0", ADA.model_copy(update={"family_name": "King"}), at(15)),
    )
    ends = ends_in_every_order(tmp_path / "billing.db", requests, "GH:V1")
    # Bob owns the visit (moved at 10, named again at 20); his update at 30 is the latest word on the names.
    assert ends == {("MRN-2", "Babbage-Lovelace", "Charles")}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: setattr(r, "scope", 0), "scope"),
        (lambda r: setattr(r, "prior_mrn", ""), "prior_mrn"),
        (lambda r: setattr(r, "encounter_id", ""), "encounter_id"),
        (lambda r: setattr(r.target, "mrn", ""), "target.mrn"),
        (lambda r: r.ClearField("moved_at"), "moved_at"),
    ],
)
def test_an_invalid_move_names_the_field(backend: SqlBillingBackend, change: object, field: str) -> None:
    request = move("m-1", at(0), visit="GH:V1")
    change(request)  # type: ignore[operator]
    with pytest.raises(InvalidMessageError) as info:
        backend.move_account(request)
    assert info.value.fault.field == field
    no_number = move("m-2", at(0), account_number="")
    with pytest.raises(InvalidMessageError) as info:
        backend.move_account(no_number)
    assert info.value.fault.field == "prior_account_number"


def test_person_update_and_move_logs_carry_no_phi(
    backend: SqlBillingBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.billing.backend")
    backend.upsert_account(upsert("u-1", "GH:V1"))
    backend.update_patient(person("p-1", ADA, at(10)))
    backend.move_account(move("m-1", at(20), visit="GH:V1"))
    assert "person update p-1: UPDATED, 1 accounts updated" in caplog.text
    assert "visit move m-1: MOVED, 1 accounts moved" in caplog.text
    for phi in ("MRN-1", "MRN-2", "Lovelace", "Babbage", "GH:V1"):
        assert phi not in caplog.text
