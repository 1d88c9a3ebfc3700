"""No record is read past unseen when Faust pauses every partition (streams/transport.py, 4.): real broker.

Faust hands aiokafka its live set of active partitions and pauses partitions by removing them from it;
aiokafka takes an empty set for "every partition". When table recovery ended while a fetch waited, the
fetch handed out what aiokafka had buffered for the (paused) stream partitions, Faust threw it away, and
the seek after recovery left a partition the group never committed where it was: a worker taking over
such a partition skipped every record in it (billing commands, in the worker-kill test).

Each test starts a bare embedded broker of its own: a partition being read (a changelog during recovery)
and a stream partition, paused, whose records aiokafka has already fetched.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.transport.drivers import aiokafka as driver

from cluster.binaries import tansu_binary
from foundation.processes import free_port, port_open
from foundation.settings import Settings
from streams.transport import app_class, seek_to_committed_or_beginning

RECORDS = 50


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    broker = subprocess.Popen(
        [*command, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            if time.monotonic() > deadline or broker.poll() is not None:
                raise RuntimeError(f"the broker did not listen on port {port} (exit {broker.poll()})")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        broker.kill()
        broker.wait(timeout=10)


async def _paused_stream_with_records(
    bootstrap: str,
) -> tuple[AIOKafkaConsumer, TopicPartition, TopicPartition]:
    """A group consumer assigned a stream partition (RECORDS records, never committed) and a changelog one.

    Returns once aiokafka has fetched the stream partition's records into its buffer (Faust keeps a
    paused partition assigned in aiokafka, which goes on fetching it) without handing them out.
    """
    prefix = uuid.uuid4().hex[:8]
    stream, changelog = TopicPartition(f"{prefix}.stream", 0), TopicPartition(f"{prefix}.changelog", 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(stream.topic, 1, 1), NewTopic(changelog.topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1)
    await producer.start()
    try:
        sent = [await producer.send(stream.topic, b"%d" % n, partition=0) for n in range(RECORDS)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}.group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    consumer.assign([stream, changelog])
    deadline = time.monotonic() + 10
    while stream not in consumer._fetcher._records:  # fetched, not handed out
        assert time.monotonic() < deadline, "aiokafka fetched nothing of the stream partition"
        await asyncio.sleep(0.05)
    return consumer, stream, changelog


async def _faust_seek(consumer: AIOKafkaConsumer, changelog_topic: str) -> None:
    await consumer.seek_to_committed()  # what Faust's perform_seek does on aiokafka


async def _our_seek(consumer: AIOKafkaConsumer, changelog_topic: str) -> None:
    await seek_to_committed_or_beginning(consumer, skip_topics={changelog_topic})


async def _fetch_while_pausing_everything(
    bootstrap: str,
    thread: driver.AIOKafkaConsumerThread,
    seek: Callable[[AIOKafkaConsumer, str], Awaitable[None]],
) -> tuple[dict[str, int], int]:
    """Fetch the changelog through ``thread`` as Faust's recovery does, and pause it while the fetch waits.

    Returns the records handed out by topic, and the stream partition's position after ``seek``, the seek
    to committed offsets that follows recovery.
    """
    consumer, stream, changelog = await _paused_stream_with_records(bootstrap)
    try:
        active = {changelog}  # Faust's set of active partitions: the stream partition is paused
        fetching = asyncio.ensure_future(thread._fetch_records(consumer, active, timeout=3.0))
        await asyncio.sleep(0.3)  # waiting: nothing new in the changelog
        active.difference_update({changelog})  # recovery is done: Faust pauses the changelog as well
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1)
        await producer.start()
        try:  # any fetch response wakes the waiting fetch
            await (await producer.send(changelog.topic, b"state", partition=0))
        finally:
            await producer.stop()
        records = await fetching
        handed_out = {tp.topic.split(".")[1]: len(batch) for tp, batch in records.items()}
        await seek(consumer, changelog.topic)
        return handed_out, await consumer.position(stream)
    finally:
        await consumer.stop()


def _threads() -> tuple[Any, Any]:
    """Faust's consumer thread, and ours (as the embedded broker's app builds it), never started."""

    async def build() -> tuple[Any, Any]:
        settings = Settings()
        app = app_class(settings)(f"t-rewind-{uuid.uuid4().hex[:6]}", broker=f"kafka://{settings.bootstrap}")
        ours = cast(Any, app.consumer)._thread
        faust_own = driver.AIOKafkaConsumerThread(app.consumer, loop=app.loop, beacon=app.consumer.beacon)
        return faust_own, ours

    return asyncio.run(build())


def test_faust_on_aiokafka_skips_a_paused_partition_it_never_committed(bootstrap: str) -> None:
    """The defect itself: this fails the day Faust or aiokafka stop doing it (then 4. may go)."""
    faust_own, _ = _threads()
    handed_out, position = asyncio.run(_fetch_while_pausing_everything(bootstrap, faust_own, _faust_seek))
    assert handed_out.get("stream") == RECORDS  # records of a paused partition, which Faust throws away
    assert position == RECORDS  # and the seek to committed offsets leaves the partition past them


def test_a_paused_partition_is_not_fetched_and_one_never_committed_is_read_from_its_beginning(
    bootstrap: str,
) -> None:
    _, ours = _threads()
    handed_out, position = asyncio.run(_fetch_while_pausing_everything(bootstrap, ours, _our_seek))
    assert "stream" not in handed_out, f"records of a paused partition were handed out: {handed_out}"
    assert position == 0, f"the stream partition was left at {position}, past records no agent saw"


def test_the_seek_keeps_committed_offsets_and_leaves_changelogs_to_recovery(bootstrap: str) -> None:
    async def seek() -> tuple[int, int, int]:
        consumer, stream, changelog = await _paused_stream_with_records(bootstrap)
        try:
            for tp in (stream, changelog):
                consumer.seek(tp, 7)
            await consumer.commit({stream: 20})
            await seek_to_committed_or_beginning(consumer, skip_topics={changelog.topic})
            committed_position = await consumer.position(stream)
            await consumer.commit({stream: 0})  # an offset of 0 is no better than none: the beginning
            consumer.seek(stream, 30)
            await seek_to_committed_or_beginning(consumer, skip_topics={changelog.topic})
            return committed_position, await consumer.position(stream), await consumer.position(changelog)
        finally:
            await consumer.stop()

    assert asyncio.run(seek()) == (20, 0, 7)
