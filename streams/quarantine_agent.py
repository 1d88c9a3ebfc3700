"""The Faust agent that writes the exceptions topic into the quarantine store, batch by batch."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from typing import cast

import faust
from pydantic import ValidationError

from canonical.quarantine import ExceptionRecord
from streams.quarantine_store import QuarantineStore
from streams.retry import describe, retry

__all__ = [
    "BATCH_SIZE",
    "BATCH_WINDOW_S",
    "UNDECODABLE_RULE",
    "broker_time",
    "decode_record",
    "register_quarantine_agent",
]

log = logging.getLogger(__name__)

BATCH_SIZE = 500
BATCH_WINDOW_S = 0.5
UNDECODABLE_RULE = "QUARANTINE-UNDECODABLE"
# Not a pipeline stage: replay refuses it, because these bytes are a broken record, not a message.
UNDECODABLE_STAGE = "quarantine"


def decode_record(value: bytes | None, written_at: dt.datetime | None = None) -> ExceptionRecord:
    """Decode one exceptions-topic value; keep an undecodable one whole as a synthetic record.

    ``written_at`` is the broker timestamp of the topic record. It stamps an undecodable one, so that a
    redelivery of that record is the same occurrence in the store, not a new failure.
    """
    raw = value or b""
    try:
        record = ExceptionRecord.model_validate_json(raw)
        # Decode now: bad base64 found later, in the store, would fail the batch on every retry.
        record.original  # noqa: B018
        # Likewise values no database column holds (a 32-bit position, a year past 9999 in UTC).
        if record.position is not None and not 0 <= record.position < 2**31:
            raise ValueError(f"position {record.position} out of range")
        if not 1900 <= record.recorded_at.astimezone(dt.UTC).year <= 2200:
            raise ValueError("recorded_at out of range")
    except (ValidationError, binascii.Error, ValueError, OverflowError) as exc:
        # Never drop or crash on it: the bytes are kept so an engineer can see what was written there.
        return ExceptionRecord(
            record_id=hashlib.sha256(b"quarantine|undecodable|" + raw).hexdigest()[:32],
            stage=UNDECODABLE_STAGE,
            rule=UNDECODABLE_RULE,
            reason=f"exceptions topic record is not an ExceptionRecord: {describe(exc)}",
            original_b64=base64.b64encode(raw).decode("ascii"),
            recorded_at=written_at or dt.datetime.now(dt.UTC),
        )
    return record


def broker_time(event: faust.EventT[bytes]) -> dt.datetime | None:
    """Return the broker timestamp of the record behind ``event``, when it has a usable one."""
    timestamp = event.message.timestamp
    # No timestamp is -1 on the wire; anything before 2000 is no real write time either.
    if not isinstance(timestamp, int | float) or timestamp < 946_684_800:
        return None
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def register_quarantine_agent(app: faust.App, exceptions_topic: faust.TopicT, store: QuarantineStore) -> None:
    """Define the "quarantine" agent: exceptions topic to the quarantine store, in batches."""

    async def store_batch(records: Sequence[ExceptionRecord]) -> None:
        # The store blocks on its database; a worker thread keeps the event loop serving the other agents.
        stored = await asyncio.to_thread(store.add, records)
        log.debug("quarantine store: %d record(s) in, %d new or repeated", len(records), stored)

    @app.agent(exceptions_topic, name="quarantine")
    async def quarantine(stream: faust.StreamT[bytes]) -> None:
        """Store every quarantine record with its original bytes, so it can be listed and replayed."""
        # Events, not values: an undecodable record is stamped with its broker timestamp (decode_record).
        # take_events is on the stream class but not on its interface.
        events = cast("faust.Stream[bytes]", stream).take_events(BATCH_SIZE, within=BATCH_WINDOW_S)
        async for batch in events:
            records = [decode_record(event.value, broker_time(event)) for event in batch]
            # Retried until stored: leaving the loop would let Faust acknowledge a batch never written.
            await retry("quarantine store", store_batch, records)
