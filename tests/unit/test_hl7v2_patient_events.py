"""Patient-level ADT: person updates (A28, A31), account moves (A44) and visit moves (A45)."""

from __future__ import annotations

import datetime as dt

import pytest

from canonical.envelope import AccountMovePayload, EventType, PatientPayload
from canonical.errors import InvalidMessageError
from canonical.hl7v2.mapping import canonicalize
from canonical.models import MoveScope
from tests.hl7_samples import a44, a45, person


def _fault(raw: bytes) -> tuple[str, str, str, int | None]:
    with pytest.raises(InvalidMessageError) as info:
        canonicalize(raw)
    fault = info.value.fault
    return fault.rule, fault.segment, fault.field, fault.position


@pytest.mark.parametrize(
    ("trigger", "event_type"), [("A28", EventType.PATIENT_ADDED), ("A31", EventType.PATIENT_UPDATED)]
)
def test_a28_and_a31_carry_the_person_keyed_by_patient(trigger: str, event_type: EventType) -> None:
    [event] = canonicalize(
        person(trigger, "P1", mrn="MRN007", family="Smith", given="Anna", birth="19900214")
    )
    assert event.event_type is event_type
    assert event.encounter_id == "patient:NMH:MRN007"
    assert event.source_message_type == f"ADT^{trigger}"
    assert isinstance(event.payload, PatientPayload)
    who = event.payload.patient
    assert (who.mrn, who.assigning_authority, who.family_name, who.given_name) == (
        "MRN007",
        "NMH",
        "Smith",
        "Anna",
    )
    assert who.birth_date == dt.date(1990, 2, 14)
    assert who.address is not None and who.address.city == "Springfield" and who.phone == "555-0199"
    assert event.occurred_at == dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def test_a31_needs_a_patient_identifier_and_a_valid_birth_date() -> None:
    assert _fault(person("A31", "P2", mrn=""))[:3] == ("HL7-PID3-MISSING", "PID", "PID-3")
    assert _fault(person("A31", "P3", birth="19901341"))[:3] == ("HL7-DT", "PID", "PID-7")
    no_pid = b"\r".join(s for s in person("A28", "P4").split(b"\r") if not s.startswith(b"PID"))
    assert _fault(no_pid) == ("HL7-PID-MISSING", "PID", "", None)


def test_a31_ignores_the_dummy_visit_it_carries() -> None:
    raw = person("A31", "P5").replace(b"PV1|1|N", b"PV1|1|I|MEDSURG^1^A^NMH||||||||||||||||V77^^^NMH^VN")
    [event] = canonicalize(raw)
    assert event.encounter_id == "patient:NMH:MRN001"


def test_a44_moves_the_prior_patients_account_to_the_pid() -> None:
    [event] = canonicalize(a44("M1", "MRN002", "MRN001", "ACC77"))
    assert event.event_type is EventType.ACCOUNT_MOVED
    assert event.encounter_id == "patient:NMH:MRN002"
    assert isinstance(event.payload, AccountMovePayload)
    move = event.payload.move
    assert move.scope is MoveScope.ACCOUNT
    assert (move.target.mrn, move.prior_mrn, move.prior_assigning_authority) == ("MRN002", "MRN001", "NMH")
    assert (move.prior_account_number, move.encounter_id) == ("ACC77", "")


def test_a44_repeats_its_patient_group_and_needs_an_account_number() -> None:
    raw = (
        a44("M2", "MRN002", "MRN001", "ACC77")
        + b"PID|2||MRN004^^^NMH^MR||Roe^Ann\rMRG|MRN003^^^NMH^MR||ACC9\r"
    )
    first, second = canonicalize(raw)
    assert isinstance(second.payload, AccountMovePayload)
    assert (second.encounter_id, second.payload.move.prior_account_number) == ("patient:NMH:MRN004", "ACC9")
    assert (first.source_position, second.source_position) == (0, 1)
    no_account = a44("M3", "MRN002", "MRN001", "ACC77").replace(
        b"MRG|MRN001^^^NMH^MR||ACC77^^^NMH^AN", b"MRG|MRN001"
    )
    assert _fault(no_account) == ("HL7-MRG-3-MISSING", "MRG", "MRG-3", 3)
    no_mrg = b"\r".join(
        s for s in a44("M4", "MRN002", "MRN001", "A").split(b"\r") if not s.startswith(b"MRG")
    )
    assert _fault(no_mrg) == ("HL7-MRG-MISSING", "MRG", "", 2)


def test_a45_moves_each_visit_by_its_encounter_id() -> None:
    first, second = canonicalize(a45("V1", "MRN002", "MRN001", ("V100", "V200")))
    assert [e.event_type for e in (first, second)] == [EventType.VISIT_MOVED] * 2
    assert {first.encounter_id, second.encounter_id} == {"patient:NMH:MRN002"}
    moves = [e.payload.move for e in (first, second) if isinstance(e.payload, AccountMovePayload)]
    assert [(m.scope, m.prior_visit_number, m.encounter_id) for m in moves] == [
        (MoveScope.VISIT, "V100", "NMH:V100"),
        (MoveScope.VISIT, "V200", "NMH:V200"),
    ]
    assert moves[0].prior_account_number == "ACCV100"


def test_a45_takes_the_visit_from_pv1_when_mrg5_is_empty_and_refuses_neither() -> None:
    raw = a45("V2", "MRN002", "MRN001", ("V100",)).replace(b"||V100^^^NMH^VN\rPV1", b"\rPV1")
    [event] = canonicalize(raw)
    assert isinstance(event.payload, AccountMovePayload) and event.payload.move.encounter_id == "NMH:V100"
    neither = raw.replace(b"V100^^^NMH^VN", b"")
    assert _fault(neither) == ("HL7-MRG-5-MISSING", "MRG", "MRG-5", 3)
    no_mrg = b"\r".join(
        s for s in a45("V3", "MRN002", "MRN001", ("V1",)).split(b"\r") if not s.startswith(b"MRG")
    )
    assert _fault(no_mrg) == ("HL7-MRG-MISSING", "MRG", "", None)
    no_prior = a45("V4", "MRN002", "MRN001", ("V1",)).replace(b"MRG|MRN001^^^NMH^MR", b"MRG|")
    assert _fault(no_prior) == ("HL7-MRG-1-MISSING", "MRG", "MRG-1", 3)
