"""Run the MLLP gateway as a process: its producer, its Redis client, and a graceful stop on a signal.

The topics are not created here: ``hcsync up`` creates them for the embedded stack, and an operator does
for a real Kafka cluster.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import redis.asyncio as aioredis
from aiokafka.errors import KafkaError

from adapters.mllp.gateway import MllpGateway
from canonical.errors import StackError
from foundation.kafka import producer
from foundation.settings import Settings

__all__ = ["run_gateway"]

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_gateway(settings: Settings) -> None:
    """Serve MLLP on the settings' host and port until SIGTERM or SIGINT, then stop gracefully."""
    kafka = producer(settings)
    try:
        await kafka.start()
    except KafkaError as exc:
        await kafka.stop()
        raise StackError(
            f"broker at {settings.bootstrap} unreachable (HCSYNC_KAFKA_BOOTSTRAP): {exc!r}"
        ) from None
    # Timeouts: a Redis that stops answering must cost a duplicate check, not hang every ACK.
    redis_client = aioredis.Redis.from_url(settings.redis, socket_timeout=5, socket_connect_timeout=5)
    gateway = MllpGateway(settings, kafka, redis_client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await gateway.start()
        except OSError as exc:
            raise StackError(
                f"MLLP gateway cannot listen on {settings.mllp_host}:{settings.mllp_port} "
                f"(HCSYNC_MLLP_HOST, HCSYNC_MLLP_PORT): {exc}"
            ) from exc
        if gateway.tls:
            log.info("mllp TLS enabled with certificate %s", settings.mllp_tls_cert_file)
        log.info("ready: mllp on %s", gateway.address)
        await stop.wait()
        log.info("stopping: mllp, letting messages in flight finish")
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
        await gateway.stop()
        await kafka.stop()
        await redis_client.aclose()
    counters = gateway.counters
    log.info(
        "stopped: mllp after %d connection(s), %d frame(s): %d committed, %d refused, %d resend(s)",
        counters.connections,
        counters.frames,
        counters.acked,
        counters.rejected,
        counters.duplicates,
    )
