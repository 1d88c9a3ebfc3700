"""A synthetic hospital day: HL7 v2.5.1 traffic from three facilities, with its known totals.

The generator is deterministic for a seed. It emits what an EHR interface engine would send for a set of
encounters (registration, optional update and transfer, charges, medication administrations, lab
results, discharge and the coded account), interleaved in time order across encounters, and it records
what a correct pipeline must end up with: message counts, net charges by facility, department and
encounter, the stock consumed by item, and each encounter's insurance. Every name, number and address is
invented; the payers are those of the demo master data (cluster/masterdata/demo/payers.csv).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

from canonical.hl7v2 import Encoding, escape

__all__ = ["Expected", "SyntheticDay", "generate_day", "to_file"]

_ENC = Encoding()
_DEFAULT_DAY = dt.date(2024, 3, 4)
_VERSION = "2.5.1"
# Fractions of encounters given an A08 update and a charge posted before their registration.
_UPDATE_SHARE = 0.20
_LATE_ADMISSION_SHARE = 0.02
_CREDIT_SHARE = 0.03
# Inpatients moved to another unit mid-stay (ADT^A02), encounters with a lab result (ORU^R01, no
# financial effect), and doses the patient refused (RXA-20 RE: recorded, no stock used).
_TRANSFER_SHARE = 0.30
_RESULT_SHARE = 0.30
_REFUSED_SHARE = 0.08
# Insurance (IN1 on the registering ADT and on its A08): encounters with none (self-pay), Original
# Medicare patients with a second payer (a supplement or Medicaid), working-age patients with a second
# plan (a spouse's), and adults insured through their spouse. Children are insured through a parent
# unless Medicaid covers them.
_SELF_PAY_SHARE = 0.10
_MEDICARE_ADVANTAGE_SHARE = 0.25
_PLAN_YEAR_SHARE = 0.30
_MEDICARE_SECONDARY_SHARE = 0.40
_ADULT_SECONDARY_SHARE = 0.10
_SPOUSE_SHARE = 0.20
_MEDICARE_AGE_Y, _ADULT_AGE_Y = 65, 18
# The messages that carry the IN1s: registration (A01 inpatient, A04 others) and the update (A08).
_INSURED_TRIGGERS = frozenset({"A01", "A04", "A08"})


@dataclass(frozen=True, slots=True)
class _Facility:
    code: str
    name: str
    city: str
    state: str
    zip_prefix: str
    departments: tuple[str, ...]


_FACILITIES = (
    _Facility(
        "NMH",
        "North Memorial",
        "Northfield",
        "MN",
        "550",
        ("ED", "ICU", "MEDSURG", "CARD", "RAD", "LAB", "PHARM", "ORTHO", "ONC"),
    ),
    _Facility(
        "SVH",
        "St. Vincent",
        "Saint Paul",
        "MN",
        "551",
        ("ED", "ICU", "MEDSURG", "CARD", "RAD", "LAB", "PHARM", "OBGYN", "ONC"),
    ),
    _Facility(
        "RCH",
        "Riverside Community",
        "Riverside",
        "WI",
        "540",
        ("ED", "MEDSURG", "RAD", "LAB", "PHARM", "ORTHO", "OBGYN"),
    ),
)
_FACILITY_WEIGHTS = (45, 35, 20)

# Where each patient class is cared for (filtered by what the facility has).
_HOME_DEPARTMENTS = {
    "I": ("MEDSURG", "MEDSURG", "ICU", "CARD", "ONC", "ORTHO", "OBGYN"),
    "O": ("RAD", "LAB", "CARD", "ONC", "ORTHO", "OBGYN"),
    "E": ("ED",),
}
_CLASS_WEIGHTS = (("I", 35), ("O", 40), ("E", 25))


@dataclass(frozen=True, slots=True)
class _Item:
    code: str
    description: str
    system: str
    unit_cents: int
    max_quantity: int = 1


# Charge master by performing department; prices are invented but of a realistic order.
_CATALOG: dict[str, tuple[_Item, ...]] = {
    "ED": (
        _Item("12002", "Simple repair of wound, 2.6-7.5 cm", "CPT", 38_500),
        _Item("96374", "IV push, single or initial drug", "CPT", 16_500),
        _Item("51702", "Insertion of temporary bladder catheter", "CPT", 11_000),
    ),
    "ICU": (
        _Item("99291", "Critical care, first 30-74 minutes", "CPT", 68_000),
        _Item("99292", "Critical care, each additional 30 minutes", "CPT", 31_000, 4),
        _Item("31500", "Emergency endotracheal intubation", "CPT", 54_000),
    ),
    "MEDSURG": (
        _Item("99232", "Subsequent hospital care", "CPT", 14_000, 3),
        _Item("97116", "Gait training therapy, 15 min", "CPT", 6_500, 4),
        _Item("94640", "Nebulizer treatment", "CPT", 4_800, 4),
    ),
    "CARD": (
        _Item("93000", "Electrocardiogram, 12-lead with interpretation", "CPT", 8_500),
        _Item("93306", "Echocardiogram, transthoracic, complete", "CPT", 160_000),
        _Item("93017", "Cardiovascular stress test, tracing only", "CPT", 42_000),
    ),
    "RAD": (
        _Item("71046", "X-ray chest, 2 views", "CPT", 18_500),
        _Item("70450", "CT head without contrast", "CPT", 125_000),
        # "&" in free text is written as the HL7 escape \T\, so the parser's unescaping is exercised.
        _Item("74177", "CT abdomen & pelvis with contrast", "CPT", 285_000),
        _Item("73610", "X-ray ankle, 3+ views", "CPT", 16_000),
    ),
    "LAB": (
        _Item("80053", "Comprehensive metabolic panel", "CPT", 9_800),
        _Item("85025", "Complete blood count with automated differential", "CPT", 4_500),
        _Item("36415", "Routine venipuncture", "CPT", 1_500, 3),
        _Item("84484", "Troponin, quantitative", "CPT", 7_200, 3),
        _Item("81001", "Urinalysis with microscopy", "CPT", 2_800),
    ),
    "PHARM": (
        _Item("J1100", "Dexamethasone sodium phosphate, 1 mg", "HCPCS", 350, 10),
        _Item("J2405", "Ondansetron HCl, per 1 mg", "HCPCS", 280, 8),
        _Item("J7030", "Normal saline solution infusion, 1000 cc", "HCPCS", 4_200, 3),
        _Item("J0696", "Ceftriaxone sodium, per 250 mg", "HCPCS", 1_150, 8),
    ),
    "ORTHO": (
        _Item("29125", "Application of short arm splint, static", "CPT", 21_000),
        _Item("27786", "Closed treatment of distal fibular fracture", "CPT", 95_000),
        _Item("20610", "Arthrocentesis, major joint", "CPT", 26_000),
    ),
    "ONC": (
        _Item("96413", "Chemotherapy IV infusion, up to 1 hour", "CPT", 62_000),
        _Item("96415", "Chemotherapy IV infusion, each additional hour", "CPT", 13_500, 3),
        _Item("J9045", "Carboplatin, 50 mg", "HCPCS", 2_100, 8),
    ),
    "OBGYN": (
        _Item("59025", "Fetal non-stress test", "CPT", 15_500),
        _Item("59400", "Routine obstetric care, vaginal delivery", "CPT", 420_000),
        _Item("76815", "Ultrasound, pregnant uterus, limited", "CPT", 24_000),
    ),
}
# The professional charge an encounter opens with: an ED visit level, or initial hospital care.
_ED_VISITS = (
    _Item("99283", "ED visit, moderate severity", "CPT", 45_000),
    _Item("99284", "ED visit, high severity", "CPT", 72_500),
    _Item("99285", "ED visit, high complexity", "CPT", 105_000),
)
_ADMISSION_VISITS = (
    _Item("99222", "Initial hospital care, moderate", "CPT", 31_500),
    _Item("99223", "Initial hospital care, high", "CPT", 46_500),
)
# Stock items: FT1-7.3 "SUPPLY" tells hcsync the line consumes stock as well as charging for it.
_SUPPLIES = (
    _Item("SUP1001", "IV start kit", "SUPPLY", 2_750, 2),
    _Item("SUP1002", "Cast & splint supplies", "SUPPLY", 8_900),
    _Item("SUP1003", "Foley catheter tray", "SUPPLY", 6_800),
    _Item("SUP1004", "Wound dressing, sterile, large", "SUPPLY", 1_275, 4),
)


@dataclass(frozen=True, slots=True)
class _Drug:
    ndc: str
    name: str
    doses: tuple[str, ...]  # RXA-6 amounts as sent (decimal strings)
    unit: str


# Medications given on the units (RAS^O17); administrations consume stock.
_DRUGS = (
    _Drug("00409-4888-01", "Heparin sodium 5,000 units/mL", ("1", "0.5"), "mL"),
    _Drug("00338-0049-04", "Sodium chloride 0.9% 1,000 mL", ("1000", "500"), "mL"),
    _Drug("00054-4297-25", "Ondansetron 4 mg tablet", ("1", "2"), "TAB"),
    _Drug("63323-0262-01", "Ceftriaxone 1 g vial", ("1",), "VIAL"),
    _Drug("00641-6000-25", "Morphine sulfate 2 mg/mL", ("0.5", "1", "1.5"), "mL"),
    _Drug("00904-6723-61", "Acetaminophen 325 mg tablet", ("2", "1"), "TAB"),
)
# Diagnosis (ICD-10-CM) and procedure (CPT) codes the coders assign, with an MS-DRG per department.
_DIAGNOSES = (
    ("I21.4", "Non-ST elevation myocardial infarction"),
    ("J18.9", "Pneumonia, unspecified organism"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("N17.9", "Acute kidney failure, unspecified"),
    ("I50.9", "Heart failure, unspecified"),
    ("S82.61XA", "Displaced fracture of lateral malleolus, initial encounter"),
    ("O80", "Encounter for full-term uncomplicated delivery"),
    ("C34.90", "Malignant neoplasm of unspecified part of bronchus or lung"),
)
_PROCEDURES = (
    ("92928", "Percutaneous coronary stent placement"),
    ("31500", "Emergency endotracheal intubation"),
    ("27786", "Closed treatment of distal fibular fracture"),
    ("36556", "Insertion of central venous catheter"),
)
_DRGS = (
    ("280", "Acute MI, discharged alive with MCC"),
    ("193", "Simple pneumonia with MCC"),
    ("291", "Heart failure with MCC"),
)
_INPATIENT_UNITS = ("ICU", "MEDSURG", "CARD", "ONC", "ORTHO", "OBGYN")
# Which part of the charge master a line is drawn from, by weight.
_LINE_SOURCES = (("home", 40), ("LAB", 25), ("RAD", 12), ("PHARM", 15), ("SUPPLY", 8))

_FAMILY = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Nguyen", "Hill", "Flores", "Green", "O'Brien",
    "Lindqvist", "Nakamura", "Okafor", "Kowalski", "Haddad", "Van der Berg", "Schmidt", "Novak",
)  # fmt: skip
_GIVEN_F = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah", "Karen",
    "Maria", "Aisha", "Mei", "Sofia", "Olga", "Fatima", "Grace", "Chloe", "Hannah", "Zoe",
)  # fmt: skip
_GIVEN_M = (
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas", "Charles",
    "Carlos", "Ahmed", "Wei", "Ivan", "Kwame", "Liam", "Noah", "Ethan", "Lucas", "Mateo",
)  # fmt: skip
_STREETS = (
    "Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Lakeview Rd", "2nd St", "Park Pl", "River Rd",
    "Hillcrest Ave", "Elm St", "Washington Blvd", "Prairie Way",
)  # fmt: skip
# (payer id of the demo master data, IN1-2 plan id, IN1-4 company name, member id prefix, has groups)
_Plan = tuple[str, str, str, str, bool]
_MEDICARE: dict[str, _Plan] = {
    "I": ("MCR-A", "PART-A", "Medicare Part A", "", False),
    "O": ("MCR-B", "PART-B", "Medicare Part B", "", False),
    "E": ("MCR-B", "PART-B", "Medicare Part B", "", False),
}
_MEDICARE_ADVANTAGE: tuple[_Plan, ...] = (
    ("UCARE-MA", "MA-HMOPOS", "UCare Medicare Advantage", "UCM", False),
    ("HP-MSHO", "MSHO", "HealthPartners Minnesota Senior Health Options", "HPS", False),
)
_MEDICAID: dict[str, tuple[_Plan, ...]] = {
    "MN": (
        ("MCD-MN", "MA-FFS", "Minnesota Medical Assistance", "MA", False),
        ("BCBS-MN-PMAP", "PMAP", "Blue Plus Prepaid Medical Assistance", "XZP", False),
    ),
    "WI": (("MCD-WI", "FWDHEALTH", "Wisconsin Medicaid", "WI", False),),
}
_COMMERCIAL: tuple[_Plan, ...] = (
    ("BCBS-MN", "PPO", "Blue Cross and Blue Shield of Minnesota", "XZB", True),
    ("UHC", "CHOICE-PLUS", "UnitedHealthcare", "UHC", True),
    ("AETNA", "OAMC", "Aetna", "W", True),
    ("CIGNA", "OAP", "Cigna Healthcare", "U", True),
    ("HP", "OPEN-ACCESS", "HealthPartners", "HP", True),
    ("MEDICA", "CHOICE-PASSPORT", "Medica", "MED", True),
)
_OTHER_PLANS: tuple[_Plan, ...] = (
    ("TRICARE", "SELECT", "TRICARE North Region", "TRI", False),
    ("VA-CCN", "CCN-R2", "VA Community Care Network", "VA", False),
)
# Working-age coverage by kind (weights): employer plans, Medicaid, military and veterans.
_ADULT_KINDS = (("commercial", 75), ("medicaid", 20), ("other", 5))
_MEMBER_CHARS = "ABCDEFGHJKMNPQRTUVWXY0123456789"

_PROVIDER_FAMILY = (
    "Patel",
    "Chen",
    "Okonkwo",
    "Schneider",
    "Rossi",
    "Kim",
    "Dubois",
    "Singh",
    "Cohen",
    "Ali",
)
_PROVIDER_GIVEN = ("Anita", "Daniel", "Helen", "Marcus", "Priya", "Samuel", "Yuki", "Omar", "Laura", "Victor")


@dataclass(frozen=True, slots=True)
class Expected:
    """What a correct pipeline must end up with after consuming the day."""

    encounters: int
    messages: int
    adt_messages: int
    dft_messages: int
    bar_messages: int
    ras_messages: int
    oru_messages: int
    transfers: int
    administrations: int
    refused_doses: int
    # Stock consumed, thousandths of a unit, by (facility, item code): supplies charged plus doses given.
    stock_milli_by_item: Mapping[tuple[str, str], int]
    charge_lines: int
    credit_lines: int
    updates: int
    # Encounters whose first charge was sent before their registering ADT (the "late admission" case).
    charges_before_admission: int
    # Net cents: the sum of CG extended amounts minus CD credits.
    net_charge_cents: int
    cents_by_facility: Mapping[str, int]
    cents_by_department: Mapping[tuple[str, str], int]
    cents_by_encounter: Mapping[str, int]
    # Payer ids (IN1-3) by priority for each visit number (PV1-19.1); an empty tuple is a self-pay visit.
    payers_by_encounter: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class SyntheticDay:
    """A day of HL7 v2.5.1 messages in send order, with the totals they must produce."""

    day: dt.date
    seed: int
    messages: tuple[bytes, ...]
    expected: Expected


@dataclass(frozen=True, slots=True)
class _Patient:
    mrn: str
    family: str
    given: str
    middle: str
    dob: dt.date
    sex: str
    street: str
    city: str
    state: str
    zip_code: str
    phone: str


@dataclass(frozen=True, slots=True)
class _Provider:
    npi: str
    family: str
    given: str


@dataclass(frozen=True, slots=True)
class _Coverage:
    """One IN1: a plan and who holds it (the insured is the patient when relationship is SEL)."""

    plan: _Plan
    member_id: str
    group_number: str
    relationship: str  # HL7 table 0063: SEL, SPO, CHD
    insured_family: str
    insured_given: str
    insured_dob: dt.date | None
    effective_on: dt.date
    expires_on: dt.date | None


@dataclass(frozen=True, slots=True)
class _Encounter:
    facility: _Facility
    patient: _Patient
    visit: str
    account: str
    patient_class: str
    department: str
    room: str
    bed: str
    attending: _Provider
    registered_at: dt.datetime
    discharged_at: dt.datetime
    coverages: tuple[_Coverage, ...] = ()  # by priority; empty: self-pay


@dataclass(frozen=True, slots=True)
class _Line:
    transaction_id: str
    kind: str  # CG or CD
    item: _Item
    quantity: int
    department: str
    service_at: dt.datetime

    @property
    def cents(self) -> int:
        return self.quantity * self.item.unit_cents


@dataclass(frozen=True, slots=True)
class _Dose:
    drug: _Drug
    amount: str
    status: str  # RXA-20: CP given, RE refused

    @property
    def milli(self) -> int:
        return 0 if self.status == "RE" else int(Decimal(self.amount) * 1000)


@dataclass(frozen=True, slots=True)
class _Event:
    at: dt.datetime
    order: int  # creation order: keeps an encounter's same-second events in their causal order
    encounter: _Encounter
    message_type: str
    trigger: str
    structure: str
    lines: tuple[_Line, ...] = ()
    unit: str = ""  # the unit after an A02 transfer (PV1-3.1) and where a dose was given
    doses: tuple[_Dose, ...] = ()
    order_id: str = ""
    coding: tuple[tuple[str, str, str], ...] = ()  # (segment DG1/PR1/DRG, code, description)


def _ts(when: dt.datetime) -> str:
    """Format an HL7 DTM to the second."""
    return when.strftime("%Y%m%d%H%M%S")


def _money(cents: int) -> str:
    """Format cents as an HL7 decimal with two places."""
    return f"{cents // 100}.{cents % 100:02d}"


def _segment(name: str, fields: Mapping[int, str]) -> str:
    """Build a segment from {field number: value}, empty fields in between."""
    values = [""] * (max(fields) + 1)
    values[0] = name
    for number, value in fields.items():
        values[number] = value
    return "|".join(values)


def _comp(*parts: str) -> str:
    """Join escaped components with the component separator."""
    return "^".join(escape(part, _ENC) for part in parts)


class _Generator:
    """Holds the random source and counters for one generated day."""

    def __init__(self, seed: int, day: dt.date) -> None:
        self.rng = random.Random(seed)
        self.day = day
        self.start = dt.datetime.combine(day, dt.time())
        self.transaction_seq = 0
        self.event_seq = 0
        self.patient_seq: dict[str, int] = {}
        self.patients: dict[str, list[_Patient]] = {}
        self.providers = {facility.code: self._providers(facility) for facility in _FACILITIES}

    def _providers(self, facility: _Facility) -> list[_Provider]:
        """Invent a staff of attending physicians with 10-digit NPI-like ids."""
        return [
            _Provider(
                npi=f"1{self.rng.randrange(10**8, 10**9)}",
                family=self.rng.choice(_PROVIDER_FAMILY),
                given=self.rng.choice(_PROVIDER_GIVEN),
            )
            for _ in range(6)
        ]

    def _patient(self, facility: _Facility, female_adult: bool) -> _Patient:
        """Return a new patient, or now and then one the facility has already seen today."""
        seen = self.patients.setdefault(facility.code, [])
        if seen and not female_adult and self.rng.random() < 0.05:
            return self.rng.choice(seen)
        rng = self.rng
        sex = "F" if female_adult or rng.random() < 0.52 else "M"
        age_days = rng.randrange(18 * 365, 44 * 365) if female_adult else rng.randrange(0, 95 * 365)
        number = self.patient_seq.get(facility.code, 0) + 1
        self.patient_seq[facility.code] = number
        patient = _Patient(
            mrn=f"{facility.code}{rng.randrange(10**6, 10**7)}{number:04d}",
            family=rng.choice(_FAMILY),
            given=rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M),
            middle=rng.choice("ABCDEFGHJKLMNPRSTW"),
            dob=self.day - dt.timedelta(days=age_days),
            sex=sex,
            street=f"{rng.randrange(1, 9999)} {rng.choice(_STREETS)}",
            city=facility.city,
            state=facility.state,
            zip_code=f"{facility.zip_prefix}{rng.randrange(0, 100):02d}",
            phone=f"(555){rng.randrange(200, 999)}-{rng.randrange(0, 10000):04d}",
        )
        seen.append(patient)
        return patient

    def encounter(self, number: int) -> _Encounter:
        """Invent one encounter: facility, class, department, patient and stay."""
        rng = self.rng
        facility = rng.choices(_FACILITIES, weights=_FACILITY_WEIGHTS)[0]
        patient_class = rng.choices([c for c, _ in _CLASS_WEIGHTS], weights=[w for _, w in _CLASS_WEIGHTS])[0]
        homes = [d for d in _HOME_DEPARTMENTS[patient_class] if d in facility.departments]
        department = rng.choice(homes)
        if patient_class == "E":
            registered = self.start + dt.timedelta(seconds=rng.randrange(0, 86_400))
            stay = dt.timedelta(minutes=rng.randrange(90, 600))
        elif patient_class == "O":
            registered = self.start + dt.timedelta(hours=7, seconds=rng.randrange(0, 11 * 3600))
            stay = dt.timedelta(minutes=rng.randrange(30, 240))
        else:
            registered = self.start + dt.timedelta(seconds=rng.randrange(0, 86_400))
            stay = dt.timedelta(hours=rng.randrange(8, 72), minutes=rng.randrange(0, 60))
        return _Encounter(
            facility=facility,
            patient=self._patient(facility, female_adult=department == "OBGYN"),
            visit=f"{facility.code}V{number:07d}",
            account=f"{facility.code}A{rng.randrange(10**7, 10**8)}",
            patient_class=patient_class,
            department=department,
            room=f"{rng.randrange(1, 6)}{rng.randrange(0, 40):02d}",
            bed=rng.choice("AB"),
            attending=rng.choice(self.providers[facility.code]),
            registered_at=registered,
            discharged_at=registered + stay,
        )

    def event(
        self, at: dt.datetime, enc: _Encounter, msg_type: str, trigger: str, lines: tuple[_Line, ...] = ()
    ) -> _Event:
        """Record one message to be sent at a time."""
        self.event_seq += 1
        structure = "DFT_P03" if msg_type == "DFT" else ("ADT_A03" if trigger == "A03" else "ADT_A01")
        return _Event(at, self.event_seq, enc, msg_type, trigger, structure, lines)

    def other(
        self, at: dt.datetime, enc: _Encounter, msg_type: str, trigger: str, **fields: object
    ) -> _Event:
        """Record a transfer, coded account, administration or result message."""
        self.event_seq += 1
        structure = {"ADT": "ADT_A02", "BAR": "BAR_P05", "RAS": "RAS_O17", "ORU": "ORU_R01"}[msg_type]
        return _Event(at, self.event_seq, enc, msg_type, trigger, structure, **fields)  # type: ignore[arg-type]

    def doses(self) -> tuple[_Dose, ...]:
        """Invent one to three doses of one drug; now and then the patient refuses one."""
        drug = self.rng.choice(_DRUGS)
        return tuple(
            _Dose(drug, self.rng.choice(drug.doses), "RE" if self.rng.random() < _REFUSED_SHARE else "CP")
            for _ in range(self.rng.randint(1, 3))
        )

    def coding(self, enc: _Encounter) -> tuple[tuple[str, str, str], ...]:
        """Invent the coded account of a stay: diagnoses, procedures and a DRG."""
        rng = self.rng
        out = [("DG1", *dx) for dx in rng.sample(_DIAGNOSES, rng.randint(1, 3))]
        out += [("PR1", *px) for px in rng.sample(_PROCEDURES, rng.randint(0, 2))]
        out.append(("DRG", *rng.choice(_DRGS)))
        return tuple(out)

    def _item(self, enc: _Encounter) -> tuple[_Item, str]:
        """Pick a charge item and its performing department."""
        rng = self.rng
        source = rng.choices([s for s, _ in _LINE_SOURCES], weights=[w for _, w in _LINE_SOURCES])[0]
        if source == "SUPPLY":
            return rng.choice(_SUPPLIES), enc.department
        department = enc.department if source == "home" else source
        return rng.choice(_CATALOG[department]), department

    def _first_item(self, enc: _Encounter) -> tuple[_Item, str]:
        """Return the professional visit charge an encounter opens with."""
        if enc.patient_class == "E":
            return self.rng.choice(_ED_VISITS), "ED"
        if enc.patient_class == "I":
            return self.rng.choice(_ADMISSION_VISITS), enc.department
        return self._item(enc)

    def lines(
        self, enc: _Encounter, posted: dt.datetime, earliest: dt.datetime, history: list[_Line], first: bool
    ) -> tuple[_Line, ...]:
        """Invent the FT1 lines of one DFT; now and then one credits an earlier charge of the encounter."""
        rng = self.rng
        out: list[_Line] = []
        for n in range(rng.randint(1, 4)):
            self.transaction_seq += 1
            txn = f"T{self.transaction_seq:09d}"
            service = max(earliest, posted - dt.timedelta(minutes=rng.randrange(0, 120)))
            charges = [line for line in history if line.kind == "CG"]
            if charges and rng.random() < _CREDIT_SHARE:
                # A credit reverses a whole earlier line: same item, quantity and department, positive amount.
                original = rng.choice(charges)
                history.remove(original)
                line = _Line(txn, "CD", original.item, original.quantity, original.department, service)
            else:
                item, department = self._first_item(enc) if first and n == 0 else self._item(enc)
                line = _Line(txn, "CG", item, rng.randint(1, item.max_quantity), department, service)
                history.append(line)
            out.append(line)
        return tuple(out)


class _Insurance:
    """Invents each encounter's insurance, from a random source of its own: adding insurance to the day
    left every other figure of a seed as it was."""

    def __init__(self, seed: int, day: dt.date) -> None:
        self.rng = random.Random(f"insurance|{seed}")
        self.day = day
        # A patient seen twice in a day has the same insurance (by MRN and whether admitted: Medicare
        # Part A pays for an inpatient stay, Part B for outpatient and emergency visits).
        self.known: dict[tuple[str, bool], tuple[_Coverage, ...]] = {}

    def coverages(self, enc: _Encounter, self_pay: bool) -> tuple[_Coverage, ...]:
        """Return an encounter's coverages by priority; an empty tuple is a self-pay encounter.

        ``self_pay`` is honoured for a patient's first encounter of the day; a later one keeps the first's.
        """
        key = (enc.patient.mrn, enc.patient_class == "I")
        if key not in self.known:
            self.known[key] = () if self_pay else self._invent(enc)
        return self.known[key]

    def _invent(self, enc: _Encounter) -> tuple[_Coverage, ...]:
        rng = self.rng
        patient = enc.patient
        age_y = (self.day - patient.dob).days // 365
        medicaid = _MEDICAID[enc.facility.state]
        if age_y >= _MEDICARE_AGE_Y:
            if rng.random() < _MEDICARE_ADVANTAGE_SHARE:
                return (self._held(rng.choice(_MEDICARE_ADVANTAGE), patient, "SEL"),)
            plans = [_MEDICARE[enc.patient_class]]
            if rng.random() < _MEDICARE_SECONDARY_SHARE:
                plans.append(rng.choice((*_COMMERCIAL, medicaid[0])))
            return tuple(self._held(plan, patient, "SEL") for plan in plans)
        kind = rng.choices([k for k, _ in _ADULT_KINDS], weights=[w for _, w in _ADULT_KINDS])[0]
        adult = age_y >= _ADULT_AGE_Y
        if kind == "medicaid":
            return (self._held(rng.choice(medicaid), patient, "SEL"),)
        spouse = adult and rng.random() < _SPOUSE_SHARE
        relationship = "SPO" if spouse else ("SEL" if adult else "CHD")
        if kind == "other":
            return (self._held(rng.choice(_OTHER_PLANS), patient, relationship),)
        primary = rng.choice(_COMMERCIAL)
        held = [self._held(primary, patient, relationship)]
        if adult and rng.random() < _ADULT_SECONDARY_SHARE:
            second = rng.choice([plan for plan in _COMMERCIAL if plan != primary])
            held.append(self._held(second, patient, "SEL" if relationship == "SPO" else "SPO"))
        return tuple(held)

    def _held(self, plan: _Plan, patient: _Patient, relationship: str) -> _Coverage:
        """Invent the policy: member id, group, dates and, unless the patient holds it, the insured."""
        rng = self.rng
        payer, _, _, prefix, has_group = plan
        length = 11 if payer.startswith("MCR") else 9  # a Medicare beneficiary identifier has 11
        member = prefix + "".join(rng.choice(_MEMBER_CHARS) for _ in range(length))
        family, given, dob = "", "", None
        if relationship == "SPO":
            given = rng.choice(_GIVEN_M if patient.sex == "F" else _GIVEN_F)
            family, dob = patient.family, patient.dob + dt.timedelta(days=rng.randrange(-6 * 365, 6 * 365))
        elif relationship == "CHD":
            given = rng.choice(rng.choice((_GIVEN_F, _GIVEN_M)))
            family, dob = patient.family, patient.dob - dt.timedelta(days=rng.randrange(22 * 365, 42 * 365))
        effective = (self.day - dt.timedelta(days=rng.randrange(30, 5 * 365))).replace(day=1)
        return _Coverage(
            plan=plan,
            member_id=member,
            group_number=f"{rng.randrange(10**5, 10**6)}" if has_group else "",
            relationship=relationship,
            insured_family=family,
            insured_given=given,
            insured_dob=dob,
            effective_on=effective,
            # An employer plan sometimes ends with the plan year; public programmes run on.
            expires_on=dt.date(self.day.year, 12, 31)
            if has_group and rng.random() < _PLAN_YEAR_SHARE
            else None,
        )


def _in1(coverages: tuple[_Coverage, ...]) -> list[str]:
    """Return the IN1 segments of an encounter's coverages, IN1-1 and IN1-22 being the priority.

    The insured's name and birth date (IN1-16, IN1-18) are sent only when the insured is not the patient:
    for SEL the receiver takes them from PID, as the IN1 mapping documents.
    """
    out = []
    for priority, cov in enumerate(coverages, 1):
        payer, plan_id, company, _, _ = cov.plan
        fields = {
            1: str(priority),
            2: _comp(plan_id),
            3: _comp(payer),
            4: escape(company, _ENC),
            8: cov.group_number,
            12: cov.effective_on.strftime("%Y%m%d"),
            13: cov.expires_on.strftime("%Y%m%d") if cov.expires_on else "",
            17: cov.relationship,
            22: str(priority),
            36: cov.member_id,
        }
        if cov.relationship != "SEL":
            fields[16] = _comp(cov.insured_family, cov.insured_given)
            fields[18] = cov.insured_dob.strftime("%Y%m%d") if cov.insured_dob else ""
        out.append(_segment("IN1", fields))
    return out


def _render(event: _Event, control_id: str) -> bytes:
    """Render one event as an HL7 v2.5.1 ER7 message with CR segment separators."""
    enc = event.encounter
    fac = enc.facility.code
    pat = enc.patient
    doc = enc.attending
    segments = [
        # In MSH the list index n is MSH-(n+1): the field separator itself is MSH-1.
        _segment(
            "MSH",
            {
                1: "^~\\&",
                2: "EPIC",
                3: fac,
                4: "HCSYNC",
                5: "HCSYNC",
                6: _ts(event.at),
                8: _comp(event.message_type, event.trigger, event.structure),
                9: control_id,
                10: "P",
                11: _VERSION,
            },
        ),
        _segment("EVN", {1: event.trigger, 2: _ts(event.at)}),
        _segment(
            "PID",
            {
                1: "1",
                3: _comp(pat.mrn, "", "", fac, "MR"),
                5: _comp(pat.family, pat.given, pat.middle),
                7: pat.dob.strftime("%Y%m%d"),
                8: pat.sex,
                11: _comp(pat.street, "", pat.city, pat.state, pat.zip_code),
                13: escape(pat.phone, _ENC),
                18: _comp(enc.account, "", "", fac, "AN"),
            },
        ),
    ]
    pv1 = {
        1: "1",
        2: enc.patient_class,
        3: _comp(enc.department, enc.room, enc.bed, fac),
        7: _comp(doc.npi, doc.family, doc.given, "", "", "", "MD"),
        10: enc.department,
        19: _comp(enc.visit, "", "", fac, "VN"),
        44: _ts(enc.registered_at),
    }
    if event.trigger == "A03":
        pv1[45] = _ts(enc.discharged_at)
    if event.unit:
        pv1[3] = _comp(event.unit, enc.room, enc.bed, fac)
        pv1[6] = _comp(enc.department, enc.room, enc.bed, fac)  # prior location
    segments.append(_segment("PV1", pv1))
    segments.extend(_body(event))
    if event.message_type == "ADT" and event.trigger in _INSURED_TRIGGERS:
        segments.extend(_in1(enc.coverages))
    for number, line in enumerate(event.lines, 1):
        item = line.item
        segments.append(
            _segment(
                "FT1",
                {
                    1: str(number),
                    2: line.transaction_id,
                    4: _ts(line.service_at),
                    5: _ts(event.at),
                    6: line.kind,
                    7: _comp(item.code, item.description, item.system),
                    9: escape(item.description, _ENC),
                    10: str(line.quantity),
                    11: _money(line.cents),
                    12: _money(item.unit_cents),
                    13: _comp(line.department, "", "", fac),
                },
            )
        )
    segments.append("")
    return "\r".join(segments).encode("utf-8")


def _body(event: _Event) -> list[str]:
    """Return the segments after PV1 of a BAR, RAS or ORU message."""
    at = _ts(event.at)
    out: list[str] = []
    counters = {"DG1": 0, "PR1": 0}
    for name, code, text in event.coding:
        if name == "DRG":
            out.append(_segment("DRG", {1: _comp(code, text, "MS-DRG"), 2: at}))
            continue
        counters[name] += 1
        n = counters[name]
        if name == "DG1":
            out.append(_segment("DG1", {1: str(n), 3: _comp(code, text, "I10"), 5: at, 6: "F", 15: str(n)}))
        else:
            out.append(_segment("PR1", {1: str(n), 3: _comp(code, text, "CPT"), 5: at, 14: str(n)}))
    if event.doses:
        out.append(_segment("ORC", {1: "RE", 2: event.order_id, 3: f"F{event.order_id}", 9: at}))
        for n, dose in enumerate(event.doses, 1):
            drug = dose.drug
            out.append(
                _segment(
                    "RXA",
                    {
                        1: "0",
                        2: str(n),
                        3: _ts(event.at + dt.timedelta(minutes=n)),
                        4: _ts(event.at + dt.timedelta(minutes=n)),
                        5: _comp(drug.ndc, drug.name, "NDC"),
                        6: dose.amount,
                        7: _comp(drug.unit),
                        11: _comp(event.unit, "", "", event.encounter.facility.code),
                        20: dose.status,
                        21: "A",
                    },
                )
            )
    if event.message_type == "ORU":
        out.append(_segment("ORC", {1: "RE", 2: event.order_id}))
        out.append(
            _segment(
                "OBR",
                {1: "1", 2: event.order_id, 4: _comp("80053", "Comprehensive metabolic panel", "CPT"), 7: at},
            )
        )
        out.append(
            _segment(
                "OBX", {1: "1", 2: "NM", 3: _comp("2345-7", "Glucose", "LN"), 5: "98", 6: "mg/dL", 11: "F"}
            )
        )
    return out


def _chosen(rng: random.Random, count: int, share: float) -> set[int]:
    """Pick round(count * share) encounter numbers, so small shares are exact rather than luck."""
    return set(rng.sample(range(count), round(count * share)))


def generate_day(encounters: int = 200, seed: int = 7, day: dt.date | None = None) -> SyntheticDay:
    """Generate a deterministic day of ADT, DFT, BAR, RAS and ORU messages for this many encounters."""
    if encounters < 0:
        raise ValueError(f"encounters must be >= 0, got {encounters}")
    the_day = day or _DEFAULT_DAY
    gen = _Generator(seed, the_day)
    insurance = _Insurance(seed, the_day)
    visit_coding = random.Random(f"{seed}-visit-coding")
    self_pay = _chosen(insurance.rng, encounters, _SELF_PAY_SHARE)
    rng = gen.rng
    updated = _chosen(rng, encounters, _UPDATE_SHARE)
    late = _chosen(rng, encounters, _LATE_ADMISSION_SHARE)
    resulted = _chosen(rng, encounters, _RESULT_SHARE)
    stock: dict[tuple[str, str], int] = {}
    transfers = 0
    events: list[_Event] = []
    by_facility: dict[str, int] = {f.code: 0 for f in _FACILITIES}
    by_department: dict[tuple[str, str], int] = {}
    by_encounter: dict[str, int] = {}
    payers: dict[str, tuple[str, ...]] = {}
    charge_lines = credit_lines = 0
    for number in range(encounters):
        enc = gen.encounter(number + 1)
        enc = replace(enc, coverages=insurance.coverages(enc, self_pay=number in self_pay))
        payers[enc.visit] = tuple(cov.plan[0] for cov in enc.coverages)
        registering = "A01" if enc.patient_class == "I" else "A04"
        events.append(gen.event(enc.registered_at, enc, "ADT", registering))
        stay_s = int((enc.discharged_at - enc.registered_at).total_seconds())
        if number in updated:
            events.append(
                gen.event(
                    enc.registered_at + dt.timedelta(seconds=rng.randrange(60, stay_s)), enc, "ADT", "A08"
                )
            )
        posts = sorted(rng.randrange(60, stay_s) for _ in range(rng.randint(1, 8)))
        history: list[_Line] = []
        for n, offset in enumerate(posts):
            posted = enc.registered_at + dt.timedelta(seconds=offset)
            earliest = enc.registered_at
            if n == 0 and number in late:
                # The charge system got ahead of registration: this DFT is sent before the A01/A04.
                posted = enc.registered_at - dt.timedelta(minutes=rng.randrange(5, 90))
                earliest = posted - dt.timedelta(minutes=30)
            lines = gen.lines(enc, posted, earliest, history, first=n == 0)
            events.append(gen.event(posted, enc, "DFT", "P03", lines))
            for line in lines:
                if line.item.system == "SUPPLY":
                    key_item = (enc.facility.code, line.item.code)
                    moved = line.quantity * 1000 * (1 if line.kind == "CG" else -1)
                    stock[key_item] = stock.get(key_item, 0) + moved
                signed = line.cents if line.kind == "CG" else -line.cents
                charge_lines += 1
                if line.kind == "CD":
                    credit_lines += 1
                key = (enc.facility.code, line.department)
                by_facility[enc.facility.code] += signed
                by_department[key] = by_department.get(key, 0) + signed
                by_encounter[enc.visit] = by_encounter.get(enc.visit, 0) + signed
        unit = enc.department
        if enc.patient_class == "I" and rng.random() < _TRANSFER_SHARE:
            units = [d for d in _INPATIENT_UNITS if d in enc.facility.departments and d != enc.department]
            unit = rng.choice(units)
            moved_at = enc.registered_at + dt.timedelta(seconds=rng.randrange(60, stay_s))
            events.append(gen.other(moved_at, enc, "ADT", "A02", unit=unit))
            transfers += 1
        if enc.patient_class in ("I", "E"):
            given_at = enc.registered_at + dt.timedelta(seconds=rng.randrange(60, max(61, stay_s - 600)))
            doses = gen.doses()
            order_id = f"RX{number + 1:07d}"
            events.append(gen.other(given_at, enc, "RAS", "O17", unit=unit, doses=doses, order_id=order_id))
            for dose in doses:
                key_item = (enc.facility.code, dose.drug.ndc)
                stock[key_item] = stock.get(key_item, 0) + dose.milli
        if number in resulted:
            result_at = enc.registered_at + dt.timedelta(seconds=rng.randrange(60, stay_s))
            events.append(gen.other(result_at, enc, "ORU", "R01", order_id=f"LAB{number + 1:07d}"))
        events.append(gen.event(enc.discharged_at, enc, "ADT", "A03"))
        if enc.patient_class == "I":
            coded_at = enc.discharged_at + dt.timedelta(minutes=rng.randrange(5, 120))
            events.append(gen.other(coded_at, enc, "BAR", "P05", coding=gen.coding(enc)))
        else:
            # Emergency and outpatient visits are coded too (diagnoses, no DRG), so every discharged
            # encounter can be billed. Their own random source keeps the rest of the day as it was.
            coded_at = enc.discharged_at + dt.timedelta(minutes=visit_coding.randrange(5, 60))
            diagnoses = visit_coding.sample(_DIAGNOSES, visit_coding.randint(1, 2))
            events.append(
                gen.other(coded_at, enc, "BAR", "P05", coding=tuple(("DG1", *dx) for dx in diagnoses))
            )
    events.sort(key=lambda e: (e.at, e.order))
    sequences: dict[str, int] = {}
    messages: list[bytes] = []
    for event in events:
        fac = event.encounter.facility.code
        sequences[fac] = sequences.get(fac, 0) + 1
        messages.append(_render(event, f"{fac}{sequences[fac]:08d}"))
    kinds = {
        kind: sum(1 for e in events if e.message_type == kind) for kind in ("ADT", "DFT", "BAR", "RAS", "ORU")
    }
    all_doses = [dose for e in events for dose in e.doses]
    expected = Expected(
        encounters=encounters,
        messages=len(messages),
        adt_messages=kinds["ADT"],
        dft_messages=kinds["DFT"],
        bar_messages=kinds["BAR"],
        ras_messages=kinds["RAS"],
        oru_messages=kinds["ORU"],
        transfers=transfers,
        administrations=len(all_doses),
        refused_doses=sum(1 for dose in all_doses if dose.status == "RE"),
        stock_milli_by_item=MappingProxyType(dict(sorted(stock.items()))),
        charge_lines=charge_lines,
        credit_lines=credit_lines,
        updates=len(updated),
        charges_before_admission=len(late),
        net_charge_cents=sum(by_facility.values()),
        cents_by_facility=MappingProxyType(by_facility),
        cents_by_department=MappingProxyType(dict(sorted(by_department.items()))),
        cents_by_encounter=MappingProxyType(by_encounter),
        payers_by_encounter=MappingProxyType(payers),
    )
    return SyntheticDay(day=the_day, seed=seed, messages=tuple(messages), expected=expected)


def to_file(day: SyntheticDay | Sequence[bytes], path: Path | str) -> Path:
    """Write the messages back to back (each ends with CR), as an interface engine's file drop would."""
    messages = day.messages if isinstance(day, SyntheticDay) else day
    target = Path(path)
    target.write_bytes(b"".join(messages))
    return target
