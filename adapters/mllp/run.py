"""Run the MLLP gateway as a process: its message store writer, and a graceful stop on a signal.

The gateway needs neither the broker nor Redis: it answers once a message is durable in the message store,
and the forwarder (``hcsync forwarder``) moves stored messages to the broker. For the same reason its
counters (connections, frames, and every refusal: caps, TLS, timeouts, oversize frames, senders) go to a
file, ``mllp.stats.json`` in the run directory, rewritten every ``mllp_stats_interval_s`` and at stop;
:func:`read_gateway_stats` reads it (for ``hcsync status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
from pathlib import Path

from adapters.inbound.store import MessageStore
from adapters.inbound.writer import GroupCommitWriter
from adapters.mllp.gateway import MllpGateway
from canonical.errors import StackError
from foundation.settings import Settings

__all__ = ["STATS_FILE", "read_gateway_stats", "run_gateway", "write_gateway_stats"]

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STATS_FILE = "mllp.stats.json"


def write_gateway_stats(run_dir: Path, gateway: MllpGateway) -> None:
    """Write the gateway's counters and open connections to ``mllp.stats.json``, atomically."""
    data: dict[str, object] = {
        **gateway.counters.snapshot(),
        "open_connections": gateway.open_connections,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    path = run_dir / STATS_FILE
    partial = path.with_name(f".{STATS_FILE}.{os.getpid()}")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(partial, path)


def read_gateway_stats(run_dir: Path) -> dict[str, object] | None:
    """Return the counters the gateway last wrote, or None when it wrote none (or not readable JSON)."""
    try:
        data = json.loads((run_dir / STATS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def _report_stats(run_dir: Path, gateway: MllpGateway, interval_s: float) -> None:
    """Rewrite the stats file every interval until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(write_gateway_stats, run_dir, gateway)
        except OSError as exc:
            log.warning("cannot write %s in %s: %s", STATS_FILE, run_dir, exc)


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
    run_dir = settings.run_dir
    reporter: asyncio.Task[None] | None = None
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
        if settings.mllp_tls_client_ca_file is not None:
            log.info("mllp mutual TLS: client certificates required, CA %s", settings.mllp_tls_client_ca_file)
        if settings.mllp_allowed_senders:
            log.info("mllp sender allowlist: %d rule(s)", len(settings.mllp_allowed_senders))
        if run_dir is not None:
            reporter = asyncio.create_task(_report_stats(run_dir, gateway, settings.mllp_stats_interval_s))
        log.info("ready: mllp on %s, messages stored in %s", gateway.address, store.database_url)
        await stop.wait()
        log.info("stopping: mllp, refusing new connections, letting messages in flight finish")
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        await gateway.stop()
        await writer.stop()
        store.close()
        if run_dir is not None:
            with contextlib.suppress(OSError):
                write_gateway_stats(run_dir, gateway)
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
    log.info(
        "mllp refusals: %d connection(s) over the cap, %d over the per-peer cap, %d failed TLS; "
        "%d frame timeout(s), %d idle close(s), %d oversize frame(s), %d sender(s) not allowed",
        counters.refused_total_cap,
        counters.refused_peer_cap,
        counters.refused_tls,
        counters.frames_timed_out,
        counters.idle_closes,
        counters.oversize_frames,
        counters.senders_refused,
    )
