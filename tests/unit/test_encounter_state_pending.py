"""The encounter state for the types of issue 11: pending events (A14-A16, A25-A27) are recorded and post
nothing; coding changes (BAR^P12, DFT) against the full coding; patient-level events become commands."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from canonical.envelope import EventEnvelope, EventType
from canonical.models import EncounterStatus, MoveScope
from streams.commands import (
    MoveAccountCommand,
    PostChargeCommand,
    UpdateCodingCommand,
    UpdatePatientCommand,
    UpsertAccountCommand,
)
from streams.encounter_state import EncounterState, apply_event, derive_pending, patient_command
from streams.posting import PostingRules
from tests.hl7_samples import a44, a45, adt, bar, bar_p12, dft, dft_p11, person
from tests.masterdata import enriched

RULES = PostingRules(encounter_ref_key=b"k")


def _apply(state: EncounterState, *messages: bytes) -> tuple[EncounterState, list[object]]:
    """Apply every event of the messages; return the state and the billing commands (ERP ones only go
    with a charge: a pending event never sends any)."""
    billing: list[object] = []
    for raw in messages:
        for event in enriched(raw):
            transition = apply_event(state, event, RULES)
            state = transition.state
            billing.extend(transition.billing)
            if transition.erp:
                assert any(isinstance(c, PostChargeCommand) for c in transition.billing), event.event_type
    return state, billing


_PENDING_KIND = {
    "A14": "admit_pending",
    "A15": "transfer_pending",
    "A16": "discharge_pending",
    "A25": "pending_discharge_cancelled",
    "A26": "pending_transfer_cancelled",
    "A27": "pending_admit_cancelled",
}


@pytest.mark.parametrize("trigger", sorted(_PENDING_KIND))
def test_a_pending_event_alone_sends_nothing_and_sets_no_status(trigger: str) -> None:
    state, billing = _apply(EncounterState(encounter_id="NMH:V1"), adt(trigger, "P1", "V1"))
    assert billing == [] and state.status is None and state.encounter is None
    assert list(state.pending_times) == [f"encounter.{_PENDING_KIND[trigger]}"]


def test_a_pending_discharge_is_not_a_discharge_and_keeps_charges_held() -> None:
    state, _ = _apply(
        EncounterState(encounter_id="NMH:V1"), dft("D1", "V1", [("CG", "99283", "ED", 1, "9.00")])
    )
    state, billing = _apply(state, adt("A14", "P1", "V1", at="20261120070000"))
    assert billing == [] and len(state.held_charges) == 1 and state.pending == ["admit"]
    state, billing = _apply(state, adt("A01", "A1", "V1", at="20261120083000"))
    assert [type(c) for c in billing] == [UpsertAccountCommand, PostChargeCommand]
    assert state.pending == []  # the admit carried it out
    before = state
    state, billing = _apply(state, adt("A16", "P2", "V1", discharge="20261121120000", at="20261121090000"))
    assert billing == [] and state.status is EncounterStatus.ADMITTED and state.pending == ["discharge"]
    # The snapshot billing sees is untouched; the announced visit is kept apart.
    assert (state.encounter, state.snapshot_at, state.status_times) == (
        before.encounter,
        before.snapshot_at,
        before.status_times,
    )
    pending = state.pending_visits["encounter.discharge_pending"]
    assert pending.encounter.discharged_at is not None and pending.as_of.hour == 9
    state, billing = _apply(state, adt("A25", "P3", "V1", at="20261121100000"))
    assert billing == [] and state.pending == []


def test_pending_is_derived_from_times_alone() -> None:
    status = {EventType.ENCOUNTER_ADMITTED.value: _t(8)}
    assert derive_pending(status, {EventType.ADMIT_PENDING.value: _t(7)}) == []
    assert derive_pending(status, {EventType.ADMIT_PENDING.value: _t(9)}) == ["admit"]
    cancelled = {EventType.TRANSFER_PENDING.value: _t(9), EventType.PENDING_TRANSFER_CANCELLED.value: _t(9)}
    assert derive_pending({}, cancelled) == []
    transferred = {EventType.ENCOUNTER_TRANSFERRED.value: _t(10)}
    assert derive_pending(transferred, {EventType.TRANSFER_PENDING.value: _t(9)}) == []


def _t(hour: int) -> dt.datetime:
    return dt.datetime(2026, 11, 20, hour, tzinfo=dt.UTC)


def test_pending_events_end_the_same_in_every_order() -> None:
    messages = [
        adt("A14", "P1", "V1", at="20261120070000"),
        adt("A01", "A1", "V1", at="20261120083000"),
        adt("A16", "P2", "V1", at="20261121090000"),
        adt("A25", "P3", "V1", at="20261121100000"),
        adt("A16", "P4", "V1", at="20261121110000"),
    ]
    ends = set()
    for order in itertools.permutations(messages):
        state, _ = _apply(EncounterState(encounter_id="NMH:V1"), *order)
        ends.add(
            (state.status, tuple(state.pending), state.pending_visits["encounter.discharge_pending"].as_of)
        )
    assert len(ends) == 1
    [(status, pending, _)] = ends
    assert (status, pending) == (EncounterStatus.ADMITTED, ("discharge",))


def test_a_change_older_than_the_full_coding_is_not_sent_and_a_later_one_does_not_make_it_stale() -> None:
    state, _ = _apply(EncounterState(encounter_id="NMH:V1"), adt("A01", "A1", "V1"))
    state, billing = _apply(state, bar_p12("P12a", "V1", diagnoses=(("I10", "", "A"),), at="20261122100000"))
    [change] = billing
    assert isinstance(change, UpdateCodingCommand) and state.coded_at is None
    # A full coding older than that change is still sent: billing keeps the change's item over it.
    state, billing = _apply(state, bar("P05", "B1", "V1", at="20261122090000"))
    assert [type(c) for c in billing] == [UpsertAccountCommand, UpdateCodingCommand]
    assert state.coded_at is not None and state.coded_at.hour == 9
    # A change older than the full coding is stale.
    late = enriched(bar_p12("P12b", "V1", diagnoses=(("E11.9", "", "A"),), at="20261122080000"))
    transition = apply_event(state, late[0], RULES)
    assert transition.stale and transition.billing == []


def test_a_dft_p11_posts_its_charges_and_sends_its_coding() -> None:
    state, _ = _apply(EncounterState(encounter_id="NMH:V1"), adt("A04", "A1", "V1"))
    state, billing = _apply(
        state,
        dft_p11("F1", "V1", [("CG", "99283", "ED visit", 1, "120.00", ("99283",), ("S52.501A",))], drg="562"),
    )
    assert [type(c) for c in billing] == [PostChargeCommand, UpdateCodingCommand]
    assert state.charges_posted == 1 and state.net_charge_cents == 12000


def _one(raw: bytes) -> EventEnvelope:
    [event] = enriched(raw)
    return event


def test_person_updates_and_moves_become_billing_commands_not_state() -> None:
    update = _one(person("A31", "U1", family="King"))
    command = patient_command(update)
    assert isinstance(command, UpdatePatientCommand)
    assert (command.patient.family_name, command.updated_at) == ("King", update.occurred_at)
    assert command.command_id == patient_command(update).command_id  # deterministic
    moved = patient_command(_one(a45("V1", "MRN002", "MRN001", ("V100",))))
    assert isinstance(moved, MoveAccountCommand) and moved.move.scope is MoveScope.VISIT
    account = patient_command(_one(a44("M1", "MRN002", "MRN001", "ACC7")))
    assert isinstance(account, MoveAccountCommand) and account.move.prior_account_number == "ACC7"
    with pytest.raises(ValueError, match="has no encounter state"):
        apply_event(EncounterState(encounter_id="patient:NMH:MRN001"), update, RULES)
    with pytest.raises(ValueError, match="not a patient-level event"):
        patient_command(_one(adt("A01", "A1", "V1")))


def test_the_upsert_carries_the_time_of_its_snapshot() -> None:
    state, _ = _apply(EncounterState(encounter_id="NMH:V1"), adt("A08", "A2", "V1", at="20261120120000"))
    _, billing = _apply(state, adt("A01", "A1", "V1", at="20261120083000"))  # older: the stored snapshot
    [upsert] = billing
    assert isinstance(upsert, UpsertAccountCommand)
    assert upsert.snapshot_at is not None and upsert.snapshot_at.hour == 12
