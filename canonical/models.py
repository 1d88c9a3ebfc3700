"""Canonical business objects: patient, encounter, charge, coding, medication, inventory and ledger lines.

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
    COMMERCIAL = "C"
    NOT_APPLICABLE = "N"
    UNKNOWN = "U"


class EncounterStatus(StrEnum):
    """Where an encounter is in its life; the order of the members is the order of precedence.

    The encounter agent derives the status from the latest time of each status event it has seen
    (streams.encounter_state), so the result does not depend on the order events are processed in.
    """

    PREADMITTED = "preadmitted"
    REGISTERED = "registered"
    ADMITTED = "admitted"
    DISCHARGED = "discharged"
    CLOSED = "closed"
    CANCELLED = "cancelled"

    @property
    def rank(self) -> int:
        return list(EncounterStatus).index(self)


class TransactionType(StrEnum):
    """Code values for FT1-6 (HL7 table 0017) that hcsync posts."""

    CHARGE = "CG"
    CREDIT = "CD"


class MovementType(StrEnum):
    """Direction of an inventory movement: stock issued to a patient, or returned from one."""

    ISSUE = "issue"
    RETURN = "return"


class AdministrationStatus(StrEnum):
    """RXA-20 completion status (HL7 table 0322)."""

    COMPLETE = "CP"
    PARTIAL = "PA"
    REFUSED = "RE"
    NOT_ADMINISTERED = "NA"

    @property
    def consumes(self) -> bool:
        """True when stock was used: a complete or partial administration."""
        return self in (AdministrationStatus.COMPLETE, AdministrationStatus.PARTIAL)


class ActionCode(StrEnum):
    """Action codes of RXA-21, DG1-21 and PR1-20 (HL7 table 0206)."""

    ADD = "A"
    DELETE = "D"
    UPDATE = "U"
    NO_CHANGE = "X"


class CodingMode(StrEnum):
    """How a CodingUpdate applies to an encounter's stored coding."""

    REPLACE = "replace"  # the full coding as of the message (BAR^P01/P05/P06): what it leaves out goes
    MERGE = "merge"  # item by item (BAR^P12, DFT): add or update what it lists, delete its D items


class MoveScope(StrEnum):
    """What an ADT^A44/A45 moves to another patient."""

    ACCOUNT = "account"  # ADT^A44: every visit of the prior patient's account (MRG-3)
    VISIT = "visit"  # ADT^A45: one visit (MRG-5)


def stock_value_cents(quantity_milli: int, unit_cost_cents: int) -> int:
    """Return the standard-cost value of a quantity (thousandths of a unit) in cents, rounded half up."""
    return (quantity_milli * unit_cost_cents + 500) // 1000


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
    account_number: str = PhiField(default="", description="PID-18.1 patient account number")
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
    procedure_code: str = Field("", description="FT1-25.1 procedure code (CPT/HCPCS)")
    ndc_code: str = Field("", description="FT1-29.1 NDC code of a drug or supply")
    filler_order_number: str = Field("", description="FT1-23.1 filler order number")
    unit_cost_cents: int | None = Field(None, description="FT1-22 unit cost, in cents")
    is_supply: bool = Field(
        False, description="A stock item: FT1-7.3 names a supply coding system (SUPPLY, SUP, ITEM, IM)"
    )

    @property
    def is_reversal(self) -> bool:
        """True for a credit (CD) or a charge reversed with a negative quantity or amount."""
        return self.amount_cents < 0

    @model_validator(mode="after")
    def _sign_follows_type(self) -> Charge:
        if self.transaction_type is TransactionType.CREDIT and self.amount_cents > 0:
            raise ValueError(f"credit {self.charge_id} must carry a negative amount, got {self.amount_cents}")
        return self


class Diagnosis(CanonicalModel):
    """One DG1 segment: a coded diagnosis of the encounter."""

    sequence: int = Field(ge=0, description="DG1-1 set id (the order the source gave)")
    code: str = Field(min_length=1, description="DG1-3.1 diagnosis code (ICD-10-CM)")
    description: str = Field("", description="DG1-3.2, else DG1-4 description")
    code_system: str = Field("", description="DG1-3.3 coding system (I10, ICD10CM, I9...)")
    diagnosis_type: str = Field("", description="DG1-6 type: A admitting, W working, F final")
    priority: int | None = Field(None, description="DG1-15 priority (1 = principal)")
    diagnosed_at: AwareDatetime | None = Field(None, description="DG1-5 diagnosis date/time")
    identifier: str = Field(
        "", description="DG1-20.1 diagnosis identifier: names the item an action code acts on"
    )
    action: ActionCode | None = Field(
        None, description="DG1-21 action code (A add, D delete, U update, X no change); None when empty"
    )


class Procedure(CanonicalModel):
    """One PR1 segment: a coded procedure performed during the encounter."""

    sequence: int = Field(ge=0, description="PR1-1 set id")
    code: str = Field(min_length=1, description="PR1-3.1 procedure code (CPT, HCPCS, ICD-10-PCS)")
    description: str = Field("", description="PR1-3.2, else PR1-4 description")
    code_system: str = Field("", description="PR1-3.3 coding system")
    performed_at: AwareDatetime | None = Field(None, description="PR1-5 procedure date/time")
    priority: int | None = Field(None, description="PR1-14 priority (1 = principal)")
    surgeon_id: str = Field("", description="PR1-11.1 surgeon id (provider, not patient data)")
    identifier: str = Field(
        "", description="PR1-19.1 procedure identifier: names the item an action code acts on"
    )
    action: ActionCode | None = Field(
        None, description="PR1-20 action code (A add, D delete, U update, X no change); None when empty"
    )


class Drg(CanonicalModel):
    """The DRG segment: the diagnosis-related group assigned to the encounter."""

    code: str = Field(min_length=1, description="DRG-1.1 DRG code")
    description: str = Field("", description="DRG-1.2 description")
    code_system: str = Field("", description="DRG-1.3 grouper (MS-DRG, APR-DRG...)")
    assigned_at: AwareDatetime | None = Field(None, description="DRG-2 assigned date/time")


class CodingUpdate(CanonicalModel):
    """The coding of an encounter as of one message: diagnoses, procedures and DRG.

    In ``replace`` mode it is the full coding (BAR^P01/P05/P06 send the current coding, not a delta) and
    replaces the stored one; in ``merge`` mode (BAR^P12, DFT) it adds, updates or deletes (action D) only
    the items it lists. docs/mappings/bar.md says how billing applies each, in any order.
    """

    encounter_id: str = Field(description="PV1-19 encounter id of the visit coded")
    diagnoses: tuple[Diagnosis, ...] = Field((), description="DG1 segments, in message order")
    procedures: tuple[Procedure, ...] = Field((), description="PR1 segments, in message order")
    drg: Drg | None = Field(None, description="The first DRG segment; None when there is none")
    mode: CodingMode = Field(
        CodingMode.REPLACE, description="replace (BAR^P01/P05/P06) or merge item by item (BAR^P12, DFT)"
    )


class MedicationOrder(CanonicalModel):
    """A pharmacy-verified medication order (RDE^O11: ORC and RXE)."""

    order_id: str = Field(min_length=1, description="ORC-2.1 placer, else ORC-3.1 filler order number")
    order_control: str = Field(description="ORC-1 order control (NW new, XO change, CA cancel, DC stop...)")
    encounter_id: str
    medication_code: str = Field(min_length=1, description="RXE-2.1 give code")
    medication_name: str = Field("", description="RXE-2.2 give code text")
    code_system: str = Field("", description="RXE-2.3 coding system (NDC, RxNorm...)")
    give_amount: str = Field("", description="RXE-3 minimum give amount, as a decimal string")
    give_units: str = Field("", description="RXE-5.1 give units")
    dispense_amount: str = Field("", description="RXE-10 dispense amount, as a decimal string")
    dispense_units: str = Field("", description="RXE-11.1 dispense units")
    ordered_at: AwareDatetime | None = Field(None, description="ORC-9 transaction date/time")
    ordering_provider_id: str = Field("", description="ORC-12.1 ordering provider id")


class MedicationAdministration(CanonicalModel):
    """One RXA segment of RAS^O17: a dose given (or not) to the patient; given doses consume stock."""

    administration_id: str = Field(
        description="Order id '/' RXA-1 give sub-id '/' RXA-2 administration sub-id: one dose in every update"
    )
    order_id: str = Field("", description="ORC-2.1 placer, else ORC-3.1 filler order number")
    encounter_id: str
    medication_code: str = Field(min_length=1, description="RXA-5.1 administered code")
    medication_name: str = Field("", description="RXA-5.2 administered code text")
    code_system: str = Field("", description="RXA-5.3 coding system (NDC, RxNorm, CVX...)")
    amount_milli: int = Field(ge=0, description="RXA-6 administered amount, in thousandths of a unit")
    units: str = Field("", description="RXA-7.1 administered units")
    administered_at: AwareDatetime = Field(description="RXA-3 start of administration")
    status: AdministrationStatus = Field(AdministrationStatus.COMPLETE, description="RXA-20")
    action: ActionCode = Field(ActionCode.ADD, description="RXA-21 action code")
    facility: str = Field(description="RXA-11.4 administered-at facility, else the encounter's")
    department: str = Field("", description="RXA-11.1 administered-at unit, else PV1-3.1")

    @property
    def consumed_milli(self) -> int:
        """Stock used by this dose as the message now states it (0 when refused, not given or deleted)."""
        if self.action is ActionCode.DELETE or not self.status.consumes:
            return 0
        return self.amount_milli


class InventoryMovement(CanonicalModel):
    """Stock moved out of (issue) or back into (return) a cost centre's inventory. It carries no PHI."""

    movement_id: str = Field(description="Deterministic id: the idempotency key of the movement")
    movement_type: MovementType
    item_code: str = Field(min_length=1, description="Item or medication code")
    code_system: str = Field("", description="Coding system of item_code (NDC, RxNorm, LOCAL...)")
    description: str = Field("", description="Item description; never patient data")
    quantity_milli: int = Field(gt=0, description="Quantity in thousandths of a unit, always positive")
    unit: str = Field("", description="Unit of measure")
    facility: str
    cost_centre: str = Field("", description="Consuming cost centre (master data: the department's)")
    legal_entity: str = Field("", description="Legal entity that owns the stock (master data)")
    business_unit: str = Field("", description="Business unit of the consuming facility (master data)")
    inventory_account: str = Field("", description="Item master GL account the stock is held in")
    unit_cost_cents: int | None = Field(None, ge=0, description="Item master standard cost per unit")
    occurred_at: AwareDatetime
    encounter_ref: str = Field(description="Keyed HMAC of the encounter id (pseudonymous)")
    source_event_id: str
    correlation_id: str

    @property
    def value_cents(self) -> int | None:
        """Standard-cost value of the movement, rounded half up to the cent (None when not costed)."""
        return (
            None
            if self.unit_cost_cents is None
            else stock_value_cents(self.quantity_milli, self.unit_cost_cents)
        )


class PatientMerge(CanonicalModel):
    """ADT^A40: the prior patient identifier (MRG) is merged into the surviving one (PID)."""

    surviving: Patient
    prior_mrn: str = PhiField(description="MRG-1.1 prior patient identifier")
    prior_assigning_authority: str = Field("", description="MRG-1.4 authority of the prior identifier")
    prior_account_number: str = PhiField(default="", description="MRG-3.1 prior patient account number")
    prior_visit_number: str = Field("", description="MRG-5.1 prior visit number")


class AccountMove(CanonicalModel):
    """ADT^A44/A45: an account (MRG-3) or a visit (MRG-5) of the prior patient (MRG-1) moves to the PID's."""

    scope: MoveScope = Field(description="account (ADT^A44) or visit (ADT^A45)")
    target: Patient = Field(description="PID: the patient the account or visit moves to")
    prior_mrn: str = PhiField(description="MRG-1.1 prior patient identifier")
    prior_assigning_authority: str = Field("", description="MRG-1.4 authority of the prior identifier")
    prior_account_number: str = PhiField(default="", description="MRG-3.1 prior patient account number")
    prior_visit_number: str = Field("", description="MRG-5.1 prior visit number, else PV1-19.1 (ADT^A45)")
    encounter_id: str = Field(
        "",
        description="ADT^A45: the visit moved, as an encounter id: MRG-5.4, else PV1-19.4, else MSH-4.1, "
        "else PV1-3.4, ':' the prior visit number; empty for ADT^A44",
    )


class JournalLine(CanonicalModel):
    """One ERP general-ledger line. It carries no PHI: the encounter is a keyed pseudonym."""

    line_id: str = Field(description="Deterministic id: the idempotency key of the line")
    journal_date: dt.date = Field(description="Accounting date (the charge's service date)")
    account: str = Field(min_length=1, description="GL account")
    cost_centre: str = Field("", description="Cost centre dimension")
    facility: str = Field("", description="Facility dimension")
    legal_entity: str = Field("", description="Legal entity dimension (the books the line belongs to)")
    business_unit: str = Field("", description="Business unit dimension")
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
