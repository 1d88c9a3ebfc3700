"""Master data for tests: the shipped demo set, and canonical events enriched with it."""

from __future__ import annotations

from functools import lru_cache

from actors.enrich import enrich
from canonical.envelope import EventEnvelope
from canonical.hl7v2.mapping import canonicalize
from canonical.hl7v2.parser import parse_message
from canonical.reference import MasterDataSet
from canonical.reference_files import read_set
from cluster.masterdata import DEMO_DIR


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
