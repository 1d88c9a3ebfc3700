"""Writing X12 from the canonical models (canonical/x12/write*.py).

The judges are the libraries, not this module: every 837P, 837I and 835 written here goes through pyx12's
``x12n_document`` with its stock maps and must come out with zero errors; the 270/271 (no pyx12 5010 map)
and the round trips are read back with x12sdk's ``X12ModelReader``; the envelope is read back with
hcsync's own reader.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import pyx12.params
import pyx12.x12n_document
from x12sdk.io import X12ModelReader

from canonical.errors import InvalidMessageError
from canonical.revenue_cycle import (
    Adjustment,
    AdjustmentGroup,
    Benefit,
    Claim,
    ClaimFrequency,
    ClaimLine,
    ClaimStatus,
    ClaimSubmission,
    ClaimType,
    EligibilityInquiry,
    EligibilityResponse,
    EligibilityStatus,
    Gender,
    PayerParty,
    PaymentMethod,
    Person,
    PostalAddress,
    ProviderAdjustment,
    ProviderParty,
    Remittance,
    RemittanceClaim,
    RemittanceLine,
    SubscriberRelationship,
)
from canonical.x12.envelope import Delimiters, Interchange, read_interchanges
from canonical.x12.write import Envelope, Parties, Usage, amount
from canonical.x12.write_835 import EftAccounts, PayerDetails, write_835
from canonical.x12.write_837 import ClaimCodes, write_837
from canonical.x12.write_eligibility import write_270, write_271

AT = dt.datetime(2026, 12, 5, 14, 30)
SERVICE_DAY = dt.date(2026, 12, 1)
BILLING_ADDRESS = PostalAddress(line1="100 MAIN ST", city="SPRINGFIELD", state="IL", postal_code="627010001")
HOME = PostalAddress(line1="1 ELM ST", city="SPRINGFIELD", state="IL", postal_code="62701")
PROVIDER = ProviderParty(
    npi="1234567893",
    name="GENERAL HOSPITAL",
    tax_id="123456789",
    taxonomy_code="282N00000X",
    address=BILLING_ADDRESS,
)
PAYER = PayerParty(payer_id="66783JJT", name="EXAMPLE PAYER")
SUBSCRIBER = Person(
    member_id="M000000001",
    family_name="DOE",
    given_name="JOHN",
    birth_date=dt.date(1970, 1, 1),
    gender=Gender.MALE,
    address=HOME,
)
CHILD = Person(
    family_name="DOE", given_name="JANE", birth_date=dt.date(2010, 1, 1), gender=Gender.FEMALE, address=HOME
)
PARTIES = Parties(
    sender_qualifier="ZZ",
    sender_id="HCSYNC",
    receiver_qualifier="ZZ",
    receiver_id="EXAMPLEPAYER",
    sender_code="HCSYNC",
    receiver_code="EXAMPLEPAYER",
    sender_name="GENERAL HOSPITAL",
    receiver_name="EXAMPLE PAYER",
    contact_name="BILLING OFFICE",
    contact_phone="5555551234",
)
PAYER_PARTIES = Parties("ZZ", "EXAMPLEPAYER", "ZZ", "HCSYNC", "EXAMPLEPAYER", "HCSYNC")
INPATIENT = ClaimCodes(filing_indicator="CI", admission_type="1", admission_source="7", patient_status="01")
PAYER_DETAILS = PayerDetails(
    tax_id="987654321", address=BILLING_ADDRESS, contact_phone="8005551212", filing_indicator="12"
)
EFT = EftAccounts(
    payer_routing="011000015", payer_account="12345", payee_routing="021000021", payee_account="67890"
)


def envelope(parties: Parties = PARTIES, **changes: Any) -> Envelope:
    values: dict[str, Any] = {"parties": parties, "interchange_control": 101, "group_control": 7, "at": AT}
    return Envelope(**(values | changes))


def professional(
    claim_id: str, *, lines: int = 2, frequency: ClaimFrequency = ClaimFrequency.ORIGINAL, seed: int = 0
) -> Claim:
    rng = random.Random(seed)
    claim_lines = tuple(
        ClaimLine(
            line_number=n,
            procedure_code=f"9921{n % 6}",
            modifiers=("25",) if n == 1 else (),
            units=n,
            charge_cents=rng.randint(2_500, 90_000),
            service_date=SERVICE_DAY,
            ndc_code="00002140701" if n == 2 else "",
        )
        for n in range(1, lines + 1)
    )
    return Claim(
        claim_id=claim_id,
        encounter_id=f"E-{claim_id}",
        claim_type=ClaimType.PROFESSIONAL,
        frequency=frequency,
        facility_code="11",
        billing_provider_npi=PROVIDER.npi,
        payer_id=PAYER.payer_id,
        total_charge_cents=sum(line.charge_cents for line in claim_lines),
        diagnosis_codes=("J069", "R509"),
        payer_claim_control_number="PCN-OLD-1" if frequency is not ClaimFrequency.ORIGINAL else "",
        lines=claim_lines,
    )


def institutional(claim_id: str, *, frequency: ClaimFrequency = ClaimFrequency.ORIGINAL) -> Claim:
    lines = (
        ClaimLine(
            line_number=1,
            revenue_code="0300",
            procedure_code="85025",
            units=1,
            charge_cents=12_550,
            service_date=SERVICE_DAY,
        ),
        ClaimLine(line_number=2, revenue_code="0120", units=3, charge_cents=300_000),
    )
    return Claim(
        claim_id=claim_id,
        encounter_id=f"E-{claim_id}",
        claim_type=ClaimType.INSTITUTIONAL,
        frequency=frequency,
        facility_code="11",
        billing_provider_npi=PROVIDER.npi,
        payer_id=PAYER.payer_id,
        total_charge_cents=312_550,
        statement_from=dt.date(2026, 11, 28),
        statement_to=SERVICE_DAY,
        diagnosis_codes=("J189", "E119", "I10"),
        drg="193",
        payer_claim_control_number="PCN-OLD-2" if frequency is not ClaimFrequency.ORIGINAL else "",
        lines=lines,
    )


def submission(claim: Claim, *, dependent: bool = False) -> ClaimSubmission:
    return ClaimSubmission(
        claim=claim,
        billing_provider=PROVIDER,
        payer=PAYER,
        subscriber=SUBSCRIBER,
        relationship=SubscriberRelationship.CHILD if dependent else SubscriberRelationship.SELF,
        patient=CHILD if dependent else None,
        group_number="GRP0001",
    )


def pyx12_errors(data: bytes) -> list[str]:
    """Validate with pyx12's stock maps; every error it finds, located, as text."""
    logging.getLogger("pyx12").setLevel(logging.CRITICAL)  # it logs each error; the JSON tree has them
    tree, ack = io.StringIO(), io.StringIO()
    valid = pyx12.x12n_document.x12n_document(
        pyx12.params.params(), io.StringIO(data.decode("ascii")), ack, None, None, tree
    )
    errors = [
        f"{where.get('seg_id')}@{where.get('seg_count')} ele {where.get('ele_pos')}: {error['err_str']}"
        for where, error in _pyx12_errors(json.loads(tree.getvalue()))
    ]
    if not valid and not errors:
        errors.append("pyx12 says invalid without a located error (an ISA/GS/ST element error)")
    return errors


def _pyx12_errors(node: Any, where: dict[str, Any] | None = None) -> Iterator[tuple[dict[str, Any], Any]]:
    if isinstance(node, dict):
        here = node if "seg_id" in node or "ele_pos" in node else (where or {})
        for key, value in node.items():
            if key == "errors":
                yield from ((here, error) for error in value)
            else:
                yield from _pyx12_errors(value, here)
    elif isinstance(node, list):
        for item in node:
            yield from _pyx12_errors(item, where)


def models(data: bytes) -> list[Any]:
    with X12ModelReader(data.decode("ascii")) as reader:
        return list(reader.models())


def only(data: bytes) -> Interchange:
    [found] = read_interchanges(data, "written.x12")
    assert found.faults == []
    return found


def cents(value: Decimal | str | None) -> int:
    return int(Decimal(value or 0) * 100)


# --------------------------------------------------------------------------------------------------
# 837P and 837I


def test_an_837p_with_a_dependent_and_a_replacement_validates_with_pyx12() -> None:
    data = write_837(
        [
            submission(professional("ACCT1")),
            submission(professional("ACCT2", frequency=ClaimFrequency.REPLACEMENT), dependent=True),
        ],
        envelope(),
    )
    assert pyx12_errors(data) == []
    x = only(data)
    [group] = x.groups
    assert (x.control, group.control, group.version) == ("000000101", "7", "005010X222A1")
    [claims] = group.transactions
    ids = [s.id for s in claims.segments]
    assert ids.count("HL") == 4  # 20, 22, 22, 23: the dependent gets a patient loop
    hl = [s.elements for s in claims.segments if s.id == "HL"]
    assert [h[2] for h in hl] == ["20", "22", "22", "23"] and hl[3][1] == hl[2][0]
    assert [s.elements for s in claims.segments if s.id == "REF" and s.element(1) == "F8"] == [
        ("F8", "PCN-OLD-1")
    ]
    assert [s.element(1) for s in claims.segments if s.id == "PAT"] == ["19"]


def test_an_837i_with_drg_statement_period_and_a_dependent_validates_with_pyx12() -> None:
    claims = [
        submission(institutional("INST1")),
        submission(institutional("INST2", frequency=ClaimFrequency.REPLACEMENT), dependent=True),
    ]
    data = write_837(claims, envelope(), codes={c.claim.claim_id: INPATIENT for c in claims})
    assert pyx12_errors(data) == []
    [transaction] = only(data).groups[0].transactions
    segments = {s.id: s for s in reversed(transaction.segments)}  # the first of each id
    assert segments["DTP"].elements == ("434", "RD8", "20261128-20261201")
    assert segments["CL1"].elements == ("1", "7", "01")
    his = [s.elements for s in transaction.segments if s.id == "HI"][:3]
    assert his == [("ABK:J189",), ("DR:193",), ("ABF:E119", "ABF:I10")]
    assert [s.element(1) for s in transaction.segments if s.id == "SV2"] == ["0300", "0120"] * 2


def test_professional_and_institutional_claims_go_in_one_group_each() -> None:
    claims = [
        submission(professional("P1")),
        submission(institutional("I1")),
        submission(professional("P2")),
    ]
    data = write_837(claims, envelope(transaction_control=41), codes={"I1": INPATIENT})
    assert pyx12_errors(data) == []
    x = only(data)
    assert [(g.control, g.version) for g in x.groups] == [("7", "005010X222A1"), ("8", "005010X223A2")]
    assert [[t.control for t in g.transactions] for g in x.groups] == [["0041"], ["0042"]]
    assert [s.element(1) for s in x.groups[0].transactions[0].segments if s.id == "CLM"] == ["P1", "P2"]


def test_claims_for_another_payer_get_their_own_transaction_set() -> None:
    other = submission(professional("ACCT9")).model_copy(
        update={"payer": PayerParty(payer_id="OTHER1", name="OTHER PAYER")}
    )
    data = write_837([submission(professional("ACCT1")), other], envelope())
    assert pyx12_errors(data) == []
    assert len(only(data).groups[0].transactions) == 2


def test_an_837_reads_back_with_x12sdk_to_the_same_ids_amounts_and_codes() -> None:
    written = [submission(professional(f"ACCT{n}", lines=3, seed=n), dependent=n % 2 == 0) for n in range(6)]
    data = write_837(written, envelope())
    read = [claim for model in models(data) for claim in model.claims()]
    assert [c.patient_control_number for c in read] == [s.claim.claim_id for s in written]
    assert [cents(c.charge) for c in read] == [s.claim.total_charge_cents for s in written]
    for back, sent in zip(read, written, strict=True):
        assert [cents(line.sv1_segment.line_item_charge_amount) for line in back.service_lines] == [
            line.charge_cents for line in sent.claim.lines
        ]
        assert [line.sv1_segment.product_service_id_qualifier for line in back.service_lines] == [
            ":".join(("HC", line.procedure_code, *line.modifiers)) for line in sent.claim.lines
        ]
        [hi] = back.claim.hi_segment
        assert (hi.health_care_code_1, hi.health_care_code_2) == (["ABK", "J069"], ["ABF", "R509"])
        assert back.subscriber.nm1_segment.identification_code == SUBSCRIBER.member_id
        assert back.is_dependent is (sent.patient is not None)


def test_an_837i_reads_back_with_x12sdk() -> None:
    data = write_837([submission(institutional("INST1"))], envelope(), codes={"INST1": INPATIENT})
    [claim] = [claim for model in models(data) for claim in model.claims()]
    assert (claim.patient_control_number, cents(claim.charge)) == ("INST1", 312_550)
    assert [cents(line.sv2_segment.line_item_charge_amount) for line in claim.service_lines] == [
        12_550,
        300_000,
    ]


def test_a_thousand_claims_validate_with_pyx12_and_read_back_with_x12sdk() -> None:
    rng = random.Random(14)
    written = [
        submission(
            professional(f"ACCT{n:07d}", lines=rng.randint(1, 4), seed=n), dependent=rng.random() < 0.25
        )
        for n in range(1000)
    ]
    data = write_837(written, envelope())
    assert pyx12_errors(data) == []
    read = [claim for model in models(data) for claim in model.claims()]
    assert len(read) == 1000
    assert sum(cents(c.charge) for c in read) == sum(s.claim.total_charge_cents for s in written)
    assert sum(c.is_dependent for c in read) == sum(s.patient is not None for s in written) > 0


def test_an_837i_without_its_cl1_codes_is_refused_not_invented() -> None:
    with pytest.raises(InvalidMessageError) as refused:
        write_837([submission(institutional("INST1"))], envelope())
    fault = refused.value.fault
    assert (fault.segment, fault.field, fault.message_id) == ("CL1", "CL101", "000000101/7/0001")


# --------------------------------------------------------------------------------------------------
# 835


def remittance(method: PaymentMethod = PaymentMethod.CHECK, plb: int = 3) -> Remittance:
    lines = (
        RemittanceLine(
            procedure_code="99213",
            modifiers=("25",),
            charge_cents=12_550,
            paid_cents=8_000,
            units=1,
            service_date=SERVICE_DAY,
            line_control_number="L1",
            adjustments=(
                Adjustment(group=AdjustmentGroup.CONTRACTUAL, reason_code="45", amount_cents=2_550),
                Adjustment(group=AdjustmentGroup.PATIENT_RESPONSIBILITY, reason_code="2", amount_cents=2_000),
            ),
        ),
        RemittanceLine(revenue_code="0300", charge_cents=3_000, paid_cents=3_000),
    )
    paid = RemittanceClaim(
        claim_id="ACCT1",
        status=ClaimStatus.PRIMARY,
        charge_cents=115_550,
        paid_cents=11_000,
        patient_responsibility_cents=2_000,
        payer_claim_control_number="PCN1",
        adjustments=(Adjustment(group=AdjustmentGroup.CONTRACTUAL, reason_code="45", amount_cents=100_000),),
        lines=lines,
    )
    # A denial whose seven CO reasons take two CAS segments, and a negative OA that restores 7.00.
    contractual = tuple(
        Adjustment(group=AdjustmentGroup.CONTRACTUAL, reason_code=code, amount_cents=100, quantity=1)
        for code in ("94", "97", "253", "59", "16", "18", "B7")
    )
    denied = RemittanceClaim(
        claim_id="ACCT2",
        status=ClaimStatus.DENIED,
        charge_cents=5_000,
        paid_cents=0,
        payer_claim_control_number="PCN2",
        adjustments=(
            Adjustment(group=AdjustmentGroup.CONTRACTUAL, reason_code="50", amount_cents=5_000),
            Adjustment(group=AdjustmentGroup.OTHER, reason_code="23", amount_cents=-700),
            *contractual,
        ),
    )
    provider = tuple(
        ProviderAdjustment(reason_code=code, reference=f"REF{n}" if n % 2 else "", amount_cents=100 * n)
        for n, code in enumerate(["WO", "L6", "FB", "72", "WO", "L6", "FB"][:plb], 1)
    )
    return Remittance(
        payer_id=PAYER.payer_id,
        payer_name=PAYER.name,
        payee_npi=PROVIDER.npi,
        trace_number="TRACE0001",
        payment_method=method,
        payment_date=dt.date(2026, 12, 5),
        total_paid_cents=11_000 - sum(p.amount_cents for p in provider),
        claims=(paid, denied),
        provider_adjustments=provider,
    )


PATIENTS = {"ACCT1": SUBSCRIBER, "ACCT2": CHILD}


@pytest.mark.parametrize("method", [PaymentMethod.CHECK, PaymentMethod.ACH])
def test_an_835_with_a_denial_negative_adjustments_and_plb_validates_with_pyx12(
    method: PaymentMethod,
) -> None:
    data = write_835(
        [remittance(method, plb=6)],
        PROVIDER,
        envelope(PAYER_PARTIES),
        payer=PAYER_DETAILS,
        eft=EFT,
        patients=PATIENTS,
    )
    assert pyx12_errors(data) == []
    [transaction] = only(data).groups[0].transactions
    cas = [s.elements for s in transaction.segments if s.id == "CAS"]
    assert cas[-3:] == [
        (
            "CO",
            "50",
            "50",
            "",
            "94",
            "1",
            "1",
            "97",
            "1",
            "1",
            "253",
            "1",
            "1",
            "59",
            "1",
            "1",
            "16",
            "1",
            "1",
        ),
        ("CO", "18", "1", "1", "B7", "1", "1"),
        ("OA", "23", "-7"),
    ]
    assert [s.element(2) for s in transaction.segments if s.id == "CLP"] == ["1", "4"]


def test_a_nameless_patient_still_validates_with_pyx12() -> None:
    data = write_835([remittance()], PROVIDER, envelope(PAYER_PARTIES), payer=PAYER_DETAILS)
    assert pyx12_errors(data) == []


def test_more_than_six_provider_adjustments_take_a_second_plb() -> None:
    data = write_835([remittance(plb=7)], PROVIDER, envelope(PAYER_PARTIES), payer=PAYER_DETAILS)
    [transaction] = only(data).groups[0].transactions
    plbs = [s.elements for s in transaction.segments if s.id == "PLB"]
    assert [len(p) for p in plbs] == [2 + 12, 2 + 2]
    assert plbs[1] == (PROVIDER.npi, "20261231", "FB:REF7", "7")
    # The guide lets PLB repeat; pyx12's stock 835 map allows one (docs/x12-research.md), nothing else fails.
    assert pyx12_errors(data) == ["PLB@27 ele None: Loop FOOTER exceeded max count.  Found 2, should have 1"]


def test_an_835_reads_back_with_x12sdk_to_the_same_amounts() -> None:
    sent = remittance(PaymentMethod.ACH, plb=6)
    data = write_835(
        [sent], PROVIDER, envelope(PAYER_PARTIES), payer=PAYER_DETAILS, eft=EFT, patients=PATIENTS
    )
    [model] = models(data)
    assert cents(model.header.bpr_segment.total_actual_provider_payment_amount) == sent.total_paid_cents
    plb = model.footer.plb_segment
    assert sum(cents(getattr(plb, f"provider_adjustment_amount_{n}")) for n in range(1, 7)) == sum(
        p.amount_cents for p in sent.provider_adjustments
    )
    for back, claim in zip(model.claims(), sent.claims, strict=True):
        assert (back.patient_control_number, back.status) == (claim.claim_id, claim.status.value)
        assert (cents(back.charge), cents(back.paid)) == (claim.charge_cents, claim.paid_cents)
        segments = [*back.adjustments, *(cas for line in back.service_lines for cas in line.cas_segment)]
        triplets = [
            (
                cas.adjustment_group_code,
                getattr(cas, f"adjustment_reason_code_{n}"),
                cents(getattr(cas, f"monetary_amount_{n}")),
            )
            for cas in segments
            for n in range(1, 7)
            if getattr(cas, f"adjustment_reason_code_{n}")
        ]
        expected = [
            (a.group.value, a.reason_code, a.amount_cents)
            for a in (*claim.adjustments, *(a for line in claim.lines for a in line.adjustments))
        ]
        assert sorted(triplets) == sorted(expected)


def test_an_electronic_payment_without_bank_accounts_is_refused() -> None:
    with pytest.raises(InvalidMessageError) as refused:
        write_835([remittance(PaymentMethod.ACH)], PROVIDER, envelope(PAYER_PARTIES), payer=PAYER_DETAILS)
    assert (refused.value.fault.segment, refused.value.fault.field) == ("BPR", "BPR07")


# --------------------------------------------------------------------------------------------------
# 270 and 271


def test_a_270_reads_back_with_x12sdk() -> None:
    inquiries = [
        EligibilityInquiry(
            trace_number="T-ENC1-1",
            payer=PAYER,
            provider=PROVIDER,
            subscriber=SUBSCRIBER,
            service_type_codes=("30", "1", "35"),
            inquired_on=dt.date(2026, 12, 5),
        ),
        EligibilityInquiry(
            trace_number="T-ENC2-1",
            payer=PAYER,
            provider=PROVIDER,
            subscriber=CHILD.model_copy(update={"member_id": "M2"}),
            inquired_on=dt.date(2026, 12, 5),
        ),
    ]
    data = write_270(inquiries, envelope())
    x = only(data)
    assert [(g.functional_id, g.version) for g in x.groups] == [("HS", "005010X279A1")]
    [model] = models(data)
    members = list(model.members())
    assert [m.member.nm1_segment.identification_code for m in members] == ["M000000001", "M2"]
    assert [m.member.nm1_segment.name_last_or_organization_name for m in members] == ["DOE", "DOE"]
    assert [m.benefits[0].eq_segment.service_type_code for m in members] == [["30", "1", "35"], ["30"]]
    assert [m.provider.nm1_segment.identification_code for m in members] == [PROVIDER.npi] * 2
    assert [m.payer.nm1_segment.identification_code for m in members] == [PAYER.payer_id] * 2
    traces = [s.elements for t in x.groups[0].transactions for s in t.segments if s.id == "TRN"]
    assert traces == [("1", "T-ENC1-1", "9123456789"), ("1", "T-ENC2-1", "9123456789")]


def test_a_271_with_benefits_and_a_rejection_reads_back_with_x12sdk() -> None:
    answered = dt.datetime(2026, 12, 5, 14, 31, tzinfo=dt.UTC)
    active = EligibilityResponse(
        trace_number="T-ENC1-1",
        payer=PAYER,
        provider_npi=PROVIDER.npi,
        subscriber=SUBSCRIBER,
        status=EligibilityStatus.ACTIVE,
        plan="GOLD PPO",
        group_number="GRP0001",
        effective_on=dt.date(2026, 1, 1),
        expires_on=dt.date(2026, 12, 31),
        benefits=(
            Benefit(
                code="1",
                coverage_level="IND",
                service_type_codes=("30", "1"),
                insurance_type="PR",
                plan_description="GOLD PPO",
            ),
            Benefit(
                code="C",
                coverage_level="IND",
                service_type_codes=("30",),
                period="23",
                amount_cents=150_000,
                in_network="Y",
            ),
            Benefit(code="A", service_type_codes=("30",), percent="0.2", in_network="Y"),
        ),
        answered_at=answered,
    )
    # AAA03 15 (required application data missing): x12sdk's 2100C AAA list is 2100B's, so 72 would fail it.
    rejected = EligibilityResponse(
        trace_number="T-ENC2-1",
        payer=PAYER,
        provider_npi=PROVIDER.npi,
        subscriber=SUBSCRIBER,
        status=EligibilityStatus.UNKNOWN,
        rejection_reason="15",
        answered_at=answered,
    )
    data = write_271(
        [active, rejected], envelope(PAYER_PARTIES), provider_names={PROVIDER.npi: PROVIDER.name}
    )
    [model] = models(data)
    first, second = model.members()
    benefits = [b.eb_segment for b in first.benefits]
    assert [(b.eligibility_benefit_information, b.service_type_code) for b in benefits] == [
        ("1", ["30", "1"]),
        ("C", ["30"]),
        ("A", ["30"]),
    ]
    assert cents(benefits[1].benefit_amount) == 150_000 and Decimal(benefits[2].benefit_percent) == Decimal(
        "0.2"
    )
    assert benefits[0].plan_coverage_description == "GOLD PPO"
    assert [b.inplan_network_indicator for b in benefits] == [None, "Y", "Y"]
    assert [
        (r.reference_identification_qualifier, r.reference_identification) for r in first.member.ref_segment
    ] == [("6P", "GRP0001")]
    [aaa] = second.member.aaa_segment
    assert (aaa.response_code, aaa.reject_reason_code, aaa.follow_up_action_code) == ("N", "15", "C")


# --------------------------------------------------------------------------------------------------
# The envelope, determinism and refusals


def test_the_same_models_and_envelope_give_the_same_bytes() -> None:
    claims = [submission(professional(f"ACCT{n}", seed=n), dependent=n == 1) for n in range(3)]
    assert write_837(claims, envelope()) == write_837(list(claims), envelope())
    other = write_837(claims, envelope(interchange_control=102, group_control=8, transaction_control=5))
    x = only(other)
    assert (x.control, x.groups[0].control, x.groups[0].transactions[0].control) == ("000000102", "8", "0005")


def test_the_envelope_says_what_it_is_given_and_reads_back_with_its_delimiters() -> None:
    pipes = Delimiters(element="|", component=">", segment="\n", repetition="!")
    data = write_837(
        [submission(professional("ACCT1"))],
        envelope(usage=Usage.TEST, ack_requested=True, delimiters=pipes),
    )
    x = only(data)
    assert x.delimiters == pipes
    assert (x.isa.element(6), x.isa.element(8)) == ("HCSYNC".ljust(15), "EXAMPLEPAYER".ljust(15))
    assert (x.isa.element(9), x.isa.element(10), x.isa.element(15), x.ack_requested) == (
        "261205",
        "1430",
        "T",
        True,
    )
    assert x.groups[0].gs.elements[1:5] == ("HCSYNC", "EXAMPLEPAYER", "20261205", "1430")
    assert len(data.split(b"\n", 1)[0]) == 105  # the fixed-width ISA, its terminator after it
    assert pyx12_errors(data) == []


def test_a_newline_after_each_terminator_is_optional() -> None:
    plain = write_837([submission(professional("ACCT1"))], envelope())
    broken = write_837([submission(professional("ACCT1"))], envelope(line_break=True))
    assert b"\n" not in plain and broken.replace(b"~\n", b"~") == plain


@pytest.mark.parametrize(
    ("cents_in", "text"),
    [(0, "0"), (5, "0.05"), (50, "0.5"), (12_300, "123"), (12_345, "123.45"), (-700, "-7"), (-1, "-0.01")],
)
def test_amounts_are_written_from_cents_exactly(cents_in: int, text: str) -> None:
    assert amount(cents_in) == text


def test_a_delimiter_inside_a_value_is_refused_naming_the_element_not_the_value() -> None:
    clash = SUBSCRIBER.model_copy(update={"family_name": "O*BRIEN"})
    sent = submission(professional("ACCT1")).model_copy(update={"subscriber": clash})
    with pytest.raises(InvalidMessageError) as refused:
        write_837([sent], envelope())
    fault = refused.value.fault
    assert (fault.message_id, fault.segment, fault.field) == ("000000101/7/0001", "NM1", "NM103")
    assert fault.position == 14  # ST 1, BHT 2, ... HL*2 12, SBR 13, NM1*IL 14
    assert "2010BA" in fault.reason and "element delimiter" in fault.reason
    assert "BRIEN" not in str(refused.value)


def test_the_repetition_separator_inside_a_value_is_refused_too() -> None:
    sent = submission(professional("ACCT1")).model_copy(update={"group_number": "GRP^1"})
    with pytest.raises(InvalidMessageError, match="repetition delimiter") as refused:
        write_837([sent], envelope())
    assert refused.value.fault.field == "SBR03"


def test_a_value_longer_than_the_guide_allows_is_refused() -> None:
    long_name = SUBSCRIBER.model_copy(update={"family_name": "X" * 61})
    with pytest.raises(InvalidMessageError, match="61 characters long; the guide allows 60") as refused:
        write_837(
            [submission(professional("ACCT1")).model_copy(update={"subscriber": long_name})], envelope()
        )
    assert "X" * 61 not in str(refused.value)


def test_accented_letters_are_written_without_diacritics_and_other_scripts_refused() -> None:
    accented = SUBSCRIBER.model_copy(update={"family_name": "MÜLLER", "given_name": "JOSÉ"})
    data = write_837(
        [submission(professional("ACCT1")).model_copy(update={"subscriber": accented})], envelope()
    )
    assert b"NM1*IL*1*MULLER*JOSE****MI*M000000001~" in data
    assert pyx12_errors(data) == []
    other_script = SUBSCRIBER.model_copy(update={"family_name": "李"})
    with pytest.raises(InvalidMessageError, match="outside ASCII") as refused:
        write_837(
            [submission(professional("ACCT1")).model_copy(update={"subscriber": other_script})], envelope()
        )
    assert "李" not in str(refused.value)


def test_a_control_character_in_a_value_is_refused() -> None:
    tabbed = SUBSCRIBER.model_copy(update={"given_name": "JO\tHN"})
    with pytest.raises(InvalidMessageError, match="control character"):
        write_837([submission(professional("ACCT1")).model_copy(update={"subscriber": tabbed})], envelope())


def test_a_five_digit_billing_zip_is_refused() -> None:
    provider = PROVIDER.model_copy(update={"address": HOME})
    sent = submission(professional("ACCT1")).model_copy(update={"billing_provider": provider})
    with pytest.raises(InvalidMessageError, match="9 digits") as refused:
        write_837([sent], envelope())
    assert (refused.value.fault.segment, refused.value.fault.field) == ("N4", "N403")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"delimiters": Delimiters("*", "*", "~", "^")}, "delimiters"),
        ({"delimiters": Delimiters("A", ":", "~", "^")}, "delimiters.element"),
        ({"interchange_control": 0}, "interchange_control (ISA13)"),
        ({"interchange_control": 1_000_000_000}, "interchange_control (ISA13)"),
        ({"delimiters": Delimiters("|", ">", "\n", "!"), "line_break": True}, "line_break"),
    ],
)
def test_an_envelope_that_cannot_be_written_is_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMessageError) as refused:
        envelope(**changes)
    assert refused.value.fault.field == field


def test_an_id_with_a_delimiter_is_refused_in_the_envelope() -> None:
    parties = Parties("ZZ", "HC*SYNC", "ZZ", "PAYER", "HCSYNC", "PAYER")
    with pytest.raises(InvalidMessageError) as refused:
        write_270([], envelope(parties))
    assert refused.value.fault.field == "ISA06"


def test_a_remittance_that_pays_nothing_is_a_notification_and_validates_with_pyx12() -> None:
    [_, denied] = remittance().claims
    nothing = Remittance(
        payer_id=PAYER.payer_id,
        payer_name=PAYER.name,
        trace_number="TRACE0002",
        payment_method=PaymentMethod.NO_PAYMENT,
        payment_date=dt.date(2026, 12, 5),
        total_paid_cents=0,
        claims=(denied,),
    )
    data = write_835([nothing], PROVIDER, envelope(PAYER_PARTIES), payer=PAYER_DETAILS, patients=PATIENTS)
    assert pyx12_errors(data) == []
    [transaction] = only(data).groups[0].transactions
    assert transaction.segments[1].elements == ("H", "0", "C", "NON", *[""] * 11, "20261205")
