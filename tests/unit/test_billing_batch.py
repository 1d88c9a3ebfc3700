"""ApplyBatch in the SQL billing backend: order, per-item refusals in savepoints, replays, one transaction."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.message import Message
from sqlalchemy import Engine, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import adapters.billing.backend as billing_backend
from adapters.billing.backend import SqlBillingBackend
from adapters.convert import coding_request_from, merge_request_from
from canonical.errors import InvalidMessageError
from canonical.models import CodingUpdate, Diagnosis, Patient, PatientMerge
from proto import billing_pb2
from tests.unit.test_billing_patients import ADA, BOB, accounts, at, move, person, send, upsert

UpsertStatus = billing_pb2.UpsertAccountResponse.Status
CodingStatus = billing_pb2.UpdateCodingResponse.Status


def coding(
    key: str, encounter_id: str = "GH:V1", when: dt.datetime | None = None, code: str = "I50.9"
) -> billing_pb2.UpdateCodingRequest:
    update = CodingUpdate(encounter_id=encounter_id, diagnoses=(Diagnosis(sequence=1, code=code),))
    return coding_request_from(update, when or at(0), key, f"evt-{key}", "corr-4")


def merge(key: str, prior: Patient = ADA, surviving: Patient = BOB) -> billing_pb2.MergePatientRequest:
    canonical = PatientMerge(
        surviving=surviving, prior_mrn=prior.mrn, prior_assigning_authority=prior.assigning_authority
    )
    return merge_request_from(canonical, key, f"evt-{key}", "corr-5")


def item(request: Message) -> billing_pb2.BillingBatchItem:
    if isinstance(request, billing_pb2.UpsertAccountRequest):
        return billing_pb2.BillingBatchItem(upsert_account=request)
    if isinstance(request, billing_pb2.UpdateCodingRequest):
        return billing_pb2.BillingBatchItem(update_coding=request)
    if isinstance(request, billing_pb2.MergePatientRequest):
        return billing_pb2.BillingBatchItem(merge_patient=request)
    if isinstance(request, billing_pb2.UpdatePatientRequest):
        return billing_pb2.BillingBatchItem(update_patient=request)
    assert isinstance(request, billing_pb2.MoveAccountRequest)
    return billing_pb2.BillingBatchItem(move_account=request)


def batch(key: str, *requests: Message) -> billing_pb2.BillingBatchRequest:
    return billing_pb2.BillingBatchRequest(idempotency_key=key, items=[item(r) for r in requests])


def outcomes(response: billing_pb2.BillingBatchResponse) -> list[str]:
    """Each result as "<kind> <STATUS>", or "error <field>"."""
    described = []
    for result in response.results:
        kind = result.WhichOneof("outcome")
        if kind == "error":
            described.append(f"error {result.error.field}")
        else:
            answer = getattr(result, kind)
            status = answer.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_number[answer.status]
            described.append(f"{kind} {status.name}")
    return described


@pytest.fixture
def sql_events() -> Iterator[list[str]]:
    """The transaction events of every engine while the test runs: begin, commit, savepoint..."""
    seen: list[str] = []
    listeners = {
        name: (lambda conn, *args, _name=name: seen.append(_name))
        for name in ("begin", "commit", "rollback", "savepoint", "rollback_savepoint", "release_savepoint")
    }
    for name, listener in listeners.items():
        event.listen(Engine, name, listener)
    try:
        yield seen
    finally:
        for name, listener in listeners.items():
            event.remove(Engine, name, listener)


def test_items_apply_in_order_within_one_batch(backend: SqlBillingBackend, db_path: Path) -> None:
    response = backend.apply_batch(
        batch(
            "b-1",
            upsert("u-1", version=1),
            coding("d-1"),
            upsert("u-2", version=2),
            upsert("u-0", version=0),  # older than the one before it in this batch
            person("p-1", ADA.model_copy(update={"family_name": "King"}), at(30)),
            upsert("u-3", "GH:V2", version=1),
            move("m-1", at(40), visit="GH:V2"),
        )
    )
    assert outcomes(response) == [
        "upsert_account CREATED",
        "update_coding APPLIED",
        "upsert_account UPDATED",
        "upsert_account STALE",
        "update_patient UPDATED",
        "upsert_account CREATED",
        "move_account MOVED",
    ]
    assert response.results[2].upsert_account.version == 2
    assert (
        response.results[4].update_patient.accounts_updated,
        response.results[6].move_account.accounts_moved,
    ) == (
        1,
        1,
    )
    assert accounts(db_path) == {"GH:V1": ("MRN-1", "King", "Ada"), "GH:V2": ("MRN-2", "Babbage", "Charles")}
    totals = backend.totals()
    assert (totals.account_count, totals.coded_account_count, totals.patient_update_count) == (2, 1, 1)


def test_a_batch_ends_as_the_same_calls_one_by_one(tmp_path: Path) -> None:
    requests: tuple[Message, ...] = (
        merge("g-1", prior=BOB, surviving=Patient(mrn="MRN-9", assigning_authority="GH", family_name="Nine")),
        upsert("u-1", version=1),
        coding("d-1"),
        upsert("u-2", "GH:V2", BOB),
        person("p-1", ADA.model_copy(update={"given_name": "Augusta"}), at(10)),
        move("m-1", at(20), visit="GH:V1"),
        coding("d-2", when=at(-5), code="R07.9"),
        upsert("u-1", version=1),  # a replay inside the batch
    )
    one_by_one = SqlBillingBackend(f"sqlite:///{tmp_path / 'single.db'}")
    batched = SqlBillingBackend(f"sqlite:///{tmp_path / 'batch.db'}")
    try:
        singles = [send_any(one_by_one, request) for request in requests]
        response = batched.apply_batch(batch("b-1", *requests))
        assert [getattr(r, r.WhichOneof("outcome")) for r in response.results] == singles
        assert accounts(tmp_path / "batch.db") == accounts(tmp_path / "single.db")
        assert batched.totals() == one_by_one.totals()
    finally:
        one_by_one.close()
        batched.close()


def send_any(backend: SqlBillingBackend, request: Message) -> Message:
    if isinstance(request, billing_pb2.UpdateCodingRequest):
        return backend.update_coding(request)
    if isinstance(request, billing_pb2.MergePatientRequest):
        return backend.merge_patient(request)
    return send(backend, request)


def test_a_refused_item_leaves_the_others_committed(backend: SqlBillingBackend, db_path: Path) -> None:
    backend.upsert_account(upsert("u-9", "GH:V9"))
    no_facility = upsert("u-2", "GH:V2")
    no_facility.account.facility = ""
    response = backend.apply_batch(
        batch(
            "b-1",
            upsert("u-1"),
            no_facility,  # refused up front, by the checks of UpsertAccount
            upsert("u-9", "GH:V3"),  # refused while applied: the key is GH:V9's (its savepoint rolls back)
            billing_pb2.UpsertAccountRequest(),  # no key at all
            coding("d-1"),
        )
    )
    assert outcomes(response) == [
        "upsert_account CREATED",
        "error account.facility",
        "error idempotency_key",
        "error idempotency_key",
        "update_coding APPLIED",
    ]
    refused = response.results[2].error
    assert (refused.code, refused.message) == (
        "ALREADY_EXISTS",
        "UpsertAccount: idempotency_key: u-9 was already used for another account or another event",
    )
    assert response.results[1].error.message == "UpsertAccount: account.facility: is empty"
    assert set(accounts(db_path)) == {"GH:V1", "GH:V9"}
    assert backend.totals().coded_account_count == 1


def test_an_item_without_a_command_is_refused_alone(backend: SqlBillingBackend) -> None:
    request = batch("b-1", upsert("u-1"))
    request.items.add()
    response = backend.apply_batch(request)
    assert outcomes(response) == ["upsert_account CREATED", "error command"]
    assert response.results[1].error.message == "ApplyBatch: command: is empty"


def test_a_batch_without_a_key_is_refused_whole(backend: SqlBillingBackend) -> None:
    with pytest.raises(InvalidMessageError) as refused:
        backend.apply_batch(batch("", upsert("u-1")))
    assert refused.value.fault.field == "idempotency_key"
    assert backend.totals().account_count == 0


def test_a_replayed_batch_answers_duplicate_per_item(backend: SqlBillingBackend) -> None:
    request = batch(
        "b-1",
        upsert("u-1"),
        coding("d-1"),
        merge("g-1"),
        person("p-1", ADA, at(5)),
        move("m-1", at(6), visit="GH:V1"),
    )
    first = backend.apply_batch(request)
    again = backend.apply_batch(request)
    assert outcomes(again) == [
        "upsert_account DUPLICATE",
        "update_coding DUPLICATE",
        "merge_patient DUPLICATE",
        "update_patient DUPLICATE",
        "move_account DUPLICATE",
    ]
    assert again.results[0].upsert_account.version == first.results[0].upsert_account.version
    # An item is idempotent on its own key, whichever call carried it first.
    assert backend.upsert_account(upsert("u-1")).status == UpsertStatus.DUPLICATE
    assert outcomes(backend.apply_batch(batch("b-2", coding("d-1"), upsert("u-4", "GH:V4")))) == [
        "update_coding DUPLICATE",
        "upsert_account CREATED",
    ]


def test_one_write_transaction_per_call_with_a_savepoint_per_item(
    backend: SqlBillingBackend, sql_events: list[str]
) -> None:
    backend.apply_batch(batch("b-1", *(upsert(f"u-{n}", f"GH:V{n}") for n in range(50)), coding("d-1")))
    assert sql_events.count("begin") == 1 and sql_events.count("commit") == 1
    assert (sql_events.count("savepoint"), sql_events.count("release_savepoint")) == (51, 51)
    assert backend.totals().account_count == 50
    # A refusal inside an item rolls back its savepoint only; the transaction still commits once.
    sql_events.clear()
    backend.apply_batch(batch("b-2", upsert("u-1", "GH:V99"), upsert("u-60", "GH:V60")))
    assert (sql_events.count("begin"), sql_events.count("commit"), sql_events.count("rollback")) == (1, 1, 0)
    assert sql_events.count("rollback_savepoint") == 1
    # A batch whose every item is refused up front opens no write transaction at all.
    sql_events.clear()
    backend.apply_batch(batch("b-3", billing_pb2.UpsertAccountRequest()))
    assert "begin" not in sql_events


def test_a_lost_race_reruns_the_whole_batch(
    backend: SqlBillingBackend, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The IntegrityError of a lost unique-key race is not an item's error: the whole transaction reruns,
    and every item is answered afresh (the upsert before the race is CREATED, not DUPLICATE of itself)."""
    real = billing_backend.apply_coding
    calls: list[str] = []

    def lose_the_first_race(
        session: Session, request: billing_pb2.UpdateCodingRequest, digest: str, now: dt.datetime
    ) -> billing_pb2.UpdateCodingResponse:
        calls.append(request.idempotency_key)
        answer = real(session, request, digest, now)
        if len(calls) == 1:
            raise IntegrityError("INSERT", None, Exception("UNIQUE constraint failed"))
        return answer

    monkeypatch.setattr(billing_backend, "apply_coding", lose_the_first_race)
    response = backend.apply_batch(batch("b-1", upsert("u-1"), coding("d-1"), upsert("u-2", "GH:V2")))
    assert calls == ["d-1", "d-1"]
    assert outcomes(response) == ["upsert_account CREATED", "update_coding APPLIED", "upsert_account CREATED"]
    assert response.results[1].update_coding.version == 1
    assert set(accounts(db_path)) == {"GH:V1", "GH:V2"}
    totals = backend.totals()
    assert (totals.account_count, totals.coded_account_count, totals.diagnosis_count) == (2, 1, 1)


def test_one_summary_log_line_per_call_without_phi(
    backend: SqlBillingBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters")
    no_facility = upsert("u-2", "GH:V2")
    no_facility.account.facility = ""
    backend.apply_batch(batch("b-1", upsert("u-1"), no_facility, coding("d-1"), coding("d-2", when=at(-1))))
    lines = [r.getMessage() for r in caplog.records if r.name == "adapters.billing.backend"]
    assert lines == [
        "billing batch b-1: 4 items: error INVALID_ARGUMENT 1, update_coding APPLIED 1, "
        "update_coding STALE 1, upsert_account CREATED 1"
    ]
    for value in ("GH:V1", "GH:V2", "Lovelace", "Ada", "MRN-1", "I50.9"):
        assert value not in caplog.text


def test_upserts_of_a_batch_find_merges_moves_and_person_updates_recorded_before_it(tmp_path: Path) -> None:
    """A batch of upserts skips the merge, move and person lookups only for identifiers nothing names."""
    carol = Patient(mrn="MRN-C", assigning_authority="GH", family_name="Carol")
    dave = Patient(mrn="MRN-D", assigning_authority="GH", family_name="Dave")
    recorded: tuple[Message, ...] = (
        merge("g-1", prior=BOB, surviving=Patient(mrn="MRN-9", assigning_authority="GH", family_name="Nine")),
        move("m-1", at(20), visit="GH:V3"),
        move("m-2", at(20), prior=carol, target=dave, account_number="ACC-4"),
        person("p-1", ADA.model_copy(update={"given_name": "Augusta"}), at(10)),
    )
    upserts = (
        upsert("u-1", "GH:V1", ADA, account_number="ACC-1"),  # a person update names ADA
        upsert("u-2", "GH:V2", BOB, account_number="ACC-2"),  # BOB was merged into MRN-9
        upsert("u-3", "GH:V3", dave, account_number="ACC-3"),  # its visit was moved
        upsert("u-4", "GH:V4", carol, account_number="ACC-4"),  # its account number was moved
        upsert("u-5", "GH:V5", dave, account_number="ACC-5"),  # nothing names it
    )
    one_by_one = SqlBillingBackend(f"sqlite:///{tmp_path / 'single.db'}")
    batched = SqlBillingBackend(f"sqlite:///{tmp_path / 'batch.db'}")
    try:
        for request in recorded:
            send_any(one_by_one, request)
            send_any(batched, request)
        singles = [send_any(one_by_one, request) for request in upserts]
        response = batched.apply_batch(batch("b-1", *upserts))
        assert [getattr(r, r.WhichOneof("outcome")) for r in response.results] == singles
        ends = accounts(tmp_path / "batch.db")
        assert ends == accounts(tmp_path / "single.db")
        assert ends["GH:V1"][2] == "Augusta" and ends["GH:V2"][0] == "MRN-9"
        assert ends["GH:V3"][0] == BOB.mrn and ends["GH:V4"][0] == dave.mrn and ends["GH:V5"][0] == dave.mrn
    finally:
        one_by_one.close()
        batched.close()
