"""Surge benchmark: drain a backlog end to end, against a do-nothing Faust consumer, and latency at a steady
rate, all on the real embedded stack (Tansu, Redis, the gRPC adapters on SQLite, Ray, the Faust worker).

    .venv/bin/python -m bench.surge [--messages N] [--replicas 1,2] [--rate R] [--steady-s S] [--quick]

What is measured, and how:

1. Backlog drain, once per transform replica count (a fresh stack each time, so every run starts from an
   empty broker, Redis and ledger). The stack is started *without* its Faust worker, the raw topic is
   pre-loaded with a synthetic hospital day of about N messages (whole encounters, so the totals the day
   must produce are known: cluster.synth), and only then is the worker started. The clock starts when the
   worker is ready (its ready file is written once Faust has its partitions and has recovered its table,
   i.e. when it can first consume), and stops at

   a. *transformed*: the raw topic's consumer-group lag is 0 (the ingest agent committed every offset,
      which happens only after the Ray pool's results were written on), and
   b. *posted*: every consumed topic's lag is 0 and the day reconciles exactly as `hcsync demo` checks it
      (cluster.demo.reconcile: charge lines and cents in billing and the ERP ledger, coded accounts, stock
      used item by item). Counts equal to the prediction mean nothing is missing and nothing is doubled.

   Lag is read as `hcsync status` reads it (fetch high watermarks minus committed offsets); Faust commits
   every 2.8 s, so both times are upper bounds, late by at most a commit interval plus a poll (~0.5 s).
   The pool is pinned to the replica count (min = max, no autoscaling) so the count is what is measured.
   Two tables say where the time went: the stages (per consumed topic: peak lag, when it drained, from a
   lag sample every 2 s) and the CPU each process of the stack used meanwhile (a process near one core,
   e.g. the worker's single event loop, is a ceiling; a stage that lags while nothing is busy waits on
   round trips).

2. Baseline: a minimal faust.App of its own (same broker, a fresh consumer group, same topic, same
   ``stream.take(transform_batch_size, within=transform_batch_window_s)`` loop as the ingest agent) whose
   agent does nothing but count, run in a child process on the same pre-loaded backlog before the hcsync
   worker starts (so the two never share the CPU). Its time is measured the same way: from its worker's
   ready signal to the moment it has counted the whole backlog. hcsync's end-to-end rate is reported as a
   fraction of the fastest baseline run.

3. Latency at a steady rate: a fresh stack with the worker running, messages sent at R per second for S
   seconds (a synthetic day of about R*S messages, in its time order), each stamped with the wall-clock
   time it was handed to the producer. Every posting carries the source message's correlation id
   (canonical.ids.correlation_id(MSH-3^MSH-4, MSH-10)), and the adapters stamp ``posted_at`` inside their
   write transaction, so after the run the billing charges and the ERP journal lines and inventory
   movements are read from the run directory's SQLite files (read-only) and joined back to the send
   times: latency = posted_at - sent at, per message, for each kind of posting and for the last posting
   of a message (when it is fully posted). Messages with no posting (ADT, ORU, BAR) have no row to join.
   Same host, same clock: the difference needs no synchronisation. When the stack cannot keep up with R,
   a queue builds and latency grows with send time: the bench compares the first and last fifth of the
   messages and says so, since the percentiles are then queueing delays rather than a steady state.

Only one stack runs at a time, and a run during which another hcsync stack was seen on the machine is
flagged (its figures are skewed). Ctrl-C (or SIGTERM) stops whatever is running (stack, baseline
consumer) before exiting. Each run directory gets a surge.json with its figures and lag samples.

The stack's settings come from the usual HCSYNC_* environment (batch sizes and windows, partitions...),
except that the bench always runs its own embedded stack on free ports with its own topic prefix and the
shipped demo master data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import InstrumentedAttribute

from adapters.billing.schema import ChargeRow
from adapters.erp.schema import InventoryMovementRow, JournalLineRow
from canonical import ids
from canonical.hl7v2.parser import parse_message
from cluster.demo import reconcile
from cluster.report import StackReport, collect
from cluster.stack import Stack
from cluster.synth import SyntheticDay, generate_day
from foundation.kafka import committed_offsets, high_watermarks, producer, topic_counts
from foundation.runs import new_run_dir
from foundation.settings import Settings
from foundation.topics import COMMANDS_BILLING, COMMANDS_ERP, EVENTS_CANONICAL, RAW_HL7V2, TopicNames
from streams.stats import Stats

# The stages of the pipeline, by the topic each one consumes.
STAGES = (
    (RAW_HL7V2, "ingest (Ray transform)"),
    (EVENTS_CANONICAL, "encounters (state, commands)"),
    (COMMANDS_BILLING, "billing dispatch (gRPC, SQLite)"),
    (COMMANDS_ERP, "ERP dispatch (gRPC, SQLite)"),
)
STAGE_TOPICS = tuple(topic for topic, _ in STAGES)
POLL_S = 0.5  # counters (one Redis read) while draining
LAG_EVERY_S = 2.0  # a lag sample (two short-lived Kafka consumers) at most this often
QUICK_MESSAGES = 3_000
QUICK_STEADY_S = 10.0


# -- settings and the stack -----------------------------------------------------------------------------
def free_port() -> int:
    """Return a TCP port that is free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bench_settings(replicas: int) -> Settings:
    """Settings of one isolated embedded stack: HCSYNC_* as set, on free ports, with its own topic prefix.

    The pool is pinned to ``replicas`` actors (min = max), so neither `hcsync scale` nor an autoscaler
    changes what a run measures, and the stack runs one worker.
    """
    pinned: dict[str, object] = {
        "broker_port": free_port(),
        "redis_port": free_port(),
        "billing_port": free_port(),
        "erp_port": free_port(),
        "mllp_port": free_port(),
        "topic_prefix": f"surge{uuid.uuid4().hex[:8]}.",
        "transform_replicas": replicas,
        "transform_min_replicas": replicas,
        "transform_max_replicas": replicas,
        # Always the embedded stack with the demo master data: what the predicted totals assume.
        "kafka_bootstrap": None,
        "redis_url": None,
        "ray_address": None,
        "billing_target": None,
        "erp_target": None,
        "billing_database_url": None,
        "erp_database_url": None,
        "quarantine_database_url": None,
        "masterdata_dir": None,
    }
    # One Faust worker running its own Ray (the setup measured: one worker on this machine), no autoscaling;
    # set only where this version of the settings has them.
    optional = {"transform_autoscale": False, "workers": 1, "ray_local_nodes": 0}
    pinned |= {name: value for name, value in optional.items() if name in Settings.model_fields}
    return Settings.model_validate(Settings().model_dump() | pinned)


class SurgeStack(Stack):
    """The embedded stack with its Faust worker(s) held back until :meth:`start_workers`.

    Everything else (broker, Redis, adapters, forwarder, MLLP) starts as usual, so a backlog can be written
    to the raw topic while nothing consumes it.
    """

    def start(self, *, hold_workers: bool = True) -> None:
        super().start(hold_workers=hold_workers)


CpuSnapshot = dict[int, tuple[str, float]]  # pid -> (what it is, CPU seconds so far)


def cpu_snapshot(stack: Stack) -> CpuSnapshot:
    """Return the CPU time of every process of the stack (and of this one), labelled by what it runs."""
    out: CpuSnapshot = {}
    me = psutil.Process()
    with me.oneshot():
        times = me.cpu_times()
        out[me.pid] = ("bench (sending, polling)", times.user + times.system)
    for component in stack.components:
        if component.process is None:
            continue
        try:
            root = psutil.Process(component.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                with proc.oneshot():
                    label = _cpu_label(component.name, proc, proc.pid == root.pid)
                    times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            out[proc.pid] = (label, times.user + times.system)
    return out


def _cpu_label(component: str, proc: psutil.Process, root: bool) -> str:
    if root:
        return "worker (Faust agents, Ray driver)" if component.startswith("worker") else component
    command = " ".join(proc.cmdline())
    if "TransformActor" in command:
        return "Ray transform actors"
    return "Ray (raylet, GCS, idle workers)" if component.startswith("worker") else f"{component} (children)"


def cpu_used(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds used between two snapshots, by label, most first."""
    used: dict[str, float] = {}
    for pid, (label, seconds) in after.items():
        used[label] = used.get(label, 0.0) + seconds - before.get(pid, (label, 0.0))[1]
    return dict(sorted(used.items(), key=lambda item: -item[1]))


def foreign_stacks() -> int:
    """Count the hcsync brokers and workers running on this machine that are not this bench's.

    Another stack shares the CPUs and skews every figure: the bench reports it rather than refusing.
    """
    me = os.getpid()
    count = 0
    for proc in psutil.process_iter(["cmdline"]):
        try:
            command = " ".join(proc.info["cmdline"] or [])
            if ("cluster.cli worker" in command or "tansu" in command) and me not in {
                parent.pid for parent in proc.parents()
            }:
                count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return count


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM for the duration (a shutdown in progress must finish)."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def running(stack: SurgeStack, console: Console, *, workers: bool) -> Iterator[SurgeStack]:
    """Start the stack (its workers too when asked) and always stop it, whatever happens in the block."""
    try:
        with console.status(f"starting the stack in {stack.run_dir} ..."):
            stack.start()
            if workers:
                stack.start_workers()
        yield stack
    finally:
        with _no_interrupt(), console.status("stopping the stack ..."):
            stack.stop()


@contextlib.contextmanager
def _phase(console: Console, name: str) -> Iterator[None]:
    """Report a phase that failed (its stack is already stopped) and go on with the next one."""
    try:
        yield
    except Exception as exc:
        console.print(f"[bold red]{name} failed[/]: {type(exc).__name__}: {exc}")


def save(result: Drain | Steady) -> None:
    """Write a run's figures and lag samples to surge.json in its run directory."""
    (result.run_dir / "surge.json").write_text(json.dumps(asdict(result), indent=1, default=str))


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# -- workload ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Workload:
    """A synthetic day with each message's broker key and correlation id."""

    day: SyntheticDay
    keys: tuple[bytes, ...]
    correlations: tuple[str, ...]

    @property
    def messages(self) -> tuple[bytes, ...]:
        return self.day.messages


def workload(messages: int, seed: int) -> Workload:
    """Return a synthetic day of about ``messages`` messages: whole encounters, so its totals are known."""
    sample = 500
    encounters = max(1, round(messages * sample / len(generate_day(encounters=sample, seed=seed).messages)))
    day = generate_day(encounters=encounters, seed=seed)
    if abs(len(day.messages) - messages) > 0.005 * messages:  # one correction: within about half a percent
        day = generate_day(encounters=max(1, round(encounters * messages / len(day.messages))), seed=seed)
    keys: list[bytes] = []
    correlations: list[str] = []
    for raw in day.messages:
        msg = parse_message(raw)  # synthetic messages all parse: the key is what cluster.send.keyed gives
        keys.append(ids.message_key(msg.sender, msg.control_id).encode())
        correlations.append(ids.correlation_id(msg.sender, msg.control_id))
    return Workload(day, tuple(keys), tuple(correlations))


async def preload(settings: Settings, work: Workload) -> None:
    """Write every message to the raw topic and wait for the broker's acknowledgments; check the count."""
    topic = TopicNames(settings.topic_prefix).raw_hl7v2
    prod = producer(settings)
    await prod.start()
    try:
        pending = []
        for raw, key in zip(work.messages, work.keys, strict=True):
            pending.append(await prod.send(topic, value=raw, key=key))
            if len(pending) >= 2_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await prod.stop()
    written = (await topic_counts(settings, [topic]))[topic]
    if written != len(work.messages):
        raise RuntimeError(f"the raw topic holds {written} records, {len(work.messages)} were sent")


# -- lag and completion -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LagSample:
    """Records written to and lag of each stage's topic, ``at`` seconds after the clock started."""

    at: float
    ends: dict[str, int]
    lag: dict[str, int]


async def stage_lag(settings: Settings, started: float) -> LagSample:
    """Read end offsets and the hcsync group's committed offsets of every stage's topic."""
    names = TopicNames(settings.topic_prefix)
    logical = {names[t]: t for t in STAGE_TOPICS}
    ends = await high_watermarks(settings, list(logical))
    committed = await committed_offsets(settings, f"{settings.topic_prefix}{settings.app_id}", ends)
    end_by = dict.fromkeys(STAGE_TOPICS, 0)
    lag_by = dict.fromkeys(STAGE_TOPICS, 0)
    for tp, end in ends.items():
        end_by[logical[tp.topic]] += end
        lag_by[logical[tp.topic]] += max(0, end - committed.get(tp, 0))
    return LagSample(at=time.time() - started, ends=end_by, lag=lag_by)


@dataclass(slots=True)
class Watch:
    """When each milestone of a run was reached, in seconds from the start of the clock."""

    transformed_counter_s: float | None = None  # the ingest agent's raw_in counter reached the backlog
    transformed_s: float | None = None  # raw topic lag 0
    posted_counter_s: float | None = None  # the dispatchers' counters reached every charge and line
    posted_s: float | None = None  # every stage's lag 0 and the day reconciles
    samples: list[LagSample] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    foreign_stacks: int = 0  # most processes of other hcsync stacks seen running meanwhile
    report: StackReport | None = None

    @property
    def balanced(self) -> bool:
        return self.posted_s is not None


async def watch(
    settings: Settings, day: SyntheticDay, started: float, timeout_s: float, console: Console
) -> Watch:
    """Follow the stack until the day is transformed and fully posted (or ``timeout_s`` passes)."""
    total, lines = len(day.messages), day.expected.charge_lines
    out = Watch()
    client = aioredis.Redis.from_url(settings.redis)
    stats = Stats(client, settings.topic_prefix)
    next_lag = next_check = 0.0
    try:
        with Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            transformed_bar = progress.add_task("messages transformed", total=total)
            posted_bar = progress.add_task("charge lines posted", total=lines)
            while time.time() < started + timeout_s:
                counters = await stats.read()
                now = time.time() - started
                posted = counters["charges_posted"] + counters["charges_duplicate"]
                journal = counters["journal_lines_accepted"] + counters["journal_lines_duplicate"]
                progress.update(transformed_bar, completed=min(counters["raw_in"], total))
                progress.update(posted_bar, completed=min(posted, lines))
                if out.transformed_counter_s is None and counters["raw_in"] >= total:
                    out.transformed_counter_s = now
                if out.posted_counter_s is None and posted >= lines and journal >= 2 * lines:
                    out.posted_counter_s = now
                # Near a milestone the lag is read at every poll, else every LAG_EVERY_S.
                near = (out.transformed_counter_s is not None and out.transformed_s is None) or (
                    out.posted_counter_s is not None
                )
                if near or now >= next_lag:
                    sample = await stage_lag(settings, started)
                    out.samples.append(sample)
                    out.foreign_stacks = max(out.foreign_stacks, foreign_stacks())
                    next_lag = sample.at + LAG_EVERY_S
                    if (
                        out.transformed_s is None
                        and out.transformed_counter_s is not None
                        and sample.lag[RAW_HL7V2] == 0
                    ):
                        out.transformed_s = sample.at
                    if (
                        out.transformed_s is not None
                        and out.posted_counter_s is not None
                        and not any(sample.lag.values())
                        and sample.at >= next_check
                    ):
                        next_check = sample.at + LAG_EVERY_S  # totals are costlier than lag: not every poll
                        report = await collect(settings)
                        if reconcile(day, report).balanced:
                            out.posted_s = time.time() - started
                            out.report = report
                            break
                await asyncio.sleep(POLL_S)
            else:
                console.print(f"[red]timed out after {timeout_s:.0f}s[/]: see the logs in the run directory")
            out.counters = await stats.read()
            if out.report is None:
                out.report = await collect(settings)
    finally:
        await client.aclose()
    return out


# -- the do-nothing baseline ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Baseline:
    """A do-nothing Faust consumer's pass over the backlog."""

    messages: int
    seconds: float  # ready -> counted the whole backlog
    first_s: float  # ready -> first batch

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def _baseline_consumer(spec_path: Path) -> int:
    """Child process: a minimal Faust app that counts the raw topic; write times when it has it all."""
    import faust
    from faust.worker import Worker

    spec: dict[str, Any] = json.loads(spec_path.read_text())
    expected = int(spec["expected"])
    ready_file, done_file = Path(spec["ready_file"]), Path(spec["done_file"])

    class CountingWorker(Worker):
        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            _write_atomically(ready_file, json.dumps({"at": time.time()}))

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = faust.App(
        spec["group"],
        broker=f"kafka://{spec['bootstrap']}",
        store="memory://",
        datadir=spec["datadir"],
        web_enabled=False,
        topic_partitions=int(spec["partitions"]),
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
    )
    topic = app.topic(spec["topic"], key_serializer="raw", value_serializer="raw")
    seen = {"count": 0, "first": 0.0}

    @app.agent(topic, name="count")
    async def count(stream: Any) -> None:
        async for batch in stream.take(int(spec["batch_size"]), within=float(spec["window_s"])):
            now = time.time()
            if not seen["count"]:
                seen["first"] = now
            before = seen["count"]
            seen["count"] += len(batch)
            if before < expected <= seen["count"]:
                _write_atomically(
                    done_file, json.dumps({"first": seen["first"], "done": now, "count": seen["count"]})
                )

    worker = CountingWorker(app, loglevel="WARNING", loop=loop, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def run_baseline(settings: Settings, run_dir: Path, messages: int, sample: int, timeout_s: float) -> Baseline:
    """Run the do-nothing consumer over the backlog in a child process; stop it once it has counted all."""
    base = run_dir / f"baseline-{sample}"
    base.mkdir()
    spec: dict[str, Any] = {
        "bootstrap": settings.bootstrap,
        "topic": TopicNames(settings.topic_prefix).raw_hl7v2,
        "group": f"{settings.topic_prefix}bench-baseline-{uuid.uuid4().hex[:6]}",
        "partitions": settings.topic_partitions,
        "batch_size": settings.transform_batch_size,
        "window_s": settings.transform_batch_window_s,
        "expected": messages,
        "datadir": str(base / "faust"),
        "ready_file": str(base / "ready.json"),
        "done_file": str(base / "done.json"),
    }
    spec_path = base / "spec.json"
    spec_path.write_text(json.dumps(spec))
    ready_file, done_file = Path(spec["ready_file"]), Path(spec["done_file"])
    with (base / "consumer.log").open("ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.surge", "--baseline-consumer", str(spec_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_s + settings.ready_timeout_s
        while not (done_file.exists() and ready_file.exists()):
            if child.poll() is not None:
                raise RuntimeError(f"the baseline consumer exited ({child.returncode}); see {base}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the baseline consumer did not count the backlog in time; see {base}")
            time.sleep(0.1)
    finally:
        with _no_interrupt():
            _stop_child(child, settings.stop_timeout_s)
    ready = float(json.loads(ready_file.read_text())["at"])
    done: dict[str, float] = json.loads(done_file.read_text())
    return Baseline(messages=messages, seconds=done["done"] - ready, first_s=done["first"] - ready)


def _stop_child(child: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the child's process group, SIGKILL it if it does not stop in time."""
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)


# -- phase 1 and 2: drain a backlog -----------------------------------------------------------------------
@dataclass(slots=True)
class Drain:
    """One backlog drain with a given number of transform replicas."""

    replicas: int
    messages: int
    preload_s: float
    watch: Watch
    run_dir: Path
    baseline: Baseline | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process while it drained
    cpu_wall_s: float = 0.0

    @property
    def rate(self) -> float:
        seconds = self.watch.posted_s
        return self.messages / seconds if seconds else 0.0


def drain(
    work: Workload, replicas: int, sample: int, timeout_s: float, console: Console, with_baseline: bool
) -> Drain:
    """Pre-load the backlog on a stack without its worker, run the baseline, start the worker, time it."""
    settings = bench_settings(replicas)
    run_dir = new_run_dir(settings, f"surge-r{replicas}")
    console.rule(f"backlog drain, {replicas} transform replica(s): {run_dir}")
    with running(SurgeStack(settings, run_dir), console, workers=False) as stack:
        with console.status(f"pre-loading {len(work.messages):,} messages on the raw topic ..."):
            started = time.monotonic()
            asyncio.run(preload(settings, work))
            preload_s = time.monotonic() - started
        console.print(f"pre-loaded {len(work.messages):,} messages in {preload_s:.1f}s")
        baseline = None
        if with_baseline:
            with console.status("do-nothing Faust consumer over the backlog ..."):
                baseline = run_baseline(settings, run_dir, len(work.messages), sample, timeout_s)
            console.print(
                f"do-nothing Faust consumer: {baseline.seconds:.1f}s, {baseline.rate:,.0f} messages/s"
            )
        with console.status("starting the worker (Ray, the transform pool, Faust) ..."):
            ready = stack.start_workers()
        before, cpu_from = cpu_snapshot(stack), time.monotonic()
        result = asyncio.run(watch(settings, work.day, ready, timeout_s, console))
        cpu, cpu_wall_s = cpu_used(before, cpu_snapshot(stack)), time.monotonic() - cpu_from
    run = Drain(replicas, len(work.messages), preload_s, result, run_dir, baseline, cpu, cpu_wall_s)
    save(run)
    posted = f"{result.posted_s:.1f}s" if result.posted_s is not None else "never (timed out)"
    console.print(f"{replicas} replica(s): fully posted after {posted}, {run.rate:,.0f} messages/s")
    return run


# -- phase 3: latency at a steady rate --------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (NaN when there is no value)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Latencies:
    """(send time, latency in seconds) of each message joined to one kind of posting, in send order."""

    name: str
    samples: list[tuple[float, float]]

    @property
    def seconds(self) -> list[float]:
        return [latency for _, latency in self.samples]

    def percentile(self, p: float) -> float:
        return percentile(self.seconds, p)

    def trend(self, share: float = 0.2) -> tuple[float, float]:
        """p50 of the messages sent first and of those sent last (``share`` of them each)."""
        n = max(1, int(len(self.samples) * share))
        return percentile(self.seconds[:n], 50), percentile(self.seconds[-n:], 50)


@dataclass(slots=True)
class Steady:
    """A run at a steady send rate and the latencies it measured."""

    rate: float
    messages: int
    send_s: float
    watch: Watch
    run_dir: Path
    latencies: list[Latencies]
    unmatched_rows: int

    @property
    def achieved_rate(self) -> float:
        return self.messages / self.send_s if self.send_s > 0 else 0.0


async def send_steadily(settings: Settings, work: Workload, rate: float) -> list[float]:
    """Send every message at ``rate`` per second; return each message's wall-clock send time."""
    topic = TopicNames(settings.topic_prefix).raw_hl7v2
    total = len(work.messages)
    sent = [0.0] * total
    prod = producer(settings)
    await prod.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        origin = time.monotonic()
        i = 0
        while i < total:
            due = min(total, int((time.monotonic() - origin) * rate) + 1)
            while i < due:
                sent[i] = time.time()
                pending.append(await prod.send(topic, value=work.messages[i], key=work.keys[i]))
                i += 1
            for future in [f for f in pending if f.done()]:
                future.result()  # a refused record fails the run here
            pending = [f for f in pending if not f.done()]
            await asyncio.sleep(max(0.0, min(0.01, origin + i / rate - time.monotonic())))
        await asyncio.gather(*pending)
    finally:
        await prod.stop()
    return sent


def _posted_times(
    url: str, correlation: InstrumentedAttribute[str], posted: InstrumentedAttribute[dt.datetime]
) -> dict[str, float]:
    """Return, by correlation id, the wall-clock time of the last row posted (read-only)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(correlation, func.max(posted)).group_by(correlation)).all()
    finally:
        engine.dispose()
    out: dict[str, float] = {}
    for cid, when in rows:
        # SQLite keeps the adapters' UTC timestamps without their offset.
        stamp = when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
        out[cid] = stamp.timestamp()
    return out


def latencies(run_dir: Path, work: Workload, sent: Sequence[float]) -> tuple[list[Latencies], int]:
    """Join the postings of the run's SQLite files to the send times; return latencies and unmatched rows."""
    sent_by = dict(zip(work.correlations, sent, strict=True))

    def ro(name: str) -> str:
        return f"sqlite:///file:{run_dir / name}?mode=ro&uri=true"

    kinds = {
        "billing charges": _posted_times(ro("billing.db"), ChargeRow.correlation_id, ChargeRow.posted_at),
        "ERP journal lines": _posted_times(
            ro("erp.db"), JournalLineRow.correlation_id, JournalLineRow.posted_at
        ),
        "ERP inventory movements": _posted_times(
            ro("erp.db"), InventoryMovementRow.correlation_id, InventoryMovementRow.posted_at
        ),
    }
    last: dict[str, float] = {}
    for times in kinds.values():
        for cid, at in times.items():
            last[cid] = max(at, last.get(cid, at))
    kinds["fully posted (last posting)"] = last
    unmatched = sum(1 for cid in last if cid not in sent_by)
    out = [
        Latencies(
            name, sorted((sent_by[cid], at - sent_by[cid]) for cid, at in times.items() if cid in sent_by)
        )
        for name, times in kinds.items()
    ]
    return out, unmatched


def steady(
    rate: float, seconds: float, replicas: int, seed: int, timeout_s: float, console: Console
) -> Steady:
    """Send a day at a fixed rate to a running stack, wait until it is posted, join postings to sends."""
    work = workload(max(1, round(rate * seconds)), seed)
    settings = bench_settings(replicas)
    run_dir = new_run_dir(settings, "surge-steady")
    console.rule(f"latency at {rate:g} messages/s, {replicas} transform replica(s): {run_dir}")
    with running(SurgeStack(settings, run_dir), console, workers=True):
        with console.status(f"sending {len(work.messages):,} messages at {rate:g}/s ..."):
            sent = asyncio.run(send_steadily(settings, work, rate))
        send_s = sent[-1] - sent[0] if len(sent) > 1 else 0.0
        result = asyncio.run(watch(settings, work.day, sent[0], timeout_s, console))
        # Read while the adapters are idle but still up: their WAL files are then readable as they are.
        lat, unmatched = latencies(run_dir, work, sent)
    run = Steady(rate, len(work.messages), send_s, result, run_dir, lat, unmatched)
    save(run)
    return run


# -- report -----------------------------------------------------------------------------------------------
def _s(value: float | None) -> str:
    return f"{value:,.1f}" if value is not None else "-"


def drain_table(runs: Sequence[Drain]) -> Table:
    """Drain time and throughput per replica count, next to the do-nothing consumer."""
    baselines = [run.baseline for run in runs if run.baseline is not None]
    best = max((b.rate for b in baselines), default=0.0)
    table = Table(title="Backlog drain (seconds from the worker being ready)")
    table.add_column("consumer")
    table.add_column("messages", justify="right")
    table.add_column("transformed s\n(raw lag 0)", justify="right")
    table.add_column("done s\n(hcsync: all lag 0, totals agree;\nbaseline: all counted)", justify="right")
    table.add_column("messages/s\nend to end", justify="right")
    table.add_column("of the do-nothing\nconsumer", justify="right")
    for n, b in enumerate(baselines, 1):
        table.add_row(
            f"do-nothing Faust consumer (run {n})",
            f"{b.messages:,}",
            "",
            f"{b.seconds:,.1f}",
            f"{b.rate:,.0f}",
            f"{b.rate / best:.0%}" if best else "-",
        )
    for run in runs:
        w = run.watch
        status = "" if w.balanced else " [red](incomplete)[/]"
        table.add_row(
            f"hcsync, {run.replicas} transform replica(s){status}",
            f"{run.messages:,}",
            _s(w.transformed_s),
            _s(w.posted_s),
            f"{run.rate:,.0f}" if w.balanced else "-",
            f"{run.rate / best:.1%}" if best and w.balanced else "-",
        )
    return table


def stage_table(run: Drain) -> Table:
    """Per stage: records, peak lag, when its topic drained and the rate that implies."""
    table = Table(title=f"Stages, {run.replicas} replica(s): lag sampled every {LAG_EVERY_S:g}s or faster")
    for col in ("stage (topic it consumes)", "records", "peak lag", "at s", "drained at s", "records/s"):
        table.add_column(col, justify="left" if col.startswith("stage") else "right")
    samples = run.watch.samples
    for topic, label in STAGES:
        if not samples:
            break
        records = samples[-1].ends[topic]
        peak = max(samples, key=lambda s: s.lag[topic])
        drained: float | None = None
        for sample in reversed(samples):
            if sample.lag[topic]:
                break
            drained = sample.at
        rate = f"{records / drained:,.0f}" if drained else "-"
        table.add_row(
            f"{label} ({topic})",
            f"{records:,}",
            f"{peak.lag[topic]:,}",
            f"{peak.at:,.1f}",
            _s(drained),
            rate,
        )
    return table


def cpu_table(run: Drain) -> Table:
    """CPU used by each process of the stack while it drained: a process near 1 core is a ceiling."""
    table = Table(
        title=f"CPU while draining, {run.replicas} replica(s): {run.cpu_wall_s:.1f}s, {os.cpu_count()} CPUs"
    )
    for col in ("process", "CPU s", "cores (CPU s / wall s)"):
        table.add_column(col, justify="left" if col == "process" else "right")
    for label, seconds in run.cpu.items():
        cores = seconds / run.cpu_wall_s if run.cpu_wall_s else 0.0
        table.add_row(label, f"{seconds:,.1f}", f"{cores:.2f}")
    return table


def latency_table(run: Steady) -> Table:
    """Latency percentiles of each kind of posting, joined to send times by correlation id."""
    table = Table(
        title=f"Ingest to posting at {run.rate:g} messages/s",
        caption=f"{run.messages:,} messages sent in {run.send_s:.1f}s ({run.achieved_rate:,.0f}/s achieved)",
    )
    for col in ("posting", "messages joined", "p50 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="left" if col == "posting" else "right")
    for lat in run.latencies:
        table.add_row(
            lat.name,
            f"{len(lat.seconds):,}",
            f"{lat.percentile(50) * 1000:,.0f}",
            f"{lat.percentile(99) * 1000:,.0f}",
            f"{max(lat.seconds, default=math.nan) * 1000:,.0f}",
        )
    return table


def latency_notes(run: Steady) -> list[str]:
    """Say whether the run was a steady state: latency that grows with send time means a queue builds."""
    full = run.latencies[-1]
    first, last = full.trend()
    notes = [
        f"fully posted p50 of the first / last fifth of the messages sent: {first * 1000:,.0f} / "
        f"{last * 1000:,.0f} ms; all {run.messages:,} messages were posted "
        f"{_s(run.watch.posted_s)}s after the first was sent"
    ]
    if last > 2 * first and last - first > 1.0:
        sustained = run.messages / run.watch.posted_s if run.watch.posted_s else 0.0
        notes.append(
            f"[yellow]latency grew through the run: the stack did not keep up with {run.rate:g} messages/s "
            f"(it averaged {sustained:,.0f}/s end to end): these are queueing delays, not a steady state[/]"
        )
    return notes


# -- main -------------------------------------------------------------------------------------------------
def _replicas(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("replica counts must be positive integers")
    return values


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.surge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--messages", type=int, default=100_000, help="backlog size (whole encounters, about)"
    )
    parser.add_argument("--rate", type=float, default=300.0, help="messages/s of the steady run")
    parser.add_argument("--steady-s", type=float, default=60.0, help="length of the steady run")
    parser.add_argument("--replicas", type=_replicas, default=[1, 2], help="transform replicas, e.g. 1,2")
    parser.add_argument(
        "--quick", action="store_true", help=f"a smoke run: {QUICK_MESSAGES:,} messages, {QUICK_STEADY_S:g}s"
    )
    parser.add_argument("--seed", type=int, default=11, help="seed of the synthetic days")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="give up on a phase after this long")
    parser.add_argument("--baseline-consumer", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.baseline_consumer is not None:
        raise SystemExit(_baseline_consumer(args.baseline_consumer))
    if args.quick:
        args.messages, args.steady_s = QUICK_MESSAGES, QUICK_STEADY_S
    # Piped output gets a width the tables fit in, not rich's 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 140)
    signal.signal(signal.SIGTERM, _terminate)  # stop the stack on SIGTERM too, not only on Ctrl-C
    # The worker would join the Ray cluster RAY_ADDRESS names; the bench measures its own local Ray.
    os.environ.pop("RAY_ADDRESS", None)
    try:
        ok = run(args, console)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: the stack that was running has been stopped")
        raise SystemExit(130) from None
    if not ok:
        raise SystemExit(1)


def run(args: argparse.Namespace, console: Console) -> bool:
    """Run every phase and print the results; False when a phase failed."""
    s = bench_settings(1)
    console.print(
        f"[bold]hcsync surge bench[/]: {os.cpu_count()} CPUs; {s.topic_partitions} partitions, transform "
        f"batches of {s.transform_batch_size} within {s.transform_batch_window_s:g}s, dispatch batches of "
        f"{s.dispatch_batch_size} within {s.dispatch_batch_window_s:g}s"
    )
    with console.status(f"generating a synthetic day of about {args.messages:,} messages ..."):
        work = workload(args.messages, args.seed)
    console.print(
        f"backlog: {len(work.messages):,} messages, {work.day.expected.encounters:,} encounters, "
        f"{work.day.expected.charge_lines:,} charge lines"
    )
    drains: list[Drain] = []
    latency: Steady | None = None
    for n, replicas in enumerate(args.replicas, 1):
        with _phase(console, f"the drain with {replicas} replica(s)"):
            drains.append(drain(work, replicas, n, args.timeout_s, console, with_baseline=True))
            console.print(stage_table(drains[-1]))
            console.print(cpu_table(drains[-1]))
    with _phase(console, "the steady run"):
        latency = steady(args.rate, args.steady_s, max(args.replicas), args.seed + 1, args.timeout_s, console)
    console.rule("results")
    if drains:
        console.print(drain_table(drains))
    if latency is not None:
        console.print(latency_table(latency))
        for note in latency_notes(latency):
            console.print(note)
        if latency.unmatched_rows:
            console.print(f"[red]{latency.unmatched_rows} posted correlation ids matched no message sent[/]")
    results: list[Drain | Steady] = [*drains, *([latency] if latency is not None else [])]
    for result in results:
        quarantined = result.watch.counters.get("quarantined", 0)
        if quarantined:
            console.print(f"[yellow]{result.run_dir.name}: {quarantined} message(s) quarantined[/]")
        if result.watch.foreign_stacks:
            console.print(
                f"[yellow]{result.run_dir.name}: another hcsync stack ran on this machine meanwhile "
                f"({result.watch.foreign_stacks} broker/worker processes): its figures are skewed[/]"
            )
    console.print("figures and lag samples of each run: surge.json in")
    for result in results:
        console.print(f"  {result.run_dir}")
    return len(drains) == len(args.replicas) and latency is not None


if __name__ == "__main__":
    main()
