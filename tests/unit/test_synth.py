"""Tests for the synthetic hospital day: determinism, realism, and totals that re-add from the messages."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import hl7
import pytest

from canonical.envelope import EncounterPayload
from canonical.hl7v2 import Hl7Message, parse_message, split_messages
from canonical.hl7v2.mapping import canonicalize
from canonical.reference import PayerType
from canonical.reference_files import read_set
from canonical.revenue_cycle import SubscriberRelationship
from cluster.masterdata import DEMO_DIR
from cluster.synth import SyntheticDay, generate_day, to_file


@pytest.fixture(scope="module")
def day() -> SyntheticDay:
    return generate_day(encounters=200, seed=7)


@pytest.fixture(scope="module")
def parsed(day: SyntheticDay) -> list[Hl7Message]:
    return [parse_message(m) for m in day.messages]


def _cents(value: str) -> int:
    amount = Decimal(value)
    assert amount == amount.quantize(Decimal("0.01")), value
    return int(amount * 100)


def _visit(msg: Hl7Message) -> str:
    pv1 = msg.segment("PV1")
    assert pv1 is not None
    return pv1.get(19)


def test_deterministic_for_a_seed() -> None:
    first = generate_day(encounters=40, seed=11)
    again = generate_day(encounters=40, seed=11)
    other = generate_day(encounters=40, seed=12)
    assert first == again
    assert first.messages != other.messages
    assert generate_day(encounters=5, day=dt.date(2025, 6, 1)).messages[0].count(b"20250601") >= 2


def test_empty_day() -> None:
    empty = generate_day(encounters=0)
    assert empty.messages == ()
    assert empty.expected.net_charge_cents == 0
    with pytest.raises(ValueError):
        generate_day(encounters=-1)


def test_counts_match_expected(day: SyntheticDay, parsed: list[Hl7Message]) -> None:
    exp = day.expected
    kinds = Counter(m.message_type for m in parsed)
    assert len(day.messages) == exp.messages == sum(kinds.values())
    assert kinds == {
        "ADT": exp.adt_messages,
        "DFT": exp.dft_messages,
        "BAR": exp.bar_messages,
        "RAS": exp.ras_messages,
        "ORU": exp.oru_messages,
    }
    assert len({_visit(m) for m in parsed}) == exp.encounters == 200
    ft1s = [f for m in parsed for f in m.segments_named("FT1")]
    assert len(ft1s) == exp.charge_lines
    assert sum(f.get(6) == "CD" for f in ft1s) == exp.credit_lines
    triggers = Counter(m.trigger_event for m in parsed if m.message_type == "ADT")
    assert triggers["A03"] == exp.encounters
    assert triggers["A01"] + triggers["A04"] == exp.encounters
    assert triggers["A08"] == exp.updates == 40
    assert triggers["A02"] == exp.transfers > 0
    # Every encounter is coded once after its discharge (inpatients with a DRG).
    assert {_visit(m) for m in parsed if m.message_type == "BAR"} == {_visit(m) for m in parsed}
    assert sum(m.message_type == "BAR" for m in parsed) == exp.encounters
    rxas = [r for m in parsed for r in m.segments_named("RXA")]
    assert len(rxas) == exp.administrations and sum(r.get(20) == "RE" for r in rxas) == exp.refused_doses > 0


def test_stock_consumed_re_adds_from_the_messages(day: SyntheticDay, parsed: list[Hl7Message]) -> None:
    stock: dict[tuple[str, str], int] = defaultdict(int)
    for msg in parsed:
        for ft1 in msg.segments_named("FT1"):
            if ft1.get(7, 3) == "SUPPLY":
                sign = 1 if ft1.get(6) == "CG" else -1
                stock[(msg.sending_facility, ft1.get(7, 1))] += sign * int(ft1.get(10)) * 1000
        for rxa in msg.segments_named("RXA"):
            if rxa.get(20) == "CP":
                stock[(msg.sending_facility, rxa.get(5, 1))] += int(Decimal(rxa.get(6)) * 1000)
    assert dict(stock) == dict(day.expected.stock_milli_by_item)


def test_every_message_parses_with_both_parsers(day: SyntheticDay, parsed: list[Hl7Message]) -> None:
    for raw, msg in zip(day.messages, parsed, strict=True):
        assert raw.startswith(b"MSH|^~\\&|EPIC|") and raw.endswith(b"\r") and b"\n" not in raw
        assert msg.version == "2.5.1"
        assert msg.sending_application == "EPIC"
        theirs = hl7.parse(raw.decode("utf-8"))
        assert str(theirs.extract_field("MSH", 1, 10, 1, 1)) == msg.control_id
        assert str(theirs.extract_field("PV1", 1, 19, 1, 1)) == _visit(msg)


def test_layout_the_mapper_relies_on(parsed: list[Hl7Message]) -> None:
    structures = {
        "A01": "ADT_A01",
        "A02": "ADT_A02",
        "A04": "ADT_A01",
        "A08": "ADT_A01",
        "A03": "ADT_A03",
        "P03": "DFT_P03",
        "P05": "BAR_P05",
        "O17": "RAS_O17",
        "R01": "ORU_R01",
    }
    for msg in parsed:
        assert msg.message_structure == structures[msg.trigger_event]
        evn, pid, pv1 = msg.segment("EVN"), msg.segment("PID"), msg.segment("PV1")
        assert evn is not None and pid is not None and pv1 is not None
        assert evn.get(1) == msg.trigger_event
        if msg.trigger_event == "A02":
            assert pv1.get(6, 1) and pv1.get(3, 1) != pv1.get(6, 1)
        assert evn.get(2) == msg.message_datetime
        facility = msg.sending_facility
        assert pid.get(3, 4) == facility and pid.get(3, 5) == "MR"
        assert pid.get(5, 1) and pid.get(5, 2)
        dt.datetime.strptime(pid.get(7), "%Y%m%d")
        assert pid.get(8) in {"F", "M"}
        assert pid.get(11, 3) and pid.get(11, 4) and pid.get(11, 5)
        assert pid.get(18, 4) == facility and pid.get(18, 5) == "AN"
        assert pv1.get(2) in {"I", "O", "E"}
        assert pv1.get(3, 4) == facility
        assert pv1.get(10) == pv1.get(3, 1) or msg.trigger_event == "A02" or msg.message_type == "RAS"
        assert len(pv1.get(7, 1)) == 10 and pv1.get(7, 7) == "MD"
        assert pv1.get(19, 4) == facility and pv1.get(19, 5) == "VN"
        assert pv1.get(44)
        assert bool(pv1.get(45)) == (msg.trigger_event == "A03")
        for ft1 in msg.segments_named("FT1"):
            assert ft1.get(6) in {"CG", "CD"}
            assert ft1.get(7, 3) in {"CPT", "HCPCS", "SUPPLY"}
            assert ft1.get(7, 2) == ft1.get(9)
            assert ft1.get(13, 4) == facility
            assert ft1.get(4) <= ft1.get(5) == msg.message_datetime
            # FT1-11 is exactly quantity x unit amount, with two decimals.
            assert _cents(ft1.get(11)) == int(ft1.get(10)) * _cents(ft1.get(12))


def test_variety(parsed: list[Hl7Message]) -> None:
    facilities = {m.sending_facility for m in parsed}
    assert facilities == {"NMH", "SVH", "RCH"}
    departments: dict[str, set[str]] = defaultdict(set)
    classes = set()
    codes = set()
    for msg in parsed:
        pv1 = msg.segment("PV1")
        assert pv1 is not None
        classes.add(pv1.get(2))
        for ft1 in msg.segments_named("FT1"):
            departments[msg.sending_facility].add(ft1.get(13, 1))
            codes.add(ft1.get(7, 1))
    assert classes == {"I", "O", "E"}
    assert all(len(d) >= 5 for d in departments.values())
    assert {"99283", "71046", "80053", "93000", "36415", "SUP1001"} <= codes


def test_escape_sequences_are_present_and_unescaped(day: SyntheticDay, parsed: list[Hl7Message]) -> None:
    escaped = [m for m in day.messages if b"\\T\\" in m]
    assert escaped
    descriptions = {f.get(9) for m in parsed for f in m.segments_named("FT1")}
    assert any("&" in d for d in descriptions)
    assert not any("\\" in d for d in descriptions)


def test_charge_totals_re_add_from_the_messages(day: SyntheticDay, parsed: list[Hl7Message]) -> None:
    net = 0
    by_facility: Counter[str] = Counter()
    by_department: Counter[tuple[str, str]] = Counter()
    by_encounter: Counter[str] = Counter()
    for msg in parsed:
        for ft1 in msg.segments_named("FT1"):
            amount = _cents(ft1.get(11))
            assert amount > 0
            signed = amount if ft1.get(6) == "CG" else -amount
            net += signed
            by_facility[ft1.get(13, 4)] += signed
            by_department[ft1.get(13, 4), ft1.get(13, 1)] += signed
            by_encounter[_visit(msg)] += signed
    exp = day.expected
    assert net == exp.net_charge_cents > 0
    assert dict(by_facility) == dict(exp.cents_by_facility)
    assert dict(by_department) == dict(exp.cents_by_department)
    assert dict(by_encounter) == dict(exp.cents_by_encounter)
    assert sum(exp.cents_by_facility.values()) == exp.net_charge_cents


def test_credits_reverse_an_earlier_charge(day: SyntheticDay, parsed: list[Hl7Message]) -> None:
    exp = day.expected
    assert 0.01 <= exp.credit_lines / exp.charge_lines <= 0.06
    charged: dict[str, Counter[tuple[str, str, str]]] = defaultdict(Counter)
    for msg in parsed:
        for ft1 in msg.segments_named("FT1"):
            key = (ft1.get(7, 1), ft1.get(10), ft1.get(11))
            if ft1.get(6) == "CG":
                charged[_visit(msg)][key] += 1
            else:
                assert charged[_visit(msg)][key] > 0, f"credit {ft1.get(2)} has no earlier charge"
                charged[_visit(msg)][key] -= 1


def test_timeline(day: SyntheticDay, parsed: list[Hl7Message]) -> None:
    times = [m.message_datetime for m in parsed]
    assert times == sorted(times)
    ids = [m.control_id for m in parsed]
    assert len(set(ids)) == len(ids)
    for facility in ("NMH", "SVH", "RCH"):
        mine = [c for c in ids if c.startswith(facility)]
        assert mine == sorted(mine) and all(len(c) == 11 for c in mine)
    events: dict[str, list[tuple[int, Hl7Message]]] = defaultdict(list)
    for position, msg in enumerate(parsed):
        events[_visit(msg)].append((position, msg))
    early = 0
    encounters_seen = set()
    for visit, seen in events.items():
        pv1 = seen[0][1].segment("PV1")
        assert pv1 is not None
        kind = pv1.get(2)
        registering = [p for p, m in seen if m.trigger_event in {"A01", "A04"}]
        discharges = [p for p, m in seen if m.trigger_event == "A03"]
        assert len(registering) == 1 and len(discharges) == 1, visit
        expected_trigger = "A01" if kind == "I" else "A04"
        assert parsed[registering[0]].trigger_event == expected_trigger
        assert registering[0] < discharges[0]
        after = [m.message_type for p, m in seen if p > discharges[0]]
        assert after == ["BAR"], "only the coded account follows the discharge"
        dfts = [p for p, m in seen if m.message_type == "DFT"]
        assert 1 <= len(dfts) <= 8
        if dfts[0] < registering[0]:
            early += 1
        encounters_seen.add(visit)
        for _, m in seen:
            if m.message_type == "DFT":
                assert 1 <= len(m.segments_named("FT1")) <= 4
    assert early == day.expected.charges_before_admission == 4
    assert len(encounters_seen) == day.expected.encounters


def test_file_round_trip(day: SyntheticDay, tmp_path: Path) -> None:
    path = to_file(day, tmp_path / "day.hl7")
    data = path.read_bytes()
    assert data.startswith(b"MSH|")
    assert split_messages(data) == list(day.messages)


def test_most_encounters_carry_insurance_on_registration_and_update(
    day: SyntheticDay, parsed: list[Hl7Message]
) -> None:
    payers = day.expected.payers_by_encounter
    assert len(payers) == day.expected.encounters
    self_pay = sum(1 for held in payers.values() if not held)
    two = sum(1 for held in payers.values() if len(held) == 2)
    # One encounter in ten is self-pay (a patient's second visit of the day keeps the first's insurance,
    # so not exactly), and about one in eight has a second payer.
    assert 0.08 * len(payers) <= self_pay <= 0.12 * len(payers)
    assert 0.05 * len(payers) <= two <= 0.25 * len(payers)
    assert all(len(held) <= 2 for held in payers.values())
    in1_by_visit: dict[str, list[str]] = {}
    for msg in parsed:
        in1s = [seg.text for seg in msg.segments_named("IN1")]
        if msg.trigger_event not in {"A01", "A04", "A08"}:
            assert not in1s, f"{msg.event_code} carries IN1"
            continue
        assert [seg.get(3) for seg in msg.segments_named("IN1")] == list(payers[_visit(msg)])
        assert [seg.get(1) for seg in msg.segments_named("IN1")] == [str(n) for n in range(1, len(in1s) + 1)]
        # The update repeats the registration's insurance exactly.
        assert in1_by_visit.setdefault(_visit(msg), in1s) == in1s
    assert len(in1_by_visit) == day.expected.encounters


def test_payers_are_the_demo_master_data_s(day: SyntheticDay) -> None:
    billable = {
        p.payer_id for p in read_set(DEMO_DIR).payers if p.active and p.payer_type != PayerType.SELF_PAY
    }
    used = {payer for held in day.expected.payers_by_encounter.values() for payer in held}
    assert used <= billable, sorted(used - billable)
    assert len(used) >= 10
    assert {"MCR-A", "MCR-B", "BCBS-MN", "MCD-MN", "MCD-WI"} <= used


def test_insurance_maps_to_coverages(day: SyntheticDay, parsed: list[Hl7Message]) -> None:
    relationships: Counter[SubscriberRelationship] = Counter()
    for raw, msg in zip(day.messages, parsed, strict=True):
        if msg.trigger_event not in {"A01", "A04"}:
            continue
        [event] = canonicalize(raw)
        payload = event.payload
        assert isinstance(payload, EncounterPayload)
        assert payload.coverage_warnings == ()
        assert tuple(c.payer_id for c in payload.coverages) == day.expected.payers_by_encounter[_visit(msg)]
        for priority, coverage in enumerate(payload.coverages, 1):
            assert coverage.priority == priority and coverage.encounter_id == event.encounter_id
            assert coverage.member_id and coverage.plan and coverage.effective_on is not None
            assert coverage.subscriber_family_name and coverage.subscriber_birth_date is not None
            if coverage.relationship is SubscriberRelationship.SELF:
                person = (payload.patient.family_name, payload.patient.given_name, payload.patient.birth_date)
                assert (
                    coverage.subscriber_family_name,
                    coverage.subscriber_given_name,
                    coverage.subscriber_birth_date,
                ) == person
            else:
                assert coverage.subscriber_given_name
            relationships[coverage.relationship] += 1
    total = sum(relationships.values())
    # Mostly the patient's own policy; some through a spouse, some children through a parent.
    assert relationships[SubscriberRelationship.SELF] >= 0.6 * total
    assert relationships[SubscriberRelationship.SPOUSE] >= 0.05 * total
    assert relationships[SubscriberRelationship.CHILD] >= 0.03 * total
    assert set(relationships) == {
        SubscriberRelationship.SELF,
        SubscriberRelationship.SPOUSE,
        SubscriberRelationship.CHILD,
    }
