"""The demo's governance act, without services: late charges are real DFTs of the day's encounters with
one line of a code the shipped charge master lacks, and the fixed set maps it."""

from __future__ import annotations

import pytest

from actors.enrich import MasterDataFault
from canonical.envelope import ChargePayload
from canonical.hl7v2.mapping import canonicalize
from canonical.hl7v2.parser import parse_message
from cluster.demo_governance import NEW_CODE, NEW_PRICE_CENTS, late_charges, with_new_code
from cluster.synth import generate_day
from tests.masterdata import demo_set, enriched


def test_late_charges_bill_the_new_code_to_encounters_of_the_day() -> None:
    day = generate_day(encounters=40, seed=3)
    late = late_charges(day, 3)
    assert len(late) == 3
    day_ids = {parse_message(raw).control_id for raw in day.messages}
    day_encounters = {e.encounter_id for raw in day.messages for e in canonicalize(raw)}
    for raw in late:
        assert parse_message(raw).control_id not in day_ids
        [event] = canonicalize(raw)
        assert isinstance(event.payload, ChargePayload)
        charge = event.payload.charge
        assert (charge.charge_code, charge.amount_cents, charge.quantity) == (NEW_CODE, NEW_PRICE_CENTS, 1)
        assert event.encounter_id in day_encounters


def test_the_shipped_set_refuses_the_new_code_and_the_fixed_one_maps_it() -> None:
    [raw] = late_charges(generate_day(encounters=40, seed=3), 1)
    with pytest.raises(MasterDataFault, match="MD-CHARGE-CODE-UNMAPPED"):
        enriched(raw)
    fixed = with_new_code(demo_set())
    assert fixed.problems() == [] and fixed.version != demo_set().version
    [event] = enriched(raw, fixed)
    like = demo_set().charge_code("99283")
    assert event.dimensions is not None and like is not None
    assert event.dimensions.revenue_account == like.revenue_account
