"""Master data for tests: the shipped demo set, and canonical events enriched with it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache

import pytest

from actors.enrich import enrich
from actors.masterdata import MasterDataStore
from canonical.envelope import EventEnvelope
from canonical.hl7v2.mapping import canonicalize
from canonical.hl7v2.parser import parse_message
from canonical.reference import (
    AccountType,
    BusinessUnit,
    CostCentre,
    Facility,
    GlAccount,
    Item,
    ItemCategory,
    LegalEntity,
    MasterDataSet,
)
from canonical.reference_files import read_set
from cluster.masterdata import DEMO_DIR
from foundation.settings import get_settings


@lru_cache(maxsize=1)
def demo_set() -> MasterDataSet:
    """Return the shipped demo master data (read once per test session)."""
    return read_set(DEMO_DIR)


def enriched(raw: bytes, data: MasterDataSet | None = None) -> list[EventEnvelope]:
    """Return the canonical events of a message with their ERP dimensions, as the transform actors do."""
    msg = parse_message(raw)
    return enrich(msg, canonicalize(msg), data or demo_set())


def cost_centre(facility: str, department: str) -> str:
    """Return the cost centre of a department in the demo set."""
    found = demo_set().department(facility, department)
    assert found is not None, f"{facility} {department} is not a department of the demo set"
    return found.cost_centre


@lru_cache(maxsize=1)
def ledger_set() -> MasterDataSet:
    """Return the demo set plus the small network the adapter tests post to (GH and NH, legal entities
    GH-LE, NH-LE and GHC): the ERP adapter checks every line against master data, so their codes must be
    in it. Consistent, so it also loads into Redis for tests over real servers."""
    demo = demo_set()
    version = f"{demo.version}-adapter-tests"
    return demo.model_copy(
        update={
            "manifest": demo.manifest.model_copy(update={"version": version}),
            "accounts": (
                *demo.accounts,
                GlAccount(account="4000", name="Patient service revenue", account_type=AccountType.REVENUE),
                GlAccount(account="1900", name="Suspense", account_type=AccountType.ASSET),
                GlAccount(account="2900", name="Inter-company payable", account_type=AccountType.LIABILITY),
            ),
            "legal_entities": (
                *demo.legal_entities,
                *(
                    LegalEntity(code=code, name=f"{code} Health", receivables_account="1200")
                    for code in ("GH-LE", "NH-LE", "GHC")
                ),
            ),
            "business_units": (
                *demo.business_units,
                BusinessUnit(code="GH-ACUTE", name="GH acute care", legal_entity="GH-LE"),
                BusinessUnit(code="NH-ACUTE", name="NH acute care", legal_entity="NH-LE"),
            ),
            "cost_centres": (
                *demo.cost_centres,
                *(
                    CostCentre(code=code, name=f"{code} cost centre", business_unit=unit)
                    for code, unit in (
                        ("ICU", "GH-ACUTE"),
                        ("ER", "GH-ACUTE"),
                        ("GH-ICU", "GH-ACUTE"),
                        ("NH-ICU", "NH-ACUTE"),
                    )
                ),
            ),
            "facilities": (
                *demo.facilities,
                Facility(code="GH", name="General Hospital", legal_entity="GH-LE", business_unit="GH-ACUTE"),
                Facility(code="NH", name="North Hospital", legal_entity="NH-LE", business_unit="NH-ACUTE"),
            ),
            "items": (
                *demo.items,
                *(
                    Item(
                        item_code=code,
                        code_system="NDC",
                        description="Heparin 5000 unit/mL",
                        category=ItemCategory.DRUG,
                        unit="mL",
                        gl_account="1400",
                        unit_cost_cents=125,
                        reorder_point=10,
                        par_level=50,
                        supplier="Pfizer",
                        lead_time_days=2,
                    )
                    for code in ("HEP", "0409-4888-02")
                ),
            ),
        }
    )


@contextlib.contextmanager
def settings_redis(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, data: MasterDataSet | None = None
) -> Iterator[str]:
    """Point the process settings at ``redis_url`` (HCSYNC_REDIS_URL) for the block, with ``data`` loaded
    there first as `hcsync masterdata load` loads it (None: leave Redis as it is, maybe empty).

    An ERP adapter built in the block (adapters.server.build_server) reads its master data there.
    """
    if data is not None:
        MasterDataStore.from_url(redis_url).load(data, loaded_by="tests")
    monkeypatch.setenv("HCSYNC_REDIS_URL", redis_url)
    get_settings.cache_clear()
    try:
        yield redis_url
    finally:
        monkeypatch.delenv("HCSYNC_REDIS_URL")
        get_settings.cache_clear()
