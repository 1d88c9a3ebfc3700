"""erp.proto carries no PHI: every field of every message it can send is on an explicit allowlist."""

from __future__ import annotations

import re

from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

from canonical.models import InventoryMovement, JournalLine
from canonical.phi import phi_fields
from proto import erp_pb2

# Every field name the ERP contract may carry. Adding one is a privacy decision: review it as such.
ALLOWED_FIELDS = frozenset(
    {
        # JournalLine
        "line_id",
        "journal_date",
        "account",
        "cost_centre",
        "facility",
        "debit_cents",
        "credit_cents",
        "currency",
        "encounter_ref",
        "source_event_id",
        "correlation_id",
        "description",
        # JournalLine, InventoryMovement, AccountTotal, AccountValue: master-data dimensions of the
        # organisation (the books, the business unit), never of the patient.
        "legal_entity",
        "business_unit",
        # JournalBatch
        "batch_id",
        "idempotency_key",
        "lines",
        # JournalAck, LineAccepted, LineRejected
        "accepted",
        "rejected",
        "posting_id",
        "duplicate",
        "reason",
        # LedgerTotals, AccountTotal
        "line_count",
        "batch_count",
        "total_debit_cents",
        "total_credit_cents",
        "by_account",
        # InventoryMovement: an item, a quantity, a day and a cost centre; the encounter only as its
        # pseudonym (encounter_ref, above). The day, not the time: less to link to one patient's stay.
        "movement_id",
        "movement_type",
        "item_code",
        "code_system",
        "quantity_milli",
        "unit",
        "movement_date",
        # InventoryMovement: the item master's GL account and standard cost, the same for every patient.
        "inventory_account",
        "unit_cost_cents",
        # InventoryMovementBatch, InventoryAck, MovementAccepted, MovementRejected
        "movements",
        # InventoryTotals, ItemTotal
        "movement_count",
        "issued_milli",
        "returned_milli",
        "net_milli",
        "by_item",
        # InventoryTotals, ItemTotal, AccountValue: stock valued at standard cost
        "value_cents",
        "by_inventory_account",
    }
)
PHI_PATTERN = re.compile(r"name|mrn|birth|dob|address|phone|ssn", re.IGNORECASE)


def _walk(descriptor: Descriptor, seen: dict[str, list[FieldDescriptor]]) -> None:
    """Collect the fields of ``descriptor``, its nested types and every message type its fields hold."""
    if descriptor.full_name in seen:
        return
    seen[descriptor.full_name] = list(descriptor.fields)
    for nested in descriptor.nested_types:
        _walk(nested, seen)
    for field in descriptor.fields:
        if field.message_type is not None:
            _walk(field.message_type, seen)


def _erp_fields() -> dict[str, list[FieldDescriptor]]:
    """Return every message type reachable from erp.proto (its own, its services', its imports') by name."""
    seen: dict[str, list[FieldDescriptor]] = {}
    pending: list[FileDescriptor] = [erp_pb2.DESCRIPTOR]
    files: set[str] = set()
    while pending:
        file = pending.pop()
        if file.name in files:
            continue
        files.add(file.name)
        pending.extend(file.dependencies)
        for message in file.message_types_by_name.values():
            _walk(message, seen)
        for service in file.services_by_name.values():
            for method in service.methods:
                _walk(method.input_type, seen)
                _walk(method.output_type, seen)
    return seen


def test_every_erp_field_is_allowlisted() -> None:
    fields = _erp_fields()
    assert {
        "hcsync.erp.v1.JournalBatch",
        "hcsync.erp.v1.JournalLine",
        "hcsync.erp.v1.LedgerTotals",
        "hcsync.erp.v1.InventoryMovementBatch",
        "hcsync.erp.v1.InventoryAck",
        "hcsync.erp.v1.InventoryTotals",
        "hcsync.erp.v1.AccountValue",
    } <= set(fields)
    unexpected = [
        f"{message}.{field.name}"
        for message, message_fields in fields.items()
        for field in message_fields
        if field.name not in ALLOWED_FIELDS
    ]
    assert unexpected == [], f"fields not on the ERP allowlist: {unexpected}"


def test_no_erp_field_looks_like_phi() -> None:
    phi_like = [
        f"{message}.{field.name}"
        for message, message_fields in _erp_fields().items()
        for field in message_fields
        if PHI_PATTERN.search(field.name)
    ]
    assert phi_like == []


def test_allowlist_holds_no_phi_name() -> None:
    assert not [name for name in ALLOWED_FIELDS if PHI_PATTERN.search(name)]
    # The canonical models tag their PHI fields; none of those names may reach the ERP contract.
    from canonical.schema import EXPORTED

    tagged = set().union(*(phi_fields(model) for model in EXPORTED.values()))
    assert {"mrn", "birth_date", "account_number", "member_id", "claim_id"} <= tagged
    assert not (tagged & ALLOWED_FIELDS)


def test_the_encounter_is_only_a_pseudonym() -> None:
    names = {field.name for message_fields in _erp_fields().values() for field in message_fields}
    assert "encounter_ref" in names
    assert not {"encounter_id", "account_number", "patient_id", "visit_number"} & names


def test_the_erp_gets_days_never_times() -> None:
    # Timestamps of care (admission, administration) are finer than the ledger needs and easier to link.
    timed = [
        f"{message}.{field.name}"
        for message, message_fields in _erp_fields().items()
        for field in message_fields
        if field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp"
    ]
    assert timed == []


def test_the_canonical_erp_models_tag_no_phi() -> None:
    # What the ERP is built from must itself be PHI-free, so no conversion can leak a tagged field.
    assert not phi_fields(InventoryMovement)
    assert not phi_fields(JournalLine)
