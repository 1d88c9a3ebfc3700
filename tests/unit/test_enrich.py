"""Enrichment: events get their ERP dimensions from master data, or the whole message is quarantined with a
located fault, a rule id and a fix hint."""

from __future__ import annotations

import pytest

from actors.enrich import RULES, MasterDataFault, enrich
from actors.transform import transform_one
from canonical.envelope import ChargePayload, MergePayload
from canonical.hl7v2.mapping import canonicalize
from canonical.hl7v2.parser import parse_message
from canonical.quarantine import ExceptionRecord
from canonical.reference import MasterDataSet
from tests.hl7_samples import a40, adt, bar, dft, ras
from tests.masterdata import demo_set, enriched


def _fault(raw: bytes, data: MasterDataSet | None = None) -> MasterDataFault:
    msg = parse_message(raw)
    with pytest.raises(MasterDataFault) as caught:
        enrich(msg, canonicalize(msg), data or demo_set())
    return caught.value


def _without(domain: str, key: str) -> MasterDataSet:
    data = demo_set()
    kept = tuple(r for r in data.records(domain) if r.key != key)
    assert len(kept) == len(data.records(domain)) - 1, f"{domain} has no {key}"
    return data.model_copy(update={domain: kept})


def _deactivated(domain: str, key: str) -> MasterDataSet:
    data = demo_set()
    records = tuple(
        r.model_copy(update={"active": False}) if r.key == key else r for r in data.records(domain)
    )
    return data.model_copy(update={domain: records})


def test_a_charge_gets_the_dimensions_of_its_facility_department_and_code() -> None:
    data = demo_set()
    [env] = enriched(dft("D1", "V1", [("CG", "80053", "CMP", 1, "98.00")], dept="MEDSURG"))
    dims = env.dimensions
    assert dims is not None
    facility = data.facility("NMH")
    department = data.department("NMH", "MEDSURG")
    code = data.charge_code("80053")
    assert facility is not None and department is not None and code is not None
    entity = data.legal_entity(facility.legal_entity)
    assert entity is not None
    assert dims.masterdata_version == data.version
    assert (dims.legal_entity, dims.business_unit) == (facility.legal_entity, facility.business_unit)
    assert (dims.department, dims.cost_centre) == ("MEDSURG", department.cost_centre)
    assert dims.revenue_account == code.revenue_account
    assert dims.receivables_account == entity.receivables_account
    assert dims.inventory_account == "" and dims.unit_cost_cents is None


def test_a_supply_line_and_a_dose_also_get_the_item_account_and_cost() -> None:
    data = demo_set()
    [charge] = enriched(
        dft("D1", "V1", [("CG", "SUP1001", "IV start kit", 2, "55.00")], code_system="SUPPLY")
    )
    item = data.item("SUP1001")
    assert item is not None and charge.dimensions is not None
    assert charge.dimensions.inventory_account == item.gl_account
    assert charge.dimensions.unit_cost_cents == item.unit_cost_cents
    [dose] = enriched(ras("R1", "V1", [("1", "1", "CP")]))
    drug = data.item("00409-4888-01")
    assert drug is not None and dose.dimensions is not None
    assert (dose.dimensions.inventory_account, dose.dimensions.unit_cost_cents) == (
        drug.gl_account,
        drug.unit_cost_cents,
    )


def test_a_point_of_care_resolves_to_its_department() -> None:
    data = demo_set()
    location = next(loc for loc in data.locations if loc.facility == "NMH" and loc.active)
    department = data.department("NMH", location.department)
    assert department is not None
    [env] = enriched(adt("A01", "A1", "V1", dept=location.code))
    assert env.dimensions is not None
    assert env.dimensions.department == location.department
    assert env.dimensions.cost_centre == department.cost_centre


def test_an_encounter_event_without_a_department_gets_facility_dimensions_only() -> None:
    [env] = enriched(adt("A05", "A1", "V1", dept=""))
    assert env.dimensions is not None
    assert env.dimensions.cost_centre == "" and env.dimensions.legal_entity


def test_a_merge_is_patient_level_and_gets_no_dimensions() -> None:
    [env] = enriched(a40("M1", "MRN2", "MRN1"))
    assert isinstance(env.payload, MergePayload) and env.dimensions is None


def test_every_event_of_a_coded_account_is_enriched() -> None:
    events = enriched(bar("P05", "B1", "V1"))
    assert events and all(env.dimensions is not None for env in events)


def test_unknown_facility() -> None:
    fault = _fault(adt("A01", "A1", "V1", facility="ZZH")).fault
    assert fault.rule == "MD-FACILITY-UNKNOWN"
    assert (fault.segment, fault.field, fault.found) == ("PV1", "PV1-3.4", "ZZH")
    assert fault.position == 3  # MSH, EVN, PID, PV1
    assert fault.message_id == "A1" and "facilities.csv" in fault.hint and "replay" in fault.hint


def test_an_inactive_facility_stops_postings_only() -> None:
    closed = _deactivated("facilities", "NMH")
    fault = _fault(dft("D1", "V1", [("CG", "80053", "CMP", 1, "98.00")]), closed).fault
    assert (fault.rule, fault.field) == ("MD-FACILITY-UNKNOWN", "FT1-13.4") and "inactive" in fault.reason
    assert enriched(adt("A03", "A3", "V1", discharge="20261121100000"), closed)[0].dimensions is not None


def test_unknown_department_on_a_charge_names_ft1_13() -> None:
    fault = _fault(dft("D1", "V1", [("CG", "80053", "CMP", 1, "98.00")], dept="NOWHERE")).fault
    assert fault.rule == "MD-DEPARTMENT-UNKNOWN"
    assert (fault.segment, fault.field, fault.found) == ("FT1", "FT1-13.1", "NOWHERE")


def test_unknown_department_on_an_admission_names_pv1_3() -> None:
    fault = _fault(adt("A01", "A1", "V1", dept="NOWHERE")).fault
    assert (fault.rule, fault.field) == ("MD-DEPARTMENT-UNKNOWN", "PV1-3.1")


def test_a_charge_must_name_a_department() -> None:
    fault = _fault(dft("D1", "V1", [("CG", "80053", "CMP", 1, "98.00")], dept="")).fault
    assert fault.rule == "MD-DEPARTMENT-UNKNOWN" and "no department" in fault.reason


def test_a_closed_cost_centre_is_refused() -> None:
    department = demo_set().department("NMH", "PEDS")
    assert department is not None, "the demo set has a closed pediatrics unit"
    centre = demo_set().cost_centre(department.cost_centre)
    assert centre is not None and not centre.active
    fault = _fault(dft("D1", "V1", [("CG", "80053", "CMP", 1, "98.00")], dept="PEDS")).fault
    assert fault.rule == "MD-COST-CENTRE-INACTIVE" and department.cost_centre in fault.reason


def test_an_unmapped_charge_code_names_the_ft1_it_is_on() -> None:
    raw = dft("D1", "V1", [("CG", "80053", "CMP", 1, "98.00"), ("CG", "99499", "Unlisted E/M", 1, "10.00")])
    fault = _fault(raw).fault
    assert fault.rule == "MD-CHARGE-CODE-UNMAPPED"
    assert (fault.segment, fault.field, fault.found, fault.position) == ("FT1", "FT1-7.1", "99499", 5)
    assert "charge_codes.csv" in fault.hint


def test_a_supply_line_needs_its_item() -> None:
    raw = dft("D1", "V1", [("CG", "SUP1001", "IV start kit", 1, "27.50")], code_system="SUPPLY")
    fault = _fault(raw, _without("items", "SUP1001")).fault
    assert (fault.rule, fault.field, fault.found) == ("MD-ITEM-UNKNOWN", "FT1-7.1", "SUP1001")


def test_a_dose_of_an_unknown_drug_names_rxa_5() -> None:
    fault = _fault(ras("R1", "V1", [("1", "1", "CP")], drug="99999-9999-99")).fault
    assert (fault.rule, fault.segment, fault.field) == ("MD-ITEM-UNKNOWN", "RXA", "RXA-5.1")


def test_an_inactive_revenue_account_is_refused() -> None:
    code = demo_set().charge_code("80053")
    assert code is not None
    fault = _fault(
        dft("D1", "V1", [("CG", "80053", "CMP", 1, "98.00")]), _deactivated("accounts", code.revenue_account)
    ).fault
    assert fault.rule == "MD-ACCOUNT-NOT-IN-COA" and code.revenue_account in fault.reason


def test_transform_quarantines_the_whole_message_with_its_hint_and_bytes() -> None:
    raw = dft("D1", "V1", [("CG", "80053", "CMP", 1, "98.00"), ("CG", "99499", "Unlisted", 1, "10.00")])
    outcome = transform_one(raw, masterdata=demo_set())
    assert outcome.events == () and outcome.exception is not None
    record = ExceptionRecord.model_validate_json(outcome.exception)
    assert record.rule == "MD-CHARGE-CODE-UNMAPPED" and record.original == raw
    assert record.fix_hint and record.encounter_id == "NMH:V1"
    assert "99499" in record.reason and demo_set().version in record.reason


def test_transform_without_master_data_maps_only() -> None:
    outcome = transform_one(dft("D1", "V1", [("CG", "99499", "Unlisted", 1, "10.00")]))
    assert outcome.events and outcome.exception is None


def test_the_charge_payload_is_left_as_mapped() -> None:
    raw = dft("D1", "V1", [("CG", "80053", "CMP", 1, "98.00")])
    [plain] = canonicalize(raw)
    [rich] = enriched(raw)
    assert isinstance(rich.payload, ChargePayload) and rich.payload == plain.payload
    assert rich.model_copy(update={"dimensions": None}) == plain


def test_each_hint_names_its_rule_in_the_replay_command() -> None:
    faults = [
        _fault(adt("A01", "A1", "V1", facility="ZZH")).fault,
        _fault(dft("D1", "V1", [("CG", "99499", "Unlisted", 1, "10.00")])).fault,
    ]
    for fault in faults:
        assert fault.hint.startswith(RULES[fault.rule]) and f"--rule {fault.rule}" in fault.hint


CHARGE = [("CG", "80053", "CMP", 1, "98.00")]


def test_a_discharge_from_a_closed_unit_goes_through_without_a_cost_centre() -> None:
    [env] = enriched(adt("A03", "A3", "V1", dept="PEDS", discharge="20261121100000"))
    assert env.dimensions is not None and env.dimensions.department == "PEDS"
    assert env.dimensions.cost_centre == "" and env.dimensions.legal_entity


def test_an_inactive_department_stops_postings_only() -> None:
    closed = _deactivated("departments", "NMH|MEDSURG")
    fault = _fault(dft("D1", "V1", CHARGE), closed).fault
    assert (fault.rule, fault.field) == ("MD-DEPARTMENT-UNKNOWN", "FT1-13.1") and "inactive" in fault.reason
    [env] = enriched(adt("A11", "A1", "V1"), closed)
    assert env.dimensions is not None and env.dimensions.cost_centre == ""


def test_an_inactive_location_stops_postings() -> None:
    location = next(loc for loc in demo_set().locations if loc.facility == "NMH" and loc.active)
    closed = _deactivated("locations", location.key)
    fault = _fault(dft("D1", "V1", CHARGE, dept=location.code), closed).fault
    assert fault.rule == "MD-DEPARTMENT-UNKNOWN" and f"location {location.code}" in fault.reason


@pytest.mark.parametrize("domain", ["legal_entities", "business_units"])
def test_an_inactive_company_or_business_unit_stops_postings(domain: str) -> None:
    facility = demo_set().facility("NMH")
    assert facility is not None
    key = facility.legal_entity if domain == "legal_entities" else facility.business_unit
    closed = _deactivated(domain, key)
    fault = _fault(dft("D1", "V1", CHARGE), closed).fault
    assert fault.rule == "MD-FACILITY-UNKNOWN" and key in fault.reason and "inactive" in fault.reason
    assert enriched(adt("A01", "A1", "V1"), closed)[0].dimensions is not None


def test_an_inactive_receivables_account_is_located_at_the_facility() -> None:
    facility = demo_set().facility("NMH")
    assert facility is not None
    entity = demo_set().legal_entity(facility.legal_entity)
    assert entity is not None
    fault = _fault(dft("D1", "V1", CHARGE), _deactivated("accounts", entity.receivables_account)).fault
    assert fault.rule == "MD-ACCOUNT-NOT-IN-COA"
    assert (fault.segment, fault.field, fault.found) == ("FT1", "FT1-13.4", entity.code)
