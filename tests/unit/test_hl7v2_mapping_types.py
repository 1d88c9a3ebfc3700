"""The message types beyond the walking skeleton: ADT A02-A16, A25-A27 and A40, BAR (P12 too), DFT
supplies and DFT^P11, RDE and RAS."""

from __future__ import annotations

import pytest

from canonical.envelope import (
    ChargePayload,
    CodingPayload,
    EncounterPayload,
    EventType,
    MedicationAdministrationPayload,
    MedicationOrderPayload,
    MergePayload,
)
from canonical.errors import InvalidMessageError
from canonical.hl7v2.mapping import canonicalize
from canonical.models import ActionCode, AdministrationStatus, CodingMode, TransactionType
from tests.hl7_samples import a40, adt, bar, bar_p12, dft, dft_p11, ras, rde

ADT_TYPES = {
    "A01": EventType.ENCOUNTER_ADMITTED,
    "A02": EventType.ENCOUNTER_TRANSFERRED,
    "A03": EventType.ENCOUNTER_DISCHARGED,
    "A04": EventType.ENCOUNTER_REGISTERED,
    "A05": EventType.ENCOUNTER_PREADMITTED,
    "A06": EventType.ENCOUNTER_TO_INPATIENT,
    "A07": EventType.ENCOUNTER_TO_OUTPATIENT,
    "A08": EventType.ENCOUNTER_UPDATED,
    "A11": EventType.ENCOUNTER_CANCELLED,
    "A12": EventType.TRANSFER_CANCELLED,
    "A13": EventType.DISCHARGE_CANCELLED,
    "A14": EventType.ADMIT_PENDING,
    "A15": EventType.TRANSFER_PENDING,
    "A16": EventType.DISCHARGE_PENDING,
    "A25": EventType.PENDING_DISCHARGE_CANCELLED,
    "A26": EventType.PENDING_TRANSFER_CANCELLED,
    "A27": EventType.PENDING_ADMIT_CANCELLED,
}


def _fault(raw: bytes) -> tuple[str, str, str, int | None]:
    with pytest.raises(InvalidMessageError) as info:
        canonicalize(raw)
    fault = info.value.fault
    return fault.rule, fault.segment, fault.field, fault.position


@pytest.mark.parametrize(("trigger", "event_type"), sorted(ADT_TYPES.items()))
def test_each_adt_trigger_maps_to_its_event(trigger: str, event_type: EventType) -> None:
    [event] = canonicalize(adt(trigger, f"C{trigger}", "V1"))
    assert event.event_type is event_type
    assert event.encounter_id == "NMH:V1"
    assert event.source_message_type == f"ADT^{trigger}"


@pytest.mark.parametrize("trigger", ["A09", "A10", "A17", "A20", "A21", "A23", "A32", "A50"])
def test_unmapped_adt_triggers_with_a_visit_are_refused(trigger: str) -> None:
    assert _fault(adt(trigger, "C1", "V1")) == ("HL7-UNMAPPED-TRIGGER", "PV1", "PV1-19", 3)


def test_a_pending_event_reads_pid_and_pv1_like_any_encounter_event() -> None:
    [event] = canonicalize(adt("A16", "C1", "V1", discharge="20261121120000"))
    assert event.event_type is EventType.DISCHARGE_PENDING
    assert isinstance(event.payload, EncounterPayload)
    assert event.payload.encounter.discharged_at is not None  # what the sender said; no status of its own
    assert _fault(adt("A15", "C2", ""))[:3] == ("HL7-PV1-19-MISSING", "PV1", "PV1-19")


def test_a40_merges_each_patient_group() -> None:
    raw = a40("M1", "MRN002", "MRN001")
    raw += b"PID|2||MRN004^^^NMH^MR||Roe^Ann\rMRG|MRN003^^^NMH^MR||ACC9\r"
    first, second = canonicalize(raw)
    assert first.event_type is EventType.PATIENT_MERGED
    assert isinstance(first.payload, MergePayload) and isinstance(second.payload, MergePayload)
    assert (first.payload.merge.surviving.mrn, first.payload.merge.prior_mrn) == ("MRN002", "MRN001")
    assert first.encounter_id == "patient:NMH:MRN002"
    assert (second.payload.merge.prior_mrn, second.payload.merge.prior_account_number) == ("MRN003", "ACC9")
    assert first.event_id != second.event_id and second.source_position == 1


def test_a40_without_mrg_names_the_group() -> None:
    raw = a40("M1", "MRN002", "MRN001").replace(b"MRG|MRN001^^^NMH^MR\r", b"")
    assert _fault(raw) == ("HL7-MRG-MISSING", "MRG", "", 2)


def test_bar_p05_carries_account_and_coding() -> None:
    account, coding = canonicalize(
        bar("P05", "B1", "V1", diagnoses=("I21.4", "E11.9"), procedures=("92928",))
    )
    assert account.event_type is EventType.ACCOUNT_UPDATED
    assert coding.event_type is EventType.CODING_UPDATED
    assert isinstance(coding.payload, CodingPayload)
    update = coding.payload.coding
    assert [(d.sequence, d.code, d.diagnosis_type, d.priority) for d in update.diagnoses] == [
        (1, "I21.4", "A", 1),
        (2, "E11.9", "F", 2),
    ]
    assert [(p.code, p.code_system, p.surgeon_id) for p in update.procedures] == [
        ("92928", "CPT", "1234567890")
    ]
    assert update.drg is not None and (update.drg.code, update.drg.code_system) == ("247", "MS-DRG")


def test_bar_without_coding_is_an_account_event_only() -> None:
    [event] = canonicalize(bar("P06", "B2", "V1", diagnoses=(), procedures=(), drg=""))
    assert event.event_type is EventType.ACCOUNT_ENDED


def test_bar_with_two_visits_maps_each_visit() -> None:
    raw = bar("P01", "B3", "V1", procedures=(), drg="")
    raw += b"PV1|2|O|CLINIC^1^^NMH||||||||||||||||V2^^^NMH^VN\rDG1|1||J45.909^Asthma^I10\r"
    events = canonicalize(raw)
    assert [(e.event_type, e.encounter_id) for e in events] == [
        (EventType.ACCOUNT_OPENED, "NMH:V1"),
        (EventType.CODING_UPDATED, "NMH:V1"),
        (EventType.ACCOUNT_OPENED, "NMH:V2"),
        (EventType.CODING_UPDATED, "NMH:V2"),
    ]
    assert len({e.event_id for e in events}) == 4


def test_bar_empty_diagnosis_code_is_located() -> None:
    raw = bar("P05", "B4", "V1").replace(b"DG1|1||I21.4^Diagnosis I21.4^I10", b"DG1|1||")
    assert _fault(raw) == ("HL7-DG1-3-MISSING", "DG1", "DG1-3", 4)


def test_supply_charge_and_reversals() -> None:
    supply, reversal, credit = canonicalize(
        dft(
            "D1",
            "V1",
            [
                ("CG", "S100", "Gauze", 2, "8.00"),
                ("CG", "S100", "Gauze", -1, "4.00"),
                ("CD", "S100", "Gauze", 1, "4.00"),
            ],
            code_system="SUPPLY",
        )
    )
    assert isinstance(supply.payload, ChargePayload) and supply.payload.charge.is_supply
    assert supply.event_type is EventType.CHARGE_POSTED and supply.payload.charge.amount_cents == 800
    assert isinstance(reversal.payload, ChargePayload) and reversal.payload.charge.amount_cents == -400
    assert reversal.event_type is EventType.CHARGE_CREDITED and reversal.payload.charge.is_reversal
    assert isinstance(credit.payload, ChargePayload) and credit.payload.charge.amount_cents == -400
    [service] = canonicalize(dft("D2", "V1", [("CG", "99283", "ED visit", 1, "120.00")]))
    assert isinstance(service.payload, ChargePayload) and not service.payload.charge.is_supply


def test_rde_maps_the_verified_order() -> None:
    [event] = canonicalize(rde("R1", "V1"))
    assert event.event_type is EventType.MEDICATION_ORDERED
    assert isinstance(event.payload, MedicationOrderPayload)
    order = event.payload.order
    assert (order.order_id, order.order_control, order.medication_code, order.code_system) == (
        "ORD1",
        "NW",
        "00409-4888-01",
        "NDC",
    )
    assert (order.give_amount, order.give_units, order.dispense_amount) == ("1", "mL", "10")


def test_rde_needs_an_order_number_and_numeric_amounts() -> None:
    assert _fault(rde("R2", "V1", order="").replace(b"|F||", b"|||"))[:3] == (
        "HL7-ORC-2-MISSING",
        "ORC",
        "ORC-2",
    )
    assert _fault(rde("R3", "V1").replace(b"NDC|1||", b"NDC|one||"))[:3] == (
        "HL7-RXE-3-NUMBER",
        "RXE",
        "RXE-3",
    )


def test_ras_maps_each_dose() -> None:
    events = canonicalize(ras("S1", "V1", [("1", "2.5", "CP"), ("2", "1", "RE"), ("3", "0.3333", "CP^D")]))
    doses = [
        e.payload.administration for e in events if isinstance(e.payload, MedicationAdministrationPayload)
    ]
    assert [e.event_type for e in events] == [EventType.MEDICATION_ADMINISTERED] * 3
    assert [(d.administration_id, d.amount_milli, d.status, d.action) for d in doses] == [
        ("ORD1/0/1", 2500, AdministrationStatus.COMPLETE, ActionCode.ADD),
        ("ORD1/0/2", 1000, AdministrationStatus.REFUSED, ActionCode.ADD),
        ("ORD1/0/3", 333, AdministrationStatus.COMPLETE, ActionCode.DELETE),
    ]
    assert [d.consumed_milli for d in doses] == [2500, 0, 0]
    assert [e.source_position for e in events] == [0, 1, 2]


@pytest.mark.parametrize(
    ("dose", "rule", "field"),
    [
        (("1", "", "CP"), "HL7-RXA-6-MISSING", "RXA-6"),
        (("1", "-2", "CP"), "HL7-RXA-6-NUMBER", "RXA-6"),
        (("1", "lots", "CP"), "HL7-RXA-6-NUMBER", "RXA-6"),
        (("1", "2", "XX"), "HL7-RXA-20-CODE", "RXA-20"),
        (("1", "2", "CP^Q"), "HL7-RXA-21-CODE", "RXA-21"),
    ],
)
def test_ras_bad_dose_is_located(dose: tuple[str, str, str], rule: str, field: str) -> None:
    assert _fault(ras("S2", "V1", [dose])) == (rule, "RXA", field, 4)


def test_ras_without_visit_names_pv1() -> None:
    raw = ras("S3", "V1", [("1", "1", "CP")]).replace(b"V1^^^NMH^VN", b"")
    assert _fault(raw)[:3] == ("HL7-PV1-19-MISSING", "PV1", "PV1-19")


def test_bar_p12_is_a_coding_change_with_its_action_codes() -> None:
    [event] = canonicalize(
        bar_p12(
            "P1",
            "V1",
            diagnoses=(("I10", "DX-1", "A"), ("E11.9", "DX-2", "D"), ("R07.9", "", "")),
            procedures=(("92928", "PX-1", "U"),),
            drg="247",
        )
    )
    assert event.event_type is EventType.CODING_UPDATED and event.source_position == 1
    assert isinstance(event.payload, CodingPayload)
    coding = event.payload.coding
    assert coding.mode is CodingMode.MERGE
    assert [(d.code, d.identifier, d.action) for d in coding.diagnoses] == [
        ("I10", "DX-1", ActionCode.ADD),
        ("E11.9", "DX-2", ActionCode.DELETE),
        ("R07.9", "", None),
    ]
    assert [(p.code, p.identifier, p.action) for p in coding.procedures] == [
        ("92928", "PX-1", ActionCode.UPDATE)
    ]
    assert coding.drg is not None and coding.drg.code == "247"


def test_bar_p12_without_coding_has_no_effect_and_p05_stays_a_full_coding() -> None:
    assert canonicalize(bar_p12("P2", "V1")) == []
    _, coding = canonicalize(bar("P05", "B1", "V1"))
    assert isinstance(coding.payload, CodingPayload) and coding.payload.coding.mode is CodingMode.REPLACE


@pytest.mark.parametrize(
    ("diagnoses", "procedures", "rule", "segment", "field"),
    [
        ((("I10", "", "Q"),), (), "HL7-DG1-21-CODE", "DG1", "DG1-21"),
        ((), (("92928", "", "Z"),), "HL7-PR1-20-CODE", "PR1", "PR1-20"),
    ],
)
def test_an_unknown_action_code_is_located(
    diagnoses: tuple[tuple[str, str, str], ...],
    procedures: tuple[tuple[str, str, str], ...],
    rule: str,
    segment: str,
    field: str,
) -> None:
    assert _fault(bar_p12("P3", "V1", diagnoses=diagnoses, procedures=procedures)) == (
        rule,
        segment,
        field,
        4,
    )


def test_dft_p11_posts_every_financial_group_and_merges_its_coding() -> None:
    events = canonicalize(
        dft_p11(
            "F1",
            "V1",
            [
                ("CG", "99213", "Office visit", 1, "120.00", ("99213",), ("J20.9",)),
                ("CG", "71046", "Chest X-ray", 1, "85.50", ("71046",), ()),
                ("CD", "99213", "Courtesy adjustment", 1, "20.00", (), ()),
            ],
            diagnoses=("J20.9", "R05.9"),
            drg="194",
        )
    )
    charges = [e for e in events if isinstance(e.payload, ChargePayload)]
    assert [(e.event_type, e.source_position) for e in charges] == [
        (EventType.CHARGE_POSTED, 0),
        (EventType.CHARGE_POSTED, 1),
        (EventType.CHARGE_CREDITED, 2),
    ]
    lines = [e.payload.charge for e in charges if isinstance(e.payload, ChargePayload)]
    assert [(c.charge_code, c.amount_cents, c.transaction_type, c.procedure_code) for c in lines] == [
        ("99213", 12000, TransactionType.CHARGE, "99213"),
        ("71046", 8550, TransactionType.CHARGE, "71046"),
        ("99213", -2000, TransactionType.CREDIT, "99213"),
    ]
    assert all(e.source_message_type == "DFT^P11" and e.encounter_id == "NMH:V1" for e in events)
    [coding] = [e for e in events if isinstance(e.payload, CodingPayload)]
    assert (coding.event_type, coding.source_position) == (EventType.CODING_UPDATED, 3)
    assert isinstance(coding.payload, CodingPayload)
    update = coding.payload.coding
    assert update.mode is CodingMode.MERGE
    # Message-level DG1 first, then each transaction's, in message order; nothing is lost.
    assert [d.code for d in update.diagnoses] == ["J20.9", "R05.9", "J20.9"]
    assert [p.code for p in update.procedures] == ["99213", "71046"]
    assert update.drg is not None and update.drg.code == "194"
    assert len({e.event_id for e in events}) == 4


def test_dft_p03_coding_is_no_longer_dropped() -> None:
    raw = dft("D9", "V1", [("CG", "99283", "ED visit", 1, "120.00")])
    raw += b"PR1|1||99283^ED visit^CPT||20261120090000\rDG1|1||S52.501A^Fracture^I10||20261120090000|F\r"
    charge, coding = canonicalize(raw)
    assert charge.event_type is EventType.CHARGE_POSTED
    assert isinstance(coding.payload, CodingPayload) and coding.payload.coding.mode is CodingMode.MERGE
    assert [d.code for d in coding.payload.coding.diagnoses] == ["S52.501A"]
    assert [p.code for p in coding.payload.coding.procedures] == ["99283"]


def test_dft_p11_without_ft1_is_refused() -> None:
    raw = dft_p11("F2", "V1", [("CG", "99213", "Visit", 1, "1.00", (), ())])
    raw = b"\r".join(line for line in raw.split(b"\r") if not line.startswith(b"FT1"))
    rule, segment, _, _ = _fault(raw)
    assert (rule, segment) == ("HL7-FT1-MISSING", "FT1")
