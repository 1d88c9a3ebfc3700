"""Supply chain: items consumed for patients outside pharmacy, and the requisitions that replenish stock.

A :class:`SupplyUsage` comes from a clinical source (an FT1 supply line, a FHIR SupplyDelivery or
DeviceUseStatement) and says what one encounter used. A :class:`Requisition` is materials management's
request to restock a cost centre (FHIR SupplyRequest; an X12 850 purchase order once ordered). Item codes
are those of the item master (:class:`canonical.reference.Item`). Neither model holds PHI: the encounter
id is the same operational key that :class:`canonical.models.Charge` carries.
"""

from __future__ import annotations

import datetime as dt
from enum import IntEnum, StrEnum

from pydantic import AwareDatetime, Field, model_validator

from canonical.ids import derived_id
from canonical.models import CanonicalModel


class UsageSource(StrEnum):
    """Where a supply usage was read from."""

    HL7V2_FT1 = "hl7v2_ft1"  # DFT^P03 FT1 whose FT1-7.3 names a supply coding system
    FHIR_SUPPLY_DELIVERY = "fhir_supply_delivery"  # SupplyDelivery with a patient
    FHIR_DEVICE_USE = "fhir_device_use"  # DeviceUseStatement (implants)


class SupplyUsage(CanonicalModel):
    """An item consumed for a patient encounter outside pharmacy (a supply or an implant)."""

    usage_id: str = Field(
        min_length=1,
        description="Deterministic id: the source event id (FT1 line) or the FHIR resource id, never random",
    )
    encounter_id: str = Field(
        min_length=1, description="PV1-19 encounter id; FHIR SupplyDelivery.patient + encounter extension"
    )
    item_code: str = Field(
        min_length=1,
        description="FT1-7.1 transaction code; FHIR SupplyDelivery.suppliedItem.itemCodeableConcept.coding"
        ".code",
    )
    code_system: str = Field(
        "",
        description="FT1-7.3 coding system (SUPPLY, IMPLANT...); FHIR ...itemCodeableConcept.coding.system",
    )
    description: str = Field(
        "", description="FT1-7.2 / FT1-8; FHIR ...itemCodeableConcept.text; never patient data"
    )
    quantity_milli: int = Field(
        gt=0,
        description="FT1-10 quantity; FHIR SupplyDelivery.suppliedItem.quantity.value; in thousandths "
        "of a unit",
    )
    unit: str = Field(
        "", description="Item master stocking unit; FHIR SupplyDelivery.suppliedItem.quantity.unit"
    )
    facility: str = Field(min_length=1, description="FT1-13.4, else the encounter's facility (PV1-3.4)")
    department: str = Field("", description="FT1-13.1 performing department, else PV1-3.1")
    used_at: AwareDatetime = Field(
        description="FT1-4 transaction date; FHIR SupplyDelivery.occurrenceDateTime"
    )
    source: UsageSource = Field(description="The message or resource the usage was read from")
    source_event_id: str = Field("", description="Canonical event that carried the usage (drill-down)")
    lot_number: str = Field("", description="FHIR Device.lotNumber of an implant; empty for supplies")


class RequisitionStatus(StrEnum):
    """Where a requisition is in its life (FHIR SupplyRequest.status, refined for approval)."""

    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    ORDERED = "ordered"
    RECEIVED = "received"

    @property
    def approved(self) -> bool:
        """True once the requisition has been approved (approved, ordered or received)."""
        return self in (RequisitionStatus.APPROVED, RequisitionStatus.ORDERED, RequisitionStatus.RECEIVED)


class ApprovalLevel(IntEnum):
    """Who must approve a requisition, by its total; higher levels include the lower ones."""

    NONE = 0  # within the cost centre's standing authority: approved automatically
    MANAGER = 1  # the department manager
    DIRECTOR = 2  # the facility's materials director
    EXECUTIVE = 3  # the CFO

    @classmethod
    def for_amount(cls, total_cents: int) -> ApprovalLevel:
        """Return the level a requisition of ``total_cents`` needs (see APPROVAL_THRESHOLDS_CENTS)."""
        level = cls.NONE
        for threshold, needed in APPROVAL_THRESHOLDS_CENTS:
            if total_cents >= threshold:
                level = needed
        return level


# (lowest total, level needed) in ascending order: $1,000 a manager, $10,000 a director, $100,000 the CFO.
APPROVAL_THRESHOLDS_CENTS: tuple[tuple[int, ApprovalLevel], ...] = (
    (100_000, ApprovalLevel.MANAGER),
    (1_000_000, ApprovalLevel.DIRECTOR),
    (10_000_000, ApprovalLevel.EXECUTIVE),
)


class ReorderTrigger(CanonicalModel):
    """The stock count that triggered a requisition: on hand at or below the item's reorder point."""

    item_code: str = Field(min_length=1, description="Item master item code (Item.item_code)")
    on_hand: int = Field(ge=0, description="On-hand quantity counted, in stocking units")
    reorder_point: int = Field(ge=0, description="Item.reorder_point when the count was taken")
    par_level: int = Field(ge=0, description="Item.par_level: the quantity replenishment restores")
    observed_at: AwareDatetime = Field(description="When the count was taken")

    @model_validator(mode="after")
    def _at_or_below_reorder_point(self) -> ReorderTrigger:
        if self.on_hand > self.reorder_point:
            raise ValueError(
                f"item {self.item_code}: on hand {self.on_hand} is above its reorder point "
                f"{self.reorder_point}"
            )
        return self


class RequisitionLine(CanonicalModel):
    """One item requested: FHIR SupplyRequest.item and quantity; X12 850 PO1 once ordered."""

    line_number: int = Field(ge=1, description="Line number; X12 850 PO101 assigned identification")
    item_code: str = Field(
        min_length=1, description="Item.item_code; FHIR SupplyRequest.itemCodeableConcept; X12 850 PO107"
    )
    description: str = Field("", description="Item.description; X12 850 PID05")
    quantity: int = Field(
        gt=0, description="Stocking units; FHIR SupplyRequest.quantity.value; X12 850 PO102"
    )
    unit: str = Field("", description="Item.unit; FHIR SupplyRequest.quantity.unit; X12 850 PO103")
    unit_cost_cents: int = Field(ge=0, description="Item.unit_cost_cents; X12 850 PO104 unit price, in cents")
    supplier: str = Field(
        min_length=1, description="Item.supplier; FHIR SupplyRequest.supplier; X12 850 N1*SE"
    )
    need_by: dt.date = Field(
        description="FHIR SupplyRequest.occurrenceDateTime; X12 850 DTM*002 delivery date"
    )

    @property
    def total_cents(self) -> int:
        """Quantity times unit cost."""
        return self.quantity * self.unit_cost_cents


class Requisition(CanonicalModel):
    """A request to replenish a cost centre's stock, with its approval state.

    The approval it needs follows from its total (:attr:`approval_level`): one that has been approved
    beyond ``ApprovalLevel.NONE`` names who approved it.
    """

    requisition_id: str = Field(
        min_length=1,
        description="Deterministic id (requisition_id_for): facility, cost centre and trigger, so a repeated "
        "reorder signal gives the same requisition",
    )
    facility: str = Field(min_length=1, description="Facility code; FHIR SupplyRequest.deliverTo")
    cost_centre: str = Field(min_length=1, description="Cost centre charged (CostCentre.code)")
    department: str = Field("", description="Requesting department (Department.code)")
    status: RequisitionStatus = Field(
        RequisitionStatus.DRAFT, description="FHIR SupplyRequest.status, refined"
    )
    requested_at: AwareDatetime = Field(description="FHIR SupplyRequest.authoredOn")
    requested_by: str = Field("", description="Staff id; FHIR SupplyRequest.requester (never a patient)")
    approved_by: str = Field("", description="Staff id of the approver, once approved")
    currency: str = Field("USD", min_length=3, max_length=3, description="X12 850 CUR02")
    lines: tuple[RequisitionLine, ...] = Field(min_length=1, description="Items requested")
    triggered_by: ReorderTrigger | None = Field(
        None, description="The reorder-point count that raised it (FHIR SupplyRequest.reason); None if manual"
    )

    @property
    def total_cents(self) -> int:
        """Sum of the lines' totals."""
        return sum(line.total_cents for line in self.lines)

    @property
    def approval_level(self) -> ApprovalLevel:
        """The approval the total requires (APPROVAL_THRESHOLDS_CENTS)."""
        return ApprovalLevel.for_amount(self.total_cents)

    @model_validator(mode="after")
    def _consistent(self) -> Requisition:
        numbers = [line.line_number for line in self.lines]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"requisition {self.requisition_id}: line numbers repeat: {numbers}")
        if self.triggered_by is not None and self.triggered_by.item_code not in {
            line.item_code for line in self.lines
        }:
            raise ValueError(
                f"requisition {self.requisition_id}: triggered by item {self.triggered_by.item_code}, "
                "which none of its lines requests"
            )
        if self.status.approved and self.approval_level > ApprovalLevel.NONE and not self.approved_by:
            raise ValueError(
                f"requisition {self.requisition_id} is {self.status.value} for {self.total_cents} cents, "
                f"which needs {self.approval_level.name.lower()} approval, but names no approver"
            )
        return self


def requisition_id_for(facility: str, cost_centre: str, trigger: str) -> str:
    """Return the deterministic id of a requisition: ``trigger`` is e.g. item code and count time."""
    return derived_id(f"{facility}|{cost_centre}|{trigger}", "requisition")


__all__ = [
    "APPROVAL_THRESHOLDS_CENTS",
    "ApprovalLevel",
    "ReorderTrigger",
    "Requisition",
    "RequisitionLine",
    "RequisitionStatus",
    "SupplyUsage",
    "UsageSource",
    "requisition_id_for",
]
