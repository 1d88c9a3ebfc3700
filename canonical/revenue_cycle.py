"""Revenue cycle: coverage and eligibility (270/271), claims (837I/837P) and remittances (835).

Each field says where it comes from: the X12 005010 segment and element (``CLP01``, ``SVC02``, a loop
where the segment alone is ambiguous) and, for coverage, the HL7 v2 IN1 field. X12 amounts are decimal
dollars; the canonical models hold integer cents so every balance below is exact.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import AwareDatetime, Field, model_validator

from canonical.models import CanonicalModel
from canonical.phi import PhiField

# --------------------------------------------------------------------------------------------------
# Coverage and eligibility


class EligibilityStatus(StrEnum):
    """What the payer's 271 said about the coverage (2110C EB01), reduced to what billing acts on."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    UNKNOWN = "unknown"

    @classmethod
    def from_eb01(cls, code: str) -> EligibilityStatus:
        """Map an EB01 eligibility or benefit information code: 1-5 active, 6-8 inactive, else unknown.

        ``I`` (non-covered) and ``U`` (contact the following entity) say nothing about whether the plan is
        in force, so they map to unknown, like an EB01 hcsync does not know.
        """
        code = code.strip().upper()
        if code in {"1", "2", "3", "4", "5"}:
            return cls.ACTIVE
        if code in {"6", "7", "8"}:
            return cls.INACTIVE
        return cls.UNKNOWN


class SubscriberRelationship(StrEnum):
    """The patient's relationship to the subscriber (IN1-17, X12 INS02 / PAT01 individual relationship)."""

    SELF = "self"
    SPOUSE = "spouse"
    CHILD = "child"
    OTHER = "other"

    @classmethod
    def from_x12(cls, code: str) -> SubscriberRelationship:
        """Map an X12 individual relationship code: 18 self, 01 spouse, 19 child, anything else other."""
        return {"18": cls.SELF, "01": cls.SPOUSE, "19": cls.CHILD}.get(code.strip(), cls.OTHER)


class Coverage(CanonicalModel):
    """A patient's insurance for one encounter, with the outcome of the last eligibility check.

    The member id and the subscriber's name and date of birth are PHI. An encounter has at most one
    coverage per priority (1 primary, 2 secondary, 3 tertiary): :attr:`key` is the pair.
    """

    encounter_id: str = Field(min_length=1, description="Encounter the coverage applies to (PV1-19)")
    payer_id: str = Field(
        min_length=1, description="IN1-3.1 insurance company id; 271 loop 2100A NM109 payer identifier"
    )
    plan: str = Field("", description="IN1-2.1 insurance plan id; 271 EB05 plan coverage description")
    member_id: str = PhiField(description="IN1-36 policy number; 271 loop 2100C NM109 member identifier")
    subscriber_family_name: str = PhiField(default="", description="IN1-16.1; 271 loop 2100C NM103")
    subscriber_given_name: str = PhiField(default="", description="IN1-16.2; 271 loop 2100C NM104")
    subscriber_birth_date: dt.date | None = PhiField(
        default=None, description="IN1-18; 271 loop 2100C DMG02 subscriber date of birth"
    )
    group_number: str = Field("", description="IN1-8 group number; 271 loop 2100C REF*6P")
    relationship: SubscriberRelationship = Field(
        SubscriberRelationship.SELF, description="IN1-17 (HL7 table 0063); 271 INS02; 837 SBR02 (18 = self)"
    )
    priority: int = Field(
        1, ge=1, le=3, description="IN1-22 coordination of benefits priority; 837 SBR01 (P=1, S=2, T=3)"
    )
    effective_on: dt.date | None = Field(None, description="IN1-12 plan effective date; 271 DTP*346")
    expires_on: dt.date | None = Field(None, description="IN1-13 plan expiration date; 271 DTP*347")
    eligibility_status: EligibilityStatus = Field(
        EligibilityStatus.UNKNOWN, description="271 loop 2110C EB01, mapped by EligibilityStatus.from_eb01"
    )
    checked_at: AwareDatetime | None = Field(
        None, description="271 BHT04 date and BHT05 time: when the payer answered; None if never checked"
    )

    @property
    def key(self) -> str:
        """The coverage's identity: encounter and priority."""
        return f"{self.encounter_id}|{self.priority}"

    @model_validator(mode="after")
    def _dates_in_order(self) -> Coverage:
        if self.effective_on and self.expires_on and self.expires_on < self.effective_on:
            raise ValueError(
                f"coverage expires on {self.expires_on}, before it starts on {self.effective_on}"
            )
        if self.eligibility_status is not EligibilityStatus.UNKNOWN and self.checked_at is None:
            raise ValueError(
                f"eligibility status {self.eligibility_status.value} needs checked_at (271 BHT04)"
            )
        return self


# --------------------------------------------------------------------------------------------------
# Claims (837I / 837P)


class ClaimType(StrEnum):
    """Which 837 the claim is sent as."""

    INSTITUTIONAL = "institutional"  # 837I, 005010X223A2: hospital (UB-04) claims
    PROFESSIONAL = "professional"  # 837P, 005010X222A1: physician (CMS-1500) claims


class ClaimFrequency(StrEnum):
    """CLM05-3 claim frequency type code (NUBC): whether the claim is new, replaces or voids one."""

    ORIGINAL = "1"
    REPLACEMENT = "7"
    VOID = "8"


class ClaimLine(CanonicalModel):
    """One service line of a claim: loop 2400 (SV2 in an 837I, SV1 in an 837P)."""

    line_number: int = Field(ge=1, description="LX01 assigned number")
    revenue_code: str = Field(
        "", pattern=r"^(\d{4})?$", description="SV201 revenue code (837I, required there); empty in an 837P"
    )
    procedure_code: str = Field(
        "", description="SV202-2 (837I) / SV101-2 (837P) HCPCS or CPT code; required in an 837P"
    )
    modifiers: tuple[str, ...] = Field(
        (), max_length=4, description="SV202-3..6 (837I) / SV101-3..6 (837P) procedure modifiers"
    )
    units: int = Field(gt=0, description="SV205 (837I) / SV104 (837P) service unit count")
    charge_cents: int = Field(ge=0, description="SV203 (837I) / SV102 (837P) line item charge, in cents")
    service_date: dt.date | None = Field(None, description="Loop 2400 DTP*472 service date")
    ndc_code: str = Field("", description="Loop 2410 LIN03 national drug code, when the line is a drug")


class Claim(CanonicalModel):
    """A claim for one encounter, as an 837I (institutional) or 837P (professional) sends it (loop 2300).

    Invariants: CLM02 equals the sum of the lines' charges; an 837I line has a revenue code and an 837P
    line a procedure code; a replacement or void names the payer's claim it replaces (REF*F8).
    """

    claim_id: str = PhiField(min_length=1, max_length=38, description="CLM01 patient control number")
    encounter_id: str = Field(
        min_length=1, description="Encounter the claim bills (PV1-19); not itself an 837 element"
    )
    claim_type: ClaimType = Field(description="837I (institutional) or 837P (professional)")
    frequency: ClaimFrequency = Field(
        ClaimFrequency.ORIGINAL, description="CLM05-3 claim frequency type code"
    )
    facility_code: str = Field(
        "",
        description="CLM05-1: facility type code (837I, first digits of the bill type) or place of service",
    )
    billing_provider_npi: str = Field(
        pattern=r"^\d{10}$", description="Loop 2010AA NM109 (NM108 = XX) billing provider NPI"
    )
    payer_id: str = Field(min_length=1, description="Loop 2010BB NM109 payer identifier")
    total_charge_cents: int = Field(ge=0, description="CLM02 total claim charge amount, in cents")
    statement_from: dt.date | None = Field(
        None, description="DTP*434 statement period start (837I; required there)"
    )
    statement_to: dt.date | None = Field(None, description="DTP*434 statement period end (837I)")
    diagnosis_codes: tuple[str, ...] = Field(
        min_length=1,
        description="HI*ABK principal diagnosis then HI*ABF other diagnoses (ICD-10-CM, without the dot)",
    )
    drg: str = Field("", description="HI*DR diagnosis related group (837I only)")
    payer_claim_control_number: str = Field(
        "", description="REF*F8 payer claim control number of the claim replaced or voided (CLM05-3 7 or 8)"
    )
    lines: tuple[ClaimLine, ...] = Field(min_length=1, description="Loop 2400 service lines")

    @model_validator(mode="after")
    def _consistent(self) -> Claim:
        line_total = sum(line.charge_cents for line in self.lines)
        if line_total != self.total_charge_cents:
            raise ValueError(
                f"claim {self.claim_id}: CLM02 total {self.total_charge_cents} cents is not the sum of its "
                f"lines' charges ({line_total} cents)"
            )
        numbers = [line.line_number for line in self.lines]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"claim {self.claim_id}: LX01 line numbers repeat: {numbers}")
        if self.claim_type is ClaimType.INSTITUTIONAL:
            missing = [line.line_number for line in self.lines if not line.revenue_code]
            if missing:
                raise ValueError(f"837I claim {self.claim_id}: line(s) {missing} have no SV201 revenue code")
            if self.statement_from is None or self.statement_to is None:
                raise ValueError(f"837I claim {self.claim_id} needs its DTP*434 statement period")
        else:
            missing = [line.line_number for line in self.lines if not line.procedure_code]
            if missing:
                raise ValueError(
                    f"837P claim {self.claim_id}: line(s) {missing} have no SV101 procedure code"
                )
            if self.drg:
                raise ValueError(f"837P claim {self.claim_id} cannot carry a DRG (HI*DR is 837I only)")
        if self.statement_from and self.statement_to and self.statement_to < self.statement_from:
            raise ValueError(f"claim {self.claim_id}: statement period ends before it starts")
        if self.frequency is not ClaimFrequency.ORIGINAL and not self.payer_claim_control_number:
            raise ValueError(
                f"claim {self.claim_id}: a {self.frequency.name.lower()} (CLM05-3 {self.frequency.value}) "
                "needs the payer claim control number it replaces (REF*F8)"
            )
        return self


# --------------------------------------------------------------------------------------------------
# Remittance (835)


class AdjustmentGroup(StrEnum):
    """CAS01 claim adjustment group code: who bears the adjusted amount."""

    CONTRACTUAL = "CO"  # contractual obligation: the provider writes it off
    PATIENT_RESPONSIBILITY = "PR"  # deductible, coinsurance, copay: billed to the patient
    OTHER = "OA"  # other adjustment
    PAYER_INITIATED = "PI"  # payer-initiated reduction
    CORRECTION_REVERSAL = "CR"  # correction or reversal of a prior decision


class ClaimStatus(StrEnum):
    """CLP02 claim status code."""

    PRIMARY = "1"
    SECONDARY = "2"
    TERTIARY = "3"
    DENIED = "4"
    PRIMARY_FORWARDED = "19"
    SECONDARY_FORWARDED = "20"
    TERTIARY_FORWARDED = "21"
    REVERSAL = "22"
    NOT_OUR_CLAIM_FORWARDED = "23"
    PREDETERMINATION = "25"


class PaymentMethod(StrEnum):
    """BPR04 payment method code."""

    ACH = "ACH"  # automated clearing house
    CHECK = "CHK"
    FEDWIRE = "FWT"
    FINANCIAL_INSTITUTION_OPTION = "BOP"
    NO_PAYMENT = "NON"


class Adjustment(CanonicalModel):
    """One CAS triplet (reason, amount, quantity): CAS02-04, or CAS05-07 and so on, with CAS01's group."""

    group: AdjustmentGroup = Field(description="CAS01 claim adjustment group code (CAS*CO, CAS*PR...)")
    reason_code: str = Field(min_length=1, description="CAS02 claim adjustment reason code (CARC), e.g. 45")
    amount_cents: int = Field(description="CAS03 adjustment amount in cents; negative restores an amount")
    quantity: int | None = Field(None, description="CAS04 adjustment quantity (units), when sent")


class RemittanceLine(CanonicalModel):
    """One adjudicated service line: loop 2110 (SVC), balanced as SVC02 - SVC03 = sum of its CAS03."""

    procedure_code: str = Field("", description="SVC01-2 adjudicated procedure code (HCPCS, CPT)")
    modifiers: tuple[str, ...] = Field((), max_length=4, description="SVC01-3..6 procedure modifiers")
    revenue_code: str = Field("", description="SVC04 revenue code (or SVC01-2 with qualifier NU)")
    charge_cents: int = Field(description="SVC02 line item charge amount, in cents")
    paid_cents: int = Field(description="SVC03 line item provider payment amount, in cents")
    units: int | None = Field(None, description="SVC05 units of service paid")
    service_date: dt.date | None = Field(None, description="Loop 2110 DTM*472 service date")
    line_control_number: str = Field("", description="REF*6R line item control number (the 837's REF*6R)")
    adjustments: tuple[Adjustment, ...] = Field((), description="Loop 2110 CAS segments")

    @property
    def adjusted_cents(self) -> int:
        """Sum of the line's CAS03 amounts."""
        return sum(adjustment.amount_cents for adjustment in self.adjustments)

    @model_validator(mode="after")
    def _balances(self) -> RemittanceLine:
        if self.charge_cents - self.paid_cents != self.adjusted_cents:
            raise ValueError(
                f"835 line {self.procedure_code or self.revenue_code}: SVC02 {self.charge_cents} - SVC03 "
                f"{self.paid_cents} != sum of CAS03 {self.adjusted_cents} (cents)"
            )
        return self


class RemittanceClaim(CanonicalModel):
    """One claim's adjudication: loop 2100 (CLP) with its claim-level CAS and its service lines.

    It balances as the 835 guide requires: CLP03 - CLP04 = sum of claim-level CAS03 + sum of every line's
    CAS03. CLP05 (patient responsibility) is carried as sent; payers usually make it the sum of the PR
    adjustments, but the guide does not require it, so it is not checked.
    """

    claim_id: str = PhiField(min_length=1, description="CLP01 patient control number (the 837's CLM01)")
    status: ClaimStatus = Field(description="CLP02 claim status code")
    charge_cents: int = Field(
        description="CLP03 total claim charge amount, in cents (negative in a reversal)"
    )
    paid_cents: int = Field(description="CLP04 claim payment amount, in cents")
    patient_responsibility_cents: int = Field(0, description="CLP05 patient responsibility amount, in cents")
    payer_claim_control_number: str = Field("", description="CLP07 payer claim control number")
    adjustments: tuple[Adjustment, ...] = Field((), description="Loop 2100 claim-level CAS segments")
    lines: tuple[RemittanceLine, ...] = Field((), description="Loop 2110 service payment information")

    @property
    def adjusted_cents(self) -> int:
        """Sum of every CAS03 of the claim: claim-level and line-level."""
        claim_level = sum(adjustment.amount_cents for adjustment in self.adjustments)
        return claim_level + sum(line.adjusted_cents for line in self.lines)

    @model_validator(mode="after")
    def _balances(self) -> RemittanceClaim:
        if self.charge_cents - self.paid_cents != self.adjusted_cents:
            raise ValueError(
                f"835 claim {self.claim_id}: CLP03 {self.charge_cents} - CLP04 {self.paid_cents} != sum of "
                f"claim and line CAS03 {self.adjusted_cents} (cents)"
            )
        return self


class ProviderAdjustment(CanonicalModel):
    """One PLB adjustment (reason, reference, amount): not tied to a claim; positive amounts withhold."""

    reason_code: str = Field(min_length=1, description="PLB03-1 adjustment reason code (WO, L6, FB, 72...)")
    reference: str = Field("", description="PLB03-2 provider adjustment identifier")
    amount_cents: int = Field(description="PLB04 provider adjustment amount, in cents")


class Remittance(CanonicalModel):
    """One 835 payment: the check or EFT (BPR, TRN) and the claims it pays.

    It balances as BPR02 = sum of CLP04 - sum of PLB amounts. ``(payer_id, trace_number)`` identifies the
    payment: a repeated 835 with the same pair is the same payment.
    """

    payer_id: str = Field(
        min_length=1, description="Loop 1000A REF*2U payer identification, else TRN03 originating company"
    )
    payer_name: str = Field("", description="Loop 1000A N1*PR N102 payer name")
    payee_npi: str = Field("", pattern=r"^(\d{10})?$", description="Loop 1000B N1*PE N104 (N103 = XX) NPI")
    trace_number: str = Field(min_length=1, description="TRN02 check or EFT trace number")
    payment_method: PaymentMethod = Field(description="BPR04 payment method code")
    payment_date: dt.date = Field(description="BPR16 check issue or EFT effective date")
    total_paid_cents: int = Field(ge=0, description="BPR02 total actual provider payment amount, in cents")
    currency: str = Field("USD", min_length=3, max_length=3, description="CUR02 currency (USD when no CUR)")
    claims: tuple[RemittanceClaim, ...] = Field((), description="Loop 2100 claim payment information")
    provider_adjustments: tuple[ProviderAdjustment, ...] = Field(
        (), description="PLB provider-level adjustments"
    )

    @property
    def key(self) -> str:
        """The payment's identity: payer and TRN02 trace number."""
        return f"{self.payer_id}|{self.trace_number}"

    @model_validator(mode="after")
    def _balances(self) -> Remittance:
        claims_paid = sum(claim.paid_cents for claim in self.claims)
        withheld = sum(adjustment.amount_cents for adjustment in self.provider_adjustments)
        if claims_paid - withheld != self.total_paid_cents:
            raise ValueError(
                f"835 {self.trace_number}: BPR02 {self.total_paid_cents} != sum of CLP04 {claims_paid} - sum "
                f"of PLB {withheld} (cents)"
            )
        if self.payment_method is PaymentMethod.NO_PAYMENT and self.total_paid_cents != 0:
            raise ValueError(
                f"835 {self.trace_number}: BPR04 NON (no payment) with BPR02 {self.total_paid_cents}"
            )
        return self


# --------------------------------------------------------------------------------------------------
# The parties an X12 transaction names, and the eligibility inquiry and answer (270/271)


class Gender(StrEnum):
    """DMG03 gender code (and PID-8 reduced to it): F, M, U."""

    FEMALE = "F"
    MALE = "M"
    UNKNOWN = "U"

    @classmethod
    def from_hl7(cls, code: str) -> Gender:
        """Map PID-8 administrative sex (HL7 table 0001): F and M as they are, anything else U."""
        return {"F": cls.FEMALE, "M": cls.MALE}.get(code.strip().upper(), cls.UNKNOWN)


class PostalAddress(CanonicalModel):
    """An N3/N4 address. A person's is PHI; the model holding it tags the field, not each part."""

    line1: str = Field(min_length=1, description="N301 address line")
    line2: str = Field("", description="N302 second address line")
    city: str = Field(min_length=1, description="N401 city")
    state: str = Field(pattern=r"^[A-Z]{2}$", description="N402 state code")
    postal_code: str = Field(pattern=r"^\d{5}(\d{4})?$", description="N403 ZIP code, 5 or 9 digits")


class ProviderParty(CanonicalModel):
    """A billing or information-receiver provider (loop 2010AA of an 837, 2100B of a 270). Not PHI."""

    npi: str = Field(pattern=r"^\d{10}$", description="NM109 (NM108 = XX) national provider identifier")
    name: str = Field(min_length=1, max_length=60, description="NM103 organisation name")
    tax_id: str = Field("", pattern=r"^(\d{9})?$", description="REF*EI employer identification number")
    taxonomy_code: str = Field("", description="PRV03 provider taxonomy code")
    address: PostalAddress | None = Field(None, description="N3/N4 (an 837 billing provider needs one)")


class PayerParty(CanonicalModel):
    """The payer a transaction goes to or comes from (loop 2010BB of an 837, 2100A of a 270/271)."""

    payer_id: str = Field(min_length=2, max_length=80, description="NM109 (NM108 = PI) payer identifier")
    name: str = Field(min_length=1, max_length=60, description="NM103 payer name")


class Person(CanonicalModel):
    """A subscriber or patient as X12 names them (NM1*IL / NM1*QC, N3/N4, DMG). Every part is PHI."""

    member_id: str = PhiField(
        default="", description="NM109 (NM108 = MI) member identifier; empty for a patient"
    )
    family_name: str = PhiField(description="NM103 last name")
    given_name: str = PhiField(default="", description="NM104 first name")
    birth_date: dt.date | None = PhiField(default=None, description="DMG02 date of birth (DMG01 = D8)")
    gender: Gender = Field(Gender.UNKNOWN, description="DMG03 gender code")
    address: PostalAddress | None = PhiField(default=None, description="N3/N4 address")


class ClaimSubmission(CanonicalModel):
    """What an 837 says besides the claim: who bills, who pays, who is insured and who was treated.

    The patient is the subscriber when ``coverage_relationship`` is self; otherwise ``patient`` names the
    dependent (loop 2000C). The subscriber's group number and priority come from the coverage.
    """

    claim: Claim
    billing_provider: ProviderParty = Field(description="Loop 2010AA billing provider")
    payer: PayerParty = Field(description="Loop 2010BB payer")
    subscriber: Person = Field(description="Loop 2010BA subscriber")
    relationship: SubscriberRelationship = Field(
        SubscriberRelationship.SELF, description="SBR02 (18 self) or PAT01: the patient's relationship"
    )
    patient: Person | None = Field(None, description="Loop 2010CA patient, when not the subscriber")
    group_number: str = Field("", description="SBR03 subscriber group or policy number")
    priority: int = Field(1, ge=1, le=3, description="SBR01 payer responsibility (1 P, 2 S, 3 T)")
    attending_npi: str = Field("", pattern=r"^(\d{10})?$", description="Loop 2310A NM109 attending NPI")

    @model_validator(mode="after")
    def _patient_when_dependent(self) -> ClaimSubmission:
        if self.relationship is not SubscriberRelationship.SELF and self.patient is None:
            raise ValueError(
                f"claim {self.claim.claim_id}: the patient is the subscriber's {self.relationship.value}, "
                "so loop 2000C needs the patient"
            )
        return self


class EligibilityInquiry(CanonicalModel):
    """A 270 (005010X279A1) for one subscriber: is the coverage in force, and with which benefits.

    ``trace_number`` (TRN02 of loop 2000C) is how the 271 is matched back to the encounter and priority it
    was asked for; hcsync makes it deterministic from that pair.
    """

    trace_number: str = Field(min_length=1, max_length=50, description="Loop 2000C TRN02 trace number")
    encounter_id: str = Field(
        "", description="Encounter the inquiry is for (PV1-19); not itself a 270 element, empty when read"
    )
    payer: PayerParty = Field(description="Loop 2100A information source")
    provider: ProviderParty = Field(description="Loop 2100B information receiver")
    subscriber: Person = Field(description="Loop 2100C subscriber")
    patient: Person | None = Field(
        None, description="Loop 2100D dependent, when the inquiry is about a subscriber's dependent"
    )
    service_type_codes: tuple[str, ...] = Field(
        ("30",), min_length=1, description="EQ01 service type codes (30: health benefit plan coverage)"
    )
    inquired_on: dt.date = Field(description="BHT04 date of the inquiry")


class Benefit(CanonicalModel):
    """One EB segment of a 271 (loop 2110C): what the plan covers, or what the patient owes."""

    code: str = Field(min_length=1, description="EB01 eligibility or benefit information code")
    coverage_level: str = Field("", description="EB02 coverage level code (IND, FAM...)")
    service_type_codes: tuple[str, ...] = Field((), description="EB03 service type codes (repeats)")
    insurance_type: str = Field("", description="EB04 insurance type code")
    plan_description: str = Field("", description="EB05 plan coverage description")
    period: str = Field("", description="EB06 time period qualifier")
    amount_cents: int | None = Field(None, description="EB07 monetary amount, in cents")
    percent: str = Field("", description="EB08 percentage as a decimal fraction (0.2 for 20 %)")
    in_network: str = Field("", description="EB12 in plan network indicator (Y, N, W)")


class EligibilityResponse(CanonicalModel):
    """A 271 answer for one subscriber: the coverage status, the plan and a summary of its benefits.

    ``status`` comes from the first EB segment with an active or inactive code (EligibilityStatus.from_eb01);
    a 271 that rejects the inquiry (AAA with AAA01 = N) carries the reason in ``rejection_reason``.
    """

    trace_number: str = Field(
        min_length=1, description="Loop 2000C TRN02: the trace number of the 270 it answers"
    )
    payer: PayerParty = Field(description="Loop 2100A information source")
    provider_npi: str = Field("", pattern=r"^(\d{10})?$", description="Loop 2100B NM109 receiver NPI")
    subscriber: Person = Field(description="Loop 2100C subscriber, as the payer knows them")
    patient: Person | None = Field(
        None, description="Loop 2100D dependent, when the answer is about a subscriber's dependent"
    )
    status: EligibilityStatus = Field(description="EB01 of the coverage's benefits, reduced")
    plan: str = Field("", description="EB05 plan coverage description of the active benefit")
    group_number: str = Field("", description="Loop 2100C REF*6P group number")
    effective_on: dt.date | None = Field(None, description="Loop 2100C DTP*346 plan begin")
    expires_on: dt.date | None = Field(None, description="Loop 2100C DTP*347 plan end")
    benefits: tuple[Benefit, ...] = Field((), description="Loop 2110C EB segments")
    rejection_reason: str = Field(
        "", description="AAA03 reject reason code (72 invalid member id, 75 subscriber not found...)"
    )
    answered_at: AwareDatetime = Field(description="BHT04 date and BHT05 time of the answer")


__all__ = [
    "Adjustment",
    "AdjustmentGroup",
    "Benefit",
    "Claim",
    "ClaimFrequency",
    "ClaimLine",
    "ClaimStatus",
    "ClaimSubmission",
    "ClaimType",
    "Coverage",
    "EligibilityInquiry",
    "EligibilityResponse",
    "EligibilityStatus",
    "Gender",
    "PayerParty",
    "PaymentMethod",
    "Person",
    "PostalAddress",
    "ProviderAdjustment",
    "ProviderParty",
    "Remittance",
    "RemittanceClaim",
    "RemittanceLine",
    "SubscriberRelationship",
]
