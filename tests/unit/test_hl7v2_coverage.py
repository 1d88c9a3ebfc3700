"""IN1 to Coverage: field mapping, priorities, triggers, refusals and warnings, and the real corpus."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from actors.transform import transform_one
from canonical.envelope import EncounterPayload, EventEnvelope
from canonical.errors import HcsyncError, InvalidMessageError, MessageError
from canonical.hl7v2.coverage import coverages
from canonical.hl7v2.mapping import COVERAGE_TRIGGERS, canonicalize
from canonical.hl7v2.parser import parse_message, split_messages
from canonical.hl7v2.reader import Reader
from canonical.models import Patient
from canonical.phi import MASK, masked
from canonical.quarantine import ExceptionRecord
from canonical.revenue_cycle import Coverage, SubscriberRelationship
from tests.corpus import hl7_files
from tests.hl7_samples import adt, bar, in1, with_segments

# PHI the IN1 samples carry: none of it may appear in a fault or a warning.
MEMBER_ID = "ZQX900123456"
MEMBER_ALT = "ZQX900777777"
INSURED_FAMILY, INSURED_GIVEN, INSURED_BIRTH = "Quorrington", "Wilhelmina", "19561104"
PHI = (MEMBER_ID, MEMBER_ALT, INSURED_FAMILY, INSURED_GIVEN, INSURED_BIRTH, "Doe", "Jane", "19800101")


def full_in1(**overrides: str) -> str:
    """An IN1 with every mapped field filled, the insured being the patient's spouse."""
    fields = {
        "f1": "1",
        "f2": "PPO^Blue PPO",
        "f3": "BCBS-MN^^^BCBS",
        "f4": "Blue Cross and Blue Shield of Minnesota",
        "f8": "GRP-4471",
        "f12": "20240101",
        "f13": "20241231",
        "f16": f"{INSURED_FAMILY}^{INSURED_GIVEN}",
        "f17": "SPO",
        "f18": INSURED_BIRTH,
        "f22": "1",
        "f36": MEMBER_ID,
        "f49": f"{MEMBER_ALT}^^^BCBS",
    }
    fields.update(overrides)
    return in1(**{name: value for name, value in fields.items() if value is not None})


def mapped(*segments: str, trigger: str = "A01") -> EncounterPayload:
    [event] = canonicalize(with_segments(adt(trigger, "CTL1", "V100"), *segments))
    assert isinstance(event.payload, EncounterPayload)
    return event.payload


def refused(*segments: str, trigger: str = "A01") -> InvalidMessageError:
    with pytest.raises(InvalidMessageError) as caught:
        canonicalize(with_segments(adt(trigger, "CTL1", "V100"), *segments))
    return caught.value


def assert_no_phi(text: str) -> None:
    leaked = [value for value in PHI if value in text]
    assert not leaked, f"PHI in {text!r}: {leaked}"


# ------------------------------------------------------------------------------------------------
# Field mapping


def test_every_in1_field_maps_to_its_coverage_attribute() -> None:
    [coverage] = mapped(full_in1()).coverages
    assert coverage == Coverage(
        encounter_id="NMH:V100",
        payer_id="BCBS-MN",
        plan="PPO",
        member_id=MEMBER_ID,
        subscriber_family_name=INSURED_FAMILY,
        subscriber_given_name=INSURED_GIVEN,
        subscriber_birth_date=dt.date(1956, 11, 4),
        group_number="GRP-4471",
        relationship=SubscriberRelationship.SPOUSE,
        priority=1,
        effective_on=dt.date(2024, 1, 1),
        expires_on=dt.date(2024, 12, 31),
    )


def test_the_insured_s_id_is_the_member_id_when_the_policy_number_is_empty() -> None:
    [coverage] = mapped(full_in1(f36="")).coverages
    assert coverage.member_id == MEMBER_ALT
    [coverage] = mapped(full_in1(f36="", f49="")).coverages
    assert coverage.member_id == ""


def test_the_patient_as_insured_fills_the_subscriber_from_pid() -> None:
    [coverage] = mapped(full_in1(f16="", f17="SEL", f18="")).coverages
    assert coverage.relationship is SubscriberRelationship.SELF
    names = (coverage.subscriber_family_name, coverage.subscriber_given_name, coverage.subscriber_birth_date)
    assert names == ("Doe", "Jane", dt.date(1980, 1, 1))
    # What IN1 sends wins over PID, even for the patient.
    [coverage] = mapped(full_in1(f17="SEL")).coverages
    assert (coverage.subscriber_family_name, coverage.subscriber_birth_date) == (
        INSURED_FAMILY,
        dt.date(1956, 11, 4),
    )


@pytest.mark.parametrize(
    ("sent", "insured", "expected"),
    [
        ("SEL", "", SubscriberRelationship.SELF),
        ("SPO", "", SubscriberRelationship.SPOUSE),
        ("CHD", "", SubscriberRelationship.CHILD),
        ("SCH", "", SubscriberRelationship.CHILD),
        ("FCH", "", SubscriberRelationship.CHILD),
        ("GRP", "", SubscriberRelationship.OTHER),
        ("4^SELF", "", SubscriberRelationship.SELF),  # a site's own code, named in IN1-17.2
        ("ZZ^Cousin", "", SubscriberRelationship.OTHER),
        ("", "", SubscriberRelationship.SELF),  # nobody named: the patient
        ("", "DOE^JANE", SubscriberRelationship.SELF),  # the patient named
        ("", f"{INSURED_FAMILY}^{INSURED_GIVEN}", SubscriberRelationship.OTHER),  # someone else named
        ('""', "", SubscriberRelationship.SELF),  # HL7's explicit null is empty
    ],
)
def test_relationship(sent: str, insured: str, expected: SubscriberRelationship) -> None:
    [coverage] = mapped(full_in1(f17=sent, f16=insured)).coverages
    assert coverage.relationship is expected


def test_hl7_null_and_placeholders_give_nothing() -> None:
    payload = mapped("IN1|1", "IN1", in1(f1="2", f3='""', f19="^^^^^^M^"))
    assert payload.coverages == () and payload.coverage_warnings == ()
    assert mapped().coverages == ()
    [coverage] = mapped(full_in1(f8='""', f13='""')).coverages
    assert (coverage.group_number, coverage.expires_on) == ("", None)


def test_a_dtm_date_part_is_read_as_the_date() -> None:
    [coverage] = mapped(full_in1(f12="20240101000000-0500")).coverages
    assert coverage.effective_on == dt.date(2024, 1, 1)


# ------------------------------------------------------------------------------------------------
# Priority


def test_priority_is_in1_22_whatever_the_order() -> None:
    payload = mapped(full_in1(f1="1", f3="UHC", f22="2"), full_in1(f1="2", f3="MCR-A", f22="1"))
    assert [(c.priority, c.payer_id) for c in payload.coverages] == [(1, "MCR-A"), (2, "UHC")]


def test_without_in1_22_the_set_id_order_gives_the_priority() -> None:
    payload = mapped(
        full_in1(f1="3", f3="AETNA", f22=""),
        full_in1(f1="1", f3="MCR-A", f22=""),
        full_in1(f1="2", f3="MCD-MN", f22=""),
    )
    assert [(c.priority, c.payer_id) for c in payload.coverages] == [
        (1, "MCR-A"),
        (2, "MCD-MN"),
        (3, "AETNA"),
    ]
    assert {c.key for c in payload.coverages} == {"NMH:V100|1", "NMH:V100|2", "NMH:V100|3"}


def test_in1_without_in1_22_take_the_priorities_left_free() -> None:
    payload = mapped(
        full_in1(f1="1", f3="UHC", f22=""),
        full_in1(f1="2", f3="MCR-A", f22="1"),
        full_in1(f1="", f3="HP", f22=""),
    )
    assert [(c.priority, c.payer_id) for c in payload.coverages] == [(1, "MCR-A"), (2, "UHC"), (3, "HP")]


def test_a_coverage_beyond_the_tertiary_is_left_out_with_a_warning() -> None:
    payload = mapped(*(full_in1(f1=str(n), f3=f"PAYER{n}", f22="") for n in range(1, 5)))
    assert [c.payer_id for c in payload.coverages] == ["PAYER1", "PAYER2", "PAYER3"]
    [warning] = payload.coverage_warnings
    assert (warning.rule, warning.field, warning.position, warning.payer_id) == (
        "HL7-IN1-EXTRA",
        "IN1-1",
        7,  # MSH EVN PID PV1, then the IN1s at 4 to 7
        "PAYER4",
    )
    assert "message CTL1, segment IN1" in warning.reason
    assert_no_phi(warning.model_dump_json())


def test_an_in1_22_above_three_is_left_out_with_a_warning() -> None:
    payload = mapped(full_in1(f3="UHC", f22="1"), full_in1(f1="2", f3="TRICARE", f22="4"))
    assert [c.payer_id for c in payload.coverages] == ["UHC"]
    [warning] = payload.coverage_warnings
    assert (warning.rule, warning.field, warning.position, warning.payer_id) == (
        "HL7-IN1-22-RANGE",
        "IN1-22",
        5,
        "TRICARE",
    )
    assert_no_phi(warning.reason)


# ------------------------------------------------------------------------------------------------
# Refusals: located, and never with PHI


@pytest.mark.parametrize(
    ("overrides", "rule", "field", "found"),
    [
        ({"f3": ""}, "HL7-IN1-3-MISSING", "IN1-3", ""),
        ({"f3": '""'}, "HL7-IN1-3-MISSING", "IN1-3", ""),
        ({"f1": "one"}, "HL7-IN1-1-NUMBER", "IN1-1", "one"),
        ({"f12": "2024-01-01"}, "HL7-IN1-12-DATE", "IN1-12", "2024-01-01"),
        ({"f13": "20241301"}, "HL7-IN1-13-DATE", "IN1-13", "20241301"),
        ({"f12": "20240601", "f13": "20240101"}, "HL7-IN1-13-ORDER", "IN1-13", ""),
        ({"f18": "1956110"}, "HL7-IN1-18-DATE", "IN1-18", ""),  # a birth date is PHI: not echoed
        ({"f18": "10981226"}, "HL7-IN1-18-DATE", "IN1-18", ""),
        ({"f22": "P"}, "HL7-IN1-22-NUMBER", "IN1-22", "P"),
        ({"f22": "0"}, "HL7-IN1-22-NUMBER", "IN1-22", "0"),
    ],
)
def test_bad_in1_content_refuses_the_message(
    overrides: dict[str, str], rule: str, field: str, found: str
) -> None:
    fault = refused(full_in1(**overrides)).fault
    assert (fault.rule, fault.message_id, fault.segment, fault.field, fault.position, fault.found) == (
        rule,
        "CTL1",
        "IN1",
        field,
        4,
        found,
    )
    assert_no_phi(fault.describe())


def test_two_in1_with_one_priority_refuse_the_message() -> None:
    fault = refused(full_in1(f3="UHC", f22="1"), full_in1(f1="2", f3="HP", f22="1")).fault
    assert (fault.rule, fault.field, fault.position) == ("HL7-IN1-22-DUPLICATE", "IN1-22", 5)
    assert "position 4" in fault.reason
    assert_no_phi(fault.describe())


def test_a_fault_in_an_in1_beyond_the_tertiary_still_refuses() -> None:
    # Every IN1 is checked before any is left out: a broken fourth one is a broken message.
    segments = [full_in1(f1=str(n), f3=f"PAYER{n}", f22="") for n in range(1, 4)]
    fault = refused(*segments, full_in1(f1="4", f3="PAYER4", f22="", f12="bad")).fault
    assert (fault.rule, fault.position) == ("HL7-IN1-12-DATE", 7)


def test_a_refused_in1_is_quarantined_with_its_location() -> None:
    raw = with_segments(adt("A04", "CTL9", "V100"), full_in1(f3=""))
    outcome = transform_one(raw)
    assert outcome.events == () and outcome.rule == "HL7-IN1-3-MISSING"
    assert outcome.exception is not None
    record = ExceptionRecord.model_validate_json(outcome.exception)
    assert (record.segment, record.field, record.position, record.encounter_id) == (
        "IN1",
        "IN1-3",
        4,
        "NMH:V100",
    )
    assert record.original == raw
    assert_no_phi(record.reason + record.found)


# ------------------------------------------------------------------------------------------------
# Which messages carry coverage


@pytest.mark.parametrize("trigger", ["A01", "A04", "A05", "A06", "A07", "A08"])
def test_registration_admission_and_update_carry_coverage(trigger: str) -> None:
    assert trigger in COVERAGE_TRIGGERS
    [coverage] = mapped(full_in1(), trigger=trigger).coverages
    assert coverage.payer_id == "BCBS-MN"


@pytest.mark.parametrize("trigger", ["A02", "A03", "A11", "A13", "A14"])
def test_other_encounter_events_do_not_read_in1(trigger: str) -> None:
    # Not even a broken IN1: these events say nothing about coverage, and an empty tuple means "not told".
    assert mapped(full_in1(f3="", f12="bad"), trigger=trigger).coverages == ()


def test_bar_reads_each_visit_group_s_in1() -> None:
    first = bar("P01", "B1", "V1")
    second_visit = "PV1|2|I|CARD^202^A^NMH||||1234567890^Smith^John|||CARD|||||||||V2^^^NMH^VN"
    raw = with_segments(first, full_in1(f3="UHC"), second_visit, full_in1(f3="MCR-A", f17="SEL"))
    events = canonicalize(raw)
    payloads = {e.encounter_id: e.payload for e in events if isinstance(e.payload, EncounterPayload)}
    assert {k: [c.payer_id for c in p.coverages] for k, p in payloads.items()} == {
        "NMH:V1": ["UHC"],
        "NMH:V2": ["MCR-A"],
    }
    assert [c.encounter_id for c in payloads["NMH:V2"].coverages] == ["NMH:V2"]
    # P05 too; P06 (end account) does not read IN1.
    for trigger, payers in (("P05", ["BCBS-MN"]), ("P06", [])):
        events = canonicalize(with_segments(bar(trigger, "B2", "V1"), full_in1()))
        [account] = [e.payload for e in events if isinstance(e.payload, EncounterPayload)]
        assert [c.payer_id for c in account.coverages] == payers, trigger


def test_an_event_with_coverage_round_trips_and_masks_phi() -> None:
    [event] = canonicalize(with_segments(adt("A01", "CTL1", "V100"), full_in1()))
    assert EventEnvelope.model_validate_json(event.model_dump_json()) == event
    shown = json.dumps(masked(event))
    assert_no_phi(shown.replace("NMH:V100", ""))
    coverage = masked(event)["payload"]["coverages"][0]
    assert coverage["member_id"] == coverage["subscriber_family_name"] == MASK
    assert coverage["payer_id"] == "BCBS-MN"


# ------------------------------------------------------------------------------------------------
# The real corpus


def test_corpus_in1_map_or_fail_with_a_located_reason() -> None:
    """Every corpus message with IN1: its IN1s map to coverages or are refused naming the IN1; the
    message as a whole maps or is refused with a located fault; nothing crashes."""
    who = Patient(mrn="CORPUS", family_name="Corpus", given_name="Patient")
    in1_outcomes: Counter[str] = Counter()
    message_outcomes: Counter[str] = Counter()
    mapped_coverages = warnings = 0
    crashes: list[str] = []
    for path in hl7_files("hl7", "hl7_batch"):
        data = path.read_bytes()
        if b"IN1" not in data:
            continue
        for raw in split_messages(data):
            try:
                msg = parse_message(raw)
            except MessageError:
                continue  # the parser's refusals are tests/unit/test_corpus.py's
            if not msg.segments_named("IN1"):
                continue
            try:
                found = coverages(Reader(msg, dt.UTC), msg.segments, "CORPUS:1", who)
                in1_outcomes["mapped"] += 1
                mapped_coverages += len(found.coverages)
                warnings += len(found.warnings)
            except InvalidMessageError as exc:
                assert exc.fault.segment == "IN1" and exc.fault.field.startswith("IN1-"), exc.fault
                assert exc.fault.position is not None and msg.segments[exc.fault.position].name == "IN1"
                in1_outcomes[exc.fault.rule] += 1
            except Exception as exc:  # any other exception is the bug this test looks for
                crashes.append(f"{path.name}: {type(exc).__name__}: {exc}")
            try:
                events = canonicalize(msg)
                with_coverage = [
                    e for e in events if isinstance(e.payload, EncounterPayload) and e.payload.coverages
                ]
                message_outcomes["events with coverage" if with_coverage else "events or routed"] += 1
            except HcsyncError as exc:
                assert isinstance(exc, MessageError) and exc.fault.rule and exc.fault.segment, exc
                message_outcomes[f"refused {exc.fault.segment}"] += 1
            except Exception as exc:
                crashes.append(f"{path.name}: {type(exc).__name__}: {exc}")
    print(
        f"\ncorpus IN1: {sum(in1_outcomes.values())} messages with IN1, "
        f"{dict(sorted(in1_outcomes.items()))}, "
        f"{mapped_coverages} coverages, {warnings} left out with a warning; "
        f"whole messages: {dict(sorted(message_outcomes.items()))}"
    )
    assert not crashes, crashes
    # Today's corpus: 20 messages with IN1, 14 whose IN1s map (13 coverages, 1 left out with a warning; two
    # carry only placeholders), 6 refused naming the IN1. Fewer would mean a regression (or a changed
    # corpus to look at).
    assert sum(in1_outcomes.values()) >= 20
    assert in1_outcomes["mapped"] >= 14 and mapped_coverages >= 13 and warnings >= 1
    assert message_outcomes["events with coverage"] >= 1
