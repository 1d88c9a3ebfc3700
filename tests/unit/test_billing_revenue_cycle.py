"""The revenue cycle in billing (issue 14, items 3-5): coverage, eligibility, claims, their lifecycle, 835s.

Most tests drive the real SQL backend (SQLite in tmp_path) with the shipped demo master data as the set in
force; the last ones go over a real in-process gRPC server (mutual TLS, tokens) whose master data is read
from a real redis-server, as in production. Every refusal is checked for its rule and for not echoing PHI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from adapters import KEY_REUSED_RULE
from adapters.billing.backend import SqlBillingBackend
from adapters.billing.revenue_cycle import canonical_submission
from canonical.errors import InvalidMessageError, PreconditionError
from canonical.reference import EligibilityPolicy, MasterDataSet
from canonical.revenue_cycle import ClaimFrequency, ClaimType
from proto import billing_pb2, billing_pb2_grpc
from tests.masterdata import demo_set

CoverageStatus = billing_pb2.RecordCoverageResponse.Status
EligibilityStatus = billing_pb2.RecordEligibilityResponse.Status
ClaimsStatus = billing_pb2.CreateClaimsResponse.Status
ResultStatus = billing_pb2.ClaimResult.Status
UpdateStatus = billing_pb2.UpdateClaimStatusResponse.Status
Event = billing_pb2.UpdateClaimStatusRequest.Event
RemittanceStatus = billing_pb2.PostRemittanceResponse.Status

ACCOUNT = "NMH:V500"
FAMILY, GIVEN, MEMBER = "Lovelace", "Ada", "XQZ998877"  # PHI: never in a refusal
T0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
PAYER = "BCBS-MN"  # commercial in the demo set


def stamp(when: dt.datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(when)
    return value


def account(
    key: str, status: str = "discharged", account_id: str = ACCOUNT
) -> billing_pb2.UpsertAccountRequest:
    message = billing_pb2.Account(
        encounter_id=account_id,
        facility="NMH",
        department="MED",
        patient_class="I",
        status=status,
        mrn="MRN-1",
        family_name=FAMILY,
        given_name=GIVEN,
        birth_date="1815-12-10",
        admitted_at=stamp(T0),
        attending_provider_id="1234567893",
        state_version=2 if status == "discharged" else 1,
    )
    if status == "discharged":
        message.discharged_at.CopyFrom(stamp(T0 + dt.timedelta(days=3)))
    return billing_pb2.UpsertAccountRequest(idempotency_key=key, account=message)


def charge(
    charge_id: str,
    code: str,
    amount: int,
    quantity: int = 1,
    *,
    procedure: str = "",
    account_id: str = ACCOUNT,
) -> billing_pb2.Charge:
    return billing_pb2.Charge(
        charge_id=charge_id,
        encounter_id=account_id,
        transaction_type="CD" if amount < 0 else "CG",
        charge_code=code,
        code_system="CPT",
        quantity=quantity,
        amount_cents=amount,
        currency="USD",
        service_at=stamp(T0 + dt.timedelta(hours=1)),
        facility="NMH",
        department="MED",
        procedure_code=procedure,
    )


def post(key: str, *charges: billing_pb2.Charge) -> billing_pb2.PostChargesRequest:
    return billing_pb2.PostChargesRequest(idempotency_key=key, charges=charges)


def coding(
    key: str, *codes: str, drg: str = "193", account_id: str = ACCOUNT
) -> billing_pb2.UpdateCodingRequest:
    request = billing_pb2.UpdateCodingRequest(
        idempotency_key=key, encounter_id=account_id, coded_at=stamp(T0 + dt.timedelta(days=4))
    )
    # The principal diagnosis (priority 1) is listed second: the claim puts it first.
    for number, code in enumerate(codes, start=1):
        diagnosis = request.diagnoses.add(sequence=number, code=code, diagnosis_type="F")
        if number == 2:
            diagnosis.priority = 1
    if drg:
        request.drg.code = drg
    return request


def coverage(
    key: str, version: int = 1, relationship: str = "self", account_id: str = ACCOUNT, payer: str = PAYER
) -> billing_pb2.RecordCoverageRequest:
    return billing_pb2.RecordCoverageRequest(
        idempotency_key=key,
        coverage=billing_pb2.Coverage(
            encounter_id=account_id,
            payer_id=payer,
            plan="PPO",
            priority=1,
            subscriber=billing_pb2.Person(
                member_id=MEMBER,
                family_name=FAMILY,
                given_name=GIVEN,
                birth_date="1815-12-10",
                gender="F",
                address=billing_pb2.PostalAddress(
                    line1="1 Main St", city="Minneapolis", state="MN", postal_code="55401"
                ),
            ),
            group_number="G-100",
            relationship=relationship,
            state_version=version,
            patient_gender="F",
        ),
    )


@pytest.fixture
def data() -> list[MasterDataSet]:
    """The master data in force, in a one-item list a test may swap (a new version loaded)."""
    return [demo_set()]


@pytest.fixture
def billing(tmp_path: Path, data: list[MasterDataSet]) -> Iterator[SqlBillingBackend]:
    opened = SqlBillingBackend(f"sqlite:///{tmp_path / 'billing.db'}", lambda: data[0])
    try:
        yield opened
    finally:
        opened.close()


def claimable(backend: SqlBillingBackend, account_id: str = ACCOUNT) -> None:
    """A discharged, coded, covered account with institutional and professional charges and a credit."""
    backend.upsert_account(account(f"a-{account_id}", account_id=account_id))
    backend.post_charges(
        post(
            f"p-{account_id}",
            charge(f"{account_id}-c1", "99283", 45_000, account_id=account_id),  # institutional, 0450
            charge(f"{account_id}-c2", "80053", 9_800, account_id=account_id),  # institutional, 0300
            charge(f"{account_id}-c3", "80053", -9_800, account_id=account_id),  # nets 80053 to zero
            charge(f"{account_id}-c4", "71046", 18_500, 2, account_id=account_id),  # institutional, 0320
            charge(f"{account_id}-c5", "99222", 31_500, account_id=account_id),  # professional
        )
    )
    backend.update_coding(coding(f"cd-{account_id}", "E11.9", "I21.4", account_id=account_id))
    backend.record_coverage(coverage(f"cov-{account_id}", account_id=account_id))


def create(backend: SqlBillingBackend, key: str = "claims-1") -> billing_pb2.CreateClaimsResponse:
    return backend.create_claims(billing_pb2.CreateClaimsRequest(idempotency_key=key, encounter_id=ACCOUNT))


def refusal(work: object) -> PreconditionError:
    assert callable(work)
    with pytest.raises(PreconditionError) as caught:
        work()
    text = f"{caught.value.fault.rule}: {caught.value.fault.reason}"
    for phi in (FAMILY, GIVEN, MEMBER, "1815-12-10"):
        assert phi not in text
    return caught.value


def status(key: str, claim_id: str, event: int, **fields: str) -> billing_pb2.UpdateClaimStatusRequest:
    return billing_pb2.UpdateClaimStatusRequest(
        idempotency_key=key,
        claim_id=claim_id,
        event=event,
        occurred_at=stamp(T0 + dt.timedelta(days=5)),
        **fields,
    )


def sent(backend: SqlBillingBackend, claim_id: str, key: str = "s-1") -> None:
    backend.update_claim_status(
        status(
            key,
            claim_id,
            Event.SENT,
            interchange_control_number="000000101",
            group_control_number="101",
            transaction_set_control_number="0001",
        )
    )


def cas(group: str, reason: str, amount: int) -> billing_pb2.Adjustment:
    return billing_pb2.Adjustment(group=group, reason_code=reason, amount_cents=amount)


def remittance(
    trace: str, *claims: billing_pb2.RemittanceClaim, plb: int = 0, payee_npi: str = ""
) -> billing_pb2.PostRemittanceRequest:
    paid = sum(claim.paid_cents for claim in claims)
    message = billing_pb2.Remittance(
        payer_id=PAYER,
        payer_name="Blue Cross",
        payee_npi=payee_npi,
        trace_number=trace,
        payment_method="ACH",
        payment_date="2025-04-01",
        total_paid_cents=paid - plb,
        claims=claims,
    )
    if plb:
        message.provider_adjustments.add(reason_code="L6", reference="INT", amount_cents=plb)
    return billing_pb2.PostRemittanceRequest(idempotency_key=f"{PAYER}|{trace}", remittance=message)


def clp(
    claim_id: str,
    charge: int,
    paid: int,
    *adjustments: billing_pb2.Adjustment,
    code: str = "1",
    icn: str = "ICN-1",
) -> billing_pb2.RemittanceClaim:
    patient = sum(a.amount_cents for a in adjustments if a.group == "PR")
    return billing_pb2.RemittanceClaim(
        claim_id=claim_id,
        status=code,
        charge_cents=charge,
        paid_cents=paid,
        patient_responsibility_cents=patient,
        payer_claim_control_number=icn,
        adjustments=adjustments,
    )


# -- claims ------------------------------------------------------------------------------------------


def test_one_claim_per_kind_carries_what_an_837_needs(billing: SqlBillingBackend) -> None:
    claimable(billing)
    response = create(billing)
    assert response.status == ClaimsStatus.APPLIED
    institutional, professional = response.claims
    assert [c.status for c in response.claims] == [ResultStatus.CREATED, ResultStatus.CREATED]
    claim = institutional.submission.claim
    assert (claim.claim_id, claim.claim_type, claim.frequency) == (f"{ACCOUNT}I", "institutional", "1")
    # The credit nets 80053 to zero: that line is left out.
    assert [
        (line.revenue_code, line.procedure_code, line.units, line.charge_cents) for line in claim.lines
    ] == [
        ("0450", "99283", 1, 45_000),
        ("0320", "71046", 2, 18_500),
    ]
    assert claim.total_charge_cents == 63_500
    assert list(claim.diagnosis_codes) == ["I214", "E119"]  # the principal first, without dots
    assert (claim.drg, claim.statement_from, claim.statement_to) == ("193", "2025-03-01", "2025-03-04")
    assert (claim.facility_code, claim.billing_provider_npi) == ("11", "1417921545")
    submission = institutional.submission
    assert (submission.payer.payer_id, submission.payer.name) == (
        PAYER,
        "Blue Cross and Blue Shield of Minnesota",
    )
    assert (submission.subscriber.member_id, submission.subscriber.family_name) == (MEMBER, FAMILY)
    assert (submission.relationship, submission.attending_npi) == ("self", "1234567893")
    assert not submission.HasField("patient")
    assert submission.billing_provider.address.postal_code
    p_claim = professional.submission.claim
    assert (p_claim.claim_id, p_claim.claim_type, p_claim.drg, p_claim.statement_from) == (
        f"{ACCOUNT}P",
        "professional",
        "",
        "",
    )
    assert [(line.revenue_code, line.procedure_code, line.charge_cents) for line in p_claim.lines] == [
        ("", "99222", 31_500)
    ]
    # What billing answers is what the canonical contract (and so the 837 writer) accepts.
    for result in response.claims:
        canonical = canonical_submission(result.submission)
        assert canonical.claim.claim_type in (ClaimType.INSTITUTIONAL, ClaimType.PROFESSIONAL)


def test_a_dependent_is_named_as_the_patient(billing: SqlBillingBackend) -> None:
    claimable(billing)
    billing.record_coverage(coverage("cov-2", version=2, relationship="child"))
    submission = create(billing).claims[0].submission
    assert submission.relationship == "child"
    assert (submission.patient.family_name, submission.patient.birth_date, submission.patient.gender) == (
        FAMILY,
        "1815-12-10",
        "F",
    )
    assert canonical_submission(submission).patient is not None


def test_a_subscriber_without_names_is_the_patient_of_the_account(billing: SqlBillingBackend) -> None:
    claimable(billing)
    request = coverage("cov-2", version=2)
    request.coverage.subscriber.family_name = request.coverage.subscriber.given_name = ""
    request.coverage.subscriber.birth_date = ""
    billing.record_coverage(request)
    subscriber = create(billing).claims[0].submission.subscriber
    assert (subscriber.member_id, subscriber.family_name, subscriber.given_name) == (MEMBER, FAMILY, GIVEN)
    assert (subscriber.birth_date, subscriber.gender, subscriber.address.city) == (
        "1815-12-10",
        "F",
        "Minneapolis",
    )


def test_a_replay_and_an_unchanged_account_answer_duplicate(billing: SqlBillingBackend) -> None:
    claimable(billing)
    first = create(billing)
    replay = create(billing)
    assert replay.status == ClaimsStatus.DUPLICATE
    assert list(replay.claims) == list(first.claims)
    again = create(billing, "claims-2")
    assert again.status == ClaimsStatus.DUPLICATE
    assert [c.status for c in again.claims] == [ResultStatus.UNCHANGED, ResultStatus.UNCHANGED]
    assert [c.version for c in again.claims] == [1, 1]


def test_a_change_rebuilds_an_unsent_claim_in_place(billing: SqlBillingBackend) -> None:
    claimable(billing)
    create(billing)
    billing.post_charges(post("p-more", charge("c-more", "85025", 4_500)))
    rebuilt = create(billing, "claims-2")
    institutional = rebuilt.claims[0]
    assert (institutional.status, institutional.version) == (ResultStatus.REBUILT, 2)
    assert institutional.submission.claim.frequency == ClaimFrequency.ORIGINAL.value
    assert institutional.submission.claim.total_charge_cents == 68_000
    assert rebuilt.claims[1].status == ResultStatus.UNCHANGED


def test_a_change_after_sending_makes_a_replacement_once_an_835_names_the_payer_claim(
    billing: SqlBillingBackend,
) -> None:
    claimable(billing)
    create(billing)
    sent(billing, f"{ACCOUNT}I")
    billing.post_charges(post("p-more", charge("c-more", "85025", 4_500)))
    waiting = refusal(lambda: create(billing, "claims-2"))
    assert waiting.fault.rule == "BILLING-CLAIM-AWAITING-ADJUDICATION"
    billing.post_remittance(
        remittance("T-1", clp(f"{ACCOUNT}I", 63_500, 40_000, cas("CO", "45", 23_500), icn="PCN-9"))
    )
    paid = billing.get_claim(billing_pb2.GetClaimRequest(claim_id=f"{ACCOUNT}I")).summary
    assert (paid.status, paid.outstanding_cents) == ("paid", 0)
    replaced = create(billing, "claims-3").claims[0]
    assert (replaced.status, replaced.version, replaced.claim_status) == (ResultStatus.REPLACED, 2, "created")
    claim = replaced.submission.claim
    assert (claim.frequency, claim.payer_claim_control_number) == ("7", "PCN-9")
    assert canonical_submission(replaced.submission).claim.frequency is ClaimFrequency.REPLACEMENT


@pytest.mark.parametrize(
    ("prepare", "rule"),
    [
        ("nothing", "BILLING-CLAIM-NO-ACCOUNT"),
        ("admitted", "BILLING-CLAIM-NOT-DISCHARGED"),
        ("no coding", "BILLING-CLAIM-NO-CODING"),
        ("no diagnosis", "BILLING-CLAIM-NO-DIAGNOSIS"),
        ("no coverage", "BILLING-CLAIM-NO-COVERAGE"),
        ("no charges", "BILLING-CLAIM-NO-CHARGES"),
        ("zero net", "BILLING-CLAIM-NO-CHARGES"),
    ],
)
def test_an_account_that_cannot_be_claimed_is_refused_with_its_rule(
    billing: SqlBillingBackend, prepare: str, rule: str
) -> None:
    if prepare != "nothing":
        billing.upsert_account(account("a-1", "admitted" if prepare == "admitted" else "discharged"))
    if prepare not in ("nothing", "admitted", "no charges"):
        credit = charge("c-2", "99283", -45_000) if prepare == "zero net" else charge("c-2", "99222", 1_000)
        billing.post_charges(post("p-1", charge("c-1", "99283", 45_000), credit))
    if prepare not in ("nothing", "admitted", "no coding"):
        billing.update_coding(coding("cd-1", drg="") if prepare == "no diagnosis" else coding("cd-1", "I10"))
    if prepare not in ("nothing", "admitted", "no coding", "no diagnosis", "no coverage"):
        billing.record_coverage(coverage("cov-1"))
    assert refusal(lambda: create(billing)).fault.rule == rule


def test_master_data_gaps_are_refused_with_their_rule(
    billing: SqlBillingBackend, data: list[MasterDataSet]
) -> None:
    claimable(billing)
    demo = demo_set()
    no_npi = demo.model_copy(
        update={
            "facilities": tuple(
                f.model_copy(update={"npi": ""}) if f.code == "NMH" else f for f in demo.facilities
            )
        }
    )
    data[0] = no_npi
    assert refusal(lambda: create(billing)).fault.rule == "BILLING-CLAIM-FACILITY-CANNOT-BILL"
    no_revenue = demo.model_copy(
        update={
            "charge_codes": tuple(
                c.model_copy(update={"revenue_code": ""}) if c.code == "71046" else c
                for c in demo.charge_codes
            )
        }
    )
    data[0] = no_revenue
    refused = refusal(lambda: create(billing, "claims-2"))
    assert refused.fault.rule == "BILLING-CLAIM-NO-REVENUE-CODE"
    assert "71046" in refused.fault.reason
    data[0] = demo
    assert create(billing, "claims-3").status == ClaimsStatus.APPLIED


def test_a_claim_id_longer_than_clm01_is_refused(billing: SqlBillingBackend) -> None:
    long_id = "NMH:" + "9" * 34  # 38 characters, so the claim id would be 39
    claimable(billing, long_id)
    request = billing_pb2.CreateClaimsRequest(idempotency_key="k", encounter_id=long_id)
    assert refusal(lambda: billing.create_claims(request)).fault.rule == "BILLING-CLAIM-ID-TOO-LONG"


# -- coverage and eligibility ------------------------------------------------------------------------


def test_coverage_is_versioned_and_idempotent(billing: SqlBillingBackend) -> None:
    assert billing.record_coverage(coverage("cov-1", version=3)).status == CoverageStatus.CREATED
    assert billing.record_coverage(coverage("cov-1", version=3)).status == CoverageStatus.DUPLICATE
    assert billing.record_coverage(coverage("cov-2", version=2)).status == CoverageStatus.STALE
    updated = billing.record_coverage(coverage("cov-3", version=4, relationship="spouse"))
    assert (updated.status, updated.version) == (CoverageStatus.UPDATED, 2)
    with pytest.raises(InvalidMessageError) as reused:
        billing.record_coverage(coverage("cov-1", version=9))
    assert reused.value.fault.rule == KEY_REUSED_RULE


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("coverage.priority", lambda c: setattr(c, "priority", 4)),
        ("coverage.subscriber", lambda c: c.ClearField("subscriber")),
        ("coverage.subscriber.gender", lambda c: setattr(c.subscriber, "gender", "X")),
        ("coverage.subscriber.address.state", lambda c: setattr(c.subscriber.address, "state", "Minnesota")),
        ("coverage.payer_id", lambda c: setattr(c, "payer_id", "")),
        ("coverage.subscriber.member_id", lambda c: setattr(c.subscriber, "member_id", "")),
        ("coverage.subscriber.birth_date", lambda c: setattr(c.subscriber, "birth_date", "10/12/1815")),
        (
            "coverage.subscriber.address.postal_code",
            lambda c: setattr(c.subscriber.address, "postal_code", "5"),
        ),
        ("coverage.relationship", lambda c: setattr(c, "relationship", "cousin")),
        (
            "coverage.expires_on",
            lambda c: (setattr(c, "effective_on", "2025-02-01"), setattr(c, "expires_on", "2025-01-01")),
        ),
    ],
)
def test_a_malformed_coverage_is_refused_naming_the_field(
    billing: SqlBillingBackend, field: str, mutate: object
) -> None:
    request = coverage("cov-1")
    assert callable(mutate)
    mutate(request.coverage)
    with pytest.raises(InvalidMessageError) as caught:
        billing.record_coverage(request)
    assert caught.value.fault.field == field
    assert "10/12/1815" not in caught.value.fault.reason


def result(key: str, when: dt.datetime, state: str = "active") -> billing_pb2.RecordEligibilityRequest:
    request = billing_pb2.RecordEligibilityRequest(idempotency_key=key, encounter_id=ACCOUNT, priority=1)
    request.result.status = state
    request.result.plan = "PPO"
    request.result.checked_at.CopyFrom(stamp(when))
    request.result.trace_number = "TRN-270-1"
    request.result.benefits.deductible_remaining_cents = 50_000
    request.result.benefits.coinsurance_basis_points = 2_000
    return request


def follow_up(key: str, when: dt.datetime) -> billing_pb2.RecordEligibilityRequest:
    request = billing_pb2.RecordEligibilityRequest(idempotency_key=key, encounter_id=ACCOUNT, priority=1)
    request.follow_up.reason = billing_pb2.EligibilityFollowUp.NO_ANSWER
    request.follow_up.flagged_at.CopyFrom(stamp(when))
    return request


def test_eligibility_keeps_history_and_the_latest_outcome(billing: SqlBillingBackend) -> None:
    assert refusal(lambda: billing.record_eligibility(result("e-0", T0))).fault.rule == "BILLING-NO-COVERAGE"
    billing.record_coverage(coverage("cov-1"))
    flagged = billing.record_eligibility(follow_up("e-1", T0))
    assert (flagged.status, flagged.eligibility_status, flagged.follow_up) == (
        EligibilityStatus.RECORDED,
        "unknown",
        True,
    )
    assert billing.totals().revenue_cycle.eligibility_follow_up_count == 1
    answered = billing.record_eligibility(result("e-2", T0 + dt.timedelta(hours=1)))
    assert (answered.eligibility_status, answered.follow_up) == ("active", False)
    late = billing.record_eligibility(follow_up("e-3", T0 + dt.timedelta(minutes=30)))
    assert (late.status, late.eligibility_status, late.follow_up) == (
        EligibilityStatus.STALE,
        "active",
        False,
    )
    assert (
        billing.record_eligibility(result("e-2", T0 + dt.timedelta(hours=1))).status
        == EligibilityStatus.DUPLICATE
    )
    totals = billing.totals().revenue_cycle
    assert (totals.coverage_count, totals.eligibility_follow_up_count) == (1, 0)
    # Another payer's coverage was never checked: its eligibility starts again from unknown.
    billing.record_coverage(coverage("cov-2", version=2, payer="UHC"))
    again = billing.record_eligibility(follow_up("e-4", T0 + dt.timedelta(minutes=1)))
    assert (again.status, again.eligibility_status, again.follow_up) == (
        EligibilityStatus.RECORDED,
        "unknown",
        True,
    )


# -- lifecycle ---------------------------------------------------------------------------------------


def test_the_lifecycle_refuses_impossible_transitions_and_keeps_history(billing: SqlBillingBackend) -> None:
    claimable(billing)
    create(billing)
    claim_id = f"{ACCOUNT}I"
    early = refusal(lambda: billing.update_claim_status(status("u-0", claim_id, Event.ACCEPTED)))
    assert early.fault.rule == "BILLING-CLAIM-TRANSITION"
    sent(billing, claim_id)
    other = status("u-1", claim_id, Event.ACCEPTED, group_control_number="999")
    assert refusal(lambda: billing.update_claim_status(other)).fault.rule == "BILLING-CLAIM-ACK-MISMATCH"
    rejected = billing.update_claim_status(
        status("u-2", claim_id, Event.REJECTED, ack_code="R", error_text="IK3 NM1")
    )
    assert rejected.claim_status == "rejected"
    assert billing.update_claim_status(
        status("u-2", claim_id, Event.REJECTED, ack_code="R", error_text="IK3 NM1")
    ).status == (UpdateStatus.DUPLICATE)
    sent(billing, claim_id, "s-2")  # resent after the fix
    accepted = billing.update_claim_status(status("u-3", claim_id, Event.ACCEPTED, ack_code="A"))
    assert accepted.claim_status == "accepted"
    unknown = refusal(lambda: billing.update_claim_status(status("u-4", "NOPE", Event.SENT, **_numbers())))
    assert unknown.fault.rule == "BILLING-CLAIM-UNKNOWN"
    history = billing.get_claim(billing_pb2.GetClaimRequest(claim_id=claim_id)).history
    assert [(e.event, e.status) for e in history] == [
        ("CREATED", "created"),
        ("SENT", "sent"),
        ("REJECTED", "rejected"),
        ("SENT", "sent"),
        ("ACCEPTED", "accepted"),
    ]
    assert history[2].ack_code == "R"


def _numbers() -> dict[str, str]:
    return {
        "interchange_control_number": "1",
        "group_control_number": "1",
        "transaction_set_control_number": "1",
    }


# -- remittance --------------------------------------------------------------------------------------


@pytest.fixture
def billed(billing: SqlBillingBackend) -> SqlBillingBackend:
    """Both claims of the account created and sent: 63,500 cents institutional, 31,500 professional."""
    claimable(billing)
    create(billing)
    sent(billing, f"{ACCOUNT}I", "s-i")
    sent(billing, f"{ACCOUNT}P", "s-p")
    return billing


def test_an_835_posts_and_answers_the_journal_summary(billed: SqlBillingBackend) -> None:
    request = remittance(
        "T-1",
        clp(f"{ACCOUNT}I", 63_500, 40_000, cas("CO", "45", 20_000), cas("PR", "2", 3_500), icn="PCN-I"),
        clp(f"{ACCOUNT}P", 31_500, 0, cas("CO", "50", 31_500), code="4", icn="PCN-P"),
        plb=1_000,
        payee_npi="1417921545",
    )
    answer = billed.post_remittance(request)
    assert (answer.status, answer.denied_count, answer.reversal_count) == (RemittanceStatus.POSTED, 1, 0)
    (summary,) = answer.summaries
    assert (summary.facility, summary.legal_entity, summary.payer_type, summary.claim_count) == (
        "NMH",
        "NMHC",
        "commercial",
        2,
    )
    assert (summary.paid_cents, summary.contractual_cents, summary.patient_responsibility_cents) == (
        40_000,
        51_500,
        3_500,
    )
    assert (
        summary.other_adjustment_cents,
        summary.receivable_relieved_cents,
        summary.provider_adjustment_cents,
    ) == (
        0,
        95_000,
        1_000,
    )
    assert billed.post_remittance(request).status == RemittanceStatus.DUPLICATE
    assert list(billed.post_remittance(request).summaries) == list(answer.summaries)
    claims = {c.claim_id: c for c in billed.list_claims(billing_pb2.ClaimListRequest()).claims}
    assert claims[f"{ACCOUNT}I"].status == "partly_paid"  # the patient owes the PR part
    assert claims[f"{ACCOUNT}P"].status == "denied"
    assert claims[f"{ACCOUNT}I"].outstanding_cents == 0
    detail = billed.get_claim(billing_pb2.GetClaimRequest(claim_id=f"{ACCOUNT}I"))
    (payment,) = detail.payments
    assert (payment.trace_number, payment.paid_cents, payment.payer_claim_control_number) == (
        "T-1",
        40_000,
        "PCN-I",
    )
    assert [(a.group, a.reason_code, a.amount_cents) for a in payment.adjustments] == [
        ("CO", "45", 20_000),
        ("PR", "2", 3_500),
    ]
    totals = billed.totals().revenue_cycle
    assert (totals.claim_count, totals.billed_cents, totals.paid_cents) == (2, 95_000, 40_000)
    assert {a.group: a.amount_cents for a in totals.adjustments} == {"CO": 51_500, "PR": 3_500}
    assert (totals.patient_responsibility_cents, totals.denied_count, totals.denied_cents) == (
        3_500,
        1,
        31_500,
    )
    assert (totals.outstanding_cents, totals.provider_adjustment_cents, totals.remittance_count) == (
        0,
        1_000,
        1,
    )


def test_a_partial_payment_then_a_reversal(billed: SqlBillingBackend) -> None:
    billed.post_remittance(
        remittance("T-1", clp(f"{ACCOUNT}I", 63_500, 30_000, cas("CO", "45", 20_000), cas("PR", "1", 13_500)))
    )
    claim = billed.list_claims(billing_pb2.ClaimListRequest(status="partly_paid")).claims[0]
    assert (claim.claim_id, claim.outstanding_cents, claim.patient_responsibility_cents) == (
        f"{ACCOUNT}I",
        0,
        13_500,
    )
    # The payer takes its payment back and pays the professional claim in the same 835 (BPR02 stays >= 0).
    reversal = billed.post_remittance(
        remittance(
            "T-2",
            clp(
                f"{ACCOUNT}I", -63_500, -30_000, cas("CO", "45", -20_000), cas("PR", "1", -13_500), code="22"
            ),
            clp(f"{ACCOUNT}P", 31_500, 31_500),
        )
    )
    assert reversal.reversal_count == 1
    assert (reversal.summaries[0].paid_cents, reversal.summaries[0].receivable_relieved_cents) == (
        1_500,
        -32_000,
    )
    claim = billed.list_claims(billing_pb2.ClaimListRequest(encounter_id=ACCOUNT, status="adjusted")).claims[
        0
    ]
    assert (claim.paid_cents, claim.adjusted_cents, claim.outstanding_cents) == (0, 0, 63_500)


def test_835_refusals_carry_their_rule_and_post_nothing(billed: SqlBillingBackend) -> None:
    good = clp(f"{ACCOUNT}I", 63_500, 40_000, cas("CO", "45", 23_500))
    billed.post_remittance(remittance("T-1", good))
    other = remittance("T-1", clp(f"{ACCOUNT}P", 31_500, 31_500))
    assert refusal(lambda: billed.post_remittance(other)).fault.rule == "X12-835-DUPLICATE-TRACE"
    unmatched = refusal(
        lambda: billed.post_remittance(remittance("T-2", clp(f"{ACCOUNT}P", 31_500, 31_500), clp("X9", 1, 1)))
    )
    assert unmatched.fault.rule == "X12-835-UNMATCHED-CLAIM"
    assert unmatched.fault.reason == "claim 2 of 835 trace T-2 has no claim in billing"
    over = refusal(
        lambda: billed.post_remittance(
            remittance("T-3", clp(f"{ACCOUNT}I", 63_500, 1, cas("CO", "45", 63_499)))
        )
    )
    assert over.fault.rule == "X12-835-OVERPAYMENT"
    billed_amount = refusal(
        lambda: billed.post_remittance(remittance("T-4", clp(f"{ACCOUNT}P", 40_000, 40_000)))
    )
    assert billed_amount.fault.rule == "X12-835-OVERPAYMENT"
    assert "by 8500 cents" in billed_amount.fault.reason
    unbalanced = remittance("T-5", clp(f"{ACCOUNT}P", 31_500, 31_500))
    unbalanced.remittance.total_paid_cents = 31_400
    refused = refusal(lambda: billed.post_remittance(unbalanced))
    assert refused.fault.rule == "X12-835-UNBALANCED"
    assert "by -100 cents" in refused.fault.reason
    totals = billed.totals().revenue_cycle
    assert (totals.remittance_count, totals.paid_cents) == (1, 40_000)


def test_an_835_of_provider_adjustments_only_goes_to_the_payee_facility(billed: SqlBillingBackend) -> None:
    # A refund of an earlier withholding (negative PLB): BPR02 = 0 - (-2,500).
    refund = remittance("T-9", plb=-2_500, payee_npi="1528030723")  # SVH's NPI in the demo set
    (summary,) = billed.post_remittance(refund).summaries
    assert (summary.facility, summary.legal_entity, summary.payer_type) == ("SVH", "SVHS", "commercial")
    assert (summary.claim_count, summary.paid_cents, summary.provider_adjustment_cents) == (0, 0, -2_500)
    stranger = remittance("T-10", plb=-100, payee_npi="1999999999")
    assert refusal(lambda: billed.post_remittance(stranger)).fault.rule == "X12-835-UNMATCHED-PAYEE"
    assert billed.totals().revenue_cycle.provider_adjustment_cents == -2_500


def test_an_835_beyond_the_call_bound_is_refused(billed: SqlBillingBackend) -> None:
    line = 10**11  # the per-line bound: 51 claims of it paid in full pass 10^13 cents per call
    request = remittance("T-1", *(clp(f"{ACCOUNT}I", line, line) for _ in range(51)))
    with pytest.raises(InvalidMessageError) as caught:
        billed.post_remittance(request)
    assert caught.value.fault.field == "remittance.claims"


def test_an_unsent_claim_takes_no_835(billing: SqlBillingBackend) -> None:
    claimable(billing)
    create(billing)
    refused = refusal(lambda: billing.post_remittance(remittance("T-1", clp(f"{ACCOUNT}P", 31_500, 31_500))))
    assert refused.fault.rule == "X12-835-UNMATCHED-CLAIM"


def test_a_malformed_835_is_refused_naming_the_field(billed: SqlBillingBackend) -> None:
    request = remittance("T-1", clp(f"{ACCOUNT}P", 31_500, 31_500))
    request.idempotency_key = "other"
    with pytest.raises(InvalidMessageError) as caught:
        billed.post_remittance(request)
    assert caught.value.fault.field == "idempotency_key"
    request = remittance("T-1", clp(f"{ACCOUNT}P", 31_500, 31_500, cas("XX", "1", 0)))
    with pytest.raises(InvalidMessageError) as caught:
        billed.post_remittance(request)
    assert caught.value.fault.field == "remittance.claims[0].adjustments[0].group"


# -- over gRPC, master data from Redis ----------------------------------------------------------------


@pytest.fixture
def masterdata_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from tests.masterdata import settings_redis
    from tests.redis_server import redis_server

    with redis_server() as url, settings_redis(url, monkeypatch, demo_set()):
        yield url


def test_the_revenue_cycle_over_grpc(tmp_path: Path, masterdata_redis: str) -> None:
    asyncio.run(_over_grpc(tmp_path))


async def _over_grpc(tmp_path: Path) -> None:
    from adapters.security import secure_aio_channel
    from tests.grpc_security import client_settings, running_adapter

    async with running_adapter("billing", tmp_path) as adapter:
        writer = secure_aio_channel(adapter.address, client_settings())
        reader = secure_aio_channel(adapter.address, client_settings("reader"))
        try:
            stub = billing_pb2_grpc.BillingAdapterStub(writer)
            read = billing_pb2_grpc.BillingAdapterStub(reader)
            request = billing_pb2.CreateClaimsRequest(idempotency_key="c-0", encounter_id=ACCOUNT)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateClaims(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert (refused.value.details() or "").startswith("BILLING-CLAIM-NO-ACCOUNT: ")
            await stub.UpsertAccount(account("a-1"), timeout=10)
            await stub.PostCharges(
                post("p-1", charge("c-1", "99283", 45_000), charge("c-2", "99222", 31_500)), timeout=10
            )
            await stub.UpdateCoding(coding("cd-1", "I10"), timeout=10)
            await stub.RecordCoverage(coverage("cov-1"), timeout=10)
            created = await stub.CreateClaims(
                billing_pb2.CreateClaimsRequest(idempotency_key="c-1", encounter_id=ACCOUNT), timeout=10
            )
            assert [c.submission.claim.claim_id for c in created.claims] == [f"{ACCOUNT}I", f"{ACCOUNT}P"]
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await read.CreateClaims(
                    billing_pb2.CreateClaimsRequest(idempotency_key="c-2", encounter_id=ACCOUNT), timeout=10
                )
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            listed = await read.GetClaimList(billing_pb2.ClaimListRequest(status="created"), timeout=10)
            assert len(listed.claims) == 2
            shown = await read.GetClaim(billing_pb2.GetClaimRequest(claim_id=f"{ACCOUNT}P"), timeout=10)
            assert shown.submission.subscriber.member_id == MEMBER
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.RecordCoverage(coverage("cov-2", version=1, payer=""), timeout=10)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (bad.value.details() or "") == "RecordCoverage: coverage.payer_id: is empty"
            totals = await read.GetTotals(billing_pb2.GetTotalsRequest(), timeout=10)
            assert (totals.revenue_cycle.claim_count, totals.revenue_cycle.billed_cents) == (2, 76_500)
        finally:
            await writer.close()
            await reader.close()


def test_a_facility_that_holds_claims_bills_only_once_eligibility_is_confirmed(
    billing: SqlBillingBackend, data: list[MasterDataSet]
) -> None:
    claimable(billing)
    demo = demo_set()
    data[0] = demo.model_copy(
        update={
            "facilities": tuple(
                f.model_copy(update={"eligibility_policy": EligibilityPolicy.HOLD_CLAIMS})
                if f.code == "NMH"
                else f
                for f in demo.facilities
            )
        }
    )
    # No 271 yet: held.
    refused = refusal(lambda: create(billing))
    assert refused.fault.rule == "BILLING-CLAIM-ELIGIBILITY-PENDING" and "NMH" in refused.fault.reason
    # The payer did not answer in time: still held, the reason says so.
    billing.record_eligibility(follow_up("e-1", T0 + dt.timedelta(hours=1)))
    assert refusal(lambda: create(billing, "claims-2")).fault.rule == "BILLING-CLAIM-ELIGIBILITY-PENDING"
    # A 271 says active: the claims are built.
    billing.record_eligibility(result("e-2", T0 + dt.timedelta(hours=2)))
    assert create(billing, "claims-3").status == ClaimsStatus.APPLIED
    # The default policy bills without waiting.
    data[0] = demo
    assert demo.facility("NMH") is not None
    assert demo.facility("NMH").eligibility_policy is EligibilityPolicy.FOLLOW_UP  # type: ignore[union-attr]
