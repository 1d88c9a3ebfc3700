"""The 999 and TA1 hcsync answers interchanges with, validated by pyx12's own 999 map, and read back."""

from __future__ import annotations

import datetime as dt

import pytest

from canonical.errors import ConfigurationError, DecodeError
from canonical.x12.acks import (
    ACK_GUIDE,
    AcknowledgmentReport,
    Acknowledgments,
    acknowledgments,
    read_acknowledgment,
)
from canonical.x12.envelope import Interchange, read_interchanges
from canonical.x12.validate import GroupVerdict, InterchangeValidation, SetVerdict, validate
from tests.corpus import corpus_dir
from tests.unit.test_x12_validate import professional_claims
from tests.x12_samples import interchange

AT = dt.datetime(2026, 12, 5, 14, 30, 15, tzinfo=dt.UTC)
HCSYNC = ("ZZ", "HCSYNC")
# The ISA of what hcsync writes back to CLINIC (professional_claims' sender) from HCSYNC, control 500.
ISA_TO_CLINIC = "*".join(
    ["ISA", "00", " " * 10, "00", " " * 10, "ZZ", "HCSYNC".ljust(15), "ZZ", "CLINIC".ljust(15),
     "261205", "1430", "^", "00501", "000000500", "0", "T", ":~"]
)  # fmt: skip
# A functional-acknowledgment group and its 999, up to the segments each case adds.
FA = "GS*FA*A*B*20261205*1200*9*X*005010X231A1~ST*999*0001~"


def read_one(text: str) -> Interchange:
    [found] = read_interchanges(text.encode(), "test.edi")
    return found


def answer(x: Interchange, control: int = 500) -> Acknowledgments:
    return acknowledgments(validate(x), sender=HCSYNC, control_number=control, at=AT)


def check_999(text: str) -> tuple[InterchangeValidation, AcknowledgmentReport]:
    """Our 999 read by the envelope reader, validated by pyx12's 999 X231A1 map, and read back."""
    ack = read_one(text)
    assert ack.faults == []
    checked = validate(ack)
    [group] = checked.groups
    assert group.validated_with == "X231A1 map"
    assert group.verdict is GroupVerdict.ACCEPTED, [i.location() for i in checked.all_issues()]
    return checked, read_acknowledgment(ack)


def same_verdicts(v: InterchangeValidation, report: AcknowledgmentReport) -> None:
    answered = [g for g in v.groups if g.functional_id != "FA" and g.guide.startswith("005010")]
    assert [g.control for g in answered] == [g.control for g in report.groups]
    for group, acked in zip(answered, report.groups, strict=True):
        expected = "A" if group.verdict is GroupVerdict.NOT_VALIDATED else group.verdict.value
        assert (acked.verdict, acked.functional_id, acked.guide) == (
            expected,
            group.functional_id,
            group.guide,
        )
        assert (acked.declared, acked.received, acked.accepted) == (
            group.declared_sets,
            len(group.sets),
            group.accepted_sets,
        )
        for one, set_ack in zip(group.sets, acked.sets, strict=True):
            expected = "A" if one.verdict is SetVerdict.NOT_VALIDATED else one.verdict.value
            assert (set_ack.control, set_ack.code, set_ack.verdict) == (one.control, one.code, expected)
            assert set_ack.codes == (one.codes if expected != "A" else ())


def test_an_accepted_claim_gets_a_999_addressed_back_to_its_sender() -> None:
    acks = answer(read_one(professional_claims(2, sender="CLINIC")))
    assert acks.ta1 is None and acks.ack999 is not None and acks.next_control == 501
    lines = acks.ack999.splitlines()
    assert lines[0] == ISA_TO_CLINIC
    assert lines[1:5] == [
        f"GS*FA*EXAMPLEPAYER*CLINIC*20261205*143015*500*X*{ACK_GUIDE}~",
        f"ST*999*0001*{ACK_GUIDE}~",
        "AK1*HC*101*005010X222A1~",
        "AK2*837*0001*005010X222A1~",
    ]
    assert lines[5:] == ["IK5*A~", "AK9*A*1*1*1~", "SE*6*0001~", "GE*1*500~", "IEA*1*000000500~"]
    _v, report = check_999(acks.ack999)
    assert report.sender == HCSYNC and report.control == "000000500"


def test_a_rejected_claim_gets_ik3_and_ik4_locating_the_errors_without_the_data() -> None:
    text = professional_claims(1).replace("*11:B:1*", "*XX:B:1*").replace("~HI*", "~ZZZ*1~HI*")
    v = validate(read_one(text))
    acks = acknowledgments(v, sender=HCSYNC, control_number=7, at=AT)
    assert acks.ack999 is not None
    body = acks.ack999.splitlines()
    clm = next(i.position for i in v.all_issues() if i.element == "CLM05-1")
    assert f"IK3*CLM*{clm}**8~" in body and "IK4*5:1*1331*7~" in body
    # The extra segment also makes SE01 wrong: IK5 carries 4 (the count) and 5 (segments in error).
    assert f"IK3*ZZZ*{clm + 1}**1~" in body and "IK5*R*4*5~" in body and "AK9*R*1*1*0~" in body
    assert "XX" not in acks.ack999.split("AK1*")[1]  # IK404, the bad data, is never written
    _checked, report = check_999(acks.ack999)
    [set_ack] = report.groups[0].sets
    assert set_ack.verdict == "R"
    assert f"segment CLM at {clm}, element 05-1: [7] invalid code value" in set_ack.errors
    same_verdicts(v, report)


def test_the_999_for_an_accepted_835_exists() -> None:
    # pyx12's stock writer never writes one: it needs ST03, which the 835 guide does not use.
    root = corpus_dir("x12")
    [x] = read_interchanges((root / "x12" / "pyx12__835_mult_loops.txt").read_bytes())
    acks = answer(x)
    assert acks.ack999 is not None and "AK2*835*" in acks.ack999 and "IK5*A~" in acks.ack999
    _checked, report = check_999(acks.ack999)
    assert report.groups[0].verdict == "A" and report.groups[0].functional_id == "HP"


def test_two_interchanges_with_other_delimiters_get_one_999_each_addressed_to_its_own_sender() -> None:
    data = professional_claims(1, control="000000001", sender="FIRST") + professional_claims(
        1, control="000000002", sender="SECOND", element="|", component=">", terminator="\n"
    )
    first, second = read_interchanges(data.encode(), "two.edi")
    one, two = answer(first, 10), answer(second, 11)
    assert one.ack999 is not None and two.ack999 is not None
    assert read_one(one.ack999).isa.element(8).strip() == "FIRST"
    assert read_one(two.ack999).isa.element(8).strip() == "SECOND"
    for acks, control in ((one, "000000001"), (two, "000000002")):
        assert acks.ack999 is not None
        _v, report = check_999(acks.ack999)
        assert report.groups[0].sets[0].verdict == "A"
        assert control in (first.control, second.control)


def test_isa14_asks_for_a_ta1_written_as_its_own_interchange() -> None:
    acks = answer(read_one(professional_claims(1, ack_requested="1")))
    assert acks.ta1 is not None and acks.ack999 is not None and acks.next_control == 502
    assert acks.ta1.splitlines() == [
        ISA_TO_CLINIC,
        "TA1*000000101*261205*1200*A*000~",
        "IEA*0*000000500~",
    ]
    assert "*000000501*" in acks.ack999.splitlines()[0]
    [ta1] = read_acknowledgment(read_one(acks.ta1)).interchanges
    assert (ta1.control, ta1.verdict, ta1.code) == ("000000101", "A", "000")
    assert validate(read_one(acks.ta1)).issues == ()  # pyx12's control map reads it


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (("IEA*1*000000101", "IEA*1*000000999"), "001"),
        (("IEA*1*000000101", "IEA*2*000000101"), "021"),
        (("IEA*1*000000101~", ""), "023"),
    ],
    ids=["IEA02", "IEA01", "no-IEA"],
)
def test_a_broken_envelope_gets_a_ta1_with_its_code_though_isa14_is_0(
    change: tuple[str, str], code: str
) -> None:
    acks = answer(read_one(professional_claims(1).replace(*change)))
    assert acks.ta1 is not None
    [ta1] = read_acknowledgment(read_one(acks.ta1)).interchanges
    assert (ta1.control, ta1.verdict, ta1.code) == ("000000101", "R", code)


def test_the_same_input_gives_the_same_bytes() -> None:
    text = professional_claims(3, ack_requested="1").replace("*11:B:1*", "*XX:B:1*")
    first = answer(read_one(text), 42)
    again = answer(read_one(text), 42)
    assert first == again
    other = answer(read_one(text), 43)
    assert other.ack999 != first.ack999


def test_no_999_answers_an_acknowledgment_and_no_ta1_answers_a_ta1() -> None:
    ta1_only = interchange(body="TA1*000000555*261205*1200*A*000~IEA*0*000000123")
    acks = answer(read_one(ta1_only))
    assert read_one(ta1_only).ack_requested and acks == Acknowledgments(None, None, 500)
    clean = professional_claims(1)
    ack999 = answer(read_one(clean)).ack999
    assert ack999 is not None
    assert answer(read_one(ack999)).interchanges() == []


def test_004010_groups_get_no_999() -> None:
    text = interchange(version="00401", repetition="U").replace("005010X222A1", "004010X098A1")
    acks = answer(read_one(text))
    assert acks.ack999 is None and acks.ta1 is not None  # ISA14 is 1 in the sample


def test_every_corpus_interchange_gets_acknowledgments_pyx12_accepts_and_that_read_back() -> None:
    root = corpus_dir("x12")
    answered = ta1s = 0
    for path in sorted((root / "x12").iterdir()):
        for x in read_interchanges(path.read_bytes(), path.name):
            v = validate(x)
            acks = acknowledgments(v, sender=HCSYNC, control_number=1, at=AT)
            if acks.ack999 is not None:
                answered += 1
                _checked, report = check_999(acks.ack999)
                same_verdicts(v, report)
            if acks.ta1 is not None:
                ta1s += 1
                [ta1] = read_acknowledgment(read_one(acks.ta1)).interchanges
                assert (ta1.control, ta1.verdict, ta1.code) == (x.control, v.ta1_verdict, v.ta1_code)
    print(f"\n{answered} 999s and {ta1s} TA1s written for the corpus, every 999 valid for pyx12's X231A1 map")
    assert answered > 50 and ta1s > 0


def test_corpus_999_997_and_ta1_files_are_read() -> None:
    root = corpus_dir("x12")
    read = 0
    for path in sorted((root / "x12").iterdir()):
        for x in read_interchanges(path.read_bytes(), path.name):
            if not any(g.functional_id == "FA" for g in x.groups) and not any(s.id == "TA1" for s in x.loose):
                continue
            report = read_acknowledgment(x)
            read += 1
            assert report.groups or report.interchanges
    assert read == 14
    [x] = read_interchanges((root / "x12" / "pyx12__x12testdata-834_eol_in_element-resAck.txt").read_bytes())
    [group] = read_acknowledgment(x).groups
    assert (group.functional_id, group.control, group.verdict, group.accepted) == ("BE", "13360001", "R", 0)
    [set_ack] = group.sets
    assert (set_ack.control, set_ack.verdict, set_ack.codes) == ("0001", "R", ("5",))
    assert set_ack.errors == (
        "segment N3 at 12: [8] segment has data element errors",
        "segment N3 at 12, element 01: [6] invalid character in data element",
    )
    [x] = read_interchanges((root / "x12" / "pyx12__x12testdata-835id-res997.txt").read_bytes())
    report = read_acknowledgment(x)
    [ta1] = report.interchanges
    assert (ta1.control, ta1.verdict) == ("000003447", "A")
    assert report.groups[0].sets[0].control == "40731" and report.groups[0].sets[0].verdict == "A"


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (FA + "AK2*837*0001~IK5*A~SE*4*0001~GE*1*9", "", "AK2 before AK1"),
        (FA + "AK1*HC*1~AK2*837*1~IK5*Q~SE*5*0001~GE*1*9", "IK501", "not an acknowledgment code"),
        (FA + "AK1*HC*1~AK9*A*one*1*1~SE*4*0001~GE*1*9", "AK902", "count"),
        (FA + "AK1*HC*1~SE*3*0001~GE*1*9", "AK9", "has no AK9"),
        ("GS*HC*A*B*20261205*1200*9*X*005010X222A1~ST*837*1~SE*2*1~GE*1*9", "GS01", "no acknowledgment"),
        ("TA1*000000555*261205*1200*Q*000", "TA104", "TA1 needs"),
    ],
    ids=["AK2-first", "IK501", "AK902", "no-AK9", "not-FA", "TA104"],
)  # fmt: skip
def test_a_malformed_acknowledgment_is_a_located_decode_error(body: str, field: str, reason: str) -> None:
    x = read_one(interchange(body=f"{body}~IEA*1*000000123"))
    with pytest.raises(DecodeError) as caught:
        read_acknowledgment(x)
    fault = caught.value.fault
    assert fault.rule == "X12-ACK-INVALID" and reason in fault.reason and fault.field == field
    assert fault.message_id.startswith("ISA13 000000123")


def test_a_group_without_gs06_is_answered_by_a_ta1_since_no_ak1_can_name_it() -> None:
    acks = answer(read_one(professional_claims(1).replace("*1200*101*X*", "*1200**X*")))
    assert acks.ack999 is None and acks.ta1 is not None
    [ta1] = read_acknowledgment(read_one(acks.ta1)).interchanges
    assert (ta1.verdict, ta1.code) == ("R", "024")


@pytest.mark.parametrize(
    ("sender", "control"),
    [(("", "HCSYNC"), 1), (("ZZ", "X" * 16), 1), (HCSYNC, 0), (HCSYNC, 999_999_999)],
    ids=["no-qualifier", "long-id", "zero", "too-big"],
)
def test_a_sender_or_control_number_that_cannot_be_written_is_refused(
    sender: tuple[str, str], control: int
) -> None:
    v = validate(read_one(professional_claims(1)))
    with pytest.raises(ConfigurationError):
        acknowledgments(v, sender=sender, control_number=control, at=AT)
