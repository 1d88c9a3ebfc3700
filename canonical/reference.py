"""Master (reference) data: the organisation, the chart of accounts, the item and charge masters, payers.

These records give every transaction its ERP identities (legal entity, business unit, cost centre,
revenue and GL accounts). They are governed: each domain has one authoritative source (the registry), a
set is versioned as a whole and checked for internal consistency before anyone may load it
(:meth:`MasterDataSet.problems`). None of it is patient data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from functools import cached_property
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from canonical.models import CanonicalModel

# The domains of a set, in load order; each is one file (<domain>.csv) in a master-data directory.
DOMAINS = (
    "accounts",
    "legal_entities",
    "business_units",
    "cost_centres",
    "facilities",
    "departments",
    "locations",
    "providers",
    "items",
    "charge_codes",
    "payers",
)


class AccountType(StrEnum):
    """The kind of a general-ledger account."""

    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"


class ItemCategory(StrEnum):
    """What an item of the item master is."""

    SUPPLY = "supply"
    DRUG = "drug"
    IMPLANT = "implant"


class PayerType(StrEnum):
    """The financial class of a payer."""

    MEDICARE = "medicare"
    MEDICAID = "medicaid"
    COMMERCIAL = "commercial"
    MANAGED_CARE = "managed_care"
    WORKERS_COMP = "workers_comp"
    SELF_PAY = "self_pay"
    OTHER = "other"


class ReferenceRecord(CanonicalModel):
    """A master-data record; ``key`` is what transactions and other records refer to it by."""

    KEY_FIELDS: ClassVar[tuple[str, ...]] = ("code",)
    active: bool = Field(True, description="False: kept for history, refused for new transactions")

    @property
    def key(self) -> str:
        """The record's identity within its domain ('|'-joined for compound keys)."""
        return "|".join(str(getattr(self, name)) for name in self.KEY_FIELDS)


class GlAccount(ReferenceRecord):
    """An account of the chart of accounts."""

    KEY_FIELDS: ClassVar[tuple[str, ...]] = ("account",)
    account: str = Field(min_length=1, description="GL account number")
    name: str = Field(min_length=1)
    account_type: AccountType


class LegalEntity(ReferenceRecord):
    """A company that keeps its own books; its receivables account takes the patient and payer debit."""

    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    currency: str = Field("USD", min_length=3, max_length=3)
    receivables_account: str = Field(min_length=1, description="GL account of patient receivables")


class BusinessUnit(ReferenceRecord):
    """A unit of management reporting within a legal entity (a hospital, a service line)."""

    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    legal_entity: str = Field(min_length=1)


class CostCentre(ReferenceRecord):
    """Where costs and revenue are reported; an inactive cost centre takes no new postings."""

    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    business_unit: str = Field(min_length=1)


class EligibilityPolicy(StrEnum):
    """What a facility does with a claim whose coverage a payer has not confirmed (no 271, or not active)."""

    FOLLOW_UP = "follow_up"  # bill anyway; finance follows the eligibility up beside the claim
    HOLD_CLAIMS = "hold_claims"  # hold the claim until a 271 says the coverage is active


class Facility(ReferenceRecord):
    """A site: the code HL7 sends in PV1-3.4, FT1-13.4 or MSH-4, with its legal entity and business unit."""

    code: str = Field(min_length=1, description="Facility code as the EHR sends it")
    name: str = Field(min_length=1)
    legal_entity: str = Field(min_length=1)
    business_unit: str = Field(min_length=1)
    city: str = ""
    state: str = ""
    npi: str = Field("", pattern=r"^(\d{10})?$", description="Billing NPI of the facility (837 loop 2010AA)")
    tax_id: str = Field("", pattern=r"^(\d{9})?$", description="Employer identification number (837 REF*EI)")
    address_line: str = Field("", description="Street address the facility bills from (837 N301)")
    postal_code: str = Field("", pattern=r"^(\d{5}(\d{4})?)?$", description="ZIP code (837 N403)")
    taxonomy_code: str = Field("", description="Provider taxonomy code (837 PRV03), e.g. 282N00000X")
    eligibility_policy: EligibilityPolicy = Field(
        EligibilityPolicy.FOLLOW_UP,
        description="Claims of a coverage not confirmed active by a 271: billed (follow_up) or held",
    )

    @property
    def can_bill(self) -> bool:
        """Whether the facility has what an 837 billing provider needs: NPI, tax id and address."""
        return bool(self.npi and self.tax_id and self.address_line and self.city and self.state
                    and self.postal_code)  # fmt: skip


class ClaimKind(StrEnum):
    """Which claim a charge code is billed on: the hospital's (837I, UB-04) or a professional one (837P)."""

    INSTITUTIONAL = "institutional"
    PROFESSIONAL = "professional"


class Department(ReferenceRecord):
    """A department of a facility (the code in PV1-3.1, FT1-13.1 or RXA-11.1) and its cost centre."""

    KEY_FIELDS: ClassVar[tuple[str, ...]] = ("facility", "code")
    facility: str = Field(min_length=1)
    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    cost_centre: str = Field(min_length=1)


class Location(ReferenceRecord):
    """A point of care (nursing unit, clinic, bay) that the EHR may send in place of a department code."""

    KEY_FIELDS: ClassVar[tuple[str, ...]] = ("facility", "code")
    facility: str = Field(min_length=1)
    code: str = Field(min_length=1, description="Point of care as sent in PV1-3.1")
    name: str = Field(min_length=1)
    department: str = Field(min_length=1, description="Department code (same facility) it belongs to")
    kind: str = Field("unit", description="unit, clinic, bay, theatre...")


class Provider(ReferenceRecord):
    """A clinician (PV1-7, ORC-12, PR1-11 ids). Staff names are not patient data."""

    KEY_FIELDS: ClassVar[tuple[str, ...]] = ("npi",)
    npi: str = Field(pattern=r"^\d{10}$", description="National Provider Identifier")
    family_name: str = Field(min_length=1)
    given_name: str = ""
    specialty: str = ""
    facility: str = Field(min_length=1, description="Home facility")
    department: str = Field("", description="Home department (same facility), when one")


class Item(ReferenceRecord):
    """A stocked item: supply, drug (NDC) or implant, with costing and replenishment parameters."""

    KEY_FIELDS: ClassVar[tuple[str, ...]] = ("item_code",)
    item_code: str = Field(min_length=1, description="Code sent in FT1-7.1 (supplies) or RXA-5.1 (NDC)")
    code_system: str = Field(min_length=1, description="SUPPLY, NDC, IMPLANT...")
    description: str = Field(min_length=1)
    category: ItemCategory
    unit: str = Field(min_length=1, description="Stocking unit of measure")
    gl_account: str = Field(min_length=1, description="Inventory GL account the item is held in")
    unit_cost_cents: int = Field(ge=0, description="Standard cost of one stocking unit, in cents")
    reorder_point: int = Field(ge=0, description="On-hand quantity that triggers replenishment")
    par_level: int = Field(ge=0, description="Quantity replenishment restores")
    supplier: str = Field(min_length=1)
    lead_time_days: int = Field(ge=0)

    @model_validator(mode="after")
    def _par_above_reorder(self) -> Item:
        if self.par_level < self.reorder_point:
            raise ValueError(f"par_level {self.par_level} is below reorder_point {self.reorder_point}")
        return self


class ChargeCode(ReferenceRecord):
    """A charge-master line: the code sent in FT1-7.1 and the revenue account it posts to."""

    code: str = Field(min_length=1)
    code_system: str = Field(min_length=1, description="CPT, HCPCS, SUPPLY, REV...")
    description: str = Field(min_length=1)
    revenue_account: str = Field(min_length=1)
    price_cents: int = Field(ge=0, description="Charge-master price of one unit, in cents")
    revenue_code: str = Field(
        "", pattern=r"^(\d{4})?$", description="NUBC revenue code of an institutional claim line (837I SV201)"
    )
    claim_kind: ClaimKind = Field(
        ClaimKind.INSTITUTIONAL, description="Which claim the code is billed on: 837I or 837P"
    )


class Payer(ReferenceRecord):
    """A payer or plan (IN1-3, X12 payer id)."""

    KEY_FIELDS: ClassVar[tuple[str, ...]] = ("payer_id",)
    payer_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    payer_type: PayerType
    plan: str = ""


class SourceOfRecord(CanonicalModel):
    """The authoritative source of one master-data domain: where fixes must be made."""

    domain: str
    system: str = Field(min_length=1, description="System of record, e.g. 'Workday Financials'")
    owner: str = Field(min_length=1, description="Team that owns the data")


class MasterDataManifest(CanonicalModel):
    """manifest.yaml: the version of a set and its system-of-record registry."""

    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    description: str = ""
    registry: tuple[SourceOfRecord, ...]

    @field_validator("registry")
    @classmethod
    def _each_domain_once(cls, value: tuple[SourceOfRecord, ...]) -> tuple[SourceOfRecord, ...]:
        domains = [entry.domain for entry in value]
        unknown = sorted(set(domains) - set(DOMAINS))
        if unknown:
            raise ValueError(f"registry names unknown domain(s) {', '.join(unknown)}")
        twice = sorted({d for d in domains if domains.count(d) > 1})
        if twice:
            raise ValueError(f"registry names domain(s) twice: {', '.join(twice)}")
        missing = [d for d in DOMAINS if d not in domains]
        if missing:
            raise ValueError(f"registry has no system of record for {', '.join(missing)}")
        return value


RECORD_TYPES: dict[str, type[ReferenceRecord]] = {
    "accounts": GlAccount,
    "legal_entities": LegalEntity,
    "business_units": BusinessUnit,
    "cost_centres": CostCentre,
    "facilities": Facility,
    "departments": Department,
    "locations": Location,
    "providers": Provider,
    "items": Item,
    "charge_codes": ChargeCode,
    "payers": Payer,
}


class Problem(CanonicalModel):
    """One inconsistency in a master-data set, located by domain and record key (and file line if read)."""

    domain: str
    key: str
    reason: str
    line: int | None = None

    def describe(self) -> str:
        name = "manifest.yaml" if self.domain == "manifest" else f"{self.domain}.csv"
        where = name + (f" line {self.line}" if self.line is not None else "")
        return f"{where} [{self.key}]: {self.reason}"


class MasterDataSet(CanonicalModel):
    """A complete, versioned master-data set. Lookups are by key; see :meth:`problems` for consistency."""

    manifest: MasterDataManifest
    accounts: tuple[GlAccount, ...] = ()
    legal_entities: tuple[LegalEntity, ...] = ()
    business_units: tuple[BusinessUnit, ...] = ()
    cost_centres: tuple[CostCentre, ...] = ()
    facilities: tuple[Facility, ...] = ()
    departments: tuple[Department, ...] = ()
    locations: tuple[Location, ...] = ()
    providers: tuple[Provider, ...] = ()
    items: tuple[Item, ...] = ()
    charge_codes: tuple[ChargeCode, ...] = ()
    payers: tuple[Payer, ...] = ()

    @property
    def version(self) -> str:
        return self.manifest.version

    def records(self, domain: str) -> tuple[ReferenceRecord, ...]:
        """Return the records of one domain."""
        if domain not in RECORD_TYPES:
            raise KeyError(f"unknown master-data domain {domain!r}")
        records: tuple[ReferenceRecord, ...] = getattr(self, domain)
        return records

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> MasterDataSet:
        """Copy the set; the lookup index is rebuilt for the copy (the records may have changed)."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("_index", None)
        return copied

    @cached_property
    def _index(self) -> dict[str, dict[str, Any]]:
        # First record of a key wins; duplicates are reported by problems().
        index: dict[str, dict[str, Any]] = {}
        for domain in DOMAINS:
            by_key: dict[str, Any] = {}
            for record in self.records(domain):
                by_key.setdefault(record.key, record)
            index[domain] = by_key
        return index

    def get(self, domain: str, *key: str) -> Any:
        """Return the record of ``domain`` with ``key`` (compound keys as separate parts), or None."""
        return self._index[domain].get("|".join(key))

    def account(self, account: str) -> GlAccount | None:
        found: GlAccount | None = self.get("accounts", account)
        return found

    def legal_entity(self, code: str) -> LegalEntity | None:
        found: LegalEntity | None = self.get("legal_entities", code)
        return found

    def business_unit(self, code: str) -> BusinessUnit | None:
        found: BusinessUnit | None = self.get("business_units", code)
        return found

    def cost_centre(self, code: str) -> CostCentre | None:
        found: CostCentre | None = self.get("cost_centres", code)
        return found

    def facility(self, code: str) -> Facility | None:
        found: Facility | None = self.get("facilities", code)
        return found

    def department(self, facility: str, code: str) -> Department | None:
        """Return a department by its code, or by a location (point of care) that belongs to one."""
        found: Department | None = self.get("departments", facility, code)
        if found is None:
            location: Location | None = self.get("locations", facility, code)
            if location is not None:
                found = self.get("departments", facility, location.department)
        return found

    def item(self, code: str) -> Item | None:
        found: Item | None = self.get("items", code)
        return found

    def charge_code(self, code: str) -> ChargeCode | None:
        found: ChargeCode | None = self.get("charge_codes", code)
        return found

    def digest(self) -> str:
        """Return the SHA-256 of the set's canonical JSON: equal content, equal digest."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def counts(self) -> dict[str, int]:
        """Return the number of records of each domain."""
        return {domain: len(self.records(domain)) for domain in DOMAINS}

    def problems(self) -> list[Problem]:
        """Return every inconsistency: duplicate keys and references to missing records or accounts."""
        out: list[Problem] = []

        def bad(domain: str, key: str, reason: str) -> None:
            out.append(Problem(domain=domain, key=key, reason=reason))

        for domain in DOMAINS:
            seen: set[str] = set()
            for record in self.records(domain):
                if record.key in seen:
                    bad(domain, record.key, "duplicate key")
                seen.add(record.key)

        def need_account(
            domain: str, key: str, what: str, account: str, kinds: tuple[AccountType, ...]
        ) -> None:
            found = self.account(account)
            if found is None:
                bad(domain, key, f"{what} {account} is not in the chart of accounts")
            elif found.account_type not in kinds:
                expected = " or ".join(kind.value for kind in kinds)
                bad(domain, key, f"{what} {account} is a {found.account_type.value} account, not {expected}")

        for entity in self.legal_entities:
            need_account("legal_entities", entity.key, "receivables_account", entity.receivables_account,
                         (AccountType.ASSET,))  # fmt: skip
        for business_unit in self.business_units:
            if self.legal_entity(business_unit.legal_entity) is None:
                bad(
                    "business_units",
                    business_unit.key,
                    f"legal_entity {business_unit.legal_entity} is unknown",
                )
        for centre in self.cost_centres:
            if self.business_unit(centre.business_unit) is None:
                bad("cost_centres", centre.key, f"business_unit {centre.business_unit} is unknown")
        for facility in self.facilities:
            if self.legal_entity(facility.legal_entity) is None:
                bad("facilities", facility.key, f"legal_entity {facility.legal_entity} is unknown")
            unit = self.business_unit(facility.business_unit)
            if unit is None:
                bad("facilities", facility.key, f"business_unit {facility.business_unit} is unknown")
            elif unit.legal_entity != facility.legal_entity:
                bad(
                    "facilities",
                    facility.key,
                    f"business_unit {unit.code} belongs to legal entity {unit.legal_entity}, "
                    f"not {facility.legal_entity}",
                )
        for department in self.departments:
            home = self.facility(department.facility)
            if home is None:
                bad("departments", department.key, f"facility {department.facility} is unknown")
            dept_centre = self.cost_centre(department.cost_centre)
            if dept_centre is None:
                bad("departments", department.key, f"cost_centre {department.cost_centre} is unknown")
            elif home is not None:
                # Revenue is credited in the facility's books: its cost centre must be in the same ones.
                owner = self.business_unit(dept_centre.business_unit)
                if owner is not None and owner.legal_entity != home.legal_entity:
                    bad(
                        "departments",
                        department.key,
                        f"cost_centre {dept_centre.code} belongs to legal entity {owner.legal_entity}, "
                        f"not to {home.legal_entity} of facility {home.code}",
                    )
        for location in self.locations:
            if self.get("departments", location.facility, location.department) is None:
                bad(
                    "locations",
                    location.key,
                    f"department {location.department} of facility {location.facility} is unknown",
                )
            if self.get("departments", location.facility, location.code) is not None:
                bad("locations", location.key, "the code is also a department code of the facility")
        for provider in self.providers:
            if self.facility(provider.facility) is None:
                bad("providers", provider.key, f"facility {provider.facility} is unknown")
            elif (
                provider.department
                and self.get("departments", provider.facility, provider.department) is None
            ):
                bad(
                    "providers",
                    provider.key,
                    f"department {provider.department} of facility {provider.facility} is unknown",
                )
        for item in self.items:
            need_account("items", item.key, "gl_account", item.gl_account, (AccountType.ASSET,))
        for code in self.charge_codes:
            need_account("charge_codes", code.key, "revenue_account", code.revenue_account,
                         (AccountType.REVENUE,))  # fmt: skip
        return out


class RecordChange(CanonicalModel):
    """One difference between two sets: a record added, removed or changed (with its changed fields)."""

    domain: str
    key: str
    change: str  # added | removed | changed
    fields: dict[str, tuple[Any, Any]] = Field(default_factory=dict, description="field -> (old, new)")


def diff_sets(old: MasterDataSet | None, new: MasterDataSet) -> list[RecordChange]:
    """Return what loading ``new`` over ``old`` changes, domain by domain in key order."""
    out: list[RecordChange] = []
    sources: list[tuple[str, dict[str, dict[str, Any]], dict[str, dict[str, Any]]]] = [
        (
            "registry",
            {e.domain: e.model_dump(mode="json") for e in (old.manifest.registry if old is not None else ())},
            {e.domain: e.model_dump(mode="json") for e in new.manifest.registry},
        )
    ]
    for domain in DOMAINS:
        sources.append(
            (
                domain,
                {r.key: r.model_dump(mode="json") for r in (old.records(domain) if old is not None else ())},
                {r.key: r.model_dump(mode="json") for r in new.records(domain)},
            )
        )
    for domain, before, after in sources:
        for key in sorted(before.keys() | after.keys()):
            if key not in before:
                out.append(RecordChange(domain=domain, key=key, change="added"))
            elif key not in after:
                out.append(RecordChange(domain=domain, key=key, change="removed"))
            elif before[key] != after[key]:
                changed = {
                    name: (before[key].get(name), value)
                    for name, value in after[key].items()
                    if before[key].get(name) != value
                }
                out.append(RecordChange(domain=domain, key=key, change="changed", fields=changed))
    return out


__all__ = [
    "DOMAINS",
    "RECORD_TYPES",
    "AccountType",
    "BusinessUnit",
    "ChargeCode",
    "CostCentre",
    "Department",
    "Facility",
    "GlAccount",
    "Item",
    "ItemCategory",
    "LegalEntity",
    "Location",
    "MasterDataManifest",
    "MasterDataSet",
    "Payer",
    "PayerType",
    "Problem",
    "Provider",
    "RecordChange",
    "ReferenceRecord",
    "SourceOfRecord",
    "diff_sets",
]
