"""The canonical contract as JSON Schema: export, PHI tags, committed snapshots, compatibility, the CLI.

It also holds the invariants of the revenue-cycle, supply and ledger models.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError
from typer.testing import CliRunner, Result

from canonical.envelope import SCHEMA_VERSION
from canonical.ledger import JournalBatch, PostingMode
from canonical.models import CanonicalModel, JournalLine, Patient
from canonical.phi import PhiField
from canonical.revenue_cycle import (
    Adjustment,
    AdjustmentGroup,
    Claim,
    ClaimFrequency,
    ClaimLine,
    ClaimStatus,
    ClaimType,
    Coverage,
    EligibilityStatus,
    PaymentMethod,
    ProviderAdjustment,
    Remittance,
    RemittanceClaim,
    RemittanceLine,
)
from canonical.schema import (
    EXPORTED,
    INDEX,
    breaking_changes,
    contract_models,
    drift,
    json_schemas,
    load_schemas,
    render,
    write_schemas,
)
from canonical.supply import (
    ApprovalLevel,
    ReorderTrigger,
    Requisition,
    RequisitionLine,
    RequisitionStatus,
    requisition_id_for,
)
from cluster.cli.schema import register

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = ROOT / "docs" / "schemas"
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
REGENERATE = f"hcsync schema --out docs/schemas/{SCHEMA_VERSION}"


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    return json_schemas()


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _snapshot_dirs() -> list[Path]:
    if not SNAPSHOTS.is_dir():
        return []
    return sorted(path for path in SNAPSHOTS.iterdir() if path.is_dir())


def _phi_tags(node: Any) -> int:
    """Count the ``"phi": true`` keywords anywhere in a JSON value."""
    if isinstance(node, dict):
        return int(node.get("phi") is True) + sum(_phi_tags(value) for value in node.values())
    if isinstance(node, list):
        return sum(_phi_tags(value) for value in node)
    return 0


# --------------------------------------------------------------------------------------------------
# (a) export and PHI tags


class Documented(CanonicalModel):
    """A documented model: exported."""

    value: int


class Undocumented(CanonicalModel):
    value: int


class _Private(CanonicalModel):
    """Private: not exported."""

    value: int


def test_contract_models_walks_modules_for_documented_public_models() -> None:
    found = contract_models([__name__])
    # Patient and CanonicalModel are imported here, not defined: they belong to canonical.models.
    assert list(found) == ["Documented"]
    assert EXPORTED["Patient"] is Patient


def test_every_public_model_is_exported(schemas: dict[str, dict[str, Any]]) -> None:
    expected = {
        "Address", "Patient", "Encounter", "Charge", "Diagnosis", "Procedure", "Drg", "CodingUpdate",
        "MedicationOrder", "MedicationAdministration", "InventoryMovement", "PatientMerge", "JournalLine",
        "EventEnvelope", "MessageReceipt", "ExceptionRecord", "Coverage", "Claim", "ClaimLine", "Remittance",
        "RemittanceClaim", "RemittanceLine", "Adjustment", "SupplyUsage", "Requisition", "RequisitionLine",
        "JournalBatch", "Item", "Payer", "MasterDataSet",
    }  # fmt: skip
    assert expected <= set(EXPORTED)
    assert "CanonicalModel" not in EXPORTED
    assert list(EXPORTED) == sorted(EXPORTED)
    assert set(schemas) == set(EXPORTED)
    for name, schema in schemas.items():
        assert schema["title"] == name
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False, f"{name} must forbid unknown fields"
        assert schema["x-schema-version"] == SCHEMA_VERSION
        assert schema["x-phi-fields"] == sorted(schema["x-phi-fields"])


def test_patient_phi_fields_are_tagged(schemas: dict[str, dict[str, Any]]) -> None:
    patient = schemas["Patient"]
    for name in ("mrn", "family_name", "given_name", "birth_date", "address", "phone"):
        assert patient["properties"][name]["phi"] is True, name
        assert name in patient["x-phi-fields"]
    assert "phi" not in patient["properties"]["sex"]
    assert "sex" not in patient["x-phi-fields"]
    assert {"address.street", "address.city", "address.postal_code"} <= set(patient["x-phi-fields"])
    assert {"payload.patient.mrn", "payload.merge.prior_mrn", "payload.merge.surviving.birth_date"} <= set(
        schemas["EventEnvelope"]["x-phi-fields"]
    )
    # 1.3: person updates and account moves carry the patient (and the prior one) as PHI too.
    assert {
        "payload.move.prior_mrn",
        "payload.move.prior_account_number",
        "payload.move.target.mrn",
        "payload.move.target.birth_date",
    } <= set(schemas["EventEnvelope"]["x-phi-fields"])
    assert "prior_visit_number" not in schemas["AccountMove"]["x-phi-fields"]
    assert {"member_id", "subscriber_birth_date", "subscriber_family_name"} <= set(
        schemas["Coverage"]["x-phi-fields"]
    )


def test_ledger_inventory_supply_and_reference_models_hold_no_phi(schemas: dict[str, dict[str, Any]]) -> None:
    phi_free = {
        name
        for name, model in EXPORTED.items()
        if model.__module__ in ("canonical.ledger", "canonical.reference")
    } | {"InventoryMovement", "JournalLine", "Requisition", "RequisitionLine", "ReorderTrigger"}
    assert {"JournalBatch", "Item", "GlAccount", "MasterDataSet"} <= phi_free
    for name in sorted(phi_free):
        assert schemas[name]["x-phi-fields"] == [], name
        assert _phi_tags(schemas[name]) == 0, name


# --------------------------------------------------------------------------------------------------
# (b), (c) committed snapshots


@pytest.mark.parametrize("snapshot", _snapshot_dirs(), ids=lambda path: path.name)
def test_snapshots_of_this_major_are_still_readable(
    snapshot: Path, schemas: dict[str, dict[str, Any]]
) -> None:
    if _major(snapshot.name) != _major(SCHEMA_VERSION):
        pytest.skip(f"snapshot {snapshot.name} is of another major version than {SCHEMA_VERSION}")
    problems = breaking_changes(load_schemas(snapshot), schemas)
    assert problems == [], (
        f"documents valid under schema {snapshot.name} would be refused by {SCHEMA_VERSION} "
        "(see docs/schema-compatibility.md):\n" + "\n".join(problems)
    )


def test_there_is_a_baseline_snapshot() -> None:
    assert (SNAPSHOTS / "1.1" / INDEX).is_file()


def test_current_snapshot_matches_the_code() -> None:
    current = SNAPSHOTS / SCHEMA_VERSION
    assert current.is_dir(), (
        f"schema version {SCHEMA_VERSION} has no committed snapshot: run `{REGENERATE}` and commit it"
    )
    differences = drift(current)
    assert differences == [], (
        f"docs/schemas/{SCHEMA_VERSION} is not what the models generate: run `{REGENERATE}` and commit it, "
        "or bump SCHEMA_VERSION if a released snapshot would change:\n" + "\n".join(differences)
    )


# --------------------------------------------------------------------------------------------------
# (d) breaking_changes on hand-made schemas


def _model(
    properties: dict[str, Any],
    required: tuple[str, ...] = (),
    *,
    title: str = "M",
    defs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": list(required),
    }
    if defs is not None:
        schema["$defs"] = defs
    return schema


STATUS_DEFS = {"Status": {"enum": ["a", "b"], "type": "string", "title": "Status"}}
OLD = _model(
    {
        "code": {"type": "string", "minLength": 1},
        "count": {"type": "integer", "minimum": 0},
        "note": {"type": "string", "default": ""},
        "name": {"type": "string", "default": "", "phi": True},
        "when": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}], "default": None},
        "status": {"$ref": "#/$defs/Status"},
    },
    ("code", "status"),
    defs=STATUS_DEFS,
)


def _copy(schema: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(schema))
    return copied


def _changed(**properties: Any) -> dict[str, Any]:
    new = _copy(OLD)
    for name, value in properties.items():
        if value is None:
            del new["properties"][name]
        else:
            new["properties"][name] = value
    return new


def test_identical_schemas_have_no_breaking_change(schemas: dict[str, dict[str, Any]]) -> None:
    assert breaking_changes({"M": OLD}, {"M": OLD}) == []
    assert breaking_changes(schemas, _copy(schemas)) == []


def test_compatible_additions_report_nothing() -> None:
    new = _changed(
        extra={"type": "string", "default": ""},  # a new optional property
        count={"type": "number", "minimum": -5},  # wider type, looser bound
        when={"anyOf": [{"type": "string", "format": "date"}, {"type": "integer"}, {"type": "null"}]},
        name={"type": "string", "default": "", "phi": True, "description": "now documented"},
    )
    new["$defs"]["Status"]["enum"] = ["a", "b", "c"]  # a new enum value
    assert breaking_changes({"M": OLD}, {"M": new, "Other": _model({})}) == []


def test_removed_model_and_property() -> None:
    assert breaking_changes({"M": OLD}, {}) == ["M: model removed"]
    problems = breaking_changes({"M": OLD}, {"M": _changed(note=None)})
    assert problems == ["M.note: property removed (unknown fields are refused, so documents with it fail)"]


def test_removed_property_is_fine_when_unknown_fields_are_accepted() -> None:
    new = _changed(note=None)
    new["additionalProperties"] = True
    assert breaking_changes({"M": OLD}, {"M": new}) == []


def test_newly_required_property() -> None:
    new = _changed()
    new["required"] = ["code", "status", "note"]
    assert breaking_changes({"M": OLD}, {"M": new}) == ["M.note: property is now required"]
    new = _changed(extra={"type": "string"})
    new["required"] = ["code", "status", "extra"]
    assert breaking_changes({"M": OLD}, {"M": new}) == [
        "M.extra: new required property (documents without it fail)"
    ]


def test_removed_enum_value_through_ref() -> None:
    new = _changed()
    new["$defs"]["Status"]["enum"] = ["a"]
    assert breaking_changes({"M": OLD}, {"M": new}) == ["M.status: enum value(s) removed: ['b']"]


def test_type_change_and_dropped_null() -> None:
    problems = breaking_changes({"M": OLD}, {"M": _changed(count={"type": "string"})})
    assert problems == ["M.count: type changed from integer to string"]
    problems = breaking_changes({"M": OLD}, {"M": _changed(when={"type": "string", "format": "date"})})
    assert problems == ["M.when: no longer accepts null (accepts string)"]
    problems = breaking_changes({"M": OLD}, {"M": _changed(note={"type": "string", "enum": ["x"]})})
    assert problems == ["M.note: now restricted to the values ['x']"]


def test_phi_tag_removed() -> None:
    problems = breaking_changes({"M": OLD}, {"M": _changed(name={"type": "string", "default": ""})})
    assert problems == ["M.name: PHI tag removed (the field would lose its protection)"]


def test_tightened_constraints() -> None:
    new = _changed(
        code={"type": "string", "minLength": 2, "maxLength": 10, "pattern": "^[A-Z]+$"},
        count={"type": "integer", "exclusiveMinimum": 0},
    )
    assert breaking_changes({"M": OLD}, {"M": new}) == [
        "M.code: minLength raised from 1 to 2",
        "M.code: maxLength lowered from none to 10",
        "M.code: pattern changed from 'none' to '^[A-Z]+$'",
        "M.count: lower bound tightened from >= 0 to > 0",
    ]


def test_changes_inside_nested_models_are_found_through_refs() -> None:
    class InnerV1(BaseModel):
        """Inner."""

        mrn: str = PhiField(description="PID-3.1")
        size: int = 0

    class OuterV1(BaseModel):
        """Outer."""

        inner: InnerV1
        items: tuple[InnerV1, ...] = ()

    class InnerV2(BaseModel):
        """Inner."""

        mrn: str = Field(description="PID-3.1")
        size: int = Field(0, le=10)

    class OuterV2(BaseModel):
        """Outer."""

        inner: InnerV2
        items: tuple[InnerV2, ...] = ()

    old = OuterV1.model_json_schema()
    new = OuterV2.model_json_schema()
    # Each nested schema is compared once per model, at the first path that reaches it.
    assert breaking_changes({"Outer": old}, {"Outer": new}) == [
        "Outer.inner.mrn: PHI tag removed (the field would lose its protection)",
        "Outer.inner.size: upper bound tightened from none to <= 10",
    ]


def test_tagged_union_members(schemas: dict[str, dict[str, Any]]) -> None:
    old = schemas["EventEnvelope"]
    # A payload kind dropped from the union.
    new = _copy(old)
    payload = new["properties"]["payload"]
    payload["oneOf"] = [member for member in payload["oneOf"] if not member["$ref"].endswith("/MergePayload")]
    offered = [member["$ref"].rsplit("/", 1)[1] for member in payload["oneOf"]]
    assert breaking_changes({"EventEnvelope": old}, {"EventEnvelope": new}) == [
        f"EventEnvelope.payload: no longer accepts MergePayload (accepts {', '.join(offered)})"
    ]
    # A payload kind changed: the problem is located inside the member with the same tag.
    new = _copy(old)
    new["$defs"]["MergePayload"]["required"].append("reason")
    new["$defs"]["MergePayload"]["properties"]["reason"] = {"type": "string"}
    assert breaking_changes({"EventEnvelope": old}, {"EventEnvelope": new}) == [
        "EventEnvelope.payload<MergePayload>.reason: new required property (documents without it fail)"
    ]


def test_union_member_accepted_by_a_renamed_member() -> None:
    old = _model(
        {"v": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}}, defs={"A": _model({}, title="A")}
    )
    renamed = _model({}, title="B")
    new = _model({"v": {"anyOf": [{"$ref": "#/$defs/B"}, {"type": "null"}]}}, defs={"B": renamed})
    assert breaking_changes({"M": old}, {"M": new}) == []


# --------------------------------------------------------------------------------------------------
# (e) files and the command line


def test_write_and_load_round_trip(tmp_path: Path, schemas: dict[str, dict[str, Any]]) -> None:
    written = write_schemas(tmp_path)
    assert {path.name for path in written} == {f"{name}.json" for name in EXPORTED} | {INDEX}
    text = (tmp_path / "Patient.json").read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.startswith("{\n  ")
    assert load_schemas(tmp_path) == schemas
    index = json.loads((tmp_path / INDEX).read_text(encoding="utf-8"))
    assert index["schema_version"] == SCHEMA_VERSION
    assert index["models"]["Patient"]["phi_fields"] == schemas["Patient"]["x-phi-fields"]
    assert drift(tmp_path) == []


def test_write_removes_files_of_models_that_no_longer_exist(tmp_path: Path) -> None:
    files = render()
    index = json.loads(files[INDEX])
    index["models"]["Gone"] = {"file": "Gone.json", "phi_fields": []}
    (tmp_path / INDEX).write_text(json.dumps(index), encoding="utf-8")
    (tmp_path / "Gone.json").write_text("{}", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("kept", encoding="utf-8")
    assert drift(tmp_path)  # Gone.json is stale, the rest missing
    write_schemas(tmp_path)
    assert not (tmp_path / "Gone.json").exists()
    assert (tmp_path / "notes.txt").exists()
    assert drift(tmp_path) == []


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app)
    return app


def _cli(*args: str) -> Result:
    return CliRunner().invoke(_app(), ["schema", *args])


def test_cli_writes_then_checks(tmp_path: Path) -> None:
    out = tmp_path / "schemas" / SCHEMA_VERSION
    result = _cli("--out", str(out))
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    assert (out / "Patient.json").is_file() and (out / INDEX).is_file()
    result = _cli("--out", str(out), "--check")
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_cli_check_fails_on_drift_and_on_breaking_changes(tmp_path: Path) -> None:
    out = tmp_path / "snapshot"
    assert _cli("--out", str(out)).exit_code == 0
    # Drift only: a description edited by hand.
    patient = json.loads((out / "Patient.json").read_text(encoding="utf-8"))
    patient["description"] = "edited"
    (out / "Patient.json").write_text(json.dumps(patient), encoding="utf-8")
    result = _cli("--out", str(out), "--check")
    assert result.exit_code == 1
    assert "Patient.json differs" in result.output and "breaking" not in result.output
    assert "hcsync schema --out" in result.output
    # A breaking change: the snapshot accepts a property the code no longer knows.
    patient["properties"]["nickname"] = {"type": "string", "default": ""}
    (out / "Patient.json").write_text(json.dumps(patient), encoding="utf-8")
    result = _cli("--out", str(out), "--check")
    assert result.exit_code == 1
    assert "Patient.nickname: property removed" in result.output


def test_cli_check_of_an_earlier_release_checks_compatibility_only(tmp_path: Path) -> None:
    result = _cli("--out", str(SNAPSHOTS / "1.1"), "--check")
    assert result.exit_code == 0, result.output
    assert "reads every document valid under the 1.1 snapshot" in result.output
    out = tmp_path / "0.9"
    assert _cli("--out", str(out)).exit_code == 0
    index = json.loads((out / INDEX).read_text(encoding="utf-8"))
    index["schema_version"] = "0.9"
    (out / INDEX).write_text(json.dumps(index), encoding="utf-8")
    assert _cli("--out", str(out), "--check").exit_code == 0  # drift from an older version is expected
    address = json.loads((out / "Address.json").read_text(encoding="utf-8"))
    address["properties"]["country"] = {"type": "string", "default": ""}
    (out / "Address.json").write_text(json.dumps(address), encoding="utf-8")
    result = _cli("--out", str(out), "--check")
    assert result.exit_code == 1
    assert "Address.country: property removed" in result.output


def test_cli_check_of_a_missing_snapshot_fails(tmp_path: Path) -> None:
    result = _cli("--out", str(tmp_path / "nothing"), "--check")
    assert result.exit_code == 1
    assert "no schema snapshot" in result.output


# --------------------------------------------------------------------------------------------------
# (f) invariants of the new models


def _line(number: int, cents: int, **overrides: Any) -> ClaimLine:
    fields: dict[str, Any] = {
        "line_number": number,
        "revenue_code": "0450",
        "procedure_code": "99283",
        "units": 1,
        "charge_cents": cents,
    }
    return ClaimLine.model_validate(fields | overrides)


def _claim(**overrides: Any) -> Claim:
    fields: dict[str, Any] = {
        "claim_id": "ACC1001",
        "encounter_id": "NMH:V1",
        "claim_type": ClaimType.INSTITUTIONAL,
        "billing_provider_npi": "1234567893",
        "payer_id": "MEDICARE",
        "total_charge_cents": 15_000,
        "statement_from": dt.date(2026, 11, 18),
        "statement_to": dt.date(2026, 11, 20),
        "diagnosis_codes": ("R0789",),
        "lines": (_line(1, 10_000), _line(2, 5_000)),
    }
    return Claim.model_validate(fields | overrides)


def test_claim_total_is_the_sum_of_its_lines() -> None:
    assert _claim().total_charge_cents == 15_000
    with pytest.raises(ValidationError, match="not the sum of its lines"):
        _claim(total_charge_cents=15_001)


def test_claim_type_rules() -> None:
    with pytest.raises(ValidationError, match="SV201 revenue code"):
        _claim(lines=(_line(1, 10_000, revenue_code=""), _line(2, 5_000)))
    professional = _claim(
        claim_type=ClaimType.PROFESSIONAL,
        statement_from=None,
        statement_to=None,
        lines=(_line(1, 10_000, revenue_code=""), _line(2, 5_000, revenue_code="")),
    )
    assert professional.claim_type is ClaimType.PROFESSIONAL
    with pytest.raises(ValidationError, match="DRG"):
        _claim(claim_type=ClaimType.PROFESSIONAL, drg="470")
    with pytest.raises(ValidationError, match="REF\\*F8"):
        _claim(frequency=ClaimFrequency.REPLACEMENT)
    assert _claim(frequency=ClaimFrequency.VOID, payer_claim_control_number="PCN9").frequency.value == "8"
    with pytest.raises(ValidationError):
        _claim(billing_provider_npi="123")
    with pytest.raises(ValidationError):
        _claim(lines=(_line(1, 10_000), _line(2, 5_000, charge_cents=50.5)))  # cents are integers


def _adjustment(group: AdjustmentGroup, reason: str, cents: int) -> Adjustment:
    return Adjustment(group=group, reason_code=reason, amount_cents=cents)


def _remittance_claim(**overrides: Any) -> RemittanceClaim:
    line = RemittanceLine(
        procedure_code="99283",
        charge_cents=10_000,
        paid_cents=6_000,
        adjustments=(
            _adjustment(AdjustmentGroup.CONTRACTUAL, "45", 3_000),
            _adjustment(AdjustmentGroup.PATIENT_RESPONSIBILITY, "2", 1_000),
        ),
    )
    fields: dict[str, Any] = {
        "claim_id": "ACC1001",
        "status": ClaimStatus.PRIMARY,
        "charge_cents": 15_000,
        "paid_cents": 9_000,
        "patient_responsibility_cents": 1_000,
        "payer_claim_control_number": "PCN1",
        # The second line was not itemised: its 5,000 charge, 3,000 paid and 2,000 CO-45 are claim-level.
        "adjustments": (_adjustment(AdjustmentGroup.CONTRACTUAL, "45", 2_000),),
        "lines": (line,),
    }
    return RemittanceClaim.model_validate(fields | overrides)


def test_remittance_claim_balances() -> None:
    claim = _remittance_claim()
    assert claim.adjusted_cents == 6_000
    with pytest.raises(ValidationError, match="CLP03 15000 - CLP04 9100"):
        _remittance_claim(paid_cents=9_100)
    with pytest.raises(ValidationError, match="SVC02"):
        RemittanceLine(
            charge_cents=100, paid_cents=80, adjustments=(_adjustment(AdjustmentGroup.OTHER, "23", 10),)
        )
    reversal = _remittance_claim(
        status=ClaimStatus.REVERSAL,
        charge_cents=-15_000,
        paid_cents=-9_000,
        adjustments=(_adjustment(AdjustmentGroup.CORRECTION_REVERSAL, "45", -6_000),),
        lines=(),
    )
    assert reversal.adjusted_cents == -6_000


def test_remittance_total_is_claims_paid_less_provider_adjustments() -> None:
    fields: dict[str, Any] = {
        "payer_id": "MEDICARE",
        "trace_number": "EFT0001",
        "payment_method": PaymentMethod.ACH,
        "payment_date": dt.date(2026, 12, 1),
        "total_paid_cents": 8_500,
        "claims": (_remittance_claim(),),
        "provider_adjustments": (ProviderAdjustment(reason_code="L6", amount_cents=500),),
    }
    remittance = Remittance.model_validate(fields)
    assert remittance.key == "MEDICARE|EFT0001"
    with pytest.raises(ValidationError, match="BPR02 9000"):
        Remittance.model_validate(fields | {"total_paid_cents": 9_000})
    with pytest.raises(ValidationError, match="NON"):
        Remittance.model_validate(fields | {"payment_method": PaymentMethod.NO_PAYMENT})


def test_coverage_rules() -> None:
    fields: dict[str, Any] = {"encounter_id": "NMH:V1", "payer_id": "AETNA", "member_id": "W123"}
    coverage = Coverage.model_validate(fields)
    assert coverage.key == "NMH:V1|1" and coverage.eligibility_status is EligibilityStatus.UNKNOWN
    with pytest.raises(ValidationError, match="checked_at"):
        Coverage.model_validate(fields | {"eligibility_status": "active"})
    with pytest.raises(ValidationError, match="expires"):
        Coverage.model_validate(fields | {"effective_on": "2026-01-01", "expires_on": "2025-12-31"})
    with pytest.raises(ValidationError):
        Coverage.model_validate(fields | {"priority": 4})
    assert EligibilityStatus.from_eb01("1") is EligibilityStatus.ACTIVE
    assert EligibilityStatus.from_eb01("6") is EligibilityStatus.INACTIVE
    assert EligibilityStatus.from_eb01("U") is EligibilityStatus.UNKNOWN


def _requisition(quantity: int, **overrides: Any) -> Requisition:
    fields: dict[str, Any] = {
        "requisition_id": requisition_id_for("NMH", "CC-ED", "GLOVE-M|2026-11-20T09:00"),
        "facility": "NMH",
        "cost_centre": "CC-ED",
        "requested_at": NOW,
        "lines": (
            RequisitionLine(
                line_number=1,
                item_code="GLOVE-M",
                quantity=quantity,
                unit_cost_cents=1_250,
                supplier="MEDLINE",
                need_by=dt.date(2026, 11, 25),
            ),
        ),
        "triggered_by": ReorderTrigger(
            item_code="GLOVE-M", on_hand=4, reorder_point=10, par_level=100, observed_at=NOW
        ),
    }
    return Requisition.model_validate(fields | overrides)


def test_requisition_total_sets_the_approval_it_needs() -> None:
    small = _requisition(40)
    assert small.total_cents == 50_000 and small.approval_level is ApprovalLevel.NONE
    assert _requisition(40, status=RequisitionStatus.APPROVED).status.approved
    large = _requisition(1_000)
    assert large.total_cents == 1_250_000 and large.approval_level is ApprovalLevel.DIRECTOR
    with pytest.raises(ValidationError, match="names no approver"):
        _requisition(1_000, status=RequisitionStatus.APPROVED)
    assert _requisition(1_000, status=RequisitionStatus.ORDERED, approved_by="E042").approved_by == "E042"
    assert ApprovalLevel.for_amount(10_000_000) is ApprovalLevel.EXECUTIVE
    assert small.requisition_id == _requisition(1).requisition_id  # deterministic


def test_requisition_trigger_must_be_requested() -> None:
    with pytest.raises(ValidationError, match="none of its lines"):
        _requisition(
            40,
            triggered_by=ReorderTrigger(
                item_code="MASK", on_hand=0, reorder_point=5, par_level=50, observed_at=NOW
            ),
        )
    with pytest.raises(ValidationError, match="above its reorder point"):
        ReorderTrigger(item_code="MASK", on_hand=6, reorder_point=5, par_level=50, observed_at=NOW)


def _journal_line(line_id: str, debit: int = 0, credit: int = 0, currency: str = "USD") -> JournalLine:
    return JournalLine(
        line_id=line_id,
        journal_date=dt.date(2026, 11, 20),
        account="1200" if debit else "4000",
        debit_cents=debit,
        credit_cents=credit,
        currency=currency,
        encounter_ref="ENC-abc",
        source_event_id="e1",
        correlation_id="c1",
    )


def _batch(*lines: JournalLine, **overrides: Any) -> JournalBatch:
    fields: dict[str, Any] = {
        "batch_id": "B1",
        "legal_entity": "NMHC",
        "posting_mode": PostingMode.DAILY_SUMMARY,
        "accounting_period": "2026-11",
        "journal_date": dt.date(2026, 11, 20),
        "lines": lines,
    }
    return JournalBatch.model_validate(fields | overrides)


def test_journal_batch_must_balance_in_one_currency() -> None:
    batch = _batch(
        _journal_line("d", debit=700), _journal_line("c1", credit=500), _journal_line("c2", credit=200)
    )
    assert batch.total_debit_cents == batch.total_credit_cents == 700 and batch.currency == "USD"
    with pytest.raises(ValidationError, match="does not balance"):
        _batch(_journal_line("d", debit=700), _journal_line("c", credit=699))
    with pytest.raises(ValidationError, match="mixes currencies"):
        _batch(_journal_line("d", debit=700), _journal_line("c", credit=700, currency="EUR"))
    with pytest.raises(ValidationError, match="repeats a line id"):
        _batch(_journal_line("x", debit=700), _journal_line("x", credit=700))
    with pytest.raises(ValidationError, match="not in accounting period"):
        _batch(_journal_line("d", debit=1), _journal_line("c", credit=1), accounting_period="2026-12")
    with pytest.raises(ValidationError):
        _batch(_journal_line("d", debit=1), _journal_line("c", credit=1), accounting_period="2026-13")
    with pytest.raises(ValidationError):
        _batch(_journal_line("d", debit=1))  # one line is not a journal


# --------------------------------------------------------------------------------------------------
# (g) properties


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=20), st.randoms())
def test_a_batch_of_balanced_pairs_always_validates(amounts: list[int], rng: random.Random) -> None:
    lines = [_journal_line(f"d{i}", debit=amount) for i, amount in enumerate(amounts)]
    lines += [_journal_line(f"c{i}", credit=amount) for i, amount in enumerate(amounts)]
    rng.shuffle(lines)
    batch = _batch(*lines)
    assert batch.total_debit_cents == batch.total_credit_cents == sum(amounts)
    with pytest.raises(ValidationError):
        _batch(*lines, _journal_line("extra", debit=1))


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**8),
    st.lists(
        st.tuples(st.sampled_from(list(AdjustmentGroup)), st.integers(min_value=-(10**6), max_value=10**6)),
        max_size=6,
    ),
)
def test_a_line_paid_net_of_its_adjustments_always_balances(charge: int, cas: list[tuple[Any, int]]) -> None:
    adjustments = tuple(_adjustment(group, "45", cents) for group, cents in cas)
    paid = charge - sum(cents for _, cents in cas)
    line = RemittanceLine(charge_cents=charge, paid_cents=paid, adjustments=adjustments)
    claim = RemittanceClaim(
        claim_id="A1", status=ClaimStatus.PRIMARY, charge_cents=charge, paid_cents=paid, lines=(line,)
    )
    assert claim.adjusted_cents == charge - paid
