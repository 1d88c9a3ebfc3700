"""Canonical v1 business objects: Patient, Encounter, Charge and JournalLine.

Each field says where it comes from (HL7 v2 numbering). Models are frozen, refuse unknown fields and hold
only timezone-aware datetimes. Money is an integer number of minor units (cents) so sums are exact.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from canonical.phi import PhiField


class CanonicalModel(BaseModel):
    """Base of every canonical model: frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class PatientClass(StrEnum):
    """Code values for PV1-2 (HL7 table 0004) that hcsync distinguishes."""

    INPATIENT = "I"
    OUTPATIENT = "O"
    EMERGENCY = "E"
    PREADMIT = "P"
    RECURRING = "R"
    OBSTETRICS = "B"
    UNKNOWN = "U"


class EncounterStatus(StrEnum):
    """Where an encounter is in its life; the order of the members is the order of progress."""

    REGISTERED = "registered"
    ADMITTED = "admitted"
    DISCHARGED = "discharged"

    @property
    def rank(self) -> int:
        return list(EncounterStatus).index(self)


class TransactionType(StrEnum):
    """Code values for FT1-6 (HL7 table 0017) that hcsync posts."""

    CHARGE = "CG"
    CREDIT = "CD"


class Address(CanonicalModel):
    """A postal address (PID-11); every part is PHI."""

    street: str = PhiField(default="", description="PID-11.1 street address")
    city: str = PhiField(default="", description="PID-11.3 city")
    state: str = PhiField(default="", description="PID-11.4 state or province")
    postal_code: str = PhiField(default="", description="PID-11.5 zip or postal code")


class Patient(CanonicalModel):
    """The person an encounter is for. PHI fields are tagged and never reach the ERP."""

    mrn: str = PhiField(description="PID-3.1 medical record number (first identifier)")
    assigning_authority: str = Field("", description="PID-3.4 authority that issued the MRN")
    family_name: str = PhiField(default="", description="PID-5.1 family name")
    given_name: str = PhiField(default="", description="PID-5.2 given name")
    birth_date: dt.date | None = PhiField(default=None, description="PID-7 date of birth")
    sex: str = Field("", description="PID-8 administrative sex")
    address: Address | None = PhiField(default=None, description="PID-11 address")
    phone: str = PhiField(default="", description="PID-13 home phone")


class Encounter(CanonicalModel):
    """A visit: the unit billing opens an account for and the ERP posts against."""

    encounter_id: str = Field(description="PV1-19.4 (else MSH-4) ':' PV1-19.1 visit number")
    facility: str = Field(description="PV1-3.4 facility, else MSH-4 sending facility")
    department: str = Field("", description="PV1-3.1 point of care (the nursing unit or department)")
    room: str = Field("", description="PV1-3.2 room")
    bed: str = Field("", description="PV1-3.3 bed")
    patient_class: PatientClass = Field(PatientClass.UNKNOWN, description="PV1-2 patient class")
    hospital_service: str = Field("", description="PV1-10 hospital service")
    attending_provider_id: str = Field("", description="PV1-7.1 attending doctor id (NPI)")
    account_number: str = Field("", description="PID-18.1 patient account number")
    admitted_at: AwareDatetime | None = Field(None, description="PV1-44 admit date/time")
    discharged_at: AwareDatetime | None = Field(None, description="PV1-45 discharge date/time")


class Charge(CanonicalModel):
    """One financial transaction line (FT1) against an encounter. Credits carry a negative amount."""

    charge_id: str = Field(description="Deterministic id of the FT1 line (its event id)")
    encounter_id: str = Field(description="Encounter the charge belongs to (PV1-19)")
    transaction_id: str = Field("", description="FT1-2 transaction id")
    transaction_type: TransactionType = Field(description="FT1-6 transaction type")
    charge_code: str = Field(min_length=1, description="FT1-7.1 transaction code")
    code_system: str = Field("", description="FT1-7.3 coding system (CPT, HCPCS, LOCAL...)")
    description: str = Field("", description="FT1-7.2, else FT1-8 transaction description")
    quantity: int = Field(1, description="FT1-10 transaction quantity")
    unit_amount_cents: int | None = Field(None, description="FT1-12 unit amount, in cents")
    amount_cents: int = Field(description="FT1-11 extended amount in cents; negative for a credit")
    currency: str = Field("USD", description="FT1-11.2 currency")
    service_at: AwareDatetime = Field(description="FT1-4 transaction date")
    posted_at: AwareDatetime | None = Field(None, description="FT1-5 posting date")
    facility: str = Field(description="FT1-13.4 else the encounter's facility")
    department: str = Field("", description="FT1-13.1 performing department, else PV1-3.1")

    @model_validator(mode="after")
    def _sign_follows_type(self) -> Charge:
        if self.transaction_type is TransactionType.CREDIT and self.amount_cents > 0:
            raise ValueError(f"credit {self.charge_id} must carry a negative amount, got {self.amount_cents}")
        if self.transaction_type is TransactionType.CHARGE and self.amount_cents < 0:
            raise ValueError(f"charge {self.charge_id} must carry a positive amount, got {self.amount_cents}")
        return self


class JournalLine(CanonicalModel):
    """One ERP general-ledger line. It carries no PHI: the encounter is a keyed pseudonym."""

    line_id: str = Field(description="Deterministic id: the idempotency key of the line")
    journal_date: dt.date = Field(description="Accounting date (the charge's service date)")
    account: str = Field(min_length=1, description="GL account")
    cost_centre: str = Field("", description="Cost centre dimension")
    facility: str = Field("", description="Facility dimension")
    debit_cents: int = Field(0, ge=0)
    credit_cents: int = Field(0, ge=0)
    currency: str = "USD"
    encounter_ref: str = Field(description="Keyed HMAC of the encounter id (pseudonymous)")
    source_event_id: str = Field(description="Canonical event that caused the line (drill-down)")
    correlation_id: str = Field(description="Source message correlation id (drill-down)")
    description: str = Field("", description="Charge code and description; never patient data")

    @model_validator(mode="after")
    def _one_side(self) -> JournalLine:
        if (self.debit_cents > 0) == (self.credit_cents > 0):
            raise ValueError(f"journal line {self.line_id} needs exactly one of debit or credit")
        return self
