"""Ingest: how fast the MLLP gateway acknowledges when every ACK waits for the message store's commit.

    .venv/bin/python -m bench.ingest [--messages N] [--lanes N] [--quick]

The gateway runs as its own process (``hcsync mllp``'s code: the gateway and its group-commit writer over a
SQLite message store in WAL mode with synchronous=FULL), on a free port with a fresh store. Senders behave
like interface engines: each lane is one MLLP connection that sends a message, waits for its ACK, then
sends the next. The same messages (a synthetic day, every control id unique) go through, side by side in
the same run:

- **group commit**: the messages that arrive while a transaction commits form the next one (what runs);
- **one commit per message**: the writer limited to one message per transaction, the baseline a store
  without group commit would give (one fsync per ACK).

For each: ACKs per second, ACK latency (p50, p99, max, measured by the sender from the frame's write to its
ACK), messages per transaction, and the gateway process's CPU time per message. Every ACK must be AA and
every message must be in the store afterwards; the bench says so and fails otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from adapters.inbound.store import MessageFilter, MessageStore
from adapters.mllp.client import next_frame, parse_ack
from adapters.mllp.framing import MllpDecoder, encode
from bench.surge import percentile
from cluster.synth import generate_day
from foundation.processes import free_port, port_open

QUICK_MESSAGES = 3_000
_READY_TIMEOUT_S = 60.0
_ACK_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    messages: int
    seconds: float
    latencies_s: tuple[float, ...]
    transactions: int
    cpu_s: float
    negative: int
    stored: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        return 1000 * percentile(self.latencies_s, p)


def _cpu_s(pid: int) -> float:
    """Return the user plus system CPU seconds of a process so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _serve(database_url: str, port: int, max_batch: int, stats_file: Path) -> None:
    """The child process: run the gateway until SIGTERM, then write its writer's transaction count."""
    import signal

    from adapters.inbound.writer import GroupCommitWriter
    from adapters.mllp.gateway import MllpGateway
    from foundation.settings import Settings

    async def serve() -> int:
        settings = Settings(mllp_host="127.0.0.1", mllp_port=port, message_store_url=database_url)
        store = MessageStore(database_url)
        writer = GroupCommitWriter(store, timeout_s=settings.message_store_timeout_s, max_batch=max_batch)
        await writer.start()
        gateway = MllpGateway(settings, writer)
        await gateway.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await gateway.stop()
        await writer.stop()
        store.close()
        return writer.transactions

    stats_file.write_text(str(asyncio.run(serve())))


async def _lane(port: int, messages: Sequence[bytes], latencies: list[float]) -> int:
    """Send each message and wait for its ACK; return how many answers were not AA."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = MllpDecoder(1_048_576)
    negative = 0
    try:
        for raw in messages:
            started = time.perf_counter()
            writer.write(encode(raw))
            await writer.drain()
            frame = await asyncio.wait_for(next_frame(reader, decoder), _ACK_TIMEOUT_S)
            latencies.append(time.perf_counter() - started)
            if parse_ack(frame).code != "AA":
                negative += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return negative


async def _send(port: int, messages: Sequence[bytes], lanes: int) -> tuple[float, list[float], int]:
    # Round robin: the bench measures ACKs, not processing, so no lane needs an encounter's order.
    split: list[list[bytes]] = [[] for _ in range(lanes)]
    for index, raw in enumerate(messages):
        split[index % lanes].append(raw)
    latencies: list[float] = []
    started = time.perf_counter()
    negatives = await asyncio.gather(*(_lane(port, part, latencies) for part in split if part))
    return time.perf_counter() - started, latencies, sum(negatives)


def measure(name: str, messages: Sequence[bytes], lanes: int, max_batch: int, workdir: Path) -> Result:
    """Start a gateway child with a fresh store, send everything, stop it, and read what it did."""
    database = workdir / f"{name.replace(' ', '-')}.db"
    database_url = f"sqlite:///{database}"
    stats = workdir / f"{database.stem}.transactions"
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.ingest", "--serve", database_url, *map(str, (port, max_batch, stats))],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not port_open("127.0.0.1", port):
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name}: the gateway did not start (exit {child.poll()})")
            time.sleep(0.1)
        cpu_before = _cpu_s(child.pid)
        seconds, latencies, negative = asyncio.run(_send(port, messages, lanes))
        cpu = _cpu_s(child.pid) - cpu_before
    finally:
        child.terminate()
        child.wait(timeout=60)
    store = MessageStore(database_url)
    try:
        stored = store.count(MessageFilter())
    finally:
        store.close()
    transactions = int(stats.read_text()) if stats.exists() else 0
    return Result(name, len(messages), seconds, tuple(latencies), transactions, cpu, negative, stored)


def table(results: Sequence[Result], lanes: int) -> Table:
    out = Table(title=f"MLLP ACK once stored, {lanes} lanes (one message in flight per lane)")
    for column in ("store", "messages", "ACK/s", "p50 ms", "p99 ms", "max ms", "msgs/txn", "CPU ms/msg"):
        out.add_column(column, justify="left" if column == "store" else "right")
    for r in results:
        out.add_row(
            r.name,
            f"{r.messages:,}",
            f"{r.rate:,.0f}",
            f"{r.percentile_ms(50):.1f}",
            f"{r.percentile_ms(99):.1f}",
            f"{1000 * max(r.latencies_s):.1f}",
            f"{r.messages / r.transactions:.1f}" if r.transactions else "?",
            f"{1000 * r.cpu_s / r.messages:.2f}",
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve"]:
        _serve(argv[1], int(argv[2]), int(argv[3]), Path(argv[4]))
        return
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=20_000, help="messages to send (about)")
    parser.add_argument("--lanes", type=int, default=16, help="concurrent MLLP connections")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MESSAGES:,} messages")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages = QUICK_MESSAGES
    console = Console(width=None if sys.stdout.isatty() else 120)
    day = generate_day(encounters=max(1, round(args.messages / 7.8)), seed=5)
    messages = day.messages[: args.messages]
    console.print(f"[bold]hcsync ingest bench[/]: {os.cpu_count()} CPUs, {len(messages):,} messages")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="hcsync-ingest-") as workdir:
        configs: tuple[tuple[str, int], ...] = (("group commit", 500), ("one commit per message", 1))
        for name, max_batch in configs:
            with console.status(f"{name} ..."):
                results.append(measure(name, messages, args.lanes, max_batch, Path(workdir)))
    console.print(table(results, args.lanes))
    ok = True
    for r in results:
        if r.negative or r.stored != r.messages:
            console.print(
                f"[red]{r.name}: {r.negative} negative ACKs, {r.stored:,} of {r.messages:,} stored[/]"
            )
            ok = False
    if ok:
        console.print("every message answered AA and found in its store")
    first, second = results
    console.print(f"group commit: {first.rate / second.rate:.1f}x the ACK rate of one commit per message")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
