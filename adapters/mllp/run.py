"""Run the MLLP gateway as a process: its message store writer, and a graceful stop on a signal.

The gateway needs neither the broker nor Redis: it answers once a message is durable in the message store,
and the forwarder (``hcsync forwarder``) moves stored messages to the broker.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from adapters.inbound.store import MessageStore
from adapters.inbound.writer import GroupCommitWriter
from adapters.mllp.gateway import MllpGateway
from canonical.errors import StackError
from foundation.settings import Settings

__all__ = ["run_gateway"]

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_gateway(settings: Settings) -> None:
    """Serve MLLP on the settings' host and port until SIGTERM or SIGINT, then stop gracefully."""
    try:
        store = await asyncio.to_thread(MessageStore.from_settings, settings)
    except Exception as exc:
        raise StackError(
            f"message store unusable (HCSYNC_MESSAGE_STORE_URL): {type(exc).__name__}: {exc}"
        ) from None
    writer = GroupCommitWriter(store, timeout_s=settings.message_store_timeout_s)
    await writer.start()
    gateway = MllpGateway(settings, writer)
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
        log.info("ready: mllp on %s, messages stored in %s", gateway.address, store.database_url)
        await stop.wait()
        log.info("stopping: mllp, refusing new connections, letting messages in flight finish")
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
        await gateway.stop()
        await writer.stop()
        store.close()
    counters = gateway.counters
    log.info(
        "stopped: mllp after %d connection(s), %d frame(s): %d stored, %d refused, %d resend(s), "
        "%d conflict(s); %d store transaction(s)",
        counters.connections,
        counters.frames,
        counters.acked,
        counters.rejected,
        counters.duplicates,
        counters.conflicts,
        writer.transactions,
    )
