"""Kafka helpers used by the CLI and the stack: topics, a producer, offsets, and the errors that name an
unreachable broker or Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from canonical.errors import StackError
from foundation.settings import Settings
from foundation.topics import TopicNames


async def ensure_topics(settings: Settings) -> list[str]:
    """Create hcsync's topics if missing; return the names that were created."""
    names = TopicNames(settings.topic_prefix).all()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            # Another process may create them between list and create; that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(n, num_partitions=settings.topic_partitions, replication_factor=1)
                        for n in missing
                    ]
                )
        return missing
    finally:
        await admin.close()


def broker_unreachable(settings: Settings, exc: Exception) -> StackError:
    """Return the error a command raises when the broker cannot be reached, naming the setting."""
    return StackError(f"broker at {settings.bootstrap} unreachable (HCSYNC_KAFKA_BOOTSTRAP): {exc}")


def redis_unreachable(settings: Settings, exc: Exception) -> StackError:
    """Return the error a command raises when Redis cannot be reached, naming the setting."""
    return StackError(f"redis at {settings.redis_location} unreachable (HCSYNC_REDIS_URL): {exc}")


def producer(settings: Settings) -> AIOKafkaProducer:
    """Return a producer that waits for the broker's acknowledgment of every record."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=262_144,
        max_request_size=4 * settings.max_message_bytes,
    )


async def topic_counts(settings: Settings, topics: Iterable[str], timeout_s: float = 5.0) -> dict[str, int]:
    """Return the number of records written to each topic (the sum of partition high watermarks)."""
    wanted = list(topics)
    counts = dict.fromkeys(wanted, 0)
    for tp, end in (await high_watermarks(settings, wanted, timeout_s)).items():
        counts[tp.topic] += end
    return counts


async def high_watermarks(
    settings: Settings, topics: Iterable[str], timeout_s: float = 5.0
) -> dict[TopicPartition, int]:
    """Return the high watermark (the end offset) of every partition of ``topics``.

    Read from fetch responses, not from ListOffsets: see ``fetch_high_watermarks``.
    """
    consumer = _probe_consumer(settings.bootstrap)
    try:
        await consumer.start()
        tps: list[TopicPartition] = []
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps.extend(TopicPartition(topic, p) for p in sorted(partitions))
        return await _probe_high_watermarks(consumer, tps, timeout_s)
    finally:
        await consumer.stop()


async def fetch_high_watermarks(
    bootstrap: str | Sequence[str], partitions: Iterable[TopicPartition], timeout_s: float = 5.0
) -> dict[TopicPartition, int]:
    """Return the end offset of each partition as the broker's fetch responses state it.

    The embedded Tansu broker (0.6.0, memory engine) answers ListOffsets "latest" with the first offset
    of the partition's newest produce batch plus one: after a 10-record batch it says 1, not 10. Its
    fetch responses carry the right high watermark, so this fetches once at that (low) answer and reads
    the high watermark off the response. The Faust table recovery on the embedded broker uses it
    (streams/transport.py), and so do `hcsync status` and the report through ``high_watermarks``.
    """
    consumer = _probe_consumer(bootstrap)
    try:
        await consumer.start()
        return await _probe_high_watermarks(consumer, list(partitions), timeout_s)
    finally:
        await consumer.stop()


def _probe_consumer(bootstrap: str | Sequence[str]) -> AIOKafkaConsumer:
    # No group: it joins nothing and commits nothing. A short fetch wait, because a fetch at the end of
    # a partition has no record to return and the broker would hold it for fetch_max_wait_ms. An offset
    # out of range (a broker whose ListOffsets overshoots) falls back to the beginning.
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )


async def _probe_high_watermarks(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], timeout_s: float
) -> dict[TopicPartition, int]:
    """Fetch each partition once from its ListOffsets end (low on Tansu, never high); read the watermark."""
    tps = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
    if not tps:
        return {}
    listed: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, listed[tp])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while any(consumer.highwater(tp) is None for tp in tps):
        if loop.time() > deadline:
            missing = [f"{tp.topic}[{tp.partition}]" for tp in tps if consumer.highwater(tp) is None]
            raise StackError(f"no high watermark from the broker for {', '.join(missing)}")
        await consumer.getmany(timeout_ms=100, max_records=1)
    return {tp: consumer.highwater(tp) or 0 for tp in tps}


async def committed_offsets(
    settings: Settings, group_id: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """Return the offsets a consumer group committed (the next offset it will read); absent: none yet.

    Read through a consumer of the group that joins nothing (no subscription, so no rebalance): the
    embedded Tansu broker's answer to the admin client's OffsetFetch does not decode, the consumer's does.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        out: dict[TopicPartition, int] = {}
        for tp in partitions:
            offset = await consumer.committed(tp)
            if offset is not None and offset >= 0:
                out[tp] = offset
        return out
    finally:
        await consumer.stop()
