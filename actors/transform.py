"""The transform step, free of Ray: raw source messages in, enriched canonical events or quarantine
records out.

Each message is parsed, optionally validated strictly, mapped to canonical events and enriched with its
ERP dimensions from master data (actors.enrich). A bad message never raises out of here: it becomes an
ExceptionRecord carrying its original bytes, and the rest of the batch goes on.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from actors.enrich import enrich
from canonical import ids
from canonical.envelope import MessageReceipt
from canonical.errors import DecodeError, Fault, InvalidMessageError, MessageError
from canonical.hl7v2.mapping import canonicalize, encounter_id_of
from canonical.hl7v2.parser import Hl7Message, parse_message
from canonical.hl7v2.strict import strict_fault
from canonical.quarantine import ExceptionRecord
from canonical.reference import MasterDataSet


@dataclass(frozen=True, slots=True)
class StrictPolicy:
    """Which feeds get hl7apy strict structural validation before mapping, and its size caps."""

    feeds: frozenset[str] = frozenset()
    max_bytes: int = 1_048_576
    max_elements: int = 900  # the default of HCSYNC_STRICT_VALIDATION_MAX_ELEMENTS

    def applies(self, msg: Hl7Message) -> bool:
        """True when the message's feed (MSH-3.1, or MSH-3.1^MSH-4.1) is validated strictly."""
        if not self.feeds:
            return False
        app = msg.sending_application
        return "*" in self.feeds or app in self.feeds or msg.sender in self.feeds


@dataclass(frozen=True, slots=True)
class TransformBatch:
    """One actor call's input: raw HL7 messages in broker order, and the strict validation policy."""

    messages: tuple[bytes, ...]
    strict: StrictPolicy = StrictPolicy()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message: its events (key, JSON), a quarantine record, or a routing receipt."""

    events: tuple[tuple[str, bytes], ...] = ()
    exception: bytes | None = None
    # A valid message with no financial effect: (key, MessageReceipt JSON) for routed.hl7v2.
    routed: tuple[str, bytes] | None = None
    message_type: str = ""
    # What the message store records of it: the ids of its events, or its quarantine record and rule.
    event_ids: tuple[str, ...] = ()
    exception_id: str | None = None
    rule: str = ""

    @property
    def ignored(self) -> bool:
        """True when the message was valid but has no financial effect (no events, no fault)."""
        return not self.events and self.exception is None


@dataclass(frozen=True, slots=True)
class TransformResult:
    """One outcome per input message, in the same order."""

    outcomes: tuple[Outcome, ...]


def _quarantined(raw: bytes, fault: Fault, msg: Hl7Message | None) -> Outcome:
    """Return the outcome of a message quarantined for ``fault``."""
    encounter_id = encounter_id_of(msg) if msg is not None else None
    key = ids.message_key(msg.sender, msg.control_id) if msg is not None else ""
    record = ExceptionRecord.from_fault(
        fault,
        record_id=ids.derived_id(base64.b64encode(raw).decode("ascii"), f"quarantine|ingest|{fault.rule}"),
        stage="ingest",
        message_key=key,
        encounter_id=encounter_id,
        original_b64=base64.b64encode(raw).decode("ascii"),
        recorded_at=dt.datetime.now(dt.UTC),
    )
    return Outcome(
        exception=record.model_dump_json().encode("utf-8"),
        exception_id=record.record_id,
        rule=fault.rule,
    )


def transform_one(
    raw: bytes, strict: StrictPolicy = StrictPolicy(), masterdata: MasterDataSet | None = None
) -> Outcome:
    """Canonicalise and enrich one message; every failure becomes a quarantine record, never an exception.

    ``masterdata`` None maps without enrichment (offline tools and mapping tests); the actor pool always
    passes the set in force, so nothing reaches billing or the ERP without its dimensions.
    """
    msg: Hl7Message | None = None
    try:
        msg = parse_message(raw)
        if strict.applies(msg):
            fault = strict_fault(msg, max_bytes=strict.max_bytes, max_elements=strict.max_elements)
            if fault is not None:
                raise InvalidMessageError(fault)
        events = canonicalize(msg)
        if masterdata is not None and events:
            events = enrich(msg, events, masterdata)
    except MessageError as exc:
        return _quarantined(raw, exc.fault, msg)
    except Exception as exc:
        fault = Fault(
            rule="INTERNAL",
            reason=f"{type(exc).__name__}: {exc}",
            message_id=msg.control_id if msg is not None else "",
        )
        return _quarantined(raw, fault, msg)
    message_type = msg.event_code
    if not events:
        encounter_id = encounter_id_of(msg)
        receipt = MessageReceipt(
            source_sender=msg.sender,
            source_message_id=msg.control_id,
            source_message_type=message_type,
            version=msg.version,
            encounter_id=encounter_id,
            original_b64=base64.b64encode(raw).decode("ascii"),
        )
        key = encounter_id or ids.message_key(msg.sender, msg.control_id)
        return Outcome(routed=(key, receipt.model_dump_json().encode("utf-8")), message_type=message_type)
    return Outcome(
        events=tuple((e.encounter_id, e.model_dump_json().encode("utf-8")) for e in events),
        message_type=message_type,
        event_ids=tuple(e.event_id for e in events),
    )


def transform_batch(batch: TransformBatch, masterdata: MasterDataSet | None = None) -> TransformResult:
    """Canonicalise and enrich a batch, one outcome per message in order."""
    return TransformResult(
        outcomes=tuple(transform_one(raw, batch.strict, masterdata) for raw in batch.messages)
    )


__all__ = [
    "DecodeError",
    "Outcome",
    "StrictPolicy",
    "TransformBatch",
    "TransformResult",
    "transform_batch",
    "transform_one",
]
