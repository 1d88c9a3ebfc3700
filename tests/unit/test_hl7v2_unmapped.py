"""Messages hcsync does not map: routed only when they carry nothing financial, else quarantined, located."""

from __future__ import annotations

import base64
import os
from collections import Counter
from pathlib import Path

import pytest

from actors.transform import transform_one
from canonical.errors import InvalidMessageError, MessageError
from canonical.hl7v2.mapping import SUPPORTED, canonicalize, financial_type
from canonical.hl7v2.parser import parse_message, split_messages
from canonical.hl7v2.unmapped import NO_FINANCIAL_EFFECT
from canonical.quarantine import ExceptionRecord
from tests.hl7_samples import adt, rde

PID = "PID|1||MRN001^^^NMH^MR||Doe^Jane||19800101|F"
PV1 = "PV1|1|O|CLINIC^1^^NMH||||1234567890^Smith^John||||||||||||V900^^^NMH^VN"
FT1 = "FT1|1|T1||20261120090000||CG|80053^Metabolic panel^CPT||Metabolic panel|1|42.00"
DG1 = "DG1|1||R73.9^Hyperglycemia^I10||20261120090000|W"
PR1 = "PR1|1||36415^Venipuncture^CPT||20261120090000"


def _msg(message_type: str, *segments: str, control_id: str = "U1") -> bytes:
    header = f"MSH|^~\\&|LAB|NMH|HCSYNC|HCSYNC|20261120100000||{message_type}|{control_id}|P|2.5.1"
    return ("\r".join((header, *segments)) + "\r").encode()


def _fault(raw: bytes) -> tuple[str, str, str, int | None, str]:
    with pytest.raises(InvalidMessageError) as info:
        canonicalize(raw)
    fault = info.value.fault
    assert fault.message_id and fault.reason, fault
    return fault.rule, fault.segment, fault.field, fault.position, fault.found


@pytest.mark.parametrize(
    "message_type", ["ORU^R01", "ORM^O01", "OML^O21", "SIU^S12", "MDM^T02", "VXU^V04", "RDE^O25", "RDS^O13"]
)
def test_known_types_without_financial_effect_are_routed_with_their_visit(message_type: str) -> None:
    assert canonicalize(_msg(message_type, PID, PV1, "ORC|NW|ORD1", "OBR|1|ORD1||80053^CMP^CPT")) == []


@pytest.mark.parametrize(
    ("message_type", "segment", "rule_field", "found"),
    [
        ("ORM^O01", FT1, "FT1-7", "80053"),
        ("OMG^O19", FT1, "FT1-7", "80053"),
        ("SIU^S12", DG1, "DG1-3", "R73.9"),
        ("OML^O21", PR1, "PR1-3", "36415"),
        ("ZXX^Z01", FT1, "FT1-7", "80053"),
    ],
)
def test_a_charge_or_coding_in_a_type_hcsync_does_not_map_is_quarantined(
    message_type: str, segment: str, rule_field: str, found: str
) -> None:
    raw = _msg(message_type, PID, PV1, "ORC|NW|ORD1", segment)
    assert _fault(raw) == ("HL7-UNMAPPED-FINANCIAL", segment[:3], rule_field, 4, found)


def test_segments_holding_only_a_set_id_or_delimiters_carry_nothing() -> None:
    assert canonicalize(_msg("ORM^O01", PID, "PV1|1|O", "ORC|NW|ORD1", "FT1|1", "DG1|1|^^", "PR1|1||~")) == []
    assert canonicalize(_msg("ZXX^Z01", PID, "PV1|1|N")) == []
    assert canonicalize(_msg("ZXX^Z01", PID, "PV1|1||^^^^")) == []


def test_an_unknown_type_with_a_visit_is_quarantined_and_without_one_routed() -> None:
    assert _fault(_msg("ZXX^Z01", PID, PV1)) == ("HL7-UNMAPPED-VISIT", "PV1", "PV1-19", 2, "V900")
    assert _fault(_msg("ZXX^Z01", PID, "PV1|1|I|ICU^1^A^NMH")) == (
        "HL7-UNMAPPED-VISIT",
        "PV1",
        "PV1-19",
        2,
        "",
    )
    assert canonicalize(_msg("ZXX^Z01", PID, "ZXY|1|anything")) == []
    assert canonicalize(_msg("ERP^R09", "QAK|1|OK")) == []


@pytest.mark.parametrize("message_type", ["BAR^P02", "BAR^P10", "DFT^P99", "BAR"])
def test_every_bar_and_dft_trigger_hcsync_does_not_map_is_quarantined(message_type: str) -> None:
    trigger = message_type.partition("^")[2]
    assert _fault(_msg(message_type, PID)) == ("HL7-UNMAPPED-TRIGGER", "MSH", "MSH-9.2", 0, trigger)


def test_an_unmapped_adt_trigger_is_quarantined_only_when_it_names_a_visit_or_a_prior_patient() -> None:
    assert _fault(_msg("ADT^A17", "EVN|A17|20261120100000", PID, PV1)) == (
        "HL7-UNMAPPED-TRIGGER",
        "PV1",
        "PV1-19",
        3,
        "V900",
    )
    # MRG-1 is a patient identifier: located, never quoted.
    assert _fault(_msg("ADT^A34", "EVN|A34|20261120100000", PID, "MRG|MRN000^^^NMH^MR")) == (
        "HL7-UNMAPPED-TRIGGER",
        "MRG",
        "MRG-1",
        3,
        "",
    )
    assert canonicalize(_msg("ADT^A24", "EVN|A24|20261120100000", PID, "PID|2||MRN002^^^NMH^MR")) == []
    assert canonicalize(_msg("ADT^A37", "EVN|A37|20261120100000", PID, "PV1|1|N")) == []
    # The trigger comes from EVN-1 when MSH-9.2 is empty; with neither, the ADT still names its visit.
    assert _fault(_msg("ADT", "EVN|A10|20261120100000", PID, PV1))[0] == "HL7-UNMAPPED-TRIGGER"
    with pytest.raises(InvalidMessageError, match="ADT without a trigger"):
        canonicalize(_msg("ADT", "EVN||20261120100000", PID, PV1))


def test_a_charge_in_a_mapped_type_whose_mapping_reads_no_ft1_is_quarantined() -> None:
    with_ft1 = adt("A01", "C1", "V1") + (FT1 + "\r").encode()
    assert _fault(with_ft1) == ("HL7-UNMAPPED-FINANCIAL", "FT1", "FT1-7", 4, "80053")
    assert _fault(rde("R1", "V1") + (FT1 + "\r").encode())[:3] == ("HL7-UNMAPPED-FINANCIAL", "FT1", "FT1-7")
    # A diagnosis in a mapped ADT is clinical (admitting, working): not read, and not a reason to refuse.
    [event] = canonicalize(adt("A01", "C2", "V1") + (DG1 + "\r").encode())
    assert event.encounter_id == "NMH:V1"


def test_the_control_id_is_checked_first() -> None:
    raw = _msg("BAR^P02", PID, control_id="")
    with pytest.raises(InvalidMessageError) as info:
        canonicalize(raw)
    assert info.value.fault.rule == "HL7-MSH-10-MISSING"


def test_the_quarantine_record_names_the_message_segment_field_and_position() -> None:
    raw = _msg("ORM^O01", PID, PV1, "ORC|NW|ORD1", FT1, control_id="ORM7")
    outcome = transform_one(raw)
    assert outcome.exception is not None and not outcome.events and outcome.routed is None
    record = ExceptionRecord.model_validate_json(outcome.exception)
    assert (record.rule, record.segment, record.field, record.position) == (
        "HL7-UNMAPPED-FINANCIAL",
        "FT1",
        "FT1-7",
        4,
    )
    assert record.reason.startswith(
        "message ORM7, segment FT1, field FT1-7, position 4: [HL7-UNMAPPED-FINANCIAL]"
    )
    assert record.encounter_id == "NMH:V900"
    assert base64.b64decode(record.original_b64) == raw


def test_the_known_types_table_leaves_out_every_family_hcsync_maps_or_must_see() -> None:
    assert not {"ADT", "BAR", "DFT"} & set(NO_FINANCIAL_EFFECT)
    assert all(len(code) == 3 and code.isupper() for code in NO_FINANCIAL_EFFECT)


def _corpus() -> Path:
    default = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
    root = Path(os.environ.get("HCSYNC_CORPUS_DIR", default))
    if not (root / "hl7").is_dir():
        pytest.skip(f"corpus not found at {root} (set HCSYNC_CORPUS_DIR)")
    return root


def _coded(raw: bytes) -> list[str]:
    """Return the FT1, DG1 and PR1 segments of a message that carry a code (FT1-7.1, DG1-3.1, PR1-3.1)."""
    msg = parse_message(raw)
    fields = {"FT1": 7, "DG1": 3, "PR1": 3}
    return [s.name for s in msg.segments if s.name in fields and s.get(fields[s.name]).strip()]


def test_no_corpus_message_with_a_charge_or_a_code_is_routed_and_none_crashes() -> None:
    root = _corpus()
    outcomes: Counter[str] = Counter()
    for path in sorted((root / "hl7").glob("*.hl7")) + sorted((root / "hl7_batch").glob("*.hl7")):
        for raw in split_messages(path.read_bytes()):
            try:
                events = canonicalize(raw)
            except MessageError as exc:
                outcomes[exc.fault.rule] += 1
                continue
            msg = parse_message(raw)
            kind = financial_type(msg)
            if events:
                outcomes["mapped"] += 1
                assert kind in SUPPORTED, path.name
                continue
            outcomes["routed"] += 1
            if kind in SUPPORTED:
                continue  # a mapped type with nothing to do (a BAR^P12 without coding)
            assert not _coded(raw), f"{path.name}: {msg.event_code} routed with {_coded(raw)}"
            assert kind[0] not in ("BAR", "DFT"), path.name
            visits = [s for s in msg.segments_named("PV1") if s.get(19).strip()]
            assert not visits or kind[0] in NO_FINANCIAL_EFFECT, f"{path.name}: {msg.event_code} with a visit"
    print(f"\ncorpus outcomes: {dict(outcomes.most_common())}")
    assert "INTERNAL" not in outcomes
    # The corpus holds each kind of unmapped content: an SIU with a DG1, unmapped ADT triggers with a
    # visit or a prior patient (A17, A18, A34), Z-messages with a visit.
    for rule in ("HL7-UNMAPPED-FINANCIAL", "HL7-UNMAPPED-TRIGGER", "HL7-UNMAPPED-VISIT"):
        assert outcomes[rule] >= 1, (rule, dict(outcomes))
