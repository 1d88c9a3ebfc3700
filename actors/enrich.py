"""Enrichment, free of Ray: give each canonical event its ERP dimensions from master data, or refuse it.

Postings are charges and medication doses (they reach the ledger or the stock); the other events of an
encounter (ADT, coding, orders) only need their codes to be known, so a discharge from a closed unit
still goes through. A message is a transaction: if any of its events breaks a rule, the whole message is
quarantined (with its original bytes) before anything reaches billing or the ERP, and a replay after the
master data is fixed posts all of it. The rules, each with a fix hint for the integration engineer:

    MD-FACILITY-UNKNOWN      the facility is not in facilities.csv; for a posting, also when the
                             facility, its legal entity or its business unit is inactive
    MD-DEPARTMENT-UNKNOWN    the department or point of care is in neither departments.csv nor
                             locations.csv; for a posting, also when it is inactive or none is named
    MD-COST-CENTRE-INACTIVE  a posting's department has a closed cost centre
    MD-CHARGE-CODE-UNMAPPED  the charge code is not in charge_codes.csv (or is inactive)
    MD-ITEM-UNKNOWN          a supply charge or a dose names an item not in items.csv (or inactive)
    MD-ACCOUNT-NOT-IN-COA    a revenue, receivables or inventory account is not an active account of
                             the chart of accounts
"""

from __future__ import annotations

from dataclasses import dataclass

from canonical.envelope import (
    AccountMovePayload,
    ChargePayload,
    CodingPayload,
    EncounterPayload,
    ErpDimensions,
    EventEnvelope,
    MedicationAdministrationPayload,
    MedicationOrderPayload,
    MergePayload,
    PatientPayload,
)
from canonical.errors import Fault, InvalidMessageError
from canonical.hl7v2.parser import Hl7Message, Segment
from canonical.reference import Department, Location, MasterDataSet

RULES = {
    "MD-FACILITY-UNKNOWN": "add the facility to facilities.csv (with its legal entity and business unit)",
    "MD-DEPARTMENT-UNKNOWN": "add the department to departments.csv, or the point of care to locations.csv",
    "MD-COST-CENTRE-INACTIVE": "reactivate the cost centre in cost_centres.csv, or move the department to an "
    "active one in departments.csv",
    "MD-CHARGE-CODE-UNMAPPED": "add the charge code with its revenue account to charge_codes.csv",
    "MD-ITEM-UNKNOWN": "add the item to items.csv (GL account, unit cost, reorder point, par level, "
    "supplier, lead time)",
    "MD-ACCOUNT-NOT-IN-COA": "add or reactivate the account in accounts.csv, or map the record to an "
    "existing account",
}
REPLAY_HINT = "then `hcsync masterdata load DIR` and `hcsync exceptions replay --rule {rule}`"


class MasterDataFault(InvalidMessageError):
    """A transaction refers to master data that is missing, inactive or inconsistent."""


def fix_hint(rule: str) -> str:
    """Return what an integration engineer does about a master-data rule, replay included."""
    return f"{RULES[rule]}; {REPLAY_HINT.format(rule=rule)}"


@dataclass(frozen=True, slots=True)
class _Where:
    """The segment and field a value came from, for a located fault."""

    segment: str
    field: str
    position: int | None


class _Enricher:
    def __init__(self, msg: Hl7Message, data: MasterDataSet) -> None:
        self.msg = msg
        self.data = data

    def fail(self, rule: str, where: _Where, reason: str, found: str) -> MasterDataFault:
        return MasterDataFault(
            Fault(
                rule=rule,
                reason=f"{reason} (master data {self.data.version})",
                message_id=self.msg.control_id,
                segment=where.segment,
                field=where.field,
                position=where.position,
                found=found,
                hint=fix_hint(rule),
            )
        )

    def line(self, name: str, position: int) -> Segment | None:
        """Return the segment an event was mapped from: its FT1 or RXA by ordinal (the event position)."""
        segments = self.msg.segments_named(name)
        return segments[position] if position < len(segments) else None

    def pv1(self, encounter_id: str) -> Segment | None:
        """Return the PV1 of an encounter (BAR carries one per visit), else the first PV1."""
        segments = self.msg.segments_named("PV1")
        visit = encounter_id.rpartition(":")[2]
        for seg in segments:
            if seg.get(19).strip() == visit:
                return seg
        return segments[0] if segments else None

    def where(self, line: Segment | None, field: int, component: int, encounter_id: str) -> _Where:
        """Locate an organisation value read from ``line`` field.component, else PV1-3, else MSH-4."""
        if line is not None and line.get(field, component):
            return _Where(line.name, f"{line.name}-{field}.{component}", line.index)
        pv1 = self.pv1(encounter_id)
        if pv1 is not None and (pv1.get(3, component) or component == 1):
            return _Where("PV1", f"PV1-3.{component}", pv1.index)
        return _Where("MSH", "MSH-4", 0)

    def organisation(
        self,
        facility_code: str,
        department_code: str,
        *,
        line: Segment | None,
        field: int,
        encounter_id: str,
        posts: bool,
    ) -> ErpDimensions:
        """Resolve facility and department to legal entity, business unit and cost centre.

        Unknown codes stop every event. Inactive records (a closed unit, cost centre or company) and a
        missing department stop only events that post (charges, doses): a discharge or a cancellation
        from a closed unit must still go through, and gets no cost centre.
        """
        facility_at = self.where(line, field, 4, encounter_id)
        facility = self.data.facility(facility_code)
        if facility is None:
            raise self.fail(
                "MD-FACILITY-UNKNOWN",
                facility_at,
                f"facility {facility_code} is not in the master data",
                facility_code,
            )
        entity = self.data.legal_entity(facility.legal_entity)
        unit = self.data.business_unit(facility.business_unit)
        assert entity is not None and unit is not None  # a loaded set is consistent
        if posts:
            for kind, record in (("facility", facility), ("legal entity", entity), ("business unit", unit)):
                if not record.active:
                    raise self.fail(
                        "MD-FACILITY-UNKNOWN",
                        facility_at,
                        f"{kind} {record.key} of facility {facility_code} is inactive",
                        facility_code,
                    )
        department_at = self.where(line, field, 1, encounter_id)
        department: Department | None = None
        open_for_posting = True
        if department_code:
            department = self.data.get("departments", facility_code, department_code)
            location: Location | None = None
            if department is None:
                location = self.data.get("locations", facility_code, department_code)
                if location is not None:
                    department = self.data.get("departments", facility_code, location.department)
            if department is None:
                raise self.fail(
                    "MD-DEPARTMENT-UNKNOWN",
                    department_at,
                    f"{department_code} of facility {facility_code} is neither a department nor a location",
                    department_code,
                )
            closed = [r for r in (location, department) if r is not None and not r.active]
            if closed and posts:
                what = "location" if isinstance(closed[0], Location) else "department"
                raise self.fail(
                    "MD-DEPARTMENT-UNKNOWN",
                    department_at,
                    f"{what} {closed[0].code} of facility {facility_code} is inactive",
                    department_code,
                )
            open_for_posting = not closed
        elif posts:
            raise self.fail(
                "MD-DEPARTMENT-UNKNOWN",
                department_at,
                "no department: the line and PV1-3.1 are both empty, so there is no cost centre to post to",
                "",
            )
        cost_centre = ""
        if department is not None:
            centre = self.data.cost_centre(department.cost_centre)
            assert centre is not None  # a loaded set is consistent
            if not centre.active and posts:
                raise self.fail(
                    "MD-COST-CENTRE-INACTIVE",
                    department_at,
                    f"cost centre {centre.code} of department {department.code} ({facility_code}) "
                    "is inactive",
                    department_code,
                )
            if centre.active and open_for_posting:
                cost_centre = centre.code
        return ErpDimensions(
            masterdata_version=self.data.version,
            legal_entity=facility.legal_entity,
            business_unit=facility.business_unit,
            cost_centre=cost_centre,
            department=department.code if department is not None else "",
        )

    def account(self, account: str, what: str, where: _Where, found: str) -> str:
        record = self.data.account(account)
        if record is None or not record.active:
            state = "inactive" if record is not None else "not in the chart of accounts"
            raise self.fail("MD-ACCOUNT-NOT-IN-COA", where, f"{what} {account} is {state}", found)
        return account

    def item(self, code: str, where: _Where, dims: ErpDimensions) -> ErpDimensions:
        item = self.data.item(code)
        if item is None or not item.active:
            state = "inactive" if item is not None else "not in the item master"
            raise self.fail("MD-ITEM-UNKNOWN", where, f"item {code} is {state}", code)
        inventory = self.account(item.gl_account, f"inventory account of item {code}", where, code)
        return dims.model_copy(
            update={"inventory_account": inventory, "unit_cost_cents": item.unit_cost_cents}
        )

    def posting(
        self, env: EventEnvelope, name: str, field: int, facility: str, department: str
    ) -> tuple[Segment | None, ErpDimensions]:
        """Return the FT1 or RXA a posting came from and the organisation dimensions of its line."""
        line = self.line(name, env.source_position)
        dims = self.organisation(
            facility, department, line=line, field=field, encounter_id=env.encounter_id, posts=True
        )
        return line, dims

    def charge(self, env: EventEnvelope, payload: ChargePayload) -> ErpDimensions:
        charge = payload.charge
        ft1, dims = self.posting(env, "FT1", 13, charge.facility, charge.department)
        code_at = _Where("FT1", "FT1-7.1", ft1.index if ft1 is not None else None)
        entry = self.data.charge_code(charge.charge_code)
        if entry is None or not entry.active:
            state = "inactive" if entry is not None else "not in the charge master"
            raise self.fail(
                "MD-CHARGE-CODE-UNMAPPED",
                code_at,
                f"charge code {charge.charge_code} is {state}",
                charge.charge_code,
            )
        entity = self.data.legal_entity(dims.legal_entity)
        assert entity is not None  # a loaded set is consistent: every facility's legal entity exists
        dims = dims.model_copy(
            update={
                "revenue_account": self.account(
                    entry.revenue_account, f"revenue account of {entry.code}", code_at, entry.code
                ),
                "receivables_account": self.account(
                    entity.receivables_account,
                    f"receivables account of legal entity {entity.code}",
                    self.where(ft1, 13, 4, env.encounter_id),
                    entity.code,
                ),
            }
        )
        return self.item(charge.charge_code, code_at, dims) if charge.is_supply else dims

    def dose(self, env: EventEnvelope, payload: MedicationAdministrationPayload) -> ErpDimensions:
        given = payload.administration
        rxa, dims = self.posting(env, "RXA", 11, given.facility, given.department)
        return self.item(
            given.medication_code,
            _Where("RXA", "RXA-5.1", rxa.index if rxa is not None else None),
            dims,
        )

    def enrich(self, env: EventEnvelope) -> EventEnvelope:
        payload = env.payload
        if isinstance(payload, MergePayload | PatientPayload | AccountMovePayload):
            return env  # a patient-level event: no organisation, nothing posted to the ERP
        if isinstance(payload, ChargePayload):
            dims = self.charge(env, payload)
        elif isinstance(payload, MedicationAdministrationPayload):
            dims = self.dose(env, payload)
        else:
            assert isinstance(payload, EncounterPayload | CodingPayload | MedicationOrderPayload)
            encounter = payload.encounter
            dims = self.organisation(
                encounter.facility,
                encounter.department,
                line=None,
                field=3,
                encounter_id=encounter.encounter_id,
                posts=False,
            )
        return env.model_copy(update={"dimensions": dims})


def enrich(msg: Hl7Message, events: list[EventEnvelope], data: MasterDataSet) -> list[EventEnvelope]:
    """Return the events with their ERP dimensions; raise MasterDataFault at the first broken rule."""
    enricher = _Enricher(msg, data)
    return [enricher.enrich(env) for env in events]


__all__ = ["RULES", "MasterDataFault", "enrich", "fix_hint"]
