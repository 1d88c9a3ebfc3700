"""The Faust transport hcsync runs on: aiokafka's, with two corrections that keep the encounter table whole.

1. **The producer's flush waits for every buffered record.** Faust writes a table's changelog through
   a buffer (``send_soon``) and flushes the producer before it commits offsets. But Faust's buffer flush
   gives up when no record left the buffer within 0.1 s, and never counts the record it is handing to
   aiokafka at that moment: under load (aiokafka waits whenever a partition's batch is full) offsets are
   committed while an event's state change is still in the buffer, and a worker that dies then loses that
   state for good (the event is committed, so nobody applies it again). ``_DrainingProducer.flush`` waits
   until the broker acknowledged every record handed to ``send_soon``, and raises if one was refused,
   so no offset is committed past a state change the broker does not have.

2. **On the embedded broker, table recovery reads changelog end offsets from fetch responses.** Faust
   recovers a table until it reaches each changelog partition's end as ListOffsets reports it. Tansu
   0.6.0 answers ListOffsets with the first offset of the newest produce batch plus one, and changelog
   records go out several per produce request whenever one is in flight, so recovery stopped short:
   a worker taking over partitions started from an incomplete table, and a worker keeping partitions it
   held re-read its own writes only up to that point, putting older states back (a charge it had marked
   processed was lost that way). ``_FetchHighwaterConsumerThread`` takes the end from a fetch instead
   (foundation.kafka.fetch_high_watermarks). A real Kafka keeps ListOffsets.

3. **After a rebalance, stream partitions resume only once they are at their committed offsets.** When
   table recovery completes, Faust resumes the stream partitions, then seeks them to their committed
   offsets (a broker round trip), then resumes flow control, which empties every agent's queue. Records
   the fetcher delivered meanwhile were counted as read but thrown away with the queues; when more
   records of the same fetch followed them, Faust took the jump in offsets for a gap (offsets that do not
   exist) and the next commit went past records no agent ever saw (fetched again from the committed
   offset, they were dropped as already read). In the worker-kill test the restarted worker committed
   past an event it never saw (a registration the dead worker had applied just before its death; had it
   not, the registration would never have been applied and its charge held for good, as in the test's
   unexplained failures). ``_SeekFirstRecovery`` seeks and empties the queues while the partitions are
   still paused.

4. **No record is read past unseen: a stream partition the group never committed is sought to its
   beginning, and records are fetched only for the partitions Faust has active when the fetch returns.**
   Faust hands aiokafka its live set of active partitions, and pauses partitions by removing them from
   that set; aiokafka reads an empty set as "every partition". When table recovery finished while a
   fetch was waiting (the set emptied: stream partitions paused for the recovery, changelog partitions
   paused as it ended), the waiting fetch returned the records aiokafka had buffered for every
   partition, and Faust threw away those of partitions no longer active, their positions moved past
   them. The seek that follows recovery puts a partition back at its committed offset, but aiokafka
   leaves a partition with no committed offset where it is: a worker taking over a partition the dead
   worker had not committed yet (it died within a commit interval of its first records there) skipped
   every record already in it. In the worker-kill test those were billing commands of registrations
   the dead worker had applied: the encounter table had them, so the redelivered events were
   duplicates and nothing sent them again (no account, its charges held or refused for good).
   ``_RewindingConsumerThread`` hands aiokafka a view of the set that is never "all" and, after the
   seek to committed offsets, seeks stream partitions without a committed offset to their beginning,
   where a new consumer of the group would start (``auto_offset_reset="earliest"``): whatever is still
   thrown away in a rebalance (Faust drops fetched records once flow stops) is read again.

``app_class`` picks the Faust app class for the broker in use; streams.app builds the app with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, cast

import aiokafka
import faust
from faust.exceptions import ProducerSendError
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, TransportT
from faust.types.tuples import FutureMessage

from foundation.kafka import fetch_high_watermarks
from foundation.settings import Settings

log = logging.getLogger(__name__)


class _DrainingProducer(driver.Producer):
    """An aiokafka producer whose flush returns only once every buffered record is on the broker."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._unsent: set[FutureMessage] = set()
        self._refused: list[BaseException] = []

    def send_soon(self, fut: FutureMessage) -> None:
        self._unsent.add(fut)
        fut.add_done_callback(self._on_sent)
        super().send_soon(fut)

    def _on_sent(self, fut: asyncio.Future[Any]) -> None:
        self._unsent.discard(cast(FutureMessage, fut))
        if not fut.cancelled() and fut.exception() is not None:
            self._refused.append(cast(BaseException, fut.exception()))

    async def flush(self) -> None:
        """Wait until the broker acknowledged every record given to ``send_soon``, then flush aiokafka.

        Only the records buffered when the flush starts: those are the ones the offsets about to be
        committed cover, and agents that go on writing meanwhile must not keep the commit waiting.
        """
        pending = list(self._unsent)
        if pending:
            await asyncio.wait(pending)
        await super().flush()
        if self._refused:
            first, count = self._refused[0], len(self._refused)
            self._refused.clear()
            raise ProducerSendError(f"{count} buffered record(s) refused by the broker: {first!r}") from first


async def seek_to_committed_or_beginning(
    consumer: aiokafka.AIOKafkaConsumer, skip_topics: Iterable[str] = ()
) -> dict[Any, int | None]:
    """Seek every assigned partition to its committed offset, and one never committed to its beginning.

    aiokafka's ``seek_to_committed`` leaves a partition without a committed offset at its current
    position, which is past whatever was fetched and thrown away (module docstring, 4.). Partitions of
    ``skip_topics`` (table changelogs: recovery seeks those itself) keep aiokafka's behaviour. Returns the
    committed offsets as aiokafka does (None: never committed).
    """
    committed: dict[Any, int | None] = await consumer.seek_to_committed()
    skip, assigned = set(skip_topics), consumer.assignment()  # a rebalance may have begun meanwhile
    never = [tp for tp, offset in committed.items() if not offset and tp.topic not in skip and tp in assigned]
    if never:
        await consumer.seek_to_beginning(*never)
        log.info(
            "no committed offset, reading from the beginning: %s",
            ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in never)),
        )
    return committed


class _ActivePartitions:
    """Faust's live set of active partitions as aiokafka must read it: when it is empty, none, not all.

    aiokafka's ``fetched_records`` returns every buffered partition's records when its ``partitions`` are
    falsy, and re-reads them each time a fetch response wakes it; Faust passes the set it pauses
    partitions in, which is empty whenever all of them are paused (module docstring, 4.).
    """

    __slots__ = ("_tps",)

    def __init__(self, tps: set[TP]) -> None:
        self._tps = tps

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return tp in self._tps


class _RewindingConsumerThread(driver.AIOKafkaConsumerThread):
    """A consumer thread that never hands out records Faust throws away unseen (module docstring, 4.).

    Its consumer also waits at most the app's ``fetch_max_wait_ms`` for a fetch (Faust fixes 1,500 ms):
    the embedded broker holds a fetch for its whole wait even when records arrive meanwhile, so every
    hop of the pipeline (raw, events, commands) would add up to that much latency.
    """

    def _create_worker_consumer(self, transport: driver.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by the consumer's fetcher, which is created when the consumer starts.
            consumer._fetch_max_wait_ms = wait_ms
        return consumer

    async def _fetch_records(
        self,
        consumer: aiokafka.AIOKafkaConsumer,
        active_partitions: set[TP],
        timeout: float | None = None,  # noqa: ASYNC109  # Faust's signature, handed on to aiokafka
        max_records: int | None = None,
    ) -> RecordMap:
        # Still the live set (a partition resumed meanwhile is served at once), but never "all" when empty.
        active = cast(set[TP], _ActivePartitions(active_partitions))
        records: RecordMap = await super()._fetch_records(
            consumer, active, timeout=timeout, max_records=max_records
        )
        return records

    async def seek_to_committed(self) -> Mapping[TP, int]:
        return cast(Mapping[TP, int], await self.call_thread(self._seek_to_committed_or_beginning))

    async def _seek_to_committed_or_beginning(self) -> dict[Any, int | None]:
        if self.app.conf.consumer_auto_offset_reset != "earliest":
            return cast(dict[Any, int | None], await self._ensure_consumer().seek_to_committed())
        changelogs = cast(Any, self.app).tables.changelog_topics
        return await seek_to_committed_or_beginning(self._ensure_consumer(), skip_topics=changelogs)


class _RewindingConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _FetchHighwaterConsumerThread(_RewindingConsumerThread):
    """A consumer thread whose end offsets (table recovery's goal) come from fetch responses."""

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        if self.consumer.in_transaction:  # then Faust reads last stable offsets, not ListOffsets
            return await super()._highwaters(partitions)
        listed = await super()._highwaters(partitions)
        transport = cast(driver.Transport, self.transport)
        fetched = await fetch_high_watermarks(
            driver.server_list(transport.url, transport.default_port),
            partitions,
            timeout_s=self.app.conf.broker_request_timeout,
        )
        ends = {tp: fetched[tp] for tp in partitions}
        short = {f"{tp.topic}[{tp.partition}]": (listed.get(tp), end) for tp, end in ends.items()}
        short = {name: pair for name, pair in short.items() if pair[0] != pair[1]}
        if short:
            log.info("end offsets from fetch, not ListOffsets (listed, fetched): %s", short)
        return ends


class _FetchHighwaterConsumer(_RewindingConsumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _FetchHighwaterConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    """aiokafka's transport with the draining producer and the rewinding consumer."""

    Consumer = _RewindingConsumer
    Producer = _DrainingProducer


class EmbeddedBrokerTransport(Transport):
    """The transport for the embedded Tansu broker: changelog end offsets come from fetch responses."""

    Consumer = _FetchHighwaterConsumer


class _SeekFirstRecovery(Recovery):
    """Faust's table recovery, but stream partitions resume only after the seek and the queues' clearing."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """Faust 0.15.3's ``Recovery.on_recovery_completed`` with ``resume_partitions`` moved to the end.

        Faust resumes the stream partitions first: the fetcher then delivers records into the agents'
        queues during the seek's round trips, ``flow_control.resume`` empties those queues, and the
        records were counted as read (module docstring, 3.). Paused, nothing is fetched before the seek.
        """
        app = cast(Any, self.app)
        consumer = app.consumer
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callback_coros = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if callback_coros:
            await asyncio.wait(callback_coros)
        assignment = consumer.assignment()
        if app.consumer_generation_id != generation_id:
            self.log.warning(
                f"Recovery rebalancing again app id {app.consumer_generation_id} param {generation_id}"
            )
            return
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        self.completed.set()
        app.flow_control.resume()  # empties every agent's queue: nothing of the stream partitions is there
        consumer.resume_flow()
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        await app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")


class _TableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class _App(faust.App):
    """A Faust app on ``Transport`` (faust picks its transport by URL scheme only)."""

    transport_class: ClassVar[type[driver.Transport]] = Transport

    def __init__(self, id: str, **options: Any) -> None:
        super().__init__(id, **{"TableManager": _TableManager, **options})

    def _new_transport(self) -> TransportT:
        return self.transport_class(self.conf.broker_consumer, self)


class _EmbeddedBrokerApp(_App):
    transport_class = EmbeddedBrokerTransport


def app_class(settings: Settings) -> type[faust.App]:
    """Return the Faust app class for the broker ``settings`` name, its consumers' fetch wait set."""
    base = _EmbeddedBrokerApp if settings.embedded_broker else _App
    wait_ms = round(settings.consumer_fetch_max_wait_s * 1000)
    return type(base.__name__, (base,), {"fetch_max_wait_ms": wait_ms})
