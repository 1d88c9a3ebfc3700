"""Master-data sets on disk: every problem located by file, line and column; consistency; diffs."""

from __future__ import annotations

from pathlib import Path

import pytest

from canonical.reference import MasterDataSet, diff_sets
from canonical.reference_files import MasterDataFileError, read_set, write_set
from tests.masterdata import demo_set


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    return write_set(demo_set(), tmp_path / "set")


def _problems(directory: Path) -> list[str]:
    with pytest.raises(MasterDataFileError) as caught:
        read_set(directory)
    return [p.describe() for p in caught.value.problems]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), "utf-8")


def test_a_written_set_reads_back_equal(copy: Path) -> None:
    again = read_set(copy)
    assert again == demo_set() and again.digest() == demo_set().digest()


def test_a_bad_value_names_file_line_and_column(copy: Path) -> None:
    lines = (copy / "items.csv").read_text("utf-8").splitlines()
    header = lines[0].split(",")
    cost = header.index("unit_cost_cents")
    cells = lines[3].split(",")
    cells[cost] = "twelve"
    lines[3] = ",".join(cells)
    (copy / "items.csv").write_text("\n".join(lines) + "\n", "utf-8")
    [problem] = _problems(copy)
    assert problem.startswith("items.csv line 4 [") and "column unit_cost_cents" in problem


def test_an_unknown_column_and_a_missing_file_are_reported(copy: Path) -> None:
    _edit(copy / "payers.csv", "payer_id,", "payer_code,")
    (copy / "locations.csv").unlink()
    problems = _problems(copy)
    assert any("payers.csv line 1" in p and "unknown column(s) payer_code" in p for p in problems)
    assert any("locations.csv is missing" in p for p in problems)


def test_the_manifest_needs_a_system_of_record_for_every_domain(copy: Path) -> None:
    text = (copy / "manifest.yaml").read_text("utf-8")
    kept = [line for line in text.splitlines(keepends=True)]
    start = next(i for i, line in enumerate(kept) if "domain: payers" in line)
    del kept[start : start + 3]
    (copy / "manifest.yaml").write_text("".join(kept), "utf-8")
    problems = _problems(copy)
    assert any("manifest.yaml" in p and "no system of record for payers" in p for p in problems)


def _with(data: MasterDataSet, domain: str, key: str, **update: object) -> MasterDataSet:
    records = tuple(r.model_copy(update=update) if r.key == key else r for r in data.records(domain))
    return data.model_copy(update={domain: records})


def test_references_must_resolve() -> None:
    data = demo_set()
    department = data.departments[0]
    broken = _with(data, "departments", department.key, cost_centre="CC-NONE")
    broken = _with(broken, "departments", data.departments[1].key, facility="NOPE")
    reasons = [p.describe() for p in broken.problems()]
    assert any("cost_centre CC-NONE is unknown" in r for r in reasons)
    assert any("facility NOPE is unknown" in r for r in reasons)


def test_a_facility_business_unit_must_belong_to_its_legal_entity() -> None:
    data = demo_set()
    entities = {f.legal_entity for f in data.facilities}
    facility = data.facilities[0]
    other = next(u for u in data.business_units if u.legal_entity != facility.legal_entity)
    assert len(entities) > 1, "the demo network has more than one legal entity"
    reasons = [p.reason for p in _with(data, "facilities", facility.key, business_unit=other.code).problems()]
    assert any(f"belongs to legal entity {other.legal_entity}" in r for r in reasons)


def test_accounts_must_exist_with_the_right_type() -> None:
    data = demo_set()
    code = data.charge_codes[0]
    asset = next(a.account for a in data.accounts if a.account_type.value == "asset")
    reasons = [p.reason for p in _with(data, "charge_codes", code.key, revenue_account=asset).problems()]
    assert any("is a asset account, not revenue" in r for r in reasons)
    reasons = [p.reason for p in _with(data, "charge_codes", code.key, revenue_account="0000").problems()]
    assert any("revenue_account 0000 is not in the chart of accounts" in r for r in reasons)


def test_duplicate_keys_are_refused() -> None:
    data = demo_set()
    doubled = data.model_copy(update={"payers": (*data.payers, data.payers[0])})
    assert [p.reason for p in doubled.problems()] == ["duplicate key"]


def test_the_shipped_set_is_consistent() -> None:
    assert demo_set().problems() == []


def test_diff_names_added_removed_and_changed_fields() -> None:
    old = demo_set()
    first, second = old.charge_codes[0], old.charge_codes[1]
    new = _with(old, "charge_codes", first.key, price_cents=first.price_cents + 100)
    new = new.model_copy(update={"charge_codes": tuple(c for c in new.charge_codes if c.key != second.key)})
    added = second.model_copy(update={"code": "99499", "description": "Unlisted E/M service"})
    new = new.model_copy(update={"charge_codes": (*new.charge_codes, added)})
    changes = {(c.domain, c.key): c for c in diff_sets(old, new)}
    assert set(changes) == {
        ("charge_codes", first.key),
        ("charge_codes", second.key),
        ("charge_codes", "99499"),
    }
    assert changes["charge_codes", first.key].fields == {
        "price_cents": (first.price_cents, first.price_cents + 100)
    }
    assert changes["charge_codes", second.key].change == "removed"
    assert changes["charge_codes", "99499"].change == "added"
    assert diff_sets(old, old) == []


def test_diff_against_nothing_adds_everything() -> None:
    data = demo_set()
    changes = diff_sets(None, data)
    assert len(changes) == sum(data.counts().values()) + len(data.manifest.registry)
    assert {c.change for c in changes} == {"added"}


def test_a_department_cost_centre_must_be_in_its_facility_books() -> None:
    data = demo_set()
    department = next(d for d in data.departments if d.facility == "NMH")
    facility = data.facility("NMH")
    assert facility is not None
    foreign = next(
        c
        for c in data.cost_centres
        if (unit := data.business_unit(c.business_unit)) is not None
        and unit.legal_entity != facility.legal_entity
    )
    reasons = [
        p.reason for p in _with(data, "departments", department.key, cost_centre=foreign.code).problems()
    ]
    assert any(f"cost_centre {foreign.code} belongs to legal entity" in r for r in reasons)
