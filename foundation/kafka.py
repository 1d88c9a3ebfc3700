"""Kafka helpers used by the CLI and the stack: topics, a producer, offsets, and the errors that name an
unreachable broker or Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

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
    return StackError(f"redis at {settings.redis} unreachable (HCSYNC_REDIS_URL): {exc}")


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

    The high watermark is read from fetch responses, not from ListOffsets: the embedded Tansu broker
    answers ListOffsets with a wrong end offset when a produce request carried several records (measured
    here: 10 records in one batch, ListOffsets said 1, fetch said 10).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
        tps: list[TopicPartition] = []
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps.extend(TopicPartition(topic, p) for p in sorted(partitions))
        if not tps:
            return {}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any(consumer.highwater(tp) is None for tp in tps):
            if asyncio.get_running_loop().time() > deadline:
                missing = [f"{tp.topic}[{tp.partition}]" for tp in tps if consumer.highwater(tp) is None]
                raise StackError(f"no high watermark from the broker for {', '.join(missing)}")
            await consumer.getmany(timeout_ms=200, max_records=1)
        return {tp: consumer.highwater(tp) or 0 for tp in tps}
    finally:
        await consumer.stop()


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
