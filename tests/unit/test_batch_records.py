"""Batch records (streams/records.py) and batches of events applied at once (streams/encounters.py)."""

from __future__ import annotations

import json

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from canonical.models import EncounterStatus
from streams.commands import (
    PostChargeCommand,
    UpsertAccountCommand,
    billing_command_adapter,
    erp_command_adapter,
)
from streams.encounter_state import EncounterState, apply_event
from streams.encounters import StateCodec, apply_records
from streams.posting import PostingRules
from streams.records import PartitionedBatches, pack, partition_of, split
from tests.hl7_samples import a40, adt, dft
from tests.masterdata import enriched

RULES = PostingRules(encounter_ref_key=b"k")
PARTITIONS = 4


# --- records ------------------------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_partition_of_is_the_producers_default_partitioner(key: str, partitions: int) -> None:
    every = list(range(partitions))
    assert partition_of(key, partitions) == DefaultPartitioner()(key.encode(), every, every)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), max_size=20))
def test_items_come_back_from_their_records_in_order_with_their_content(
    docs: list[dict[str, object]],
) -> None:
    items = [json.dumps(doc, indent=1 if i % 2 else None).encode() for i, doc in enumerate(docs)]
    records = list(pack(items, max_bytes=200))
    back = [json.loads(item) for record in records for item in split(record)]
    assert back == docs
    assert all(len(r) <= 200 or len(split(r)) == 1 for r in records), "only a lone large item may exceed"


def test_a_record_of_one_json_document_is_a_batch_of_one() -> None:
    assert split(b'{"a": 1}') == [b'{"a": 1}']
    assert split(b"not json") == [b"not json"]


def test_partitioned_batches_keep_the_order_of_each_partition() -> None:
    batches = PartitionedBatches(PARTITIONS)
    keys = [f"NMH:V{n % 7}" for n in range(40)]
    for n, key in enumerate(keys):
        batches.add(key, json.dumps({"key": key, "n": n}).encode())
    assert len(batches) == 40
    seen: list[dict[str, object]] = []
    for partition, record in batches.records():
        for item in split(record):
            doc = json.loads(item)
            assert partition == partition_of(str(doc["key"]), PARTITIONS)
            seen.append(doc)
    for key in set(keys):
        ns = [doc["n"] for doc in seen if doc["key"] == key]
        assert ns == sorted(ns) and len(ns) == keys.count(key)


# --- a batch of events ----------------------------------------------------------------------------------


def _records(*messages: bytes) -> list[bytes]:
    """The event records the ingest agent writes for these messages (one per partition)."""
    batches = PartitionedBatches(PARTITIONS)
    for raw in messages:
        for event in enriched(raw):
            batches.add(event.encounter_id, event.model_dump_json().encode())
    return [record for _, record in batches.records()]


def _one_by_one(*messages: bytes) -> tuple[dict[str, EncounterState], list[object]]:
    states: dict[str, EncounterState] = {}
    billing: list[object] = []
    for raw in messages:
        for event in enriched(raw):
            state = states.get(event.encounter_id) or EncounterState(encounter_id=event.encounter_id)
            t = apply_event(state, event, RULES)
            states[event.encounter_id] = t.state
            billing.extend(t.billing)
    return states, billing


def _billing(records: list[tuple[int, bytes]]) -> list[object]:
    return [billing_command_adapter.validate_json(item) for _, record in records for item in split(record)]


MESSAGES = (
    adt("A01", "A1", "V1"),
    dft("D1", "V1", [("CG", "99283", "ED", 1, "10.00"), ("CG", "36415", "Draw", 2, "5.00")]),
    adt("A08", "A2", "V1"),
    adt("A04", "A3", "V2"),
    dft("D2", "V2", [("CG", "99283", "ED", 1, "20.00")]),
    adt("A03", "A4", "V1"),
)


def test_a_batch_ends_in_the_states_of_one_event_at_a_time() -> None:
    stored: dict[str, EncounterState] = {}
    out = apply_records(_records(*MESSAGES), lambda eid: EncounterState(encounter_id=eid), RULES, PARTITIONS)
    stored.update(out.states)
    expected, _ = _one_by_one(*MESSAGES)
    assert stored == expected
    assert stored["NMH:V1"].status is EncounterStatus.DISCHARGED and stored["NMH:V1"].charges_posted == 2


def test_a_batch_sends_every_event_s_commands_each_upsert_before_the_charges_after_it() -> None:
    out = apply_records(_records(*MESSAGES), lambda eid: EncounterState(encounter_id=eid), RULES, PARTITIONS)
    commands = _billing(list(out.billing.records()))
    _, expected = _one_by_one(*MESSAGES)
    assert sorted(c.command_id for c in commands) == sorted(c.command_id for c in expected)  # type: ignore[attr-defined]
    upserts = [c for c in commands if isinstance(c, UpsertAccountCommand)]
    v1 = [u.state_version for u in upserts if u.encounter.encounter_id == "NMH:V1"]
    assert v1 == [1, 2, 3], "one upsert per encounter event, in order"
    first_charge = next(i for i, c in enumerate(commands) if isinstance(c, PostChargeCommand))
    first_upsert = next(i for i, c in enumerate(commands) if isinstance(c, UpsertAccountCommand))
    assert first_upsert < first_charge
    charges = [c for c in commands if isinstance(c, PostChargeCommand)]
    assert len(charges) == 3
    journals = [erp_command_adapter.validate_json(i) for _, r in out.erp.records() for i in split(r)]
    assert len(journals) == 3


def test_a_batch_applied_again_on_its_own_states_changes_nothing() -> None:
    first = apply_records(
        _records(*MESSAGES), lambda eid: EncounterState(encounter_id=eid), RULES, PARTITIONS
    )
    again = apply_records(_records(*MESSAGES), first.states.__getitem__, RULES, PARTITIONS)
    assert not again.states and not len(again.billing) and not len(again.erp)
    assert again.counts["duplicate_events"] == sum(len(enriched(m)) for m in MESSAGES)


def test_a_poison_item_and_a_failing_event_are_quarantined_and_the_rest_goes_on() -> None:
    good = _records(adt("A01", "A1", "V1"))
    [charge] = enriched(dft("D1", "V9", [("CG", "99283", "ED", 1, "10.00")]))
    # A charge whose state cannot be read: the failure is the event's, not the batch's.
    bad_state = b'{"encounter_id": "NMH:V9", "status": "no such status"}'
    records = [b'{"event_id": "broken"}\n' + good[0], charge.model_dump_json().encode()]
    codec = StateCodec()

    def load(eid: str) -> EncounterState:
        return codec.decode(eid, bad_state if eid == "NMH:V9" else None)

    out = apply_records(records, load, RULES, PARTITIONS)
    assert out.counts["quarantined"] == 2 and len(out.exceptions) == 2
    reasons = [json.loads(record) for record in out.exceptions]
    assert {r["rule"] for r in reasons} >= {"ENCOUNTER-PROCESSING-FAILED"}
    assert list(out.states) == ["NMH:V1"]


def test_patient_level_events_become_billing_commands_without_state() -> None:
    out = apply_records(
        _records(a40("M1", "P1", "P2")), lambda eid: EncounterState(encounter_id=eid), RULES, PARTITIONS
    )
    assert not out.states
    assert [type(c).__name__ for c in _billing(list(out.billing.records()))] == ["MergePatientCommand"]


def test_the_state_codec_reuses_a_decoded_state_while_the_table_holds_its_bytes() -> None:
    codec = StateCodec(keep=2)
    [event] = enriched(adt("A01", "A1", "V1"))
    state = apply_event(EncounterState(encounter_id=event.encounter_id), event, RULES).state
    stored = codec.encode(state)
    assert codec.decode(state.encounter_id, stored) is state
    copy = bytes(bytearray(stored))
    assert codec.decode(state.encounter_id, copy) == state
    for n in range(3):
        codec.encode(EncounterState(encounter_id=f"X{n}"))
    assert codec.decode(state.encounter_id, copy) == state, "forgotten states are decoded again"
