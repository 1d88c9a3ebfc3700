"""The X12 ingest step: a stored interchange in; its acknowledgments and its revenue-cycle meaning out.

Per interchange, in order:

1. the envelope is read again (it was read when stored; what is on raw.x12 is one interchange);
2. pyx12 validates it (canonical/x12/validate.py) and the TA1 and 999 that answer it are written
   (canonical/x12/acks.py): a TA1 when ISA14 asks for one or the envelope is broken, a 999 for every
   functional group except acknowledgments themselves;
3. an interchange of acknowledgments (999, 997, TA1) is read as verdicts on what hcsync sent;
4. every other set pyx12 accepted (or could only check the envelope of: 270/271 have no pyx12 map) is read
   into canonical models (canonical/x12/read.py): an 835 is a :class:`Remittance` to post, a 271 an
   :class:`EligibilityResponse` to record;
5. what cannot be used is told apart: a set pyx12 rejects, or that cannot be read (an 835 that does not
   balance, say), is quarantined with its located reasons; financial content hcsync does not handle (an
   835 or 837 of 004010, an inbound 837 or 270: hcsync is the provider) is quarantined with a rule naming
   the transaction and version; anything else not handled (834, 276/277, 278, 275...) is routed with a
   note that says so.

The step is pure: no clock (the caller passes the time), no I/O, so the Ray actors run it and a retry gives
the same acknowledgments byte for byte.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from canonical import ids
from canonical.errors import DecodeError, Fault
from canonical.quarantine import ExceptionRecord
from canonical.revenue_cycle import (
    ClaimSubmission,
    EligibilityInquiry,
    EligibilityResponse,
    Remittance,
)
from canonical.x12.acks import AcknowledgmentReport, acknowledgments, read_acknowledgment
from canonical.x12.envelope import Interchange, read_interchanges
from canonical.x12.read import ReadStatus, SetReading, read_interchange
from canonical.x12.validate import InterchangeValidation, SetVerdict, validate

__all__ = [
    "AckFact",
    "X12Batch",
    "X12Item",
    "X12Outcome",
    "ack_facts",
    "process_batch",
    "process_interchange",
]

STAGE = "x12"
REJECTED_RULE = "X12-SET-REJECTED"  # pyx12 rejected the set (IK5 R)
NOT_HANDLED_RULE = "X12-NOT-HANDLED"  # financial content hcsync does not post
_FINANCIAL = frozenset({"835", "837"})
_ACK_SETS = frozenset({"999", "997"})
_USABLE = (SetVerdict.ACCEPTED, SetVerdict.ACCEPTED_WITH_ERRORS, SetVerdict.NOT_VALIDATED)
_MAX_REASONS = 10
_SAFE_NAME = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class X12Item:
    """One interchange to process, with what its acknowledgments need."""

    raw: bytes
    message_key: str  # sender|ISA13, the broker key
    sender: tuple[str, str]  # hcsync's ISA05 and ISA06
    control_number: int  # the first of two numbers reserved for its TA1 and 999
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class X12Batch:
    """Interchanges in broker order, and where the nearest pyx12 maps are."""

    items: tuple[X12Item, ...]
    map_path: Path | None = None


@dataclass(frozen=True, slots=True)
class AckFact:
    """A verdict a 999 or TA1 gave on something hcsync sent (an 837 or a 270)."""

    receiver_id: str  # who acknowledged: the ISA06 of the acknowledgment, the ISA08 hcsync sent to
    interchange_control: str  # a TA1's TA101
    group_control: str  # a 999's AK102
    set_control: str  # a 999's AK202 ("" for a group verdict with no sets listed)
    event: Literal["accepted", "accepted_with_errors", "rejected", "interchange_rejected"]
    ack_code: str
    error_text: str


@dataclass(frozen=True, slots=True)
class X12Outcome:
    """What one interchange gave: acknowledgments to write, models to act on, a quarantine record."""

    acks: tuple[tuple[str, bytes], ...] = ()  # (outbox file name, bytes)
    remittances: tuple[tuple[str, Remittance], ...] = ()  # (id within the interchange, payment)
    eligibility: tuple[tuple[str, EligibilityResponse], ...] = ()
    ack_facts: tuple[AckFact, ...] = ()
    exception: bytes | None = None
    exception_id: str | None = None
    outcome: Literal["mapped", "routed", "quarantined"] = "routed"
    rule: str = ""
    note: str = ""
    message_type: str = ""


def _file_name(kind: str, x: Interchange) -> str:
    sender = _SAFE_NAME.sub("", x.isa.element(6).strip()) or "UNKNOWN"
    return f"{kind}-{sender}-{x.control}.x12"


def _set_event(verdict: str) -> Literal["accepted", "accepted_with_errors", "rejected"]:
    if verdict == "A":
        return "accepted"
    if verdict == "E":
        return "accepted_with_errors"
    return "rejected"


def ack_facts(report: AcknowledgmentReport) -> list[AckFact]:
    """The verdicts an inbound acknowledgment interchange gives on what hcsync sent."""
    receiver = report.sender[1]
    facts: list[AckFact] = []
    for ta1 in report.interchanges:
        if ta1.verdict == "R":
            facts.append(AckFact(receiver, ta1.control, "", "", "interchange_rejected", ta1.code, ta1.reason))
    for group in report.groups:
        if not group.sets:
            facts.append(
                AckFact(
                    receiver,
                    "",
                    group.control,
                    "",
                    _set_event(group.verdict),
                    group.verdict,
                    ",".join(group.codes),
                )
            )
        for one in group.sets:
            text = "; ".join(one.errors)[:500] or ",".join(one.codes)
            facts.append(
                AckFact(receiver, "", group.control, one.control, _set_event(one.verdict), one.verdict, text)
            )
    return facts


def _quarantine(item: X12Item, x: Interchange | None, faults: list[Fault]) -> tuple[bytes, str, str]:
    """One record for the interchange, naming every problem (the first in full)."""
    first = faults[0]
    more = [f.describe() for f in faults[1:_MAX_REASONS]]
    extra = f" (and {len(faults) - 1} more: " + "; ".join(more) + ")" if len(faults) > 1 else ""
    fault = Fault(
        rule=first.rule,
        reason=first.reason + extra,
        message_id=first.message_id,
        segment=first.segment,
        field=first.field,
        position=first.position,
    )
    original = base64.b64encode(item.raw).decode("ascii")
    record = ExceptionRecord.from_fault(
        fault,
        record_id=ids.derived_id(original, f"quarantine|{STAGE}|{first.rule}"),
        stage=STAGE,
        source_system="x12",
        message_key=item.message_key,
        original_b64=original,
        recorded_at=item.at,
    )
    if x is not None and not record.source_message_id:
        record = record.model_copy(update={"source_message_id": f"ISA13 {x.control}"})
    return record.model_dump_json().encode("utf-8"), record.record_id, first.rule


def _where(x: Interchange, reading: SetReading) -> str:
    return f"ISA13 {x.control}, GS06 {reading.gs06 or '-'}, ST02 {reading.st02 or '-'}"


def _rejections(validation: InterchangeValidation) -> list[Fault]:
    """A located fault for each set pyx12 rejected (its first issues), and for a broken envelope."""
    x = validation.interchange
    faults = [
        Fault(
            rule="X12-ENVELOPE",
            reason=issue.location(),
            message_id=f"ISA13 {x.control}",
            segment=issue.segment_id,
        )
        for issue in validation.issues
    ]
    for group in validation.groups:
        for one in group.sets:
            if one.verdict is not SetVerdict.REJECTED:
                continue
            issues = "; ".join(issue.location() for issue in one.issues[:3]) or "rejected"
            first = one.issues[0] if one.issues else None
            faults.append(
                Fault(
                    rule=REJECTED_RULE,
                    reason=f"{one.code} {one.guide} rejected by pyx12 ({one.validated_with}): {issues}",
                    message_id=f"ISA13 {x.control}, GS06 {one.group_control}, ST02 {one.control}",
                    segment=first.segment_id if first else "",
                    field=first.element if first else "",
                    position=first.position if first else None,
                )
            )
    return faults


def process_interchange(item: X12Item, map_path: Path | None = None) -> X12Outcome:
    """Validate, acknowledge and read one stored interchange; never raises for bad input."""
    try:
        found = read_interchanges(item.raw, item.message_key)
    except DecodeError as exc:
        record, record_id, rule = _quarantine(item, None, [exc.fault])
        return X12Outcome(exception=record, exception_id=record_id, outcome="quarantined", rule=rule)
    if len(found) != 1:
        fault = Fault(rule="X12-ENVELOPE", reason=f"{len(found)} interchanges in one stored message")
        record, record_id, rule = _quarantine(item, None, [fault])
        return X12Outcome(exception=record, exception_id=record_id, outcome="quarantined", rule=rule)
    x = found[0]
    validation = validate(x, map_path=map_path)
    acks = acknowledgments(validation, sender=item.sender, control_number=item.control_number, at=item.at)
    files: list[tuple[str, bytes]] = []
    notes: list[str] = []
    if acks.ta1 is not None:
        files.append((_file_name("TA1", x), acks.ta1.encode("ascii")))
        notes.append(f"TA1 {validation.ta1_verdict} ({validation.ta1_code})")
    if acks.ack999 is not None:
        files.append((_file_name("999", x), acks.ack999.encode("ascii")))
        verdicts = ", ".join(f"GS06 {g.control} AK9 {g.verdict.value}" for g in validation.groups)
        notes.append(f"999: {verdicts}")
    codes = sorted({t.code for g in x.groups for t in g.transactions} or {s.id for s in x.loose})
    message_type = ",".join(codes)
    faults = _rejections(validation)
    if (codes and set(codes) <= _ACK_SETS | {"TA1"}) or (not x.groups and x.loose):
        try:
            report = read_acknowledgment(x)
        except DecodeError as exc:
            faults.append(exc.fault)
        else:
            facts = tuple(ack_facts(report))
            notes.append(f"acknowledgment: {len(facts)} verdict(s) on what hcsync sent")
            if faults:
                record, record_id, rule = _quarantine(item, x, faults)
                return X12Outcome(
                    tuple(files),
                    ack_facts=facts,
                    exception=record,
                    exception_id=record_id,
                    outcome="quarantined",
                    rule=rule,
                    note="; ".join(notes),
                    message_type=message_type,
                )
            return X12Outcome(
                tuple(files),
                ack_facts=facts,
                outcome="mapped",
                note="; ".join(notes),
                message_type=message_type,
            )
    usable = {
        (one.group_control, one.control)
        for group in validation.groups
        for one in group.sets
        if one.verdict in _USABLE
    }
    remittances: list[tuple[str, Remittance]] = []
    eligibility: list[tuple[str, EligibilityResponse]] = []
    for reading in read_interchange(x, item.message_key):
        if (reading.gs06, reading.st02) not in usable:
            continue  # rejected by pyx12: already a fault above
        where = _where(x, reading)
        if reading.status is ReadStatus.ERROR:
            faults.extend(reading.errors or [Fault(rule="X12-READER", reason="unreadable", message_id=where)])
        elif reading.status is ReadStatus.NOT_HANDLED:
            if reading.st01 in _FINANCIAL:
                faults.append(Fault(rule=NOT_HANDLED_RULE, reason=reading.note, message_id=where))
            else:
                notes.append(f"{where}: not handled: {reading.note}")
        elif reading.status is ReadStatus.ACKNOWLEDGMENT:
            notes.append(f"{where}: an acknowledgment beside other sets: not read")
        else:
            for n, model in enumerate(reading.models, 1):
                key = f"{reading.gs06}/{reading.st02}/{n}"
                if isinstance(model, Remittance):
                    remittances.append((key, model))
                elif isinstance(model, EligibilityResponse):
                    eligibility.append((key, model))
                elif isinstance(model, ClaimSubmission | EligibilityInquiry):
                    what = "837 claims" if isinstance(model, ClaimSubmission) else "270 inquiries"
                    faults.append(
                        Fault(
                            rule=NOT_HANDLED_RULE,
                            reason=f"an inbound {reading.st01} {reading.guide}: hcsync sends {what}, a "
                            "provider does not receive them",
                            message_id=where,
                        )
                    )
                    break
    if remittances or eligibility:
        notes.append(f"{len(remittances)} remittance(s), {len(eligibility)} eligibility answer(s)")
    note = "; ".join(notes)
    if faults:
        record, record_id, rule = _quarantine(item, x, faults)
        return X12Outcome(
            tuple(files),
            tuple(remittances),
            tuple(eligibility),
            exception=record,
            exception_id=record_id,
            outcome="quarantined",
            rule=rule,
            note=note,
            message_type=message_type,
        )
    outcome: Literal["mapped", "routed"] = "mapped" if remittances or eligibility else "routed"
    return X12Outcome(
        tuple(files),
        tuple(remittances),
        tuple(eligibility),
        outcome=outcome,
        note=note,
        message_type=message_type,
    )


def process_batch(batch: X12Batch) -> tuple[X12Outcome, ...]:
    """Process every interchange of a batch, in order."""
    return tuple(process_interchange(item, batch.map_path) for item in batch.items)
