"""The encounter state machine, free of Faust: one event in, the new state and its commands out.

Events of one encounter can be processed out of their source order (raw messages are spread over
partitions by sender and control id), so nothing here depends on processing order:

- the status is derived from the latest time (EVN-2, else MSH-7) of each kind of status event seen, so
  an A13 (cancel discharge) processed before the A03 it cancels still ends in "admitted";
- pending events (A14-A16) and their cancels (A25-A27) are recorded with their latest time and visit as
  sent, and never change the status, the snapshot or anything billing knows;
- the encounter snapshot, the full coding and each medication dose keep the version with the latest
  time; coding changes (BAR^P12, DFT) older than the full coding are stale;
- a charge that arrives before the encounter is known is held until it is, then released;
- an event id seen before has no effect.

Patient-level events (merges, person updates, moves) keep no encounter state: patient_command turns each
into its billing command.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pydantic import AwareDatetime, Field

from canonical import ids
from canonical.envelope import (
    AccountMovePayload,
    ChargePayload,
    CodingPayload,
    EncounterPayload,
    EventEnvelope,
    EventType,
    MedicationAdministrationPayload,
    MedicationOrderPayload,
    MergePayload,
    PatientPayload,
)
from canonical.models import (
    CanonicalModel,
    Charge,
    CodingMode,
    Encounter,
    EncounterStatus,
    InventoryMovement,
    MovementType,
    Patient,
)
from canonical.revenue_cycle import Coverage
from streams.commands import (
    ClaimsDueCommand,
    CoverageCommand,
    InventoryCommand,
    JournalCommand,
    MergePatientCommand,
    MoveAccountCommand,
    PatientCommandT,
    PostChargeCommand,
    UpdateCodingCommand,
    UpdatePatientCommand,
    UpsertAccountCommand,
)
from streams.posting import PostingRules

E = EventType
_STARTS = (E.ENCOUNTER_PREADMITTED, E.ENCOUNTER_REGISTERED, E.ENCOUNTER_ADMITTED, E.ENCOUNTER_TO_INPATIENT)
_ADMITS = (E.ENCOUNTER_ADMITTED, E.ENCOUNTER_TO_INPATIENT)
ENCOUNTER_EVENTS = frozenset(
    {
        *_STARTS,
        E.ENCOUNTER_TRANSFERRED,
        E.ENCOUNTER_DISCHARGED,
        E.ENCOUNTER_TO_OUTPATIENT,
        E.ENCOUNTER_UPDATED,
        E.ENCOUNTER_CANCELLED,
        E.TRANSFER_CANCELLED,
        E.DISCHARGE_CANCELLED,
        E.ACCOUNT_OPENED,
        E.ACCOUNT_UPDATED,
        E.ACCOUNT_ENDED,
    }
)
# Pending events and their cancels: recorded on the encounter, never a status of their own, nothing sent.
PENDING_EVENTS = frozenset(
    {
        E.ADMIT_PENDING,
        E.TRANSFER_PENDING,
        E.DISCHARGE_PENDING,
        E.PENDING_ADMIT_CANCELLED,
        E.PENDING_TRANSFER_CANCELLED,
        E.PENDING_DISCHARGE_CANCELLED,
    }
)
# What is pending -> (the pending event, its cancel, the events that carry it out).
_PENDING: dict[str, tuple[EventType, EventType, tuple[EventType, ...]]] = {
    "admit": (E.ADMIT_PENDING, E.PENDING_ADMIT_CANCELLED, _ADMITS),
    "transfer": (E.TRANSFER_PENDING, E.PENDING_TRANSFER_CANCELLED, (E.ENCOUNTER_TRANSFERRED,)),
    "discharge": (E.DISCHARGE_PENDING, E.PENDING_DISCHARGE_CANCELLED, (E.ENCOUNTER_DISCHARGED,)),
}


def derive_status(times: dict[str, dt.datetime]) -> EncounterStatus | None:
    """Return the status implied by the latest time of each encounter event type (None: none seen).

    Precedence: cancelled (A11 newer than every start event), closed (BAR^P06), discharged (A03 not
    cancelled by a newer A13), admitted (A01/A06 not undone by a newer A07), registered, preadmitted. A
    cancelled discharge therefore returns an inpatient to admitted and an outpatient to registered.
    """
    if not times:
        return None

    def at(*types: EventType) -> dt.datetime | None:
        seen = [times[t.value] for t in types if t.value in times]
        return max(seen) if seen else None

    cancelled, started = at(E.ENCOUNTER_CANCELLED), at(*_STARTS)
    if cancelled is not None and (started is None or cancelled >= started):
        return EncounterStatus.CANCELLED
    if at(E.ACCOUNT_ENDED) is not None:
        return EncounterStatus.CLOSED
    discharged, undone = at(E.ENCOUNTER_DISCHARGED), at(E.DISCHARGE_CANCELLED)
    if discharged is not None and (undone is None or undone < discharged):
        return EncounterStatus.DISCHARGED
    admitted, to_outpatient = at(*_ADMITS), at(E.ENCOUNTER_TO_OUTPATIENT)
    if admitted is not None and (to_outpatient is None or to_outpatient < admitted):
        return EncounterStatus.ADMITTED
    if at(E.ENCOUNTER_REGISTERED, E.ENCOUNTER_TO_OUTPATIENT) is None and at(E.ENCOUNTER_PREADMITTED):
        return EncounterStatus.PREADMITTED
    return EncounterStatus.REGISTERED


class ChargeRef(CanonicalModel):
    """What the table keeps of a charge sent to billing: enough to total it, small enough to keep many."""

    charge_id: str
    charge_code: str
    amount_cents: int


class Dose(CanonicalModel):
    """What the table keeps of one medication dose: the stock it consumed, as of its latest message."""

    as_of: AwareDatetime
    consumed_milli: int = Field(ge=0)


class PendingVisit(CanonicalModel):
    """A pending event as sent: its time and the visit it announces (the PV1 of an A14, A15 or A16)."""

    as_of: AwareDatetime
    encounter: Encounter


def derive_pending(status_times: dict[str, dt.datetime], pending_times: dict[str, dt.datetime]) -> list[str]:
    """Return what is pending (admit, transfer, discharge): announced, and neither cancelled nor done since.

    An A14 is pending until an A27 or an admit (A01, A06) at or after it; an A15 until an A26 or an A02;
    an A16 until an A25 or an A03. Like the status, it depends on the latest times alone, not on order.
    """
    pending = []
    for action, (announced, cancelled, done) in _PENDING.items():
        when = pending_times.get(announced.value)
        if when is None:
            continue
        ended = [pending_times.get(cancelled.value), *(status_times.get(t.value) for t in done)]
        if all(end is None or end < when for end in ended):
            pending.append(action)
    return pending


class EncounterState(CanonicalModel):
    """What the encounter table holds for one encounter id."""

    encounter_id: str
    status: EncounterStatus | None = None
    status_times: dict[str, AwareDatetime] = Field(
        default_factory=dict, description="Latest occurred_at of each encounter event type seen"
    )
    encounter: Encounter | None = None
    patient: Patient | None = None
    snapshot_at: AwareDatetime | None = Field(None, description="occurred_at of the encounter snapshot")
    coded_at: AwareDatetime | None = Field(
        None, description="occurred_at of the full coding (BAR^P01/P05/P06) last sent to billing"
    )
    processed_event_ids: tuple[str, ...] = ()
    account_events: int = Field(
        0,
        description=(
            "Encounter events applied so far: the state_version of the account upserts. It counts only "
            "the events the account state is derived from, so the state of a larger set always carries a "
            "larger number, also when the table is rebuilt and takes the events in another order"
        ),
    )
    held_charges: tuple[EventEnvelope, ...] = Field((), description="Charges waiting for registration")
    charges: tuple[ChargeRef, ...] = Field((), description="Charges and credits sent to billing, in order")
    orders: dict[str, str] = Field(default_factory=dict, description="Medication order id -> ORC-1")
    doses: dict[str, Dose] = Field(default_factory=dict, description="Administration id -> stock used")
    pending_times: dict[str, AwareDatetime] = Field(
        default_factory=dict,
        description="Latest occurred_at of each pending event type seen (A14-A16, A25-A27)",
    )
    pending_visits: dict[str, PendingVisit] = Field(
        default_factory=dict, description="Pending event type (A14-A16) -> its latest visit as sent"
    )
    coverages: tuple[Coverage, ...] = Field(
        (), description="The insurance last sent (IN1): kept when a later event says nothing of it"
    )

    @property
    def pending(self) -> list[str]:
        """What is pending now: admit, transfer and/or discharge (derive_pending)."""
        return derive_pending(self.status_times, self.pending_times)

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
    billing: list[
        UpsertAccountCommand | PostChargeCommand | UpdateCodingCommand | CoverageCommand | ClaimsDueCommand
    ] = field(default_factory=list)
    erp: list[JournalCommand | InventoryCommand] = field(default_factory=list)
    revenue: list[CoverageCommand] = field(default_factory=list)
    duplicate: bool = False
    held: bool = False
    released: int = 0
    stale: bool = False
    # Postings that carry no master-data dimensions (written before enrichment existed): they cannot post
    # and are not marked processed, so a re-sent source message, enriched this time, still posts.
    unenriched: list[EventEnvelope] = field(default_factory=list)


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


def _movement(
    env: EventEnvelope,
    rules: PostingRules,
    *,
    quantity_milli: int,
    item_code: str,
    code_system: str,
    description: str,
    unit: str,
    facility: str,
    occurred_at: dt.datetime,
) -> InventoryCommand | None:
    """Return the inventory command of a signed quantity (positive: issued), None for zero."""
    if quantity_milli == 0:
        return None
    dims = rules.dimensions(env)
    movement = InventoryMovement(
        movement_id=ids.derived_id(env.event_id, "erp.inventory"),
        movement_type=MovementType.ISSUE if quantity_milli > 0 else MovementType.RETURN,
        item_code=item_code,
        code_system=code_system,
        description=description[:120],
        quantity_milli=abs(quantity_milli),
        unit=unit,
        facility=facility,
        cost_centre=dims.cost_centre,
        legal_entity=dims.legal_entity,
        business_unit=dims.business_unit,
        inventory_account=dims.inventory_account,
        unit_cost_cents=dims.unit_cost_cents,
        occurred_at=occurred_at,
        encounter_ref=rules.encounter_ref(env.encounter_id),
        source_event_id=env.event_id,
        correlation_id=env.correlation_id,
    )
    return InventoryCommand(
        command_id=ids.derived_id(env.event_id, "erp.inventory.command"),
        movements=(movement,),
        source_event_id=env.event_id,
        correlation_id=env.correlation_id,
    )


def _charge_commands(
    env: EventEnvelope, rules: PostingRules
) -> tuple[PostChargeCommand, list[JournalCommand | InventoryCommand]]:
    """Return the billing command of a charge and its ERP commands.

    A zero amount has no journal (no ledger effect); a supply item also moves stock: issued for a charge,
    returned for a reversal.
    """
    assert isinstance(env.payload, ChargePayload)
    charge = env.payload.charge
    post = PostChargeCommand(
        command_id=ids.derived_id(env.event_id, "billing.charge"),
        charge=charge,
        source_event_id=env.event_id,
        correlation_id=env.correlation_id,
    )
    erp: list[JournalCommand | InventoryCommand] = []
    if charge.amount_cents != 0:
        erp.append(
            JournalCommand(
                command_id=ids.derived_id(env.event_id, "erp.journal"),
                lines=rules.journal_lines(charge, rules.dimensions(env), env.event_id, env.correlation_id),
                source_event_id=env.event_id,
                correlation_id=env.correlation_id,
            )
        )
    if charge.is_supply:
        quantity = abs(charge.quantity) * 1000
        stock = _movement(
            env,
            rules,
            quantity_milli=-quantity if charge.is_reversal else quantity,
            item_code=charge.charge_code,
            code_system=charge.code_system,
            description=charge.description,
            unit="",
            facility=charge.facility,
            occurred_at=charge.service_at,
        )
        if stock is not None:
            erp.append(stock)
    return post, erp


def merge_command(env: EventEnvelope) -> MergePatientCommand:
    """Return the billing command of a patient merge; merges keep no encounter state."""
    assert isinstance(env.payload, MergePayload)
    return MergePatientCommand(
        command_id=ids.derived_id(env.event_id, "billing.merge"),
        merge=env.payload.merge,
        source_event_id=env.event_id,
        correlation_id=env.correlation_id,
    )


def patient_command(env: EventEnvelope) -> PatientCommandT:
    """Return the billing command of a patient-level event (merge, person update, move).

    These events are keyed by the patient, keep no encounter state and are sent as they come: billing is
    idempotent on the command id and orders them by their event time.
    """
    payload = env.payload
    if isinstance(payload, MergePayload):
        return merge_command(env)
    if isinstance(payload, PatientPayload):
        return UpdatePatientCommand(
            command_id=ids.derived_id(env.event_id, "billing.patient"),
            patient=payload.patient,
            updated_at=env.occurred_at,
            source_event_id=env.event_id,
            correlation_id=env.correlation_id,
        )
    if isinstance(payload, AccountMovePayload):
        return MoveAccountCommand(
            command_id=ids.derived_id(env.event_id, "billing.move"),
            move=payload.move,
            moved_at=env.occurred_at,
            source_event_id=env.event_id,
            correlation_id=env.correlation_id,
        )
    raise ValueError(f"event {env.event_id}: {env.event_type.value} is not a patient-level event")


def _apply_pending(state: EncounterState, env: EventEnvelope, processed: tuple[str, ...]) -> Transition:
    """Record a pending event or its cancel: its time and visit; no status, no snapshot, nothing sent."""
    assert isinstance(env.payload, EncounterPayload)
    kind = env.event_type.value
    times = dict(state.pending_times)
    visits = dict(state.pending_visits)
    newer = kind not in times or env.occurred_at >= times[kind]
    if newer:
        times[kind] = env.occurred_at
        if env.event_type in (E.ADMIT_PENDING, E.TRANSFER_PENDING, E.DISCHARGE_PENDING):
            visits[kind] = PendingVisit(as_of=env.occurred_at, encounter=env.payload.encounter)
    return Transition(
        state=state.model_copy(
            update={"processed_event_ids": processed, "pending_times": times, "pending_visits": visits}
        ),
        stale=not newer,
    )


def _apply_charge(
    state: EncounterState, env: EventEnvelope, processed: tuple[str, ...], rules: PostingRules
) -> Transition:
    assert isinstance(env.payload, ChargePayload)
    if env.dimensions is None:
        return Transition(state=state, unenriched=[env])
    if state.status is None:
        held = state.model_copy(
            update={"processed_event_ids": processed, "held_charges": (*state.held_charges, env)}
        )
        return Transition(state=held, held=True)
    post, erp = _charge_commands(env, rules)
    return Transition(
        state=state.model_copy(
            update={"processed_event_ids": processed, "charges": (*state.charges, _ref(env.payload.charge))}
        ),
        billing=[post],
        erp=erp,
    )


def _apply_coding(state: EncounterState, env: EventEnvelope, processed: tuple[str, ...]) -> Transition:
    assert isinstance(env.payload, CodingPayload)
    if state.coded_at is not None and env.occurred_at < state.coded_at:
        # Older than the full coding billing holds: billing would answer STALE, so nothing is sent.
        return Transition(state=state.model_copy(update={"processed_event_ids": processed}), stale=True)
    command = UpdateCodingCommand(
        command_id=ids.derived_id(env.event_id, "billing.coding"),
        coding=env.payload.coding,
        coded_at=env.occurred_at.astimezone(dt.UTC).isoformat(),
        source_event_id=env.event_id,
        correlation_id=env.correlation_id,
    )
    # Only a full coding moves the horizon: a change at a later time does not make an older full coding
    # stale (billing applies it under the change, item by item).
    full = env.payload.coding.mode is CodingMode.REPLACE
    new_state = state.model_copy(
        update={"processed_event_ids": processed, "coded_at": env.occurred_at if full else state.coded_at}
    )
    transition = Transition(state=new_state, billing=[command])
    due = _claims_due(new_state, env)
    if due is not None:
        transition.billing.append(due)
    return transition


# What makes an encounter's claims due once it is discharged and coded: its discharge, its account's end
# (BAR^P06), or its coding.
_CLAIM_TRIGGERS = frozenset({E.ENCOUNTER_DISCHARGED, E.ACCOUNT_ENDED, E.CODING_UPDATED})
# Events that carry the insurance worth checking with the payer (registration, admission and updates).
_ELIGIBILITY_TRIGGERS = frozenset(
    {
        E.ENCOUNTER_PREADMITTED,
        E.ENCOUNTER_REGISTERED,
        E.ENCOUNTER_ADMITTED,
        E.ENCOUNTER_UPDATED,
        E.ENCOUNTER_TO_INPATIENT,
        E.ENCOUNTER_TO_OUTPATIENT,
        E.ACCOUNT_OPENED,
        E.ACCOUNT_UPDATED,
    }
)


def _claims_due(state: EncounterState, env: EventEnvelope, *, force: bool = False) -> ClaimsDueCommand | None:
    """Claims are due when the encounter is insured, discharged (or its account ended) and fully coded.

    Sent on the discharge, the account's end and each coding after them; billing builds the claims once
    and answers a repeat with the claims as built (or rebuilds them from changed charges and coding).
    """
    if (env.event_type not in _CLAIM_TRIGGERS and not force) or state.coded_at is None:
        return None
    if not state.coverages:
        return None  # self-pay: the patient is billed by statement, not by an insurance claim
    if state.status not in (EncounterStatus.DISCHARGED, EncounterStatus.CLOSED):
        return None
    return ClaimsDueCommand(
        command_id=ids.derived_id(env.event_id, "billing.claims"),
        encounter_id=state.encounter_id,
        patient_class=state.encounter.patient_class.value if state.encounter else "",
        source_event_id=env.event_id,
        correlation_id=env.correlation_id,
    )


def _coverage_commands(
    previous: tuple[Coverage, ...], state: EncounterState, env: EventEnvelope, patient: Patient | None
) -> tuple[list[CoverageCommand], list[CoverageCommand]]:
    """Coverage commands (for billing, and for the revenue dispatcher) for each new or changed coverage.

    Billing records each in order with the account; the payer is asked (a 270) when the event is a
    registration, an admission or an update, the moments a hospital checks eligibility.
    """
    facility = state.encounter.facility if state.encounter else ""
    check = env.event_type in _ELIGIBILITY_TRIGGERS
    billing: list[CoverageCommand] = []
    revenue: list[CoverageCommand] = []
    for coverage in state.coverages:
        if coverage in previous:
            continue
        command = CoverageCommand(
            command_id=ids.derived_id(env.event_id, f"billing.coverage.{coverage.priority}"),
            record_key=ids.derived_id(env.event_id, f"coverage.{coverage.priority}"),
            coverage=coverage,
            patient=patient,
            facility=facility,
            check_eligibility=False,
            state_version=state.account_events,
            source_event_id=env.event_id,
            correlation_id=env.correlation_id,
        )
        billing.append(command)
        if check:
            revenue.append(
                command.model_copy(
                    update={
                        "command_id": ids.derived_id(env.event_id, f"revenue.coverage.{coverage.priority}"),
                        "check_eligibility": True,
                    }
                )
            )
    return billing, revenue


def _apply_dose(
    state: EncounterState, env: EventEnvelope, processed: tuple[str, ...], rules: PostingRules
) -> Transition:
    assert isinstance(env.payload, MedicationAdministrationPayload)
    if env.dimensions is None:
        return Transition(state=state, unenriched=[env])
    given = env.payload.administration
    before = state.doses.get(given.administration_id)
    if before is not None and env.occurred_at < before.as_of:
        return Transition(state=state.model_copy(update={"processed_event_ids": processed}), stale=True)
    target = given.consumed_milli
    stock = _movement(
        env,
        rules,
        quantity_milli=target - (before.consumed_milli if before is not None else 0),
        item_code=given.medication_code,
        code_system=given.code_system,
        description=given.medication_name,
        unit=given.units,
        facility=given.facility,
        occurred_at=given.administered_at,
    )
    doses = {**state.doses, given.administration_id: Dose(as_of=env.occurred_at, consumed_milli=target)}
    return Transition(
        state=state.model_copy(update={"processed_event_ids": processed, "doses": doses}),
        erp=[stock] if stock is not None else [],
    )


def apply_event(state: EncounterState, env: EventEnvelope, rules: PostingRules) -> Transition:
    """Apply one canonical event to the state of its encounter."""
    if env.event_id in state.processed_event_ids:
        return Transition(state=state, duplicate=True)
    processed = (*state.processed_event_ids, env.event_id)
    payload = env.payload

    if isinstance(payload, ChargePayload):
        return _apply_charge(state, env, processed, rules)
    if isinstance(payload, CodingPayload):
        return _apply_coding(state, env, processed)
    if isinstance(payload, MedicationAdministrationPayload):
        return _apply_dose(state, env, processed, rules)
    if isinstance(payload, MedicationOrderPayload):
        orders = {**state.orders, payload.order.order_id: payload.order.order_control}
        return Transition(state=state.model_copy(update={"processed_event_ids": processed, "orders": orders}))
    if isinstance(payload, MergePayload | PatientPayload | AccountMovePayload):
        raise ValueError(
            f"event {env.event_id}: {env.event_type.value} has no encounter state (use patient_command)"
        )

    assert isinstance(payload, EncounterPayload)
    if env.event_type in PENDING_EVENTS:
        return _apply_pending(state, env, processed)
    kind = env.event_type.value
    times = dict(state.status_times)
    if kind not in times or env.occurred_at > times[kind]:
        times[kind] = env.occurred_at
    status = derive_status(times)
    assert status is not None
    newer = state.snapshot_at is None or env.occurred_at >= state.snapshot_at
    snapshot_at: dt.datetime | None
    if newer:
        encounter = _merge_encounter(state.encounter, payload.encounter)
        patient: Patient | None = payload.patient
        snapshot_at = env.occurred_at
    else:
        assert state.encounter is not None
        encounter = _merge_encounter(payload.encounter, state.encounter)
        patient, snapshot_at = state.patient, state.snapshot_at
    if status not in (EncounterStatus.DISCHARGED, EncounterStatus.CLOSED) and encounter.discharged_at:
        # A cancelled discharge (A13) leaves PV1-45 empty: the time of the discharge it undid must go too.
        encounter = encounter.model_copy(update={"discharged_at": None})
    account = UpsertAccountCommand(
        command_id=ids.derived_id(env.event_id, "billing.account"),
        encounter=encounter,
        patient=patient,
        status=status,
        state_version=state.account_events + 1,
        snapshot_at=snapshot_at,
        source_event_id=env.event_id,
        correlation_id=env.correlation_id,
    )
    transition = Transition(state=state, billing=[account], stale=not newer)
    released = []
    for waiting in state.held_charges:
        if waiting.dimensions is None:
            transition.unenriched.append(waiting)
            continue
        post, erp = _charge_commands(waiting, rules)
        transition.billing.append(post)
        transition.erp.extend(erp)
        released.append(_ref(post.charge))
    transition.released = len(released)
    refused = {waiting.event_id for waiting in transition.unenriched}
    # The newest snapshot's insurance, when it says any; an older event's replaces none, but is kept when
    # the state has none yet (events of an encounter can arrive out of order: the A01 after its A03).
    coverages = payload.coverages if payload.coverages and (newer or not state.coverages) else state.coverages
    transition.state = state.model_copy(
        update={
            "status": status,
            "status_times": times,
            "encounter": encounter,
            "patient": patient,
            "snapshot_at": snapshot_at,
            "account_events": state.account_events + 1,
            "processed_event_ids": tuple(i for i in processed if i not in refused),
            "held_charges": (),
            "charges": (*state.charges, *released),
            "coverages": coverages,
        }
    )
    insured = False
    if coverages is not state.coverages:
        recorded, checked = _coverage_commands(state.coverages, transition.state, env, patient)
        transition.billing.extend(recorded)
        transition.revenue = checked
        insured = bool(recorded)
    # A coverage that arrives after the discharge and the coding makes the claims due as well.
    due = _claims_due(transition.state, env, force=insured)
    if due is not None:
        transition.billing.append(due)
    return transition


__all__ = [
    "ENCOUNTER_EVENTS",
    "PENDING_EVENTS",
    "ChargeRef",
    "EncounterState",
    "PendingVisit",
    "Transition",
    "apply_event",
    "derive_pending",
    "derive_status",
    "merge_command",
    "patient_command",
]
