"""HL7 v2 to canonical mapping: ADT and DFT events, deterministic ids, located faults."""

from __future__ import annotations

import datetime as dt

import pytest

from canonical import ids
from canonical.envelope import ChargePayload, EncounterPayload, EventType
from canonical.errors import DecodeError, InvalidMessageError
from canonical.hl7v2.mapping import canonicalize
from canonical.models import EncounterStatus, PatientClass, TransactionType
from tests.hl7_samples import adt, dft


@pytest.mark.parametrize(
    ("trigger", "event_type"),
    [
        ("A01", EventType.ENCOUNTER_ADMITTED),
        ("A03", EventType.ENCOUNTER_DISCHARGED),
        ("A04", EventType.ENCOUNTER_REGISTERED),
        ("A08", EventType.ENCOUNTER_UPDATED),
    ],
)
def test_adt_maps_to_one_encounter_event(trigger: str, event_type: EventType) -> None:
    [event] = canonicalize(adt(trigger, "C1", "V100", discharge="20261121100000" if trigger == "A03" else ""))
    assert event.event_type is event_type
    assert event.encounter_id == "NMH:V100"
    assert event.source_message_id == "C1"
    assert event.source_sender == "EPIC^NMH"
    assert event.event_id == ids.event_id("EPIC^NMH", "C1", 0)
    assert event.correlation_id == ids.correlation_id("EPIC^NMH", "C1")
    assert isinstance(event.payload, EncounterPayload)
    enc = event.payload.encounter
    assert enc.patient_class is PatientClass.INPATIENT
    assert enc.department == "MEDSURG"
    assert enc.room == "101"
    assert enc.attending_provider_id == "1234567890"
    assert enc.admitted_at == dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)
    patient = event.payload.patient
    assert (patient.mrn, patient.family_name, patient.given_name) == ("MRN001", "Doe", "Jane")
    assert patient.birth_date == dt.date(1980, 1, 1)
    assert patient.address is not None and patient.address.city == "Springfield"
    if trigger == "A03":
        assert enc.discharged_at == dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)


def test_dft_maps_each_ft1_to_a_charge_event() -> None:
    raw = dft(
        "D1", "V100", [("CG", "99283", "ED visit", 1, "350.00"), ("CD", "36415", "Venipuncture", 2, "40.50")]
    )
    first, second = canonicalize(raw)
    assert first.event_type is EventType.CHARGE_POSTED
    assert second.event_type is EventType.CHARGE_CREDITED
    assert isinstance(first.payload, ChargePayload) and isinstance(second.payload, ChargePayload)
    assert first.payload.charge.amount_cents == 35_000
    assert second.payload.charge.amount_cents == -4_050
    assert second.payload.charge.transaction_type is TransactionType.CREDIT
    assert second.payload.charge.quantity == 2
    assert first.event_id != second.event_id
    assert first.correlation_id == second.correlation_id
    assert first.payload.charge.charge_id == first.event_id
    assert first.payload.charge.department == "MEDSURG"
    assert first.payload.charge.facility == "NMH"


def test_same_message_gives_same_ids() -> None:
    raw = dft("D2", "V100", [("CG", "99283", "ED visit", 1, "350.00")])
    assert [e.event_id for e in canonicalize(raw)] == [e.event_id for e in canonicalize(raw)]


def test_bad_amount_names_segment_field_and_position() -> None:
    raw = dft("D3", "V100", [("CG", "99283", "ED visit", 1, "350.00"), ("CG", "80053", "Panel", 1, "12,50")])
    with pytest.raises(InvalidMessageError) as info:
        canonicalize(raw)
    fault = info.value.fault
    assert (fault.message_id, fault.segment, fault.field, fault.rule) == (
        "D3",
        "FT1",
        "FT1-11",
        "HL7-FT1-11-AMOUNT",
    )
    assert fault.position == 5  # MSH, EVN, PID, PV1, FT1#1, FT1#2
    assert fault.found == "12,50"
    assert "message D3" in str(info.value) and "FT1-11" in str(info.value)


def test_missing_visit_number_is_invalid() -> None:
    raw = adt("A01", "C9", "")
    with pytest.raises(InvalidMessageError) as info:
        canonicalize(raw)
    assert info.value.fault.field == "PV1-19"
    assert info.value.fault.segment == "PV1"


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        canonicalize(b"this is not hl7 at all")


def test_unmapped_type_has_no_financial_effect() -> None:
    raw = adt("A01", "C10", "V1").replace(b"ADT^A01^ADT_A01", b"ORU^R01^ORU_R01")
    assert canonicalize(raw) == []


def test_status_rank_orders_progress() -> None:
    ranks = [
        s.rank for s in (EncounterStatus.REGISTERED, EncounterStatus.ADMITTED, EncounterStatus.DISCHARGED)
    ]
    assert ranks == sorted(ranks)


def test_currency_is_the_money_subcomponent_of_ft1_11() -> None:
    [event] = canonicalize(dft("D4", "V100", [("CG", "99283", "ED visit", 1, "125.00&CAD^UP")]))
    assert isinstance(event.payload, ChargePayload)
    assert event.payload.charge.currency == "CAD" and event.payload.charge.amount_cents == 12_500


@pytest.mark.parametrize(
    ("amount", "rule"),
    [("1e17", "HL7-FT1-11-AMOUNT"), ("1e999999", "HL7-FT1-11-AMOUNT"), ("NaN", "HL7-FT1-11-AMOUNT")],
)
def test_amounts_that_no_ledger_can_hold_are_refused(amount: str, rule: str) -> None:
    with pytest.raises(InvalidMessageError) as info:
        canonicalize(dft("D5", "V100", [("CG", "99283", "ED visit", 1, amount)]))
    assert info.value.fault.rule == rule and info.value.fault.found == amount


def test_dates_out_of_range_are_refused() -> None:
    raw = adt("A01", "C11", "V1", admit="00010101000000+0100")
    with pytest.raises(InvalidMessageError) as info:
        canonicalize(raw)
    assert info.value.fault.field == "PV1-44" and info.value.fault.rule == "HL7-DTM"


def test_a_message_with_no_facility_is_refused() -> None:
    raw = adt("A01", "C12", "V1", facility="")
    with pytest.raises(InvalidMessageError) as info:
        canonicalize(raw)
    assert info.value.fault.rule == "HL7-FACILITY-MISSING"


def test_charge_ids_do_not_depend_on_other_segments() -> None:
    plain = dft("D6", "V100", [("CG", "99283", "ED visit", 1, "10.00")])
    with_nte = plain.replace(b"\rFT1|", b"\rNTE|1||resent with a note\rFT1|")
    assert [e.event_id for e in canonicalize(plain)] == [e.event_id for e in canonicalize(with_nte)]
