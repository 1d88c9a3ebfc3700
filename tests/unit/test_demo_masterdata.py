"""Tests for the shipped demo master data: valid, big enough, in step with its generator and the synth."""

from __future__ import annotations

from pathlib import Path

import pytest

from canonical.envelope import ChargePayload, EncounterPayload, EventEnvelope, MedicationAdministrationPayload
from canonical.hl7v2.mapping import canonicalize
from canonical.reference import DOMAINS, AccountType, ItemCategory, MasterDataSet, PayerType
from canonical.reference_files import MANIFEST, read_set
from cluster.masterdata import DEMO_DIR
from cluster.masterdata.build_demo import VERSION, build, main
from cluster.synth import generate_day

SEEDS = (7, 11, 2026)


@pytest.fixture(scope="module")
def demo() -> MasterDataSet:
    return read_set(DEMO_DIR)


@pytest.fixture(scope="module")
def events() -> list[EventEnvelope]:
    out: list[EventEnvelope] = []
    for seed in SEEDS:
        for raw in generate_day(encounters=300, seed=seed).messages:
            out.extend(canonicalize(raw))
    return out


def test_shipped_directory_reads_without_problems(demo: MasterDataSet) -> None:
    assert demo.version == VERSION == "2026.11.1"
    assert demo.problems() == []
    assert sorted(p.name for p in DEMO_DIR.iterdir()) == sorted([MANIFEST, *(f"{d}.csv" for d in DOMAINS)])
    assert {entry.domain for entry in demo.manifest.registry} == set(DOMAINS)
    systems = {entry.domain: entry.system for entry in demo.manifest.registry}
    assert systems["accounts"] == "Workday Financials"
    assert systems["items"] == "Infor CloudSuite Supply Management"
    assert systems["charge_codes"] == "Epic Resolute charge description master"


def test_counts(demo: MasterDataSet) -> None:
    counts = demo.counts()
    assert counts["facilities"] >= 3
    assert counts["departments"] >= 20
    assert counts["items"] >= 200
    assert counts["charge_codes"] >= 100
    assert counts["providers"] >= 30
    assert counts["payers"] >= 12
    assert counts["accounts"] >= 30
    assert counts["locations"] >= 30
    assert counts["cost_centres"] >= counts["departments"]
    assert 2 <= counts["legal_entities"] <= 3
    assert counts["business_units"] >= counts["facilities"]


def test_generator_output_matches_shipped_files(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    shipped = sorted(p.name for p in DEMO_DIR.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == shipped
    stale = [name for name in shipped if (tmp_path / name).read_bytes() != (DEMO_DIR / name).read_bytes()]
    assert stale == [], f"regenerate with: python -m cluster.masterdata.build_demo ({stale} differ)"
    assert build().digest() == read_set(DEMO_DIR).digest()


def test_organisation_rules(demo: MasterDataSet) -> None:
    for entity in demo.legal_entities:
        receivables = demo.account(entity.receivables_account)
        assert receivables is not None and receivables.account == "1200"
        assert receivables.account_type is AccountType.ASSET
    for facility in demo.facilities:
        unit = demo.business_unit(facility.business_unit)
        assert unit is not None and unit.legal_entity == facility.legal_entity
    # Exactly one department (NMH PEDS, a closed unit) has an inactive cost centre.
    inactive = []
    for department in demo.departments:
        centre = demo.cost_centre(department.cost_centre)
        assert centre is not None
        home = demo.facility(department.facility)
        assert home is not None and centre.business_unit == home.business_unit
        if not centre.active:
            inactive.append(department.key)
    assert inactive == ["NMH|PEDS"]
    departments = {(d.facility, d.code) for d in demo.departments}
    for location in demo.locations:
        assert (location.facility, location.code) not in departments
        assert (location.facility, location.department) in departments


def test_content_rules(demo: MasterDataSet) -> None:
    kinds = {"1010": AccountType.ASSET, "1400": AccountType.ASSET, "1410": AccountType.ASSET}
    kinds |= {"1420": AccountType.ASSET, "4900": AccountType.REVENUE, "4950": AccountType.REVENUE}
    for account, kind in kinds.items():
        found = demo.account(account)
        assert found is not None and found.account_type is kind
    assert demo.charge_code("99499") is None  # tests use it as the unmapped code
    for code in ("99211", "93005", "99283", "99284", "99285", "36415", "71046", "80053", "93000"):
        assert demo.charge_code(code) is not None, code
    assert demo.item("00409-4888-01") is not None
    inventory = {ItemCategory.SUPPLY: "1400", ItemCategory.DRUG: "1410", ItemCategory.IMPLANT: "1420"}
    for item in demo.items:
        assert item.gl_account == inventory[item.category], item.key
        assert item.reorder_point <= item.par_level
        if item.code_system == "SUPPLY" and (charge := demo.charge_code(item.item_code)) is not None:
            assert charge.revenue_account == "4900"
    assert {p.payer_type for p in demo.payers} >= set(PayerType) - {PayerType.OTHER}
    assert len({p.npi for p in demo.providers}) == len(demo.providers)


def test_every_code_the_synthetic_day_sends_resolves(
    demo: MasterDataSet, events: list[EventEnvelope]
) -> None:
    seen = {"encounters": 0, "charges": 0, "supplies": 0, "administrations": 0}

    def department_ok(facility: str, code: str) -> None:
        department = demo.department(facility, code)
        assert department is not None, f"department {facility}|{code}"
        centre = demo.cost_centre(department.cost_centre)
        assert centre is not None and centre.active, f"cost centre of {facility}|{code}"

    for env in events:
        payload = env.payload
        if isinstance(payload, EncounterPayload | ChargePayload | MedicationAdministrationPayload):
            encounter = payload.encounter
            assert demo.facility(encounter.facility) is not None, encounter.facility
            if encounter.department:
                department_ok(encounter.facility, encounter.department)
            seen["encounters"] += 1
        if isinstance(payload, ChargePayload):
            charge = payload.charge
            master = demo.charge_code(charge.charge_code)
            assert master is not None, charge.charge_code
            if charge.unit_amount_cents is not None:
                assert master.price_cents == charge.unit_amount_cents, charge.charge_code
            assert demo.facility(charge.facility) is not None, charge.facility
            if charge.department:
                department_ok(charge.facility, charge.department)
            seen["charges"] += 1
            if charge.is_supply:
                assert demo.item(charge.charge_code) is not None, charge.charge_code
                seen["supplies"] += 1
        if isinstance(payload, MedicationAdministrationPayload):
            administration = payload.administration
            item = demo.item(administration.medication_code)
            assert item is not None, administration.medication_code
            assert item.category is ItemCategory.DRUG
            assert item.unit == administration.units, administration.medication_code
            if administration.department:
                department_ok(administration.facility, administration.department)
            seen["administrations"] += 1
    assert all(count > 0 for count in seen.values()), seen
