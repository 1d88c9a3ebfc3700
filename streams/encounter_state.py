"""The encounter state machine, free of Faust: one event in, the new state and its commands out.

State only moves forward (registered < admitted < discharged), so events that arrive out of order across
partitions still converge. A charge that arrives before any registration is held until the encounter is
known, then released with the account. An event id seen before has no effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from canonical import ids
from canonical.envelope import ChargePayload, EncounterPayload, EventEnvelope, EventType
from canonical.models import CanonicalModel, Charge, Encounter, EncounterStatus, Patient
from streams.commands import JournalCommand, PostChargeCommand, UpsertAccountCommand
from streams.posting import PostingRules

STATUS_OF: dict[EventType, EncounterStatus] = {
    EventType.ENCOUNTER_REGISTERED: EncounterStatus.REGISTERED,
    EventType.ENCOUNTER_ADMITTED: EncounterStatus.ADMITTED,
    EventType.ENCOUNTER_DISCHARGED: EncounterStatus.DISCHARGED,
    EventType.ENCOUNTER_UPDATED: EncounterStatus.REGISTERED,
}


class ChargeRef(CanonicalModel):
    """What the table keeps of a charge sent to billing: enough to total it, small enough to keep many."""

    charge_id: str
    charge_code: str
    amount_cents: int


class EncounterState(CanonicalModel):
    """What the encounter table holds for one encounter id."""

    encounter_id: str
    status: EncounterStatus | None = None
    encounter: Encounter | None = None
    patient: Patient | None = None
    processed_event_ids: tuple[str, ...] = ()
    held_charges: tuple[EventEnvelope, ...] = Field((), description="Charges waiting for registration")
    charges: tuple[ChargeRef, ...] = Field((), description="Charges and credits sent to billing, in order")

    @property
    def charges_posted(self) -> int:
        return len(self.charges)

    @property
    def net_charge_cents(self) -> int:
        return sum(charge.amount_cents for charge in self.charges)


@dataclass(slots=True)
class Transition:
    """The result of applying one event."""

    state: EncounterState
    billing: list[UpsertAccountCommand | PostChargeCommand] = field(default_factory=list)
    erp: list[JournalCommand] = field(default_factory=list)
    duplicate: bool = False
    held: bool = False
    released: int = 0


def _merge_encounter(old: Encounter | None, new: Encounter) -> Encounter:
    if old is None:
        return new
    # Keep timestamps already known when a later message leaves them empty (an A08 after an A03).
    return new.model_copy(
        update={
            "admitted_at": new.admitted_at or old.admitted_at,
            "discharged_at": new.discharged_at or old.discharged_at,
        }
    )


def _ref(charge: Charge) -> ChargeRef:
    return ChargeRef(
        charge_id=charge.charge_id, charge_code=charge.charge_code, amount_cents=charge.amount_cents
    )


def _charge_commands(
    env: EventEnvelope, rules: PostingRules
) -> tuple[PostChargeCommand, JournalCommand | None]:
    """Return the billing command of a charge and its journal (none for a zero amount: no ledger effect)."""
    assert isinstance(env.payload, ChargePayload)
    charge = env.payload.charge
    post = PostChargeCommand(
        command_id=ids.derived_id(env.event_id, "billing.charge"),
        charge=charge,
        source_event_id=env.event_id,
        correlation_id=env.correlation_id,
    )
    if charge.amount_cents == 0:
        return post, None
    journal = JournalCommand(
        command_id=ids.derived_id(env.event_id, "erp.journal"),
        lines=rules.journal_lines(charge, env.event_id, env.correlation_id),
        source_event_id=env.event_id,
        correlation_id=env.correlation_id,
    )
    return post, journal


def apply_event(state: EncounterState, env: EventEnvelope, rules: PostingRules) -> Transition:
    """Apply one canonical event to the state of its encounter."""
    if env.event_id in state.processed_event_ids:
        return Transition(state=state, duplicate=True)
    processed = (*state.processed_event_ids, env.event_id)
    payload = env.payload

    if isinstance(payload, ChargePayload):
        if state.status is None:
            held = state.model_copy(
                update={"processed_event_ids": processed, "held_charges": (*state.held_charges, env)}
            )
            return Transition(state=held, held=True)
        post, journal = _charge_commands(env, rules)
        return Transition(
            state=state.model_copy(
                update={"processed_event_ids": processed, "charges": (*state.charges, _ref(payload.charge))}
            ),
            billing=[post],
            erp=[journal] if journal is not None else [],
        )

    assert isinstance(payload, EncounterPayload)
    target = STATUS_OF[env.event_type]
    status = target if state.status is None or target.rank > state.status.rank else state.status
    encounter = _merge_encounter(state.encounter, payload.encounter)
    account = UpsertAccountCommand(
        command_id=ids.derived_id(env.event_id, "billing.account"),
        encounter=encounter,
        patient=payload.patient,
        status=status,
        source_event_id=env.event_id,
        correlation_id=env.correlation_id,
    )
    transition = Transition(state=state, billing=[account])
    released = []
    for waiting in state.held_charges:
        post, journal = _charge_commands(waiting, rules)
        transition.billing.append(post)
        if journal is not None:
            transition.erp.append(journal)
        released.append(_ref(post.charge))
    transition.released = len(released)
    transition.state = state.model_copy(
        update={
            "status": status,
            "encounter": encounter,
            "patient": payload.patient,
            "processed_event_ids": processed,
            "held_charges": (),
            "charges": (*state.charges, *released),
        }
    )
    return transition
