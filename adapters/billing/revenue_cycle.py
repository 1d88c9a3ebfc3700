"""The revenue cycle in billing: coverage, eligibility, claims, their lifecycle and 835 remittances.

What the BillingAdapter's revenue-cycle RPCs do (proto/billing.proto says the contract, docs/x12.md the
rules). Every write runs in one transaction and is idempotent on its key: the answer is recorded with a
digest of the request, so a replay answers DUPLICATE with the original result and the same key with other
content is refused (ALREADY_EXISTS). A PostRemittance's key is the 835's "payer id|TRN02".

Two kinds of refusal:

* a malformed request answers INVALID_ARGUMENT naming the field (adapters.invalid_request), never a value;
* a well-formed request that billing's state does not allow raises a PreconditionError whose rule comes
  first in the details (FAILED_PRECONDITION "<rule>: <reason>"), so the caller can quarantine under it.
  Reasons name the condition and, for an 835, the claim's ordinal, never a patient control number (CLM01
  is PHI in the canonical contract), a member id or a name.

Claims are built from what billing holds: the account (discharged), its coding (diagnoses, DRG), its
coverage of priority 1 (payer, subscriber), its posted charges (netted per charge code) and the master
data in force (the facility's billing identity, each charge code's revenue code and claim kind, the payer's
type). The master data is read only once an account passes the checks that need no master data, so a call
for an account that cannot be claimed yet never waits on Redis.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from google.protobuf.message import Message
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql._typing import ColumnExpressionArgument

from adapters import (
    fingerprint,
    invalid_request,
    precondition_failed,
    request_date,
    request_datetime,
    reused_key,
)
from adapters.billing.coding import as_utc
from adapters.billing.schema import (
    AccountRow,
    ChargeRow,
    ClaimAdjustmentRow,
    ClaimEventRow,
    ClaimPaymentRow,
    ClaimRow,
    CodingRow,
    CoverageRow,
    DiagnosisRow,
    EligibilityRow,
    ProviderAdjustmentRow,
    RemittanceRow,
    RevenueRequestRow,
    total,
)
from adapters.bounds import MAX_CALL_CENTS, MAX_ITEMS_PER_CALL, MAX_LINE_CENTS, MAX_QUANTITY, beyond
from canonical import revenue_cycle as rc
from canonical.models import EncounterStatus
from canonical.reference import ClaimKind, EligibilityPolicy, Facility, MasterDataSet
from foundation.sql import int64, joined
from proto import billing_pb2

__all__ = [
    "CLAIM_ID_MAX_CHARS",
    "ClaimLifecycle",
    "create_claims",
    "get_claim",
    "list_claims",
    "post_remittance",
    "record_coverage",
    "record_eligibility",
    "revenue_cycle_totals",
    "update_claim_status",
    "validate_claims_request",
    "validate_coverage",
    "validate_eligibility",
    "validate_list",
    "validate_remittance",
    "validate_status_update",
]

M = TypeVar("M", bound=Message)
MasterData = Callable[[], MasterDataSet]

CLAIM_ID_MAX_CHARS = 38  # CLM01 patient control number, X12 5010 maximum length
LIST_DEFAULT = 100  # claims GetClaimList answers when no limit is given
BASIS_POINTS_MAX = 10_000  # 100 % coinsurance
_SUFFIX = {rc.ClaimType.INSTITUTIONAL: "I", rc.ClaimType.PROFESSIONAL: "P"}
_CLAIMABLE = frozenset({EncounterStatus.DISCHARGED.value, EncounterStatus.CLOSED.value})
_PROCEDURE_SYSTEMS = ("CPT", "HCPCS")  # code systems whose codes are SV1/SV2 procedure codes
_RELATIONSHIPS = {member.value for member in rc.SubscriberRelationship}
_GENDERS = frozenset({"", "F", "M", "U"})
_ELIGIBILITY = {member.value for member in rc.EligibilityStatus}
_PAYMENT_METHODS = {member.value for member in rc.PaymentMethod}
_CLP_STATUSES = {member.value for member in rc.ClaimStatus}
_GROUPS = {member.value for member in rc.AdjustmentGroup}
_OTHER_GROUPS = frozenset({"OA", "PI", "CR"})
UNKNOWN_PAYER_TYPE = "unknown"

CoverageStatus = billing_pb2.RecordCoverageResponse.Status
EligibilityStatus = billing_pb2.RecordEligibilityResponse.Status
ClaimsStatus = billing_pb2.CreateClaimsResponse.Status
ResultStatus = billing_pb2.ClaimResult.Status
UpdateStatus = billing_pb2.UpdateClaimStatusResponse.Status
Event = billing_pb2.UpdateClaimStatusRequest.Event
RemittanceStatus = billing_pb2.PostRemittanceResponse.Status
FollowUpReason = billing_pb2.EligibilityFollowUp.Reason


class ClaimLifecycle:
    """A claim's statuses, and which lifecycle event may follow which status."""

    CREATED = "created"
    SENT = "sent"
    ACCEPTED = "accepted"
    ACCEPTED_WITH_ERRORS = "accepted_with_errors"
    REJECTED = "rejected"
    PAID = "paid"
    PARTLY_PAID = "partly_paid"
    DENIED = "denied"
    ADJUSTED = "adjusted"
    ALL = (
        CREATED,
        SENT,
        ACCEPTED,
        ACCEPTED_WITH_ERRORS,
        REJECTED,
        PAID,
        PARTLY_PAID,
        DENIED,
        ADJUSTED,
    )
    # Not sent to the payer (or refused before adjudication): a change rebuilds the claim in place.
    UNSENT = frozenset({CREATED, REJECTED})
    # Adjudicated (an 835 posted) or on its way to be: an 835 may post against these.
    REMITTABLE = frozenset({SENT, ACCEPTED, ACCEPTED_WITH_ERRORS, PAID, PARTLY_PAID, DENIED, ADJUSTED})
    # event -> (the statuses it may follow, the status it leads to)
    TRANSITIONS: dict[int, tuple[frozenset[str], str]] = {
        Event.SENT: (frozenset({CREATED, REJECTED}), SENT),
        Event.ACCEPTED: (frozenset({SENT}), ACCEPTED),
        Event.ACCEPTED_WITH_ERRORS: (frozenset({SENT}), ACCEPTED_WITH_ERRORS),
        Event.REJECTED: (frozenset({SENT}), REJECTED),
        Event.INTERCHANGE_REJECTED: (frozenset({SENT}), REJECTED),
    }


# ---------------------------------------------------------------------------------------------------
# Shared helpers


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _replayed(session: Session, rpc: str, key: str, digest: str, kind: type[M]) -> M | None:
    """Return the recorded answer of a replayed key, or None; the same key with other content is refused."""
    row = session.get(RevenueRequestRow, (rpc, key))
    if row is None:
        return None
    if row.request_digest != digest:
        raise reused_key(key, f"another {rpc} request")
    return kind.FromString(row.response)


def _remember(session: Session, rpc: str, key: str, digest: str, response: Message, now: dt.datetime) -> None:
    """Record the answer of a key, flushed so a concurrent call with the same key loses its race here."""
    session.add(
        RevenueRequestRow(
            rpc=rpc,
            idempotency_key=key,
            request_digest=digest,
            response=response.SerializeToString(deterministic=True),
            received_at=now,
        )
    )
    session.flush()


def _bounded(value: int, where: str, key: str, *, bound: int = MAX_LINE_CENTS, unit: str = "cents") -> None:
    if abs(value) > bound:
        raise invalid_request(where, beyond(bound, unit), request_id=key)


def _required(message: Message, names: Iterable[str], key: str, prefix: str = "") -> None:
    """Refuse the first empty string field of ``names``, naming it."""
    for name in names:
        if not getattr(message, name):
            raise invalid_request(f"{prefix}{name}", "is empty", request_id=key)


def _digits(value: str, sizes: tuple[int, ...]) -> bool:
    return value.isascii() and value.isdigit() and len(value) in sizes


def _validate_person(person: billing_pb2.Person, where: str, key: str) -> None:
    """Refuse a subscriber whose parts an 837 could not carry; the field is named, the value never.

    The names may be empty: IN1-16 is often left out when the patient is the subscriber, and the claim
    then names the patient of the account.
    """
    if not person.member_id:
        raise invalid_request(f"{where}.member_id", "is empty", request_id=key)
    request_date(person.birth_date, f"{where}.birth_date", key)
    if person.gender not in _GENDERS:
        raise invalid_request(f"{where}.gender", "must be F, M, U or empty", request_id=key)
    if person.HasField("address"):
        address = person.address
        _required(address, ("line1", "city"), key, f"{where}.address.")
        if not (len(address.state) == 2 and address.state.isascii() and address.state.isupper()):
            raise invalid_request(f"{where}.address.state", "is not a two-letter state code", request_id=key)
        if not _digits(address.postal_code, (5, 9)):
            raise invalid_request(f"{where}.address.postal_code", "is not a 5 or 9 digit ZIP", request_id=key)


# ---------------------------------------------------------------------------------------------------
# RecordCoverage


def validate_coverage(request: billing_pb2.RecordCoverageRequest) -> None:
    """Refuse a RecordCoverage request that breaks the contract, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if not request.HasField("coverage"):
        raise invalid_request("coverage", "is missing", request_id=key)
    coverage = request.coverage
    _required(coverage, ("encounter_id", "payer_id"), key, "coverage.")
    if not 1 <= coverage.priority <= 3:
        raise invalid_request("coverage.priority", "must be 1, 2 or 3", request_id=key)
    if not coverage.HasField("subscriber"):
        raise invalid_request("coverage.subscriber", "is missing", request_id=key)
    _validate_person(coverage.subscriber, "coverage.subscriber", key)
    if coverage.relationship and coverage.relationship not in _RELATIONSHIPS:
        raise invalid_request(
            "coverage.relationship", f"must be one of {', '.join(sorted(_RELATIONSHIPS))}", request_id=key
        )
    if coverage.patient_gender not in _GENDERS:
        raise invalid_request("coverage.patient_gender", "must be F, M, U or empty", request_id=key)
    start = request_date(coverage.effective_on, "coverage.effective_on", key)
    end = request_date(coverage.expires_on, "coverage.expires_on", key)
    if start and end and end < start:
        raise invalid_request("coverage.expires_on", "is before effective_on", request_id=key)
    if coverage.state_version < 0:
        raise invalid_request("coverage.state_version", "cannot be negative", request_id=key)


def record_coverage(
    session: Session, request: billing_pb2.RecordCoverageRequest, digest: str, now: dt.datetime
) -> billing_pb2.RecordCoverageResponse:
    """Create or update an encounter's coverage of one priority unless a newer state is stored."""
    key, coverage = request.idempotency_key, request.coverage
    seen = _replayed(session, "RecordCoverage", key, digest, billing_pb2.RecordCoverageResponse)
    if seen is not None:
        seen.status = CoverageStatus.DUPLICATE
        return seen
    row = session.get(CoverageRow, (coverage.encounter_id, coverage.priority), with_for_update=True)
    if row is not None and coverage.state_version < row.state_version:
        response = billing_pb2.RecordCoverageResponse(status=CoverageStatus.STALE, version=row.version)
    else:
        values = {
            "payer_id": coverage.payer_id,
            "payer_name": coverage.payer_name,
            "plan": coverage.plan,
            "member_id": coverage.subscriber.member_id,
            "subscriber": coverage.subscriber.SerializeToString(deterministic=True),
            "group_number": coverage.group_number,
            "relationship": coverage.relationship or rc.SubscriberRelationship.SELF.value,
            "effective_on": request_date(coverage.effective_on, "coverage.effective_on", key),
            "expires_on": request_date(coverage.expires_on, "coverage.expires_on", key),
            "patient_gender": coverage.patient_gender,
            "patient_address": (
                coverage.patient_address.SerializeToString(deterministic=True)
                if coverage.HasField("patient_address")
                else None
            ),
            "source_event_id": coverage.source_event_id,
            "correlation_id": coverage.correlation_id,
            "state_version": coverage.state_version,
            "updated_at": now,
        }
        if row is None:
            row = CoverageRow(
                encounter_id=coverage.encounter_id,
                priority=coverage.priority,
                version=1,
                eligibility_status=rc.EligibilityStatus.UNKNOWN.value,
                eligibility_plan="",
                follow_up=False,
                follow_up_reason="",
                **values,
            )
            session.add(row)
            status = CoverageStatus.CREATED
        else:
            if (row.payer_id, row.member_id) != (coverage.payer_id, coverage.subscriber.member_id):
                _forget_eligibility(row)  # another payer or policy: what was checked was another coverage
            for name, value in values.items():
                setattr(row, name, value)
            row.version += 1
            status = CoverageStatus.UPDATED
        response = billing_pb2.RecordCoverageResponse(status=status, version=row.version)
    _remember(session, "RecordCoverage", key, digest, response, now)
    return response


def _forget_eligibility(row: CoverageRow) -> None:
    """Reset a coverage's current eligibility to never checked (its history stays)."""
    row.eligibility_status = rc.EligibilityStatus.UNKNOWN.value
    row.eligibility_at = None
    row.eligibility_plan = ""
    row.benefits = None
    row.follow_up, row.follow_up_reason = False, ""


# ---------------------------------------------------------------------------------------------------
# RecordEligibility


def validate_eligibility(request: billing_pb2.RecordEligibilityRequest) -> None:
    """Refuse a RecordEligibility request that breaks the contract, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if not request.encounter_id:
        raise invalid_request("encounter_id", "is empty", request_id=key)
    if not 1 <= request.priority <= 3:
        raise invalid_request("priority", "must be 1, 2 or 3", request_id=key)
    outcome = request.WhichOneof("outcome")
    if outcome is None:
        raise invalid_request("outcome", "is missing: a result or a follow_up", request_id=key)
    if outcome == "result":
        result = request.result
        if result.status not in _ELIGIBILITY:
            raise invalid_request("result.status", "must be active, inactive or unknown", request_id=key)
        if not result.HasField("checked_at"):
            raise invalid_request("result.checked_at", "is missing", request_id=key)
        request_datetime(result, "checked_at", field="result.checked_at", request_id=key)
        benefits = result.benefits
        for name in ("deductible_remaining_cents", "copay_cents", "out_of_pocket_remaining_cents"):
            if benefits.HasField(name):
                value = getattr(benefits, name)
                if value < 0:
                    raise invalid_request(f"result.benefits.{name}", "cannot be negative", request_id=key)
                _bounded(value, f"result.benefits.{name}", key)
        if benefits.HasField("coinsurance_basis_points") and not (
            0 <= benefits.coinsurance_basis_points <= BASIS_POINTS_MAX
        ):
            raise invalid_request(
                "result.benefits.coinsurance_basis_points", "must be 0 to 10000", request_id=key
            )
    else:
        follow_up = request.follow_up
        if follow_up.reason not in (FollowUpReason.NO_ANSWER, FollowUpReason.REJECTED):
            raise invalid_request("follow_up.reason", "must be NO_ANSWER or REJECTED", request_id=key)
        if not follow_up.HasField("flagged_at"):
            raise invalid_request("follow_up.flagged_at", "is missing", request_id=key)
        request_datetime(follow_up, "flagged_at", field="follow_up.flagged_at", request_id=key)


def record_eligibility(
    session: Session, request: billing_pb2.RecordEligibilityRequest, digest: str, now: dt.datetime
) -> billing_pb2.RecordEligibilityResponse:
    """Record an eligibility outcome in the history, and as the coverage's current state unless older."""
    key = request.idempotency_key
    seen = _replayed(session, "RecordEligibility", key, digest, billing_pb2.RecordEligibilityResponse)
    if seen is not None:
        seen.status = EligibilityStatus.DUPLICATE
        return seen
    row = session.get(CoverageRow, (request.encounter_id, request.priority), with_for_update=True)
    if row is None:
        raise precondition_failed(
            "BILLING-NO-COVERAGE",
            f"the encounter has no coverage of priority {request.priority} (RecordCoverage first)",
            request_id=key,
        )
    if request.WhichOneof("outcome") == "result":
        result = request.result
        occurred = request_datetime(result, "checked_at")
        benefits = result.benefits.SerializeToString(deterministic=True)
        history = EligibilityRow(
            kind="result",
            status=result.status,
            plan=result.plan,
            benefits=benefits,
            trace_number=result.trace_number,
            reason=result.rejection_reason,
        )
    else:
        follow_up = request.follow_up
        occurred = request_datetime(follow_up, "flagged_at")
        reason = FollowUpReason.Name(follow_up.reason)
        history = EligibilityRow(
            kind="follow_up",
            status=row.eligibility_status,
            plan="",
            benefits=None,
            trace_number=follow_up.trace_number,
            reason=f"{reason} {follow_up.detail}".strip(),
        )
    history.idempotency_key = key
    history.encounter_id = request.encounter_id
    history.priority = request.priority
    history.occurred_at = occurred
    history.received_at = now
    session.add(history)
    current = row.eligibility_at is None or occurred >= as_utc(row.eligibility_at)
    if current:
        row.eligibility_at = occurred
        if history.kind == "result":
            row.eligibility_status, row.eligibility_plan = history.status, history.plan
            row.benefits = history.benefits
            row.follow_up, row.follow_up_reason = False, ""
        else:
            row.follow_up, row.follow_up_reason = True, history.reason
    response = billing_pb2.RecordEligibilityResponse(
        status=EligibilityStatus.RECORDED if current else EligibilityStatus.STALE,
        eligibility_status=row.eligibility_status,
        follow_up=row.follow_up,
    )
    _remember(session, "RecordEligibility", key, digest, response, now)
    return response


# ---------------------------------------------------------------------------------------------------
# CreateClaims


def validate_claims_request(request: billing_pb2.CreateClaimsRequest) -> None:
    """Refuse a CreateClaims request without its key or account."""
    if not request.idempotency_key:
        raise invalid_request("idempotency_key", "is empty")
    if not request.encounter_id:
        raise invalid_request("encounter_id", "is empty", request_id=request.idempotency_key)


@dataclass(slots=True)
class _Netted:
    """The posted lines of one charge code of an account, netted: what one claim line bills."""

    charge_code: str
    amount_cents: int = 0
    units: int = 0
    procedure_code: str = ""
    code_system: str = ""
    ndc_code: str = ""
    first_service: dt.datetime | None = None

    def add(self, charge: ChargeRow) -> None:
        self.amount_cents += charge.amount_cents
        # A credit takes its units back; a price correction without units leaves them.
        self.units += charge.quantity if charge.amount_cents >= 0 else -abs(charge.quantity)
        self.procedure_code = self.procedure_code or charge.procedure_code
        self.code_system = self.code_system or charge.code_system
        self.ndc_code = self.ndc_code or charge.ndc_code
        if charge.amount_cents > 0:
            served = as_utc(charge.service_at)
            self.first_service = min(served, self.first_service or served)


def _netted_charges(session: Session, encounter_id: str) -> list[_Netted]:
    """Return the account's posted charges netted per charge code, in order of first service."""
    netted: dict[str, _Netted] = {}
    rows = session.scalars(
        select(ChargeRow).where(ChargeRow.encounter_id == encounter_id).order_by(ChargeRow.service_at)
    )
    for charge in rows:
        netted.setdefault(charge.charge_code, _Netted(charge.charge_code)).add(charge)
    return [item for item in netted.values() if item.amount_cents != 0]


def _procedure_code(item: _Netted, master_system: str) -> str:
    """The HCPCS/CPT code of a line: FT1-25, else the charge code itself when its system is CPT or HCPCS."""
    if item.procedure_code:
        return item.procedure_code
    system = (item.code_system or master_system).upper()
    return item.charge_code if system.startswith(_PROCEDURE_SYSTEMS) else ""


def _refuse(rule: str, reason: str, key: str) -> NoReturn:
    """Refuse under ``rule`` (FAILED_PRECONDITION); ``reason`` names no PHI value."""
    raise precondition_failed(rule, reason, request_id=key)


@dataclass(frozen=True, slots=True)
class _Basis:
    """What billing holds for one account, checked: everything a claim is built from but master data."""

    account: AccountRow
    coding: CodingRow
    diagnoses: tuple[str, ...]
    coverage: CoverageRow
    charges: list[_Netted]


def _basis(session: Session, encounter_id: str, key: str) -> _Basis:
    """Read and check what the account's claims are built from; refuse with the first missing piece."""
    account = session.get(AccountRow, encounter_id)
    if account is None:
        _refuse("BILLING-CLAIM-NO-ACCOUNT", "billing has no account for the encounter", key)
    if account.status not in _CLAIMABLE:
        _refuse("BILLING-CLAIM-NOT-DISCHARGED", f"the account is {account.status}, not discharged", key)
    coding = session.get(CodingRow, encounter_id)
    if coding is None:
        _refuse("BILLING-CLAIM-NO-CODING", "the account has no coding (final coding comes first)", key)
    rows = session.scalars(
        select(DiagnosisRow).where(DiagnosisRow.encounter_id == encounter_id).order_by(DiagnosisRow.position)
    ).all()
    # Principal (priority 1) first, the others in the coder's order; ICD-10-CM without its dot, once each.
    ordered = sorted(rows, key=lambda row: (row.priority != 1, row.position))
    diagnoses = tuple(dict.fromkeys(row.code.replace(".", "").strip() for row in ordered if row.code.strip()))
    if not diagnoses:
        _refuse("BILLING-CLAIM-NO-DIAGNOSIS", "the account's coding has no diagnosis", key)
    coverage = session.get(CoverageRow, (encounter_id, 1))
    if coverage is None:
        _refuse("BILLING-CLAIM-NO-COVERAGE", "the account has no coverage of priority 1", key)
    charges = _netted_charges(session, encounter_id)
    if not charges:
        _refuse("BILLING-CLAIM-NO-CHARGES", "the account has no posted charges (or they net to zero)", key)
    return _Basis(account, coding, diagnoses, coverage, charges)


def _day(value: dt.datetime | None) -> str:
    return as_utc(value).date().isoformat() if value is not None else ""


def _provider(facility: Facility) -> billing_pb2.ProviderParty:
    return billing_pb2.ProviderParty(
        npi=facility.npi,
        name=facility.name[:60],
        tax_id=facility.tax_id,
        taxonomy_code=facility.taxonomy_code,
        address=billing_pb2.PostalAddress(
            line1=facility.address_line,
            city=facility.city,
            state=facility.state,
            postal_code=facility.postal_code,
        ),
    )


def _facility_code(patient_class: str, kind: rc.ClaimType) -> str:
    """CLM05-1: the 837I facility type (11 inpatient, 13 outpatient) or 837P place of service."""
    inpatient = patient_class.upper() == "I"
    if kind is rc.ClaimType.INSTITUTIONAL:
        return "11" if inpatient else "13"
    if patient_class.upper() == "E":
        return "23"
    return "21" if inpatient else "22"


def _claim_lines(
    basis: _Basis, kind: rc.ClaimType, data: MasterDataSet, key: str
) -> list[billing_pb2.ClaimLine]:
    """Return the lines of the account's claim of ``kind``, refusing a code an 837 line cannot carry."""
    lines: list[billing_pb2.ClaimLine] = []
    for item in basis.charges:
        master = data.charge_code(item.charge_code)
        if master is None:
            _refuse(
                "BILLING-CLAIM-UNKNOWN-CHARGE-CODE",
                f"charge code {item.charge_code} is not in the charge master of master data {data.version}",
                key,
            )
        line_kind = (
            rc.ClaimType.PROFESSIONAL
            if master.claim_kind is ClaimKind.PROFESSIONAL
            else rc.ClaimType.INSTITUTIONAL
        )
        if line_kind is not kind:
            continue
        if item.amount_cents < 0:
            continue  # cannot happen (credits post only while covered); never a negative line
        procedure = _procedure_code(item, master.code_system)
        if kind is rc.ClaimType.INSTITUTIONAL and not master.revenue_code:
            _refuse(
                "BILLING-CLAIM-NO-REVENUE-CODE",
                f"charge code {item.charge_code} has no NUBC revenue code in master data {data.version}",
                key,
            )
        if kind is rc.ClaimType.PROFESSIONAL and not procedure:
            _refuse(
                "BILLING-CLAIM-NO-PROCEDURE-CODE",
                f"professional charge code {item.charge_code} has no CPT/HCPCS procedure code",
                key,
            )
        lines.append(
            billing_pb2.ClaimLine(
                line_number=len(lines) + 1,
                revenue_code=master.revenue_code if kind is rc.ClaimType.INSTITUTIONAL else "",
                procedure_code=procedure,
                units=max(item.units, 1),
                charge_cents=item.amount_cents,
                service_date=_day(item.first_service),
                ndc_code=item.ndc_code,
                charge_code=item.charge_code,
            )
        )
    return lines


def _patient(account: AccountRow, gender: str) -> billing_pb2.Person:
    """The account's patient as an 837 names them (loop 2010CA, or 2010BA when the subscriber)."""
    return billing_pb2.Person(
        family_name=account.family_name,
        given_name=account.given_name,
        birth_date=account.birth_date.isoformat() if account.birth_date else "",
        gender=gender or rc.Gender.UNKNOWN.value,
    )


def _subscriber(coverage: CoverageRow, account: AccountRow) -> billing_pb2.Person:
    """The coverage's subscriber; when IN1 left the names out and the patient is the subscriber, the
    account's patient under the coverage's member id."""
    person = billing_pb2.Person.FromString(coverage.subscriber)
    if not person.family_name and coverage.relationship == rc.SubscriberRelationship.SELF.value:
        patient = _patient(account, person.gender or coverage.patient_gender)
        patient.member_id = person.member_id
        if person.HasField("address"):
            patient.address.CopyFrom(person.address)
        elif coverage.patient_address:
            patient.address.CopyFrom(billing_pb2.PostalAddress.FromString(coverage.patient_address))
        return patient
    person.gender = person.gender or rc.Gender.UNKNOWN.value
    return person


def _submission(
    basis: _Basis, kind: rc.ClaimType, lines: list[billing_pb2.ClaimLine], facility: Facility, payer_name: str
) -> billing_pb2.ClaimSubmission:
    """Build an original claim's submission (frequency 1) from the checked basis."""
    account, coverage = basis.account, basis.coverage
    served = [line.service_date for line in lines if line.service_date]
    start = _day(account.admitted_at) or min(served, default="")
    end = _day(account.discharged_at) or max(served, default="")
    claim = billing_pb2.Claim(
        claim_id=f"{account.account_id}{_SUFFIX[kind]}",
        encounter_id=account.account_id,
        claim_type=kind.value,
        frequency=rc.ClaimFrequency.ORIGINAL.value,
        facility_code=_facility_code(account.patient_class, kind),
        billing_provider_npi=facility.npi,
        payer_id=coverage.payer_id,
        total_charge_cents=sum(line.charge_cents for line in lines),
        statement_from=start if kind is rc.ClaimType.INSTITUTIONAL else "",
        statement_to=end if kind is rc.ClaimType.INSTITUTIONAL else "",
        diagnosis_codes=basis.diagnoses,
        drg=(basis.coding.drg_code or "") if kind is rc.ClaimType.INSTITUTIONAL else "",
        lines=lines,
    )
    submission = billing_pb2.ClaimSubmission(
        claim=claim,
        billing_provider=_provider(facility),
        payer=billing_pb2.PayerParty(payer_id=coverage.payer_id, name=payer_name[:60]),
        subscriber=_subscriber(coverage, account),
        relationship=coverage.relationship,
        group_number=coverage.group_number,
        priority=coverage.priority,
        attending_npi=account.attending_provider_id if _digits(account.attending_provider_id, (10,)) else "",
    )
    if coverage.relationship != rc.SubscriberRelationship.SELF.value:
        patient = _patient(account, coverage.patient_gender)
        if coverage.patient_address:
            patient.address.CopyFrom(billing_pb2.PostalAddress.FromString(coverage.patient_address))
        submission.patient.CopyFrom(patient)
    return submission


def _address(message: billing_pb2.Person | billing_pb2.ProviderParty) -> rc.PostalAddress | None:
    if not message.HasField("address"):
        return None
    address = message.address
    return rc.PostalAddress(
        line1=address.line1,
        line2=address.line2,
        city=address.city,
        state=address.state,
        postal_code=address.postal_code,
    )


def _canonical_person(person: billing_pb2.Person) -> rc.Person:
    return rc.Person(
        member_id=person.member_id,
        family_name=person.family_name,
        given_name=person.given_name,
        birth_date=dt.date.fromisoformat(person.birth_date) if person.birth_date else None,
        gender=rc.Gender(person.gender or "U"),
        address=_address(person),
    )


def canonical_submission(submission: billing_pb2.ClaimSubmission) -> rc.ClaimSubmission:
    """Return the canonical ClaimSubmission of a built claim: what the 837 writer takes.

    Raises pydantic's ValidationError when the contract's invariants fail.
    """
    claim = submission.claim
    provider = submission.billing_provider
    return rc.ClaimSubmission(
        claim=rc.Claim(
            claim_id=claim.claim_id,
            encounter_id=claim.encounter_id,
            claim_type=rc.ClaimType(claim.claim_type),
            frequency=rc.ClaimFrequency(claim.frequency),
            facility_code=claim.facility_code,
            billing_provider_npi=claim.billing_provider_npi,
            payer_id=claim.payer_id,
            total_charge_cents=claim.total_charge_cents,
            statement_from=dt.date.fromisoformat(claim.statement_from) if claim.statement_from else None,
            statement_to=dt.date.fromisoformat(claim.statement_to) if claim.statement_to else None,
            diagnosis_codes=tuple(claim.diagnosis_codes),
            drg=claim.drg,
            payer_claim_control_number=claim.payer_claim_control_number,
            lines=tuple(
                rc.ClaimLine(
                    line_number=line.line_number,
                    revenue_code=line.revenue_code,
                    procedure_code=line.procedure_code,
                    units=line.units,
                    charge_cents=line.charge_cents,
                    service_date=dt.date.fromisoformat(line.service_date) if line.service_date else None,
                    ndc_code=line.ndc_code,
                )
                for line in claim.lines
            ),
        ),
        billing_provider=rc.ProviderParty(
            npi=provider.npi,
            name=provider.name,
            tax_id=provider.tax_id,
            taxonomy_code=provider.taxonomy_code,
            address=_address(provider),
        ),
        payer=rc.PayerParty(payer_id=submission.payer.payer_id, name=submission.payer.name),
        subscriber=_canonical_person(submission.subscriber),
        relationship=rc.SubscriberRelationship(submission.relationship),
        patient=_canonical_person(submission.patient) if submission.HasField("patient") else None,
        group_number=submission.group_number,
        priority=submission.priority,
        attending_npi=submission.attending_npi,
    )


def _check_contract(submission: billing_pb2.ClaimSubmission, key: str) -> None:
    """Refuse a claim the canonical contract would not accept, naming where, never a value."""
    try:
        canonical_submission(submission)
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'claim'} ({error['type']})"
            for error in exc.errors()
        )
        _refuse("BILLING-CLAIM-INVALID", f"the claim breaks the canonical contract at {where}", key)


def _add_event(
    session: Session, claim_id: str, event: str, status: str, when: dt.datetime, **details: str
) -> None:
    """Append one step to a claim's history."""
    last = session.scalar(select(func.max(ClaimEventRow.sequence)).where(ClaimEventRow.claim_id == claim_id))
    session.add(
        ClaimEventRow(
            claim_id=claim_id,
            sequence=(last or 0) + 1,
            event=event,
            status=status,
            occurred_at=when,
            interchange_control_number=details.get("interchange", ""),
            group_control_number=details.get("group", ""),
            transaction_set_control_number=details.get("transaction_set", ""),
            ack_code=details.get("ack_code", ""),
            error_text=details.get("error_text", ""),
            remittance_id=details.get("remittance_id", ""),
        )
    )


def create_claims(
    session: Session,
    request: billing_pb2.CreateClaimsRequest,
    digest: str,
    now: dt.datetime,
    masterdata: MasterData,
) -> billing_pb2.CreateClaimsResponse:
    """Build, rebuild or replace the claims of one account; see the module and proto for the rules."""
    key = request.idempotency_key
    seen = _replayed(session, "CreateClaims", key, digest, billing_pb2.CreateClaimsResponse)
    if seen is not None:
        seen.status = ClaimsStatus.DUPLICATE
        return seen
    basis = _basis(session, request.encounter_id, key)
    if len(basis.account.account_id) + 1 > CLAIM_ID_MAX_CHARS:
        _refuse(
            "BILLING-CLAIM-ID-TOO-LONG",
            f"the account id makes a claim id longer than CLM01's {CLAIM_ID_MAX_CHARS} characters",
            key,
        )
    data = masterdata()
    facility = data.facility(basis.account.facility)
    if facility is None or not facility.can_bill:
        _refuse(
            "BILLING-CLAIM-FACILITY-CANNOT-BILL",
            f"facility {basis.account.facility} has no billing identity (NPI, tax id, address) in master "
            f"data {data.version}",
            key,
        )
    coverage = basis.coverage
    if facility.eligibility_policy is EligibilityPolicy.HOLD_CLAIMS and (
        coverage.follow_up or coverage.eligibility_status != rc.EligibilityStatus.ACTIVE.value
    ):
        why = coverage.follow_up_reason or f"eligibility {coverage.eligibility_status}"
        _refuse(
            "BILLING-CLAIM-ELIGIBILITY-PENDING",
            f"facility {facility.code} holds claims until a 271 confirms the coverage active ({why}); "
            "replay once it does",
            key,
        )
    payer = next((p for p in data.payers if p.payer_id == basis.coverage.payer_id), None)
    payer_name = basis.coverage.payer_name or (payer.name if payer is not None else "")
    if not payer_name:
        _refuse(
            "BILLING-CLAIM-UNKNOWN-PAYER", "the coverage's payer has no name, nor one in master data", key
        )
    payer_type = payer.payer_type.value if payer is not None else UNKNOWN_PAYER_TYPE
    response = billing_pb2.CreateClaimsResponse(status=ClaimsStatus.DUPLICATE)
    for kind in (rc.ClaimType.INSTITUTIONAL, rc.ClaimType.PROFESSIONAL):
        lines = _claim_lines(basis, kind, data, key)
        if not lines:
            continue
        built = _submission(basis, kind, lines, facility, payer_name)
        _check_contract(built, key)
        result = _store_claim(session, built, facility, payer_type, now, key)
        if result.status != ResultStatus.UNCHANGED:
            response.status = ClaimsStatus.APPLIED
        response.claims.append(result)
    if not response.claims:
        _refuse("BILLING-CLAIM-NO-CHARGES", "the account's charges net to zero", key)
    _remember(session, "CreateClaims", key, digest, response, now)
    return response


def _store_claim(
    session: Session,
    built: billing_pb2.ClaimSubmission,
    facility: Facility,
    payer_type: str,
    now: dt.datetime,
    key: str,
) -> billing_pb2.ClaimResult:
    """Create the claim, leave it as it is, rebuild it in place or replace it (frequency 7)."""
    basis_digest = fingerprint(built)
    claim_id = built.claim.claim_id
    row = session.get(ClaimRow, claim_id, with_for_update=True)
    if row is not None and row.basis_digest == basis_digest:
        stored = billing_pb2.ClaimSubmission.FromString(row.submission)
        return billing_pb2.ClaimResult(
            status=ResultStatus.UNCHANGED, submission=stored, version=row.version, claim_status=row.status
        )
    if row is None:
        status, event = ResultStatus.CREATED, "CREATED"
        row = ClaimRow(
            claim_id=claim_id,
            encounter_id=built.claim.encounter_id,
            claim_type=built.claim.claim_type,
            version=0,
            paid_cents=0,
            adjusted_cents=0,
            patient_responsibility_cents=0,
            payer_claim_control_number="",
            sent_interchange="",
            sent_group="",
            sent_set="",
            created_at=now,
        )
        session.add(row)
    elif row.status in ClaimLifecycle.UNSENT:
        status, event = ResultStatus.REBUILT, "REBUILT"
        # A replacement not sent yet stays a replacement of the payer's claim.
        earlier = billing_pb2.ClaimSubmission.FromString(row.submission).claim
        built.claim.frequency = earlier.frequency
        built.claim.payer_claim_control_number = earlier.payer_claim_control_number
    else:
        if not row.payer_claim_control_number:
            _refuse(
                "BILLING-CLAIM-AWAITING-ADJUDICATION",
                f"the {row.claim_type} claim was sent and changed since, but no 835 has named the payer's "
                "claim control number a replacement (frequency 7, REF*F8) needs; retry after its 835",
                key,
            )
        status, event = ResultStatus.REPLACED, "REPLACED"
        built.claim.frequency = rc.ClaimFrequency.REPLACEMENT.value
        built.claim.payer_claim_control_number = row.payer_claim_control_number
    _check_contract(built, key)
    row.frequency = built.claim.frequency
    row.status = ClaimLifecycle.CREATED
    row.version += 1
    row.facility = facility.code
    row.legal_entity = facility.legal_entity
    row.billing_npi = facility.npi
    row.payer_id = built.claim.payer_id
    row.payer_type = payer_type
    row.total_charge_cents = built.claim.total_charge_cents
    row.basis_digest = basis_digest
    row.submission = built.SerializeToString(deterministic=True)
    row.updated_at = now
    session.flush()
    _add_event(session, claim_id, event, row.status, now)
    return billing_pb2.ClaimResult(
        status=status, submission=built, version=row.version, claim_status=row.status
    )


# ---------------------------------------------------------------------------------------------------
# UpdateClaimStatus


def validate_status_update(request: billing_pb2.UpdateClaimStatusRequest) -> None:
    """Refuse an UpdateClaimStatus request that breaks the contract, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if not request.claim_id:
        raise invalid_request("claim_id", "is empty", request_id=key)
    if request.event not in ClaimLifecycle.TRANSITIONS:
        raise invalid_request("event", "must be SENT, ACCEPTED, ACCEPTED_WITH_ERRORS, REJECTED or "
                              "INTERCHANGE_REJECTED", request_id=key)  # fmt: skip
    if request.event == Event.SENT:
        names = ("interchange_control_number", "group_control_number", "transaction_set_control_number")
        _required(request, names, key)
    if not request.HasField("occurred_at"):
        raise invalid_request("occurred_at", "is missing", request_id=key)
    request_datetime(request, "occurred_at", request_id=key)


def update_claim_status(
    session: Session, request: billing_pb2.UpdateClaimStatusRequest, digest: str, now: dt.datetime
) -> billing_pb2.UpdateClaimStatusResponse:
    """Apply one lifecycle event, refusing one the claim's status cannot take."""
    key = request.idempotency_key
    seen = _replayed(session, "UpdateClaimStatus", key, digest, billing_pb2.UpdateClaimStatusResponse)
    if seen is not None:
        seen.status = UpdateStatus.DUPLICATE
        return seen
    row = session.get(ClaimRow, request.claim_id, with_for_update=True)
    if row is None:
        _refuse("BILLING-CLAIM-UNKNOWN", "billing built no claim with that claim id", key)
    allowed, target = ClaimLifecycle.TRANSITIONS[request.event]
    event = Event.Name(request.event)
    if row.status not in allowed:
        _refuse("BILLING-CLAIM-TRANSITION", f"a {row.status} claim cannot take {event}", key)
    if request.event == Event.SENT:
        row.sent_interchange = request.interchange_control_number
        row.sent_group = request.group_control_number
        row.sent_set = request.transaction_set_control_number
    else:
        # An acknowledgment names the 837 it answers: it must be the one that last carried the claim.
        sent = {
            "interchange_control_number": row.sent_interchange,
            "group_control_number": row.sent_group,
            "transaction_set_control_number": row.sent_set,
        }
        for name, value in sent.items():
            given = getattr(request, name)
            if given and given != value:
                _refuse(
                    "BILLING-CLAIM-ACK-MISMATCH",
                    f"{event} names {name} {given}, but the claim was last sent under {value}",
                    key,
                )
    row.status = target
    row.updated_at = now
    _add_event(
        session,
        row.claim_id,
        event,
        target,
        request_datetime(request, "occurred_at"),
        interchange=request.interchange_control_number,
        group=request.group_control_number,
        transaction_set=request.transaction_set_control_number,
        ack_code=request.ack_code,
        error_text=request.error_text,
    )
    response = billing_pb2.UpdateClaimStatusResponse(status=UpdateStatus.APPLIED, claim_status=target)
    _remember(session, "UpdateClaimStatus", key, digest, response, now)
    return response


# ---------------------------------------------------------------------------------------------------
# PostRemittance


def remittance_key(remittance: billing_pb2.Remittance) -> str:
    """The idempotency key of an 835: payer id | TRN02 (canonical Remittance.key)."""
    return f"{remittance.payer_id}|{remittance.trace_number}"


def _validate_adjustments(adjustments: Sequence[billing_pb2.Adjustment], where: str, key: str) -> None:
    for index, adjustment in enumerate(adjustments):
        at = f"{where}.adjustments[{index}]"
        if adjustment.group not in _GROUPS:
            raise invalid_request(f"{at}.group", "must be CO, PR, OA, PI or CR", request_id=key)
        if not adjustment.reason_code:
            raise invalid_request(f"{at}.reason_code", "is empty", request_id=key)
        _bounded(adjustment.amount_cents, f"{at}.amount_cents", key)
        if adjustment.HasField("quantity"):
            _bounded(adjustment.quantity, f"{at}.quantity", key, bound=MAX_QUANTITY, unit="units")


def validate_remittance(request: billing_pb2.PostRemittanceRequest) -> None:
    """Refuse a PostRemittance request that breaks the contract, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if not request.HasField("remittance"):
        raise invalid_request("remittance", "is missing", request_id=key)
    remittance = request.remittance
    _required(remittance, ("payer_id", "trace_number", "payment_date"), key, "remittance.")
    if key != remittance_key(remittance):
        raise invalid_request("idempotency_key", "must be remittance.payer_id|remittance.trace_number",
                              request_id=key)  # fmt: skip
    if remittance.payment_method not in _PAYMENT_METHODS:
        raise invalid_request(
            "remittance.payment_method", "must be ACH, CHK, FWT, BOP or NON", request_id=key
        )
    request_date(remittance.payment_date, "remittance.payment_date", key)
    if remittance.payee_npi and not _digits(remittance.payee_npi, (10,)):
        raise invalid_request("remittance.payee_npi", "is not a 10-digit NPI", request_id=key)
    if remittance.total_paid_cents < 0:
        raise invalid_request("remittance.total_paid_cents", "cannot be negative", request_id=key)
    _bounded(remittance.total_paid_cents, "remittance.total_paid_cents", key, bound=MAX_CALL_CENTS)
    items = len(remittance.claims) + len(remittance.provider_adjustments)
    if items > MAX_ITEMS_PER_CALL:
        raise invalid_request(
            "remittance.claims", f"holds more than {MAX_ITEMS_PER_CALL} items", request_id=key
        )
    moved = sum(abs(claim.charge_cents) + abs(claim.paid_cents) for claim in remittance.claims)
    if moved > MAX_CALL_CENTS:
        raise invalid_request(
            "remittance.claims",
            f"CLP03 and CLP04 summed {beyond(MAX_CALL_CENTS, 'cents per call')}",
            request_id=key,
        )
    for index, claim in enumerate(remittance.claims):
        where = f"remittance.claims[{index}]"
        if not claim.claim_id:
            raise invalid_request(f"{where}.claim_id", "is empty", request_id=key)
        if claim.status not in _CLP_STATUSES:
            raise invalid_request(f"{where}.status", "is not a CLP02 claim status code", request_id=key)
        for name in ("charge_cents", "paid_cents", "patient_responsibility_cents"):
            _bounded(getattr(claim, name), f"{where}.{name}", key)
        _validate_adjustments(claim.adjustments, where, key)
        for number, line in enumerate(claim.lines):
            at = f"{where}.lines[{number}]"
            _bounded(line.charge_cents, f"{at}.charge_cents", key)
            _bounded(line.paid_cents, f"{at}.paid_cents", key)
            request_date(line.service_date, f"{at}.service_date", key)
            _validate_adjustments(line.adjustments, at, key)
    for index, plb in enumerate(remittance.provider_adjustments):
        where = f"remittance.provider_adjustments[{index}]"
        if not plb.reason_code:
            raise invalid_request(f"{where}.reason_code", "is empty", request_id=key)
        _bounded(plb.amount_cents, f"{where}.amount_cents", key)


def _all_adjustments(claim: billing_pb2.RemittanceClaim) -> list[tuple[int, int, billing_pb2.Adjustment]]:
    """Every CAS of a CLP as (line, position, adjustment): line 0 is claim level."""
    found = [(0, position, adjustment) for position, adjustment in enumerate(claim.adjustments)]
    for number, line in enumerate(claim.lines, start=1):
        found.extend((number, position, adjustment) for position, adjustment in enumerate(line.adjustments))
    return found


def _check_balances(remittance: billing_pb2.Remittance, key: str) -> None:
    """Refuse an 835 whose claims, lines or BPR02 do not balance, with the difference in cents."""
    trace = remittance.trace_number
    for ordinal, claim in enumerate(remittance.claims, start=1):
        for number, line in enumerate(claim.lines, start=1):
            off = line.charge_cents - line.paid_cents - sum(a.amount_cents for a in line.adjustments)
            if off:
                _refuse(
                    "X12-835-UNBALANCED",
                    f"line {number} of claim {ordinal} of 835 trace {trace}: SVC02 - SVC03 - CAS is "
                    f"{off} cents",
                    key,
                )
        off = (
            claim.charge_cents - claim.paid_cents - sum(a.amount_cents for _, _, a in _all_adjustments(claim))
        )
        if off:
            _refuse(
                "X12-835-UNBALANCED",
                f"claim {ordinal} of 835 trace {trace}: CLP03 - CLP04 - CAS is {off} cents",
                key,
            )
    paid = sum(claim.paid_cents for claim in remittance.claims)
    withheld = sum(plb.amount_cents for plb in remittance.provider_adjustments)
    off = remittance.total_paid_cents - (paid - withheld)
    if off:
        _refuse(
            "X12-835-UNBALANCED",
            f"835 trace {trace}: BPR02 differs from sum CLP04 - sum PLB by {off} cents",
            key,
        )
    if remittance.payment_method == rc.PaymentMethod.NO_PAYMENT.value and remittance.total_paid_cents:
        _refuse("X12-835-UNBALANCED", f"835 trace {trace}: BPR04 NON with a payment", key)


@dataclass(slots=True)
class _Bucket:
    """One row of an 835's summary: a facility and payer type."""

    facility: str
    legal_entity: str
    payer_type: str
    claims: int = 0
    paid: int = 0
    groups: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    plb: int = 0

    def message(self) -> billing_pb2.RemittanceSummary:
        adjusted = sum(self.groups.values())
        return billing_pb2.RemittanceSummary(
            facility=self.facility,
            legal_entity=self.legal_entity,
            payer_type=self.payer_type,
            claim_count=self.claims,
            receivable_relieved_cents=self.paid + adjusted,
            paid_cents=self.paid,
            contractual_cents=self.groups["CO"],
            patient_responsibility_cents=self.groups["PR"],
            other_adjustment_cents=sum(self.groups[group] for group in _OTHER_GROUPS),
            provider_adjustment_cents=self.plb,
        )


def _status_after(row: ClaimRow, clp_status: str) -> str:
    """The claim's status after a CLP.

    CLP02 4 denied; CLP02 22 (a reversal) adjusted; else, with a payment, partly paid while the patient owes
    part of it (PR) or some of the billed amount is not settled, paid when the payer settled all of it;
    without a payment, adjusted.
    """
    if clp_status == rc.ClaimStatus.DENIED.value:
        return ClaimLifecycle.DENIED
    if clp_status == rc.ClaimStatus.REVERSAL.value:
        return ClaimLifecycle.ADJUSTED
    if row.paid_cents <= 0:
        return ClaimLifecycle.ADJUSTED
    outstanding = row.total_charge_cents - row.paid_cents - row.adjusted_cents
    if outstanding > 0 or row.patient_responsibility_cents > 0:
        return ClaimLifecycle.PARTLY_PAID
    return ClaimLifecycle.PAID


def _payments_so_far(session: Session, claim_ids: Sequence[str]) -> set[str]:
    return set(
        session.scalars(select(ClaimPaymentRow.claim_id).where(ClaimPaymentRow.claim_id.in_(claim_ids)))
    )


def post_remittance(
    session: Session,
    request: billing_pb2.PostRemittanceRequest,
    digest: str,
    now: dt.datetime,
    masterdata: MasterData,
) -> billing_pb2.PostRemittanceResponse:
    """Post one 835 all or nothing, or refuse it under its X12-835-* rule."""
    key, remittance = request.idempotency_key, request.remittance
    trace = remittance.trace_number
    stored = session.scalar(select(RemittanceRow).where(RemittanceRow.remittance_key == key))
    if stored is not None:
        if stored.request_digest != digest:
            _refuse(
                "X12-835-DUPLICATE-TRACE",
                f"835 trace {trace} of this payer was posted before with other content",
                key,
            )
        answer = billing_pb2.PostRemittanceResponse.FromString(stored.response)
        answer.status = RemittanceStatus.DUPLICATE
        return answer
    _check_balances(remittance, key)
    claim_ids = sorted({claim.claim_id for claim in remittance.claims})
    rows = {
        row.claim_id: row
        for row in session.scalars(select(ClaimRow).where(ClaimRow.claim_id.in_(claim_ids)).with_for_update())
    }
    for ordinal, claim in enumerate(remittance.claims, start=1):
        row = rows.get(claim.claim_id)
        if row is None:
            _refuse(
                "X12-835-UNMATCHED-CLAIM",
                f"claim {ordinal} of 835 trace {trace} has no claim in billing",
                key,
            )
        if row.status not in ClaimLifecycle.REMITTABLE:
            _refuse(
                "X12-835-UNMATCHED-CLAIM",
                f"claim {ordinal} of 835 trace {trace} matches a claim that is {row.status}, never sent",
                key,
            )
    remittance_id = "RA-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    paid_before = _payments_so_far(session, claim_ids) if claim_ids else set()
    buckets: dict[tuple[str, str], _Bucket] = {}
    response = billing_pb2.PostRemittanceResponse(status=RemittanceStatus.POSTED, remittance_id=remittance_id)
    for ordinal, claim in enumerate(remittance.claims, start=1):
        row = rows[claim.claim_id]
        adjustments = _all_adjustments(claim)
        if claim.status != rc.ClaimStatus.REVERSAL.value:
            outstanding = row.total_charge_cents - row.paid_cents - row.adjusted_cents
            if claim.paid_cents > outstanding:
                _refuse(
                    "X12-835-OVERPAYMENT",
                    f"claim {ordinal} of 835 trace {trace}: CLP04 exceeds the claim's outstanding balance by "
                    f"{claim.paid_cents - outstanding} cents",
                    key,
                )
            first = claim.claim_id not in paid_before
            if first and claim.paid_cents > 0 and claim.charge_cents != row.total_charge_cents:
                _refuse(
                    "X12-835-OVERPAYMENT",
                    f"claim {ordinal} of 835 trace {trace}: CLP03 differs from the claim's billed amount by "
                    f"{claim.charge_cents - row.total_charge_cents} cents",
                    key,
                )
        paid_before.add(claim.claim_id)
        adjusted = sum(adjustment.amount_cents for _, _, adjustment in adjustments)
        row.paid_cents += claim.paid_cents
        row.adjusted_cents += adjusted
        row.patient_responsibility_cents += sum(a.amount_cents for _, _, a in adjustments if a.group == "PR")
        if claim.payer_claim_control_number:
            row.payer_claim_control_number = claim.payer_claim_control_number
        row.status = _status_after(row, claim.status)
        row.updated_at = now
        session.add(
            ClaimPaymentRow(
                remittance_id=remittance_id,
                ordinal=ordinal,
                claim_id=claim.claim_id,
                clp_status=claim.status,
                charge_cents=claim.charge_cents,
                paid_cents=claim.paid_cents,
                patient_responsibility_cents=claim.patient_responsibility_cents,
                payer_claim_control_number=claim.payer_claim_control_number,
            )
        )
        for line, position, adjustment in adjustments:
            session.add(
                ClaimAdjustmentRow(
                    remittance_id=remittance_id,
                    ordinal=ordinal,
                    line=line,
                    position=position,
                    claim_id=claim.claim_id,
                    group_code=adjustment.group,
                    reason_code=adjustment.reason_code,
                    amount_cents=adjustment.amount_cents,
                    quantity=adjustment.quantity if adjustment.HasField("quantity") else None,
                )
            )
        _add_event(session, claim.claim_id, "REMITTED", row.status, now, remittance_id=remittance_id)
        session.flush()
        bucket = buckets.setdefault(
            (row.facility, row.payer_type), _Bucket(row.facility, row.legal_entity, row.payer_type)
        )
        bucket.claims += 1
        bucket.paid += claim.paid_cents
        for _, _, adjustment in adjustments:
            bucket.groups[adjustment.group] += adjustment.amount_cents
        if claim.status == rc.ClaimStatus.DENIED.value:
            response.denied_count += 1
        elif claim.status == rc.ClaimStatus.REVERSAL.value:
            response.reversal_count += 1
    plb_total = sum(plb.amount_cents for plb in remittance.provider_adjustments)
    if remittance.provider_adjustments:
        _plb_bucket(remittance, rows, buckets, masterdata, key).plb += plb_total
    for position, plb in enumerate(remittance.provider_adjustments):
        session.add(
            ProviderAdjustmentRow(
                remittance_id=remittance_id,
                position=position,
                reason_code=plb.reason_code,
                reference=plb.reference,
                amount_cents=plb.amount_cents,
            )
        )
    response.summaries.extend(bucket.message() for _, bucket in sorted(buckets.items()))
    session.add(
        RemittanceRow(
            remittance_id=remittance_id,
            remittance_key=key,
            payer_id=remittance.payer_id,
            trace_number=trace,
            payment_date=dt.date.fromisoformat(remittance.payment_date),
            total_paid_cents=remittance.total_paid_cents,
            provider_adjustment_cents=plb_total,
            request_digest=digest,
            response=response.SerializeToString(deterministic=True),
            posted_at=now,
        )
    )
    session.flush()
    return response


def _plb_bucket(
    remittance: billing_pb2.Remittance,
    rows: dict[str, ClaimRow],
    buckets: dict[tuple[str, str], _Bucket],
    masterdata: MasterData,
    key: str,
) -> _Bucket:
    """The summary row that carries the 835's PLB total: the payee NPI's facility, else the first claim's.

    Within the facility, the row of its first claim in the 835. An 835 with PLB only names its facility by
    the payee NPI in master data (and its payer type by the payer's), or is refused.
    """
    ordered = [rows[claim.claim_id] for claim in remittance.claims]
    payee = next(
        (row for row in ordered if remittance.payee_npi and row.billing_npi == remittance.payee_npi), None
    )
    chosen = payee or (ordered[0] if ordered else None)
    if chosen is not None:
        return buckets[(chosen.facility, chosen.payer_type)]
    data = masterdata()
    facility = next(
        (f for f in data.facilities if remittance.payee_npi and f.npi == remittance.payee_npi), None
    )
    if facility is None:
        _refuse(
            "X12-835-UNMATCHED-PAYEE",
            f"835 trace {remittance.trace_number} has PLB adjustments only and its payee NPI is no "
            f"facility's in master data {data.version}",
            key,
        )
    payer = next((p for p in data.payers if p.payer_id == remittance.payer_id), None)
    payer_type = payer.payer_type.value if payer is not None else UNKNOWN_PAYER_TYPE
    return buckets.setdefault(
        (facility.code, payer_type), _Bucket(facility.code, facility.legal_entity, payer_type)
    )


# ---------------------------------------------------------------------------------------------------
# GetClaimList, GetClaim, totals


def validate_list(request: billing_pb2.ClaimListRequest) -> None:
    """Refuse a GetClaimList request with an unknown status or a limit out of range."""
    if request.status and request.status not in ClaimLifecycle.ALL:
        raise invalid_request("status", f"must be one of {', '.join(ClaimLifecycle.ALL)}")
    if not 0 <= request.limit <= MAX_ITEMS_PER_CALL:
        raise invalid_request("limit", f"must be 0 to {MAX_ITEMS_PER_CALL}")


def _summary(row: ClaimRow) -> billing_pb2.ClaimSummary:
    summary = billing_pb2.ClaimSummary(
        claim_id=row.claim_id,
        encounter_id=row.encounter_id,
        claim_type=row.claim_type,
        status=row.status,
        frequency=row.frequency,
        payer_id=row.payer_id,
        facility=row.facility,
        total_charge_cents=row.total_charge_cents,
        paid_cents=row.paid_cents,
        adjusted_cents=row.adjusted_cents,
        patient_responsibility_cents=row.patient_responsibility_cents,
        outstanding_cents=row.total_charge_cents - row.paid_cents - row.adjusted_cents,
        version=row.version,
    )
    summary.updated_at.FromDatetime(as_utc(row.updated_at))
    return summary


def list_claims(session: Session, request: billing_pb2.ClaimListRequest) -> billing_pb2.ClaimList:
    """Return the claims that pass the filters, most recently changed first."""
    query = select(ClaimRow)
    if request.status:
        query = query.where(ClaimRow.status == request.status)
    if request.encounter_id:
        query = query.where(ClaimRow.encounter_id == request.encounter_id)
    if request.payer_id:
        query = query.where(ClaimRow.payer_id == request.payer_id)
    query = query.order_by(ClaimRow.updated_at.desc(), ClaimRow.claim_id).limit(request.limit or LIST_DEFAULT)
    return billing_pb2.ClaimList(claims=[_summary(row) for row in session.scalars(query)])


def get_claim(session: Session, request: billing_pb2.GetClaimRequest) -> billing_pb2.GetClaimResponse:
    """Return one claim with its submission, history, payments and adjustments."""
    if not request.claim_id:
        raise invalid_request("claim_id", "is empty")
    row = session.get(ClaimRow, request.claim_id)
    if row is None:
        _refuse("BILLING-CLAIM-UNKNOWN", "billing built no claim with that claim id", "")
    response = billing_pb2.GetClaimResponse(
        summary=_summary(row), submission=billing_pb2.ClaimSubmission.FromString(row.submission)
    )
    events = session.scalars(
        select(ClaimEventRow).where(ClaimEventRow.claim_id == row.claim_id).order_by(ClaimEventRow.sequence)
    )
    for event in events:
        item = response.history.add(
            status=event.status,
            event=event.event,
            interchange_control_number=event.interchange_control_number,
            group_control_number=event.group_control_number,
            transaction_set_control_number=event.transaction_set_control_number,
            ack_code=event.ack_code,
            error_text=event.error_text,
            remittance_id=event.remittance_id,
        )
        item.occurred_at.FromDatetime(as_utc(event.occurred_at))
    payments = session.execute(
        select(ClaimPaymentRow, RemittanceRow)
        .join(RemittanceRow, RemittanceRow.remittance_id == ClaimPaymentRow.remittance_id)
        .where(ClaimPaymentRow.claim_id == row.claim_id)
        .order_by(RemittanceRow.posted_at, ClaimPaymentRow.ordinal)
    )
    for payment, remittance in payments:
        item_payment = response.payments.add(
            remittance_id=payment.remittance_id,
            trace_number=remittance.trace_number,
            payment_date=remittance.payment_date.isoformat(),
            clp_status=payment.clp_status,
            charge_cents=payment.charge_cents,
            paid_cents=payment.paid_cents,
            patient_responsibility_cents=payment.patient_responsibility_cents,
            payer_claim_control_number=payment.payer_claim_control_number,
        )
        adjustments = session.scalars(
            select(ClaimAdjustmentRow)
            .where(
                ClaimAdjustmentRow.remittance_id == payment.remittance_id,
                ClaimAdjustmentRow.ordinal == payment.ordinal,
            )
            .order_by(ClaimAdjustmentRow.line, ClaimAdjustmentRow.position)
        )
        for adjustment in adjustments:
            added = item_payment.adjustments.add(
                group=adjustment.group_code,
                reason_code=adjustment.reason_code,
                amount_cents=adjustment.amount_cents,
            )
            if adjustment.quantity is not None:
                added.quantity = adjustment.quantity
    return response


def _sum(session: Session, column: ColumnExpressionArgument[int], what: str) -> int:
    """Return the exact SUM of an integer column (foundation.sql.total) as an int64."""
    high, low = session.execute(select(*total(column))).one()
    return int64(joined(high, low), what)


def revenue_cycle_totals(session: Session) -> billing_pb2.RevenueCycleTotals:
    """Compute the revenue-cycle reconciliation totals in the caller's snapshot."""
    totals = billing_pb2.RevenueCycleTotals(
        coverage_count=session.scalar(select(func.count()).select_from(CoverageRow)) or 0,
        eligibility_follow_up_count=session.scalar(
            select(func.count()).select_from(CoverageRow).where(CoverageRow.follow_up)
        )
        or 0,
        claim_count=session.scalar(select(func.count()).select_from(ClaimRow)) or 0,
        remittance_count=session.scalar(select(func.count()).select_from(RemittanceRow)) or 0,
    )
    totals.billed_cents = _sum(session, ClaimRow.total_charge_cents, what="billed_cents")
    totals.paid_cents = _sum(session, ClaimRow.paid_cents, what="paid_cents")
    adjusted = _sum(session, ClaimRow.adjusted_cents, what="adjusted_cents")
    totals.outstanding_cents = totals.billed_cents - totals.paid_cents - adjusted
    by_status = session.execute(
        select(ClaimRow.status, func.count(), *total(ClaimRow.total_charge_cents))
        .group_by(ClaimRow.status)
        .order_by(ClaimRow.status)
    )
    for status, count, high, low in by_status:
        billed = int64(joined(high, low), "billed_cents of a status")
        totals.by_status.add(status=status, claim_count=count, billed_cents=billed)
        if status == ClaimLifecycle.DENIED:
            totals.denied_count, totals.denied_cents = count, billed
    by_group = session.execute(
        select(ClaimAdjustmentRow.group_code, *total(ClaimAdjustmentRow.amount_cents))
        .group_by(ClaimAdjustmentRow.group_code)
        .order_by(ClaimAdjustmentRow.group_code)
    )
    for group, high, low in by_group:
        amount = int64(joined(high, low), "adjustments of a group")
        totals.adjustments.add(group=group, amount_cents=amount)
        if group == "PR":
            totals.patient_responsibility_cents = amount
    totals.provider_adjustment_cents = _sum(
        session, RemittanceRow.provider_adjustment_cents, what="provider_adjustment_cents"
    )
    return totals
