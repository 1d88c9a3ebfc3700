"""The forwarder: stored messages to the broker, at least once; ingest outcomes back into the store.

Forwarding. In receipt order, a batch at a time, the forwarder sends every message not yet forwarded in the
store's current epoch to its standard's raw topic (``raw.hl7v2``, ``raw.x12``; key sender|control id,
header ``hcsync-message-id``), waits for the
broker to acknowledge each record, and only then marks the batch forwarded in the epoch it read. It keeps
no position of its own: after any restart (of itself, or of the broker, which starts a new epoch) it
resumes with whatever the store says is pending. A message sent twice is harmless: its event ids are
derived from the source, and the sinks are idempotent.

A conflict (same sender and control id as a stored message, other content) is not sent to the raw topic:
it becomes a quarantine record (rule ``HL7-MSH-10-CONFLICT``, ``X12-ISA13-CONFLICT``) on the exceptions topic,
so it is listed by
``hcsync exceptions`` with its bytes. Its record is stamped with the time the conflict was received, so a
second forwarding (a new epoch) is the same occurrence to the quarantine store, not a new one.

Outcomes. The ingest agent publishes what it made of each message to ``outcomes.ingest``; the forwarder
consumes that topic in its own consumer group and records the outcomes in the store, committing its offsets
only after the store transaction.

Retention. Forwarded messages older than ``message_retention_days`` are purged at start and hourly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import signal
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from adapters.inbound.hl7v2 import CONFLICT_RULE, STANDARD
from adapters.inbound.outcomes import MESSAGE_ID_HEADER, OutcomeBatch
from adapters.inbound.store import MessageStore, Pending
from adapters.inbound.x12 import CONFLICT_RULE as X12_CONFLICT_RULE
from adapters.inbound.x12 import STANDARD as X12_STANDARD
from canonical import ids
from canonical.errors import DecodeError
from canonical.hl7v2.mapping import encounter_id_of
from canonical.hl7v2.parser import parse_message
from canonical.quarantine import ExceptionRecord
from foundation.kafka import producer
from foundation.settings import Settings
from foundation.topics import TopicNames

__all__ = ["Forwarder", "conflict_record", "run_forwarder"]

log = logging.getLogger(__name__)

_PURGE_INTERVAL_S = 3600.0
_SUMMARY_INTERVAL_S = 60.0
_RETRY_MAX_S = 5.0


# What a conflict is, per standard: its rule, the segment and field of the reused control number, and what
# to do about it.
_CONFLICTS = {
    STANDARD: (
        CONFLICT_RULE,
        "MSH",
        "MSH-10",
        "if it corrects the first message, have the sender resend it with a new MSH-10, or replay it "
        "with --with-file after giving it one; if it only repeats the first message, resolve it",
    ),
    X12_STANDARD: (
        X12_CONFLICT_RULE,
        "ISA",
        "ISA13",
        "if it corrects the first interchange, have the sender resend it with a new ISA13; if it only "
        "repeats the first one, resolve it",
    ),
}


def conflict_record(pending: Pending) -> ExceptionRecord:
    """Return the quarantine record of a stored conflict."""
    rule, segment, field, hint = _CONFLICTS[pending.standard]
    encounter = None
    if pending.standard == STANDARD:
        try:
            encounter = encounter_id_of(parse_message(pending.content))
        except DecodeError:
            encounter = None
    received = pending.received_at.astimezone(dt.UTC).isoformat(timespec="seconds")
    return ExceptionRecord(
        record_id=ids.derived_id(pending.message_id, f"quarantine|ingest|{rule}"),
        stage="ingest",
        source_system=pending.standard,
        message_key=pending.broker_key.decode("utf-8", "replace"),
        source_message_id=pending.control_id,
        encounter_id=encounter,
        rule=rule,
        reason=(
            f"message {pending.control_id} from {pending.sender} was already received with other content "
            f"(stored message {pending.conflict_of}); this one (stored message {pending.message_id}, "
            f"received {received}) is kept as a conflict and was not processed"
        ),
        segment=segment,
        field=field,
        position=0,
        found=pending.control_id,
        fix_hint=hint,
        original_b64=base64.b64encode(pending.content).decode("ascii"),
        recorded_at=pending.received_at,
    )


class Forwarder:
    """Move pending messages from the store to the broker; the unit of work is one batch."""

    def __init__(self, settings: Settings, store: MessageStore, kafka: AIOKafkaProducer) -> None:
        self._settings = settings
        self._store = store
        self._kafka = kafka
        names = TopicNames(settings.topic_prefix)
        self._raw = {STANDARD: names.raw_hl7v2, X12_STANDARD: names.raw_x12}
        self._exceptions = names.exceptions
        self.forwarded = 0
        self.conflicts = 0

    async def forward_once(self) -> int:
        """Send one batch of pending messages and mark those the broker acknowledged; return how many."""
        store = self._store
        epoch = await asyncio.to_thread(store.epoch)
        batch = await asyncio.to_thread(store.pending, epoch, self._settings.forwarder_batch_size)
        if not batch:
            return 0
        sent: list[tuple[Pending, Awaitable[Any]]] = []
        for pending in batch:
            if pending.conflict_of is not None:
                record = conflict_record(pending).model_dump_json().encode("utf-8")
                future = await self._kafka.send(self._exceptions, value=record)
            else:
                future = await self._kafka.send(
                    self._raw[pending.standard],
                    value=pending.content,
                    key=pending.broker_key,
                    headers=[(MESSAGE_ID_HEADER, pending.message_id.encode("ascii"))],
                )
            sent.append((pending, future))
        results = await asyncio.gather(*(future for _, future in sent), return_exceptions=True)
        done = [
            p for (p, _), result in zip(sent, results, strict=True) if not isinstance(result, BaseException)
        ]
        # Marked in the epoch read before sending: if the broker was replaced meanwhile, they stay pending.
        await asyncio.to_thread(store.mark_forwarded, [p.message_id for p in done], epoch)
        self.forwarded += len(done)
        self.conflicts += sum(p.conflict_of is not None for p in done)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        return len(done)


async def _forward_loop(forwarder: Forwarder, settings: Settings, stop: asyncio.Event) -> None:
    delay_s = settings.forwarder_poll_interval_s
    while not stop.is_set():
        try:
            moved = await forwarder.forward_once()
            delay_s = settings.forwarder_poll_interval_s
        except (KafkaError, OSError) as exc:
            log.warning(
                "forwarding paused, broker unavailable (%s); retrying in %.1fs", type(exc).__name__, delay_s
            )
            moved = 0
            delay_s = min(delay_s * 2 if delay_s >= 0.5 else 0.5, _RETRY_MAX_S)
        except Exception as exc:  # the store: locked, unreachable
            log.warning("forwarding paused, message store unavailable (%s); retrying", type(exc).__name__)
            moved = 0
            delay_s = min(max(delay_s * 2, 0.5), _RETRY_MAX_S)
        if not moved:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)


async def _outcome_loop(consumer: AIOKafkaConsumer, store: MessageStore, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            fetched = await consumer.getmany(timeout_ms=500, max_records=500)
            updates = []
            for records in fetched.values():
                for record in records:
                    try:
                        updates.extend(OutcomeBatch.model_validate_json(record.value or b"").updates())
                    except ValidationError:
                        # Only the ingest writes here; a record we cannot read must not stop the others.
                        log.error(
                            "outcomes.ingest record at offset %d is not an OutcomeBatch; skipped",
                            record.offset,
                        )
            if updates:
                await asyncio.to_thread(store.record_outcomes, updates)
            if fetched:
                await consumer.commit()
        except KafkaError as exc:
            log.warning("outcomes not read, broker unavailable (%s)", type(exc).__name__)
            await asyncio.sleep(1.0)
        except Exception as exc:
            # Not committed: the same records are read again once the store answers.
            log.warning("outcomes not recorded, message store unavailable (%s)", type(exc).__name__)
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                for tp in consumer.assignment():
                    committed = await consumer.committed(tp)
                    consumer.seek(tp, committed if committed is not None and committed >= 0 else 0)


async def _consume_outcomes(consumer: AIOKafkaConsumer, store: MessageStore, stop: asyncio.Event) -> None:
    if await _started(consumer, "outcome consumer", stop):
        await _outcome_loop(consumer, store, stop)


async def _purge_loop(store: MessageStore, settings: Settings, stop: asyncio.Event) -> None:
    while not stop.is_set():
        before = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.message_retention_days)
        try:
            purged = await asyncio.to_thread(store.purge, before)
            if purged:
                log.info("purged %d forwarded message(s) received before %s", purged, before.isoformat())
        except Exception as exc:
            log.warning("message store not purged (%s)", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _PURGE_INTERVAL_S)


async def _started(client: AIOKafkaProducer | AIOKafkaConsumer, what: str, stop: asyncio.Event) -> bool:
    """Start a Kafka client, retrying while the broker is down; False if stopped first."""
    delay_s = 0.5
    while not stop.is_set():
        try:
            await client.start()
            return True
        except KafkaError as exc:
            log.warning(
                "%s cannot reach the broker yet (%s); retrying in %.1fs", what, type(exc).__name__, delay_s
            )
            with contextlib.suppress(Exception):
                await client.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)
            delay_s = min(delay_s * 2, _RETRY_MAX_S)
    return False


async def run_forwarder(settings: Settings, run_dir: Path | None = None) -> None:
    """Run the forwarder until SIGTERM or SIGINT; write ``forwarder.ready`` in the run dir once running."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    store = MessageStore.from_settings(settings)
    names = TopicNames(settings.topic_prefix)
    kafka = producer(settings)
    consumer = AIOKafkaConsumer(
        names.outcomes,
        bootstrap_servers=settings.bootstrap,
        group_id=f"{settings.topic_prefix}{settings.app_id}-message-store",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * settings.max_message_bytes,
    )
    forwarder = Forwarder(settings, store, kafka)
    tasks: list[asyncio.Task[None]] = []
    try:
        if not await _started(kafka, "forwarder producer", stop):
            return
        # Forwarding starts at once; the outcome consumer joins its group on the side (after a restart the
        # broker waits out the old member's session first, which must not hold up forwarding).
        tasks = [
            asyncio.create_task(_forward_loop(forwarder, settings, stop), name="forward"),
            asyncio.create_task(_consume_outcomes(consumer, store, stop), name="outcomes"),
            asyncio.create_task(_purge_loop(store, settings, stop), name="purge"),
        ]
        if run_dir is not None:
            (run_dir / "forwarder.ready").write_text("ready\n")
        log.info("ready: forwarder from %s to %s", store.database_url, settings.bootstrap)
        last, shown = time.monotonic(), 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _SUMMARY_INTERVAL_S)
            if forwarder.forwarded != shown:
                log.info(
                    "forwarded %d message(s) in %.0fs (%d conflict(s) quarantined in all)",
                    forwarder.forwarded - shown,
                    time.monotonic() - last,
                    forwarder.conflicts,
                )
                last, shown = time.monotonic(), forwarder.forwarded
        log.info("stopping: forwarder")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await kafka.stop()
        store.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped: forwarder after %d message(s)", forwarder.forwarded)
