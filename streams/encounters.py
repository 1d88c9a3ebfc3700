"""Apply a batch of events to their encounters, free of Faust: records in, commands and new states out.

The encounters agent (streams/app.py) takes a batch of event records (each a batch record of events:
streams/records.py), hands them to ``apply_records`` with a way to read an encounter's stored state, and
gets back what the batch does: the billing, ERP and revenue commands as batch records per partition, the
quarantine records, and one new state per touched encounter. It then waits once for the broker to take
every record and only then writes the states, so a batch retried half-way sends its commands again (the
sinks drop the repeats) instead of never.

Within a batch, an encounter's events are applied in record order to one working state. Every event
still sends its own commands, an account upsert per encounter event included: billing keeps one upsert
record per source event (what `hcsync` audits and what finance traces an account change to), and an
upsert is cheap in a batch call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from canonical.envelope import AccountMovePayload, EventEnvelope, MergePayload, PatientPayload
from canonical.quarantine import failure_record, poison_record, unenriched_record
from streams.encounter_state import EncounterState, apply_event, patient_command
from streams.posting import PostingRules
from streams.records import PartitionedBatches, split

__all__ = ["BatchOutcome", "StateCodec", "apply_records"]


class StateCodec:
    """Encounter states as the table stores them (their JSON), with the last states decoded kept at hand.

    A state decoded once is reused while the table still holds the very bytes it came from, so an
    encounter touched by batch after batch is not parsed again each time.
    """

    def __init__(self, keep: int = 50_000) -> None:
        self._keep = keep
        self._decoded: dict[str, tuple[bytes, EncounterState]] = {}

    def decode(self, encounter_id: str, stored: bytes | None) -> EncounterState:
        if stored is None:
            return EncounterState(encounter_id=encounter_id)
        known = self._decoded.get(encounter_id)
        if known is not None and known[0] is stored:
            return known[1]
        state = EncounterState.model_validate_json(stored)
        self._remember(encounter_id, stored, state)
        return state

    def encode(self, state: EncounterState) -> bytes:
        stored = state.model_dump_json().encode("utf-8")
        self._remember(state.encounter_id, stored, state)
        return stored

    def _remember(self, encounter_id: str, stored: bytes, state: EncounterState) -> None:
        if encounter_id not in self._decoded and len(self._decoded) >= self._keep:
            # Forget the oldest (dicts keep insertion order): the table, not this cache, holds the truth.
            del self._decoded[next(iter(self._decoded))]
        self._decoded[encounter_id] = (stored, state)


@dataclass(slots=True)
class BatchOutcome:
    """What one batch of event records does."""

    billing: PartitionedBatches
    erp: PartitionedBatches
    revenue: PartitionedBatches
    exceptions: list[bytes] = field(default_factory=list)
    states: dict[str, EncounterState] = field(default_factory=dict)  # touched encounters, new state
    counts: Counter[str] = field(default_factory=Counter)


def apply_records(
    records: list[bytes],
    load: Callable[[str], EncounterState],
    rules: PostingRules,
    partitions: int,
) -> BatchOutcome:
    """Apply every event of ``records`` (batch records, in order) to its encounter's state.

    ``load`` returns an encounter's stored state (a new one when none). An item that is not an event is
    quarantined as poison; an event whose application fails is quarantined with the failure; neither
    stops the others.
    """
    out = BatchOutcome(
        billing=PartitionedBatches(partitions),
        erp=PartitionedBatches(partitions),
        revenue=PartitionedBatches(partitions),
    )
    working: dict[str, EncounterState] = {}
    before: dict[str, EncounterState] = {}
    for record in records:
        for item in split(record):
            try:
                env = EventEnvelope.model_validate_json(item)
            except ValidationError as exc:
                # Only our own ingest writes here, but a poison item must not stop every encounter.
                out.exceptions.append(poison_record("encounters", item, exc))
                out.counts["quarantined"] += 1
                continue
            try:
                _apply(env, working, before, load, rules, out)
            except Exception as exc:  # a failure of this event's data: quarantined, the rest goes on
                out.exceptions.append(failure_record("encounters", item, "ENCOUNTER-PROCESSING-FAILED", exc))
                out.counts["quarantined"] += 1
    out.states = {eid: state for eid, state in working.items() if state is not before[eid]}
    out.counts["billing_commands"] += len(out.billing)
    out.counts["erp_commands"] += len(out.erp)
    out.counts["revenue_commands"] += len(out.revenue)
    return out


def _apply(
    env: EventEnvelope,
    working: dict[str, EncounterState],
    before: dict[str, EncounterState],
    load: Callable[[str], EncounterState],
    rules: PostingRules,
    out: BatchOutcome,
) -> None:
    eid = env.encounter_id
    if isinstance(env.payload, MergePayload | PatientPayload | AccountMovePayload):
        # A merge, a person update or an account move changes billing accounts of a patient; it keeps no
        # encounter state, and billing is idempotent on the command id and orders them by event time.
        out.billing.add(eid, patient_command(env).model_dump_json().encode())
        return
    state = working.get(eid)
    if state is None:
        state = working[eid] = before[eid] = load(eid)
    transition = apply_event(state, env, rules)
    if transition.duplicate:
        out.counts["duplicate_events"] += 1
        return
    for command in transition.billing:
        out.billing.add(eid, command.model_dump_json().encode())
    for journal in transition.erp:
        out.erp.add(eid, journal.model_dump_json().encode())
    for revenue in transition.revenue:
        out.revenue.add(eid, revenue.model_dump_json().encode())
    for refused in transition.unenriched:
        out.exceptions.append(unenriched_record(refused))
    out.counts["quarantined"] += len(transition.unenriched)
    if transition.unenriched and transition.state == state:
        return  # nothing else changed: a lone posting without dimensions leaves no trace in the state
    working[eid] = transition.state
    out.counts["held_charges"] += int(transition.held)
    out.counts["held_released"] += transition.released
    out.counts["stale_events"] += int(transition.stale)
