"""Reading X12 transaction sets into canonical models: what each set becomes, and located errors."""

from __future__ import annotations

import datetime as dt

import pytest

from canonical.revenue_cycle import (
    AdjustmentGroup,
    ClaimFrequency,
    ClaimStatus,
    ClaimSubmission,
    ClaimType,
    EligibilityInquiry,
    EligibilityResponse,
    EligibilityStatus,
    Gender,
    PaymentMethod,
    Remittance,
    SubscriberRelationship,
)
from canonical.x12.envelope import read_interchanges
from canonical.x12.read import ReadStatus, SetReading, read_file, read_interchange
from tests.x12_samples import (
    answer_sets,
    inquiry_sets,
    institutional_sets,
    interchange,
    professional_sets,
    redelimit,
    remittance_sets,
    x12_file,
)

P, INST, R, E = "005010X222A1", "005010X223A2", "005010X221A1", "005010X279A1"


def only(text: str) -> SetReading:
    [reading] = read_file(text.encode(), "in.edi")
    return reading


def mapped(text: str) -> SetReading:
    reading = only(text)
    assert reading.status is ReadStatus.MAPPED, [f.describe() for f in reading.errors]
    return reading


def test_an_837p_maps_each_claim_with_its_lines_and_parties() -> None:
    reading = mapped(x12_file("837", P, [professional_sets()]))
    assert (reading.isa13, reading.gs06, reading.st02, reading.st01, reading.guide) == (
        "000000123",
        "77",
        "0001",
        "837",
        P,
    )
    first, second = reading.models
    assert isinstance(first, ClaimSubmission) and isinstance(second, ClaimSubmission)
    claim = first.claim
    assert (claim.claim_id, claim.claim_type, claim.total_charge_cents) == (
        "ACCT0000001",
        ClaimType.PROFESSIONAL,
        12550,
    )
    assert claim.diagnosis_codes == ("J069", "R509") and claim.facility_code == "11"
    assert [(line.procedure_code, line.modifiers, line.units, line.charge_cents) for line in claim.lines] == [
        ("99213", ("25",), 1, 10025),
        ("87070", (), 2, 2525),
    ]
    assert claim.lines[0].service_date == dt.date(2026, 12, 1)
    assert (claim.billing_provider_npi, claim.payer_id) == ("1234567893", "66783JJT")
    assert (
        first.billing_provider.tax_id == "123456789" and first.billing_provider.taxonomy_code == "207Q00000X"
    )
    assert (
        first.billing_provider.address is not None
        and first.billing_provider.address.postal_code == "627010001"
    )
    assert (first.subscriber.member_id, first.subscriber.family_name, first.subscriber.gender) == (
        "M000000001",
        "DOE",
        Gender.MALE,
    )
    assert first.relationship is SubscriberRelationship.SELF and first.patient is None and first.priority == 1
    # The second claim is a dependent's, sent to the secondary payer, and replaces an earlier claim.
    assert second.relationship is SubscriberRelationship.CHILD and second.priority == 2
    assert (
        second.patient is not None and second.patient.given_name == "TIM" and second.patient.member_id == ""
    )
    assert second.claim.frequency is ClaimFrequency.REPLACEMENT
    assert second.claim.payer_claim_control_number == "PAYERCLAIM9"


def test_an_837i_maps_statement_period_drg_revenue_codes_and_attending() -> None:
    [submission] = mapped(x12_file("837", INST, [institutional_sets()])).models
    assert isinstance(submission, ClaimSubmission)
    claim = submission.claim
    assert claim.claim_type is ClaimType.INSTITUTIONAL and claim.drg == "280"
    assert (claim.statement_from, claim.statement_to) == (dt.date(2026, 12, 1), dt.date(2026, 12, 3))
    assert claim.diagnosis_codes == ("I214", "E119", "I10")
    assert [(line.revenue_code, line.procedure_code, line.units) for line in claim.lines] == [
        ("0120", "99223", 3),
        ("0300", "", 1),
    ]
    assert claim.total_charge_cents == 150010 and submission.attending_npi == "1122334455"


def test_an_835_maps_payment_claims_adjustments_and_every_plb() -> None:
    [remittance] = mapped(x12_file("835", R, [remittance_sets(plbs=2)])).models
    assert isinstance(remittance, Remittance)
    assert (remittance.payer_id, remittance.trace_number, remittance.payment_method) == (
        "66783JJT",
        "EFT-0001",
        PaymentMethod.ACH,
    )
    assert remittance.payee_npi == "1234567893" and remittance.payment_date == dt.date(2026, 12, 10)
    assert remittance.total_paid_cents == 7625
    # x12sdk's model holds one PLB; both are read (the second through x12sdk's PLB segment model).
    assert [(p.reason_code, p.reference, p.amount_cents) for p in remittance.provider_adjustments] == [
        ("WO", "ACCT9", 250),
        ("L6", "INTEREST", 125),
    ]
    paid, denied = remittance.claims
    assert (paid.status, paid.charge_cents, paid.paid_cents, paid.patient_responsibility_cents) == (
        ClaimStatus.PRIMARY,
        12550,
        8000,
        2000,
    )
    first_line, second_line = paid.lines
    assert (first_line.procedure_code, first_line.modifiers, first_line.line_control_number) == (
        "99213",
        ("25",),
        "LINE1",
    )
    assert [(a.group, a.reason_code, a.amount_cents) for a in first_line.adjustments] == [
        (AdjustmentGroup.CONTRACTUAL, "45", 25),
        (AdjustmentGroup.PATIENT_RESPONSIBILITY, "1", 2000),
    ]
    assert [(a.reason_code, a.amount_cents) for a in second_line.adjustments] == [("45", 2025), ("97", 500)]
    assert denied.status is ClaimStatus.DENIED and denied.lines == ()
    assert [(a.group, a.amount_cents) for a in denied.adjustments] == [(AdjustmentGroup.CONTRACTUAL, 8000)]


@pytest.mark.parametrize("plbs", [0, 1])
def test_an_835_with_fewer_plbs_maps_too(plbs: int) -> None:
    [remittance] = mapped(x12_file("835", R, [remittance_sets(plbs=plbs)])).models
    assert isinstance(remittance, Remittance) and len(remittance.provider_adjustments) == plbs


def test_a_270_maps_one_inquiry_per_person_asked_about() -> None:
    subscriber, dependent = mapped(x12_file("270", E, [inquiry_sets()])).models
    assert isinstance(subscriber, EligibilityInquiry) and isinstance(dependent, EligibilityInquiry)
    assert (subscriber.trace_number, subscriber.service_type_codes) == ("TRACE-1", ("30", "1", "35"))
    assert subscriber.provider.npi == "1234567893" and subscriber.payer.payer_id == "66783JJT"
    assert subscriber.inquired_on == dt.date(2026, 12, 5) and subscriber.patient is None
    assert dependent.trace_number == "TRACE-2" and dependent.subscriber.family_name == "ROE"
    assert dependent.patient is not None and dependent.patient.given_name == "TIM"


def test_a_271_maps_status_plan_dates_and_benefits() -> None:
    [answer] = mapped(x12_file("271", E, [answer_sets()])).models
    assert isinstance(answer, EligibilityResponse)
    assert (answer.status, answer.plan, answer.group_number) == (
        EligibilityStatus.ACTIVE,
        "GOLD 123 PLAN",
        "GRP0001",
    )
    assert (answer.effective_on, answer.expires_on) == (dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert answer.answered_at == dt.datetime(2026, 12, 5, 13, 19, 52, tzinfo=dt.UTC)
    deductible = answer.benefits[1]
    assert (deductible.code, deductible.amount_cents, deductible.in_network) == ("C", 50000, "Y")
    assert answer.benefits[2].percent == "0.2" and answer.rejection_reason == ""


def test_a_271_inactive_or_rejected() -> None:
    [inactive] = mapped(x12_file("271", E, [answer_sets(eb01="6")])).models
    assert isinstance(inactive, EligibilityResponse) and inactive.status is EligibilityStatus.INACTIVE
    # 75 "subscriber not found": x12sdk 2.2.0 refuses it in loop 2100C (it checks 2100B's code list).
    [rejected] = mapped(x12_file("271", E, [answer_sets(reject="75")])).models
    assert isinstance(rejected, EligibilityResponse)
    assert (rejected.status, rejected.rejection_reason, rejected.benefits) == (
        EligibilityStatus.UNKNOWN,
        "75",
        (),
    )


@pytest.mark.parametrize(
    "delimiters",
    [("|", ">", "\n", "!"), ("^", "\\", "'", "{"), ("*", ":", "~\r\n", "^")],
    ids=["newline-terminator", "other-delimiters", "crlf"],
)
def test_any_declared_delimiters_read_the_same(delimiters: tuple[str, str, str, str]) -> None:
    plain = mapped(x12_file("835", R, [remittance_sets()]))
    other = mapped(redelimit(x12_file("835", R, [remittance_sets()]), *delimiters))
    assert other.models == plain.models


def test_a_bom_and_two_interchanges_with_their_own_delimiters() -> None:
    first = x12_file("837", P, [professional_sets()], control="000000001")
    second = redelimit(x12_file("835", R, [remittance_sets()], control="000000002"), "|", ">", "\n", "!")
    readings = read_file(("\ufeff" + first + second).encode(), "two.edi")
    assert [(r.isa13, r.st01, r.status) for r in readings] == [
        ("000000001", "837", ReadStatus.MAPPED),
        ("000000002", "835", ReadStatus.MAPPED),
    ]


def test_each_set_reads_on_its_own_and_a_bad_one_does_not_stop_the_next() -> None:
    bad = professional_sets()
    bad[bad.index("SV1*HC:87070*25.25*UN*2***1")] = "SV1*HC:87070*25.26*UN*2***1"
    first, second = read_file(x12_file("837", P, [bad, professional_sets()]).encode())
    assert first.status is ReadStatus.ERROR and first.models == ()
    assert second.status is ReadStatus.MAPPED and len(second.models) == 2


def test_an_837_out_of_balance_is_located_with_the_difference_in_cents() -> None:
    sets = professional_sets()
    sets[sets.index("CLM*ACCT0000002*80***11:B:7*Y*A*Y*Y")] = "CLM*ACCT0000002*80.07***11:B:7*Y*A*Y*Y"
    reading = only(x12_file("837", P, [sets]))
    assert reading.status is ReadStatus.ERROR
    text = reading.errors[0].describe()
    assert text == (
        "message in.edi, ISA13 000000123, GS06 77, ST02 0001, segment CLM, field CLM02, position 40: "
        "[X12-BALANCE] claim 2: CLM02 differs from the sum of its 1 lines' SV102 by 7 cents"
    )
    assert "ACCT0000002" not in text  # CLM01 is PHI: the claim is named by its ordinal


@pytest.mark.parametrize(
    ("change", "located"),
    [
        (
            ("CAS*CO*45*0.25", "CAS*CO*45*0.35"),
            "segment SVC, field SVC03, position 14: [X12-BALANCE] claim 1, line 1: SVC02 - SVC03 differs "
            "from the sum of the line's CAS amounts by -10 cents",
        ),
        (
            ("CAS*CO*29*80", "CAS*CO*29*79"),
            "segment CLP, field CLP04, position 22: [X12-BALANCE] claim 2: CLP03 - CLP04 differs from the "
            "sum of its claim and line CAS amounts by 100 cents",
        ),
        (
            ("BPR*I*76.25", "BPR*I*76.20"),
            "segment BPR, field BPR02, position 2: [X12-BALANCE] BPR02 differs from the sum of CLP04 less "
            "the PLB adjustments by -5 cents",
        ),
    ],
    ids=["line", "claim", "payment"],
)
def test_an_835_out_of_balance_is_located(change: tuple[str, str], located: str) -> None:
    sets = [segment.replace(*change) for segment in remittance_sets()]
    reading = only(x12_file("835", R, [sets]))
    assert reading.status is ReadStatus.ERROR
    assert any(located in fault.describe() for fault in reading.errors), [
        f.describe() for f in reading.errors
    ]


def test_a_refused_value_is_located_by_segment_element_and_position_without_phi() -> None:
    sets = professional_sets()
    sets[sets.index("DMG*D8*19700101*M")] = "DMG*D8*19701301*M"  # month 13
    [fault] = only(x12_file("837", P, [sets])).errors
    assert (fault.segment, fault.field, fault.position, fault.rule) == ("DMG", "DMG02", 17, "X12-STRUCTURE")
    assert "19701301" not in fault.describe()  # a date of birth is PHI


def test_a_segment_the_guide_does_not_have_is_located() -> None:
    sets = remittance_sets()
    sets.insert(3, "ZZZ*1")
    [fault] = only(x12_file("835", R, [sets])).errors
    assert (fault.segment, fault.position, fault.rule) == ("ZZZ", 5, "X12-STRUCTURE")
    assert "not in 005010X221A1" in fault.reason


def test_a_canonical_rule_refusal_is_located_at_its_segment() -> None:
    sets = professional_sets()
    sets[sets.index("REF*EI*123456789")] = "REF*EI*12-3456789"  # the contract wants 9 digits
    [fault, *_] = only(x12_file("837", P, [sets])).errors
    assert (fault.segment, fault.position, fault.rule) == ("REF", 11, "X12-MAPPING")
    assert "billing provider (2010AA): ProviderParty.tax_id" in fault.reason


def test_a_composite_in_another_separator_is_refused_not_misread() -> None:
    sets = professional_sets()
    sets[sets.index("HI*ABK:S6290")] = "HI*ABK>S6290"  # ISA16 says ':'
    [fault] = only(x12_file("837", P, [sets])).errors
    assert (fault.segment, fault.field) == ("HI", "HI01") and "separated by ':' (ISA16)" in fault.reason


def test_amounts_become_cents_exactly_and_fractions_of_a_cent_are_refused() -> None:
    sets = professional_sets()
    sets = [s.replace("100.25", "100.255").replace("125.50", "125.505") for s in sets]
    [fault] = only(x12_file("837", P, [sets])).errors
    assert (fault.segment, fault.field) == ("SV1", "SV102") and "fractions of a cent" in fault.reason


@pytest.mark.parametrize(
    ("st01", "guide", "note"),
    [
        ("834", "005010X220A1", "834 005010X220A1: enrollment is not handled by hcsync"),
        ("276", "005010X212", "276 005010X212: claim status inquiry is not handled by hcsync"),
        ("837", "004010X098A1", "837 004010X098A1: version 004010 is not handled by hcsync (ISA12 00501)"),
        ("837", "005010X224A2", "837 005010X224A2: this claim guide"),
        ("820", "005010X218", "820 005010X218: premium payment is not handled"),
    ],
)
def test_sets_hcsync_does_not_handle_are_named_not_crashed(st01: str, guide: str, note: str) -> None:
    reading = only(x12_file(st01, guide, [["BGN*00*1*20261205"]]))
    assert reading.status is ReadStatus.NOT_HANDLED and note in reading.note and reading.models == ()


@pytest.mark.parametrize("st01", ["999", "997"])
def test_acknowledgments_are_reported_as_such(st01: str) -> None:
    reading = only(x12_file(st01, "005010X231A1", [["AK1*HC*1*005010X222A1", "AK9*A*1*1*1"]]))
    assert reading.status is ReadStatus.ACKNOWLEDGMENT and reading.models == ()


def test_a_ta1_is_an_acknowledgment() -> None:
    [x] = read_interchanges(interchange(body="TA1*000000555*261205*1200*A*000~IEA*0*000000123").encode())
    [reading] = read_interchange(x)
    assert (reading.st01, reading.status) == ("TA1", ReadStatus.ACKNOWLEDGMENT)


def test_a_set_cut_short_is_an_error_not_a_crash() -> None:
    text = x12_file("835", R, [remittance_sets()]).replace("SE*", "XX*")
    reading = read_file(text.encode())[0]
    assert reading.status is ReadStatus.ERROR and reading.errors[0].rule in {"X12-ENVELOPE", "X12-STRUCTURE"}


def test_the_first_sample_of_the_envelope_tests_is_an_error_located_not_a_crash() -> None:
    # tests/x12_samples.interchange() holds two claim-less 837 sets: not valid X222A1.
    for reading in read_file(interchange().encode()):
        assert reading.status is ReadStatus.ERROR and reading.errors
        assert all(f.message_id.startswith("ISA13 000000123, GS06 77, ST02 000") for f in reading.errors)


@pytest.mark.parametrize(
    ("st01", "guide", "sets"),
    [
        ("837", P, professional_sets()),
        ("837", INST, institutional_sets()),
        ("835", R, remittance_sets()),
        ("270", E, inquiry_sets()),
        ("271", E, answer_sets()),
    ],
    ids=["837P", "837I", "835", "270", "271"],
)
def test_no_segment_left_out_or_doubled_crashes_the_reader(st01: str, guide: str, sets: list[str]) -> None:
    for index in range(len(sets)):
        for variant in (sets[:index] + sets[index + 1 :], sets[: index + 1] + sets[index:]):
            for reading in read_file(x12_file(st01, guide, [variant]).encode()):
                assert reading.status in {ReadStatus.MAPPED, ReadStatus.ERROR}
                assert all(
                    f.message_id.endswith("ST02 0001") and f.rule.startswith("X12-") for f in reading.errors
                )
