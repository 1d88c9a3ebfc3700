"""Build the Faust app: topics, the encounter table and the agents.

    raw.hl7v2 --ingest (batches to the Ray pool, several in flight)--> events.canonical | exceptions
        | routed.hl7v2, and one outcomes.ingest record per batch (for the message store)
    events.canonical --encounters (table: state, processed ids)--> commands.billing | commands.erp
    commands.billing --billing dispatcher (gRPC)--> BillingAdapter
    commands.erp --ERP dispatcher (gRPC)--> ErpAdapter
    raw.x12 --X12 ingest (batches to the Ray pool: pyx12 validation, 999/TA1, reading)--> 999/TA1 files in
        the outbox | commands.revenue (835s, 271s, acknowledgments) | exceptions, and outcomes.ingest
    commands.revenue --revenue dispatcher (gRPC)--> BillingAdapter, PayerGateway (270s, 837s), and the
        journals of posted 835s to commands.erp; claims billing built arrive here from the billing dispatcher
    exceptions --quarantine--> the quarantine store

Offsets are committed only after the producer is flushed (Faust flushes before each commit) and a batch
is acknowledged only once fully handled, so every stage is at-least-once and the sinks are idempotent.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast

import faust
from faust.types import TP, EventT

from actors.pool import TransformPool
from actors.transform import Outcome, StrictPolicy, TransformBatch, TransformResult
from actors.x12 import X12Batch, X12Item, X12Outcome
from adapters.inbound.outcomes import MessageOutcome, OutcomeBatch, message_id_of
from canonical import ids
from canonical.quarantine import failure_record
from foundation.settings import Settings
from foundation.topics import TopicNames
from streams.commands import ClaimAckCommand, EligibilityAnswerCommand, RemittanceCommand
from streams.dispatch import BillingDispatcher, ErpDispatcher
from streams.encounter_state import EncounterState
from streams.encounters import StateCodec, apply_records
from streams.pipeline import OrderedPipeline
from streams.posting import PostingRules
from streams.quarantine_agent import register_quarantine_agent
from streams.quarantine_store import QuarantineStore
from streams.records import PartitionedBatches, partition_of, split
from streams.retry import is_outage, retry
from streams.revenue import ControlNumbers, RevenueDispatcher
from streams.scaling import IngestOffsets, PoolController, assigned_lag
from streams.stats import MESSAGE_TYPE_PREFIX, Stats
from streams.transport import app_class

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    """What the agents need besides the app: the Ray pool, the dispatchers and the counters."""

    settings: Settings
    pool: TransformPool
    billing: BillingDispatcher
    erp: ErpDispatcher
    stats: Stats
    rules: PostingRules
    quarantine: QuarantineStore
    scaling: PoolController | None = None  # follows `hcsync scale`; None in tests that drive the pool
    # The revenue cycle: None where a test runs without it (no payer, no X12).
    revenue: RevenueDispatcher | None = None
    control_numbers: ControlNumbers | None = None  # of the 999s and TA1s the X12 ingest writes
    outbox: Path | None = None  # where they are written
    x12_maps: Path | None = None  # pyx12's nearest maps
    # The ingest pipeline, set once the ingest agent runs (its depth is a scaling signal).
    ingest: OrderedPipeline[list[EventT[bytes]], TransformResult] | None = None


def record_key(record: EventT[bytes]) -> bytes:
    """A raw record's broker key (sender|control id), empty when it has none."""
    key = record.message.key
    return key if isinstance(key, bytes) else b""


def _message_outcome(record: EventT[bytes], outcome: Outcome) -> MessageOutcome:
    """Describe for the message store what became of the message behind ``record``."""
    kind: Literal["mapped", "routed", "quarantined"]
    if outcome.events:
        kind = "mapped"
    elif outcome.exception is not None:
        kind = "quarantined"
    else:
        kind = "routed"
    return MessageOutcome(
        message_id=message_id_of(record.message.headers),
        key_b64=base64.b64encode(record_key(record)).decode("ascii"),
        outcome=kind,
        event_ids=outcome.event_ids,
        exception_id=outcome.exception_id,
        rule=outcome.rule,
    )


def write_outbox(outbox: Path, name: str, content: bytes) -> None:
    """Write one acknowledgment into the outbox whole: a temporary name, then renamed into place.

    The name is the answered interchange's (999-<sender>-<ISA13>.x12), so a retry writes the same file.
    """
    outbox.mkdir(parents=True, exist_ok=True)
    partial = outbox / f".{name}.part"
    with open(partial, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, outbox / name)


class EncounterTable(faust.Table[str, bytes]):
    """The encounter table: an encounter's changelog goes to the partition its events come from.

    The encounters agent writes states after a batch (not inside the handling of one event), so the
    partition is the encounter's, computed as every record about it is routed (streams/records.py).
    """

    def partition_for_key(self, key: Any) -> int:
        return partition_of(str(key), self.partitions)


def build_app(settings: Settings, runtime: Runtime, datadir: Path) -> faust.App:
    """Create the Faust app with its topics, table and agents."""
    names = TopicNames(settings.topic_prefix)
    # Our transport: a producer flush that covers every buffered changelog record, and on the embedded
    # broker changelog end offsets from fetch responses (streams/transport.py says why).
    app = app_class(settings)(
        f"{settings.topic_prefix}{settings.app_id}",
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        producer_acks=-1,
        # A quarantine record carries its message base64-encoded: room for the largest message we accept.
        producer_max_request_size=4 * settings.max_message_bytes,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        # A worker that dies silently loses its partitions to the others after this long.
        broker_session_timeout=settings.consumer_session_timeout_s,
        broker_heartbeat_interval=settings.consumer_session_timeout_s / 6,
        # The table uses the app's codecs (JSON); every topic below is raw bytes with our own codecs.
        key_serializer="json",
        value_serializer="json",
    )
    raw = app.topic(names.raw_hl7v2, key_serializer="raw", value_serializer="raw")
    events = app.topic(names.events, key_serializer="raw", value_serializer="raw")
    billing = app.topic(names.billing, key_serializer="raw", value_serializer="raw")
    erp = app.topic(names.erp, key_serializer="raw", value_serializer="raw")
    exceptions = app.topic(names.exceptions, key_serializer="raw", value_serializer="raw")
    routed = app.topic(names.routed, key_serializer="raw", value_serializer="raw")
    outcomes = app.topic(names.outcomes, key_serializer="raw", value_serializer="raw")
    raw_x12 = app.topic(names.raw_x12, key_serializer="raw", value_serializer="raw")
    revenue = app.topic(names.revenue, key_serializer="raw", value_serializer="raw")
    partitions = settings.topic_partitions
    # Values are the states' JSON as bytes (streams/encounters.py StateCodec decodes them).
    table = EncounterTable(
        app,
        name="encounters",
        default=None,
        beacon=app.tables.beacon,
        partitions=partitions,
        value_type=bytes,
    )
    app.tables.add(table)
    batch_size = settings.transform_batch_size
    strict = StrictPolicy(
        feeds=frozenset(settings.strict_validation_feeds),
        max_bytes=settings.strict_validation_max_bytes,
        max_elements=settings.strict_validation_max_elements,
    )
    window_s = settings.transform_batch_window_s
    offsets = IngestOffsets()  # the ingest's position per raw partition: the autoscaler's lag signal

    async def forget_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[TP] = args[0]  # the signal is sent as on_partitions_revoked.send(revoked)
        offsets.forget(revoked)

    app.on_partitions_revoked.connect(forget_revoked)  # type: ignore[arg-type]  # a union mypy cannot match

    # Every agent hands its whole unit of work to _with_retry: an exception escaping the loop would end
    # the agent, and Faust would still acknowledge the batch it was holding, losing it.

    async def start_batch(records: list[EventT[bytes]]) -> TransformResult:
        batch = TransformBatch(messages=tuple(record.value for record in records), strict=strict)
        result: TransformResult = await retry("ingest transform", runtime.pool.transform, batch)
        return result

    async def route_result(records: list[EventT[bytes]], result: TransformResult) -> None:
        pending: list[Awaitable[Any]] = []
        counts = {"raw_in": len(records), "mapped": 0, "events_out": 0, "quarantined": 0, "ignored": 0}
        done: list[MessageOutcome] = []
        # Events travel in batch records, one per events partition (several when large: records.py).
        batches = PartitionedBatches(partitions)
        for record, outcome in zip(records, result.outcomes, strict=True):
            done.append(_message_outcome(record, outcome))
            for key, value in outcome.events:
                batches.add(key, value)
            counts["events_out"] += len(outcome.events)
            counts["mapped"] += bool(outcome.events)
            if outcome.exception is not None:
                pending.append(await exceptions.send(value=outcome.exception))
                counts["quarantined"] += 1
            elif outcome.routed is not None:
                key, value = outcome.routed
                pending.append(await routed.send(key=key.encode(), value=value))
                counts["ignored"] += 1
            if outcome.message_type:
                name = f"{MESSAGE_TYPE_PREFIX}{outcome.message_type}"
                counts[name] = counts.get(name, 0) + 1
        for partition, value in batches.records():
            pending.append(await events.send(value=value, partition=partition))
        # One record per batch tells the message store what became of each message.
        report = OutcomeBatch(at=dt.datetime.now(dt.UTC), outcomes=tuple(done))
        pending.append(await outcomes.send(value=report.model_dump_json().encode("utf-8")))
        await asyncio.gather(*pending)
        await runtime.stats.add(counts)

    @app.agent(raw, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        """Canonicalise raw HL7 in batches on the Ray pool; route events and quarantine records.

        Several batches are transformed at once (up to twice the pool's in-flight bound are taken), and
        their results are routed one batch at a time in the order the batches were read; each record is
        acknowledged only once its batch's outputs are on the broker.
        """

        async def finish(records: list[EventT[bytes]], result: TransformResult) -> None:
            await retry("ingest routing", route_result, records, result)
            for record in records:
                await stream.ack(record)
                offsets.acked(record.message.tp, record.message.offset)

        pipeline: OrderedPipeline[list[EventT[bytes]], TransformResult] = OrderedPipeline(
            start_batch, finish, depth=lambda: 2 * runtime.pool.capacity
        )
        runtime.ingest = pipeline
        try:
            # noack_take (records acknowledged by finish, not by the stream) is on Stream, not StreamT.
            async for taken in cast(faust.Stream[bytes], stream).noack_take(batch_size, within=window_s):
                records = cast(list[EventT[bytes]], taken)
                for record in records:
                    offsets.taken(record.message.tp, record.message.offset)
                await pipeline.put(records)
        finally:
            await pipeline.close()

    codec = StateCodec()

    def load(encounter_id: str) -> EncounterState:
        return codec.decode(encounter_id, table.get(encounter_id))

    async def apply_batch(values: list[bytes]) -> None:
        # Applied afresh from the table on every attempt: a retry after a failed send is the same batch.
        outcome = apply_records(values, load, runtime.rules, partitions)
        pending: list[Awaitable[Any]] = []
        for partition, value in outcome.billing.records():
            pending.append(await billing.send(value=value, partition=partition))
        for partition, value in outcome.erp.records():
            pending.append(await erp.send(value=value, partition=partition))
        for partition, value in outcome.revenue.records():
            pending.append(await revenue.send(value=value, partition=partition))
        for record in outcome.exceptions:
            pending.append(await exceptions.send(value=record))
        # Delivered, not just queued: otherwise a changelog write below could reach the broker first.
        await asyncio.gather(*pending)
        for encounter_id, state in outcome.states.items():
            table[encounter_id] = codec.encode(state)
        counts = {name: n for name, n in outcome.counts.items() if n}
        if counts:
            await runtime.stats.add(counts)

    @app.agent(events, name="encounters")
    async def encounters(stream: faust.StreamT[bytes]) -> None:
        """Apply batches of events to their encounters' states; emit billing and ERP commands in batches."""
        size, window_s = settings.encounter_batch_size, settings.encounter_batch_window_s
        async for taken in stream.take(size, within=window_s):
            values = list(taken)

            async def give_up(exc: Exception, values: list[bytes] = values) -> None:
                # Not an outage, not one event (those are quarantined inside): quarantine each event.
                for value in values:
                    for item in split(value):
                        record = failure_record("encounters", item, "ENCOUNTER-PROCESSING-FAILED", exc)
                        await retry("quarantine", partial(exceptions.send, value=record))

            await retry(
                "encounter batch", apply_batch, values, attempts=5, on_give_up=give_up, transient=is_outage
            )

    def dispatch_with(
        dispatcher: BillingDispatcher | ErpDispatcher | RevenueDispatcher,
    ) -> Callable[[list[bytes]], Awaitable[None]]:
        async def dispatch(batch: list[bytes]) -> None:
            report = await dispatcher.dispatch(batch)
            pending = [await exceptions.send(value=record) for record in report.exceptions]
            # Claims billing built go to the revenue dispatcher; the journals of a posted 835 to the ERP's.
            for key, value in report.revenue:
                pending.append(await revenue.send(key=key.encode(), value=value))
            for key, value in report.erp:
                pending.append(await erp.send(key=key.encode(), value=value))
            await asyncio.gather(*pending)
            await runtime.stats.add(report.counts)

        return dispatch

    dispatch_billing = dispatch_with(runtime.billing)
    dispatch_erp = dispatch_with(runtime.erp)

    @app.agent(billing, name="billing-dispatch")
    async def billing_dispatch(stream: faust.StreamT[bytes]) -> None:
        """Send billing commands to the BillingAdapter in batches, idempotently."""
        async for batch in stream.take(settings.dispatch_batch_size, within=settings.dispatch_batch_window_s):
            await retry("billing dispatch", dispatch_billing, batch)

    @app.agent(erp, name="erp-dispatch")
    async def erp_dispatch(stream: faust.StreamT[bytes]) -> None:
        """Send journal commands to the ErpAdapter as journal batches, idempotently."""
        async for batch in stream.take(settings.dispatch_batch_size, within=settings.dispatch_batch_window_s):
            await retry("erp dispatch", dispatch_erp, batch)

    if runtime.revenue is not None:
        dispatch_revenue = dispatch_with(runtime.revenue)

        @app.agent(revenue, name="revenue-dispatch")
        async def revenue_dispatch(stream: faust.StreamT[bytes]) -> None:
            """Coverage and eligibility, claims to the payer, 835s posted, acknowledgments applied."""
            async for batch in stream.take(
                settings.dispatch_batch_size, within=settings.dispatch_batch_window_s
            ):
                await retry("revenue dispatch", dispatch_revenue, batch)

    async def route_x12(records: list[EventT[bytes]], results: tuple[X12Outcome, ...]) -> None:
        pending: list[Awaitable[Any]] = []
        done: list[MessageOutcome] = []
        counts = {"x12_in": len(records), "x12_quarantined": 0, "x12_acks_written": 0}
        for record, result in zip(records, results, strict=True):
            key = record_key(record)
            message_key = key.decode("utf-8", "replace")
            sender, _, control = message_key.partition("|")
            correlation = ids.correlation_id(sender, control)
            if runtime.outbox is not None:
                for name, content in result.acks:
                    await asyncio.to_thread(write_outbox, runtime.outbox, name, content)
                    counts["x12_acks_written"] += 1
            commands: list[tuple[str, RemittanceCommand | EligibilityAnswerCommand | ClaimAckCommand]] = []
            for where, remittance in result.remittances:
                command_id = ids.derived_id(message_key, f"revenue.835.{where}")
                remit = RemittanceCommand(
                    command_id=command_id,
                    remittance=remittance,
                    source_event_id=command_id,
                    correlation_id=correlation,
                )
                commands.append((remittance.key, remit))
            for where, answer in result.eligibility:
                command_id = ids.derived_id(message_key, f"revenue.271.{where}")
                answered = EligibilityAnswerCommand(
                    command_id=command_id,
                    response=answer,
                    source_event_id=command_id,
                    correlation_id=correlation,
                )
                commands.append((answer.trace_number, answered))
            for n, fact in enumerate(result.ack_facts):
                command_id = ids.derived_id(message_key, f"revenue.ack.{n}")
                ack = ClaimAckCommand(
                    command_id=command_id,
                    receiver_id=fact.receiver_id,
                    interchange_control=fact.interchange_control,
                    group_control=fact.group_control,
                    set_control=fact.set_control,
                    event=fact.event,
                    ack_code=fact.ack_code,
                    error_text=fact.error_text,
                    occurred_at=dt.datetime.now(dt.UTC),
                    source_event_id=command_id,
                    correlation_id=correlation,
                )
                commands.append((f"{fact.receiver_id}|{fact.group_control}", ack))
            for command_key, command in commands:
                value = command.model_dump_json().encode()
                pending.append(await revenue.send(key=command_key.encode(), value=value))
            if result.exception is not None:
                pending.append(await exceptions.send(value=result.exception))
                counts["x12_quarantined"] += 1
            done.append(
                MessageOutcome(
                    message_id=message_id_of(record.message.headers),
                    standard="x12",
                    key_b64=base64.b64encode(key).decode("ascii"),
                    outcome=result.outcome,
                    event_ids=tuple(command.command_id for _, command in commands),
                    exception_id=result.exception_id,
                    rule=result.rule,
                    note=result.note[:2000],
                )
            )
            kind = f"{MESSAGE_TYPE_PREFIX}X12 {result.message_type}"
            counts[kind] = counts.get(kind, 0) + 1
        report = OutcomeBatch(at=dt.datetime.now(dt.UTC), outcomes=tuple(done))
        pending.append(await outcomes.send(value=report.model_dump_json().encode("utf-8")))
        await asyncio.gather(*pending)
        await runtime.stats.add(counts)

    @app.agent(raw_x12, name="x12-ingest")
    async def x12_ingest(stream: faust.StreamT[bytes]) -> None:
        """Validate, acknowledge and read X12 interchanges on the Ray pool; route what they mean."""
        numbers = runtime.control_numbers
        own = (settings.x12_sender_qualifier, settings.x12_sender_id)
        async for taken in cast(faust.Stream[bytes], stream).noack_take(
            settings.x12_batch_size, within=window_s
        ):
            records = cast(list[EventT[bytes]], taken)

            async def handle(records: list[EventT[bytes]] = records) -> None:
                items = []
                for record in records:
                    message_key = record_key(record).decode("utf-8", "replace")
                    # Two numbers per interchange (its TA1 and its 999), the same ones on every retry.
                    first = 1 if numbers is None else await numbers.reserve(f"ack:{message_key}", 2)
                    items.append(
                        X12Item(
                            raw=record.value,
                            message_key=message_key,
                            sender=own,
                            control_number=first,
                            at=dt.datetime.now(dt.UTC),
                        )
                    )
                results = await runtime.pool.x12(X12Batch(items=tuple(items), map_path=runtime.x12_maps))
                await route_x12(records, results)

            await retry("x12 ingest", handle)
            for record in records:
                await stream.ack(record)

    controller = runtime.scaling
    if controller is not None:
        controller.watch(
            lag=lambda: assigned_lag(app, names.raw_hl7v2, offsets),
            pending=lambda: 0 if runtime.ingest is None else runtime.ingest.pending,
            app=app,
        )

        @app.timer(interval=settings.scale_check_interval_s, name="scale-transform")  # type: ignore[untyped-decorator]
        async def follow_scale() -> None:
            """Resize this worker's pool (pinned or autoscaled); report what it runs."""
            try:
                await controller.tick()
            except Exception as exc:  # a failed resize must not stop the timer; the next tick retries
                log.warning("pool not resized (%s: %s)", type(exc).__name__, exc)

    register_quarantine_agent(app, exceptions, runtime.quarantine)
    return app
