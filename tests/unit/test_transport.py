"""streams.transport: which Faust transport each broker gets (the behaviour is tested on the real broker in
tests/integration/test_table_recovery.py), and the order in which table recovery hands partitions back to
the agents."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from pydantic import SecretStr

from foundation.settings import Settings
from streams.transport import EmbeddedBrokerTransport, Transport, app_class


def test_the_embedded_broker_gets_end_offsets_from_fetch_responses() -> None:
    settings = Settings()
    assert settings.embedded_broker
    app = app_class(settings)("t-embedded", broker=f"kafka://{settings.bootstrap}")
    assert type(app.transport) is EmbeddedBrokerTransport
    assert type(app.consumer) is not driver.Consumer  # the one whose recovery end offsets come from fetch
    assert isinstance(app.producer, Transport.Producer) and Transport.Producer is not driver.Producer


def test_a_real_kafka_keeps_list_offsets_and_gets_the_draining_producer_and_the_rewinding_consumer() -> None:
    settings = Settings(kafka_bootstrap="kafka-1:9092", encounter_ref_key=SecretStr("5f1c0e7b9a2d4c68" * 4))
    app = app_class(settings)("t-kafka", broker=f"kafka://{settings.bootstrap}")
    assert type(app.transport) is Transport
    # The rewinding consumer (no record read past unseen in a rebalance), without the fetch-based ends.
    assert type(app.consumer) is Transport.Consumer and Transport.Consumer is not driver.Consumer
    assert not isinstance(app.consumer, EmbeddedBrokerTransport.Consumer)
    assert isinstance(app.producer, Transport.Producer)


def test_recovery_resumes_stream_partitions_only_once_they_are_sought_and_the_queues_emptied() -> None:
    """Records fetched once the stream partitions resume must reach the agents, not be thrown away.

    Faust's own order (resume the partitions, seek them, resume flow control, which empties every agent's
    queue) lost the records fetched during the seek while counting them as read, and later commits went
    past them. A stand-in fetcher delivers one record into an agent's queue as soon as the partitions
    resume, from the position the seek left.
    """
    stream = TP("t-events", 0)
    committed, position = 40, {stream: 7}  # the group's offset, and the fetch position before the seek

    async def recover() -> list[tuple[TP, int]]:
        # Built inside the running loop: a Faust app's services wait on the loop they were made in.
        settings = Settings()
        app = app_class(settings)("t-recovery-order", broker=f"kafka://{settings.bootstrap}")
        consumer = cast(Any, app.consumer)
        # An agent's queue: Faust empties it whenever flow control resumes.
        queue: asyncio.Queue[tuple[TP, int]] = app.FlowControlQueue(maxsize=8, clear_on_resume=True)

        async def perform_seek() -> None:
            position[stream] = committed

        def resume_partitions(tps: set[TP]) -> None:  # the fetcher delivers at once from its position
            for tp in tps:
                queue.put_nowait((tp, position[tp]))

        async def nothing() -> None:
            return None

        consumer.assignment = lambda: {stream}
        consumer.perform_seek = perform_seek
        consumer.resume_partitions = resume_partitions
        cast(Any, app)._fetcher.maybe_start = nothing
        await app.tables.recovery.on_recovery_completed(generation_id=0)
        return [queue.get_nowait() for _ in range(queue.qsize())]

    assert asyncio.run(recover()) == [(stream, committed)]


def test_a_worker_fetch_waits_the_configured_time_not_faust_s_1500_ms() -> None:
    """The embedded broker answers a fetch only when its wait ends: each hop would add up to that wait."""
    settings = Settings(consumer_fetch_max_wait_s=0.08)

    async def created() -> int:
        app = app_class(settings)("t-fetch-wait", broker=f"kafka://{settings.bootstrap}")
        thread = app.consumer._new_consumer_thread()
        consumer = thread._create_worker_consumer(app.transport)
        return int(consumer._fetch_max_wait_ms)

    assert asyncio.run(created()) == 80
