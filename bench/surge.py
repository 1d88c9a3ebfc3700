"""Surge benchmark: drain a backlog end to end against two do-nothing consumers, latency at a steady rate,
the highest rate that keeps p99 under 2 s, CPU per message, records per message and memory, with 1 and 2
Faust workers, all on the real embedded stack (Tansu, Redis, the gRPC adapters on SQLite, Ray, Faust).

    .venv/bin/python -m bench.surge [--messages N] [--workers 1,2] [--replicas 1] [--rate R] [--steady-s S]
                                    [--steady-workers W] [--rate-search 100,200,...] [--search-s S]
                                    [--search-bisect K] [--search-warmup-s S] [--quick]

What is measured, and how:

1. Backlog drain, once per worker count and transform replica count (a fresh stack each time, so every run
   starts from an empty broker, Redis and ledger). The stack is started *without* its Faust workers, the
   raw topic is pre-loaded with a synthetic hospital day of about N messages (whole encounters, so the
   totals the day must produce are known: cluster.synth), and only then are the workers started, all at
   once (with 2, they join the consumer group together, so one rebalance hands out the partitions). The
   clock starts when the first worker is ready (its ready file is written once Faust has its partitions
   and has recovered its table, i.e. when it can first consume; how long the last one took after it is
   printed), and stops at

   a. *transformed*: the raw topic's consumer-group lag is 0 (the ingest agent committed every offset,
      which happens only after the Ray pool's results were written on), and
   b. *posted*: every consumed topic's lag is 0 and the day reconciles exactly as `hcsync demo` checks it
      (cluster.demo.reconcile: charge lines and cents in billing and the ERP ledger, coded accounts, stock
      used item by item). Counts equal to the prediction mean nothing is missing and nothing is doubled.

   Lag is read as `hcsync status` reads it (fetch high watermarks minus committed offsets); Faust commits
   every 2.8 s, so both times are upper bounds, late by at most a commit interval plus a poll (~0.5 s).
   The pool is pinned to the replica count (min = max, no autoscaling) so the count is what is measured.
   With 2 workers they share one local Ray cluster the stack starts (cluster.stack). Three tables say
   where the time went: the stages (per consumed topic: peak lag, when it drained, from a lag sample every
   2 s), the CPU each process of the stack used meanwhile (a process near one core, e.g. a worker's single
   event loop, is a ceiling; a stage that lags while nothing is busy waits on round trips) with CPU
   milliseconds per source message, and each process's resident memory (RSS) at the end of the run.

2. Baselines, on the same pre-loaded backlog before the hcsync workers start (so they never share the CPU
   with them), each in a child process, each with a fresh consumer group on the same topic:

   - a minimal faust.App whose agent does nothing but count, with the same
     ``stream.take(transform_batch_size, within=transform_batch_window_s)`` loop as the ingest agent;
   - a plain aiokafka consumer: subscribe, ``getmany(max_records=transform_batch_size)`` in a loop, count.

   Both are timed the same way as hcsync: from the moment the consumer has its partitions (Faust's worker
   startup finished; aiokafka's rebalance listener was told of its assignment) to the moment it has
   counted the whole backlog; each also reports its CPU time over that span (ms per message) and its RSS.
   hcsync's end-to-end rate is reported as a fraction of the fastest run of each. The baselines join
   their groups with a 6 s session timeout (Tansu answers a first join after about half the session
   timeout; this shortens the bench, not what is timed).

3. Latency at a steady rate: a fresh stack with its worker running, messages sent at R per second for S
   seconds (a synthetic day of about R*S messages, in its time order), each stamped with the wall-clock
   time it was handed to the producer. Every posting carries the source message's correlation id
   (canonical.ids.correlation_id(MSH-3^MSH-4, MSH-10)), and the adapters stamp ``posted_at`` inside their
   write transaction, so after the run the billing charges and the ERP journal lines and inventory
   movements are read from the run directory's SQLite files (read-only) and joined back to the send
   times: latency = posted_at - sent at, per message, for each kind of posting and for the last posting
   of a message (when it is fully posted): p50, p99 and max. Messages with no posting (ADT, ORU, BAR)
   have no row to join. Same host, same clock: the difference needs no synchronisation. When the stack
   cannot keep up with R, a queue builds and latency grows with send time: the bench compares the first
   and last fifth of the messages and says so, since the percentiles are then queueing delays rather than
   a steady state. Nothing reads the topics' payloads: only the databases and record counts. Its CPU
   table covers the first send to fully posted (CPU ms per message sent) and RSS at the end.

4. The highest steady rate at which p99 stays under 2 s: one fresh stack, one synthetic day sent in
   steps (ids must not repeat on one stack, so the steps share one day), each at one rate for
   ``--search-s`` seconds, after ``--search-warmup-s`` seconds at the lowest rate that are not judged (a
   fresh worker's first messages meet cold paths): first the rates of ``--rate-search`` in increasing
   order, and after the first step that fails, ``--search-bisect`` steps halfway between the highest
   passing and the lowest failing rate. After each step the sender waits until every stage's lag is 0
   (twice in a row, with the same end offsets), then joins that step's messages to their postings as in
   3. A step fails when its fully-posted p99 is 2 s or more, when its latency grew through the step (a
   queue built), when the sender could not hold the rate, or when the lag is not 0 within
   ``max(30 s, --search-s)`` of its last send (it fell behind); the search stops at the first failure
   that leaves nothing to bisect. The result is the highest passing rate (the stack is warm after the
   first step; each step starts with nothing queued). Its CPU table covers the judged steps (and the
   waits after them), per message of those steps; its records per message count the warm-up too. The
   steady run and the search run with ``--steady-workers`` workers (1) and the most ``--replicas``.

5. Records per source message: after each run, for every topic of the run's topic prefix (the stack's
   topics, the outcomes, exceptions and routed topics, and Faust's changelog and assignor topics) the
   records written, i.e. the sum over its partitions of the high watermark read from fetch responses
   (not ListOffsets, which is low on Tansu after multi-record batches: foundation.kafka), divided by the
   source messages of the run.

6. Targets: the best drain rate against 1,000 messages/s end to end, the steady run's fully-posted p99
   against 2 s (at 300 messages/s), and the lowest total CPU of the stack per message of a drain (every
   process of the stack, the bench itself excluded) against 2 ms; each printed met or missed.

Only one stack runs at a time, and a run during which another hcsync stack was seen on the machine is
flagged (its figures are skewed). Ctrl-C (or SIGTERM) stops whatever is running (stack, baseline
consumer) before exiting. Each run directory gets a surge.json with its figures (CPU and RSS by process,
records by topic, lag samples, latencies or search steps) and a summary of the whole bench (targets,
search result, every run directory).

``--quick`` is a smoke run of every column in under 3 minutes on a 2-core machine: a 1,000-message backlog
with both baselines, 5 s at 300 messages/s, and a search over 100 and 300 messages/s of 4 s each after
2 s of warm-up, without bisection. Each stack costs about 40 s to start, ready its worker and stop, so
quick drains with 1 worker only: 2 workers (``--quick --workers 1,2``) add a stack and about a minute,
past 3 minutes. It pins HCSYNC_CONSUMER_SESSION_TIMEOUT_S to 6 s unless it is set (Tansu answers a
group's first join after about half the session timeout, ~15 s at the default 30 s, which would be most
of a short run) and HCSYNC_STOP_TIMEOUT_S to 3 s unless it is set (a worker lingers ~8 s in Ray's
shutdown after its loop closed; every figure is read before the stack stops), and runs the baselines on
the first drain only. Options given on the command line keep their values. Its figures are too short
to quote.

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
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
import redis.asyncio as aioredis
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
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
from foundation.processes import free_port
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
BASELINE_SESSION_TIMEOUT_S = 6.0  # the baselines' consumer groups: Tansu answers a first join after ~half
# The targets of issue 12.
TARGET_DRAIN_RATE = 1_000.0  # messages/s end to end
TARGET_P99_S = 2.0  # ingest to fully posted ...
TARGET_P99_RATE = 300.0  # ... at this steady rate
TARGET_CPU_MS = 2.0  # CPU of the whole stack per source message
# --quick: every column in under 3 minutes on 2 cores.
QUICK_MESSAGES = 1_000
QUICK_STEADY_S = 5.0
QUICK_RATE_SEARCH = (100.0, 300.0)
QUICK_SEARCH_S = 4.0
QUICK_SEARCH_WARMUP_S = 2.0
QUICK_SESSION_TIMEOUT_S = 6.0  # HCSYNC_CONSUMER_SESSION_TIMEOUT_S unless set (its minimum)
QUICK_STOP_TIMEOUT_S = 3.0  # HCSYNC_STOP_TIMEOUT_S unless set: a stack is stopped once its figures are read
BENCH_LABEL = "bench (sending, polling)"


# -- settings and the stack -----------------------------------------------------------------------------
def bench_settings(
    replicas: int, workers: int = 1, overrides: Mapping[str, object] | None = None
) -> Settings:
    """Settings of one isolated embedded stack: HCSYNC_* as set, on free ports, with its own topic prefix.

    The pool is pinned to ``replicas`` actors (min = max), so neither `hcsync scale` nor an autoscaler
    changes what a run measures, and the stack runs ``workers`` Faust workers (with more than one, they
    share a local Ray cluster the stack starts). ``overrides`` are further settings (--quick's session
    timeout).
    """
    pinned: dict[str, object] = {
        "broker_port": free_port(),
        "redis_port": free_port(),
        "billing_port": free_port(),
        "erp_port": free_port(),
        "payer_port": free_port(),
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
    # No autoscaling; one worker runs its own Ray, several share the stack's local Ray cluster. Set only
    # where this version of the settings has them.
    optional = {"transform_autoscale": False, "workers": workers, "ray_local_nodes": 0}
    pinned |= {name: value for name, value in optional.items() if name in Settings.model_fields}
    pinned |= dict(overrides or {})
    return Settings.model_validate(Settings().model_dump() | pinned)


class SurgeStack(Stack):
    """The embedded stack with its Faust worker(s) held back until :meth:`start_workers`.

    Everything else (broker, Redis, adapters, forwarder, MLLP) starts as usual, so a backlog can be written
    to the raw topic while nothing consumes it. The workers then start all at once (not one after the
    other as the stack does), so several join the consumer group together.
    """

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        super().__init__(settings, run_dir)
        self.ready_at: dict[str, float] = {}  # wall-clock time each worker was ready, by name

    def start(self, *, hold_workers: bool = True) -> None:
        super().start(hold_workers=hold_workers)

    def start_workers(self) -> float:
        """Start the held-back workers together; return the wall-clock time the first one was ready."""
        launched = time.time()
        with self._lock:
            held, self._held = self._held, []
        if not held:
            return launched
        self._join_ray(held[0])  # the stack's Ray cluster (several workers) before any worker starts
        errors: list[BaseException] = []

        def start_one(component: Any) -> None:
            try:
                self._start_blocking(component)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start_one, args=(c,), name=f"start-{c.name}") for c in held]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        # The ready file is written once Faust has its partitions and recovered its table; its mtime is
        # the moment the worker could first consume.
        for component in held:
            ready = component.ready_file
            if ready is not None and ready.exists() and ready.stat().st_mtime >= launched:
                self.ready_at[component.name] = ready.stat().st_mtime
        return min(self.ready_at.values(), default=time.time())

    def ray_cluster_pids(self) -> list[int]:
        """The processes of the local Ray cluster the stack started (several workers); none without one."""
        with self._lock:  # the supervisor may be restarting it
            return self.ray_cluster.pids() if self.ray_cluster is not None else []

    @property
    def ready_spread_s(self) -> float:
        """Seconds from the first worker being ready to the last."""
        times = self.ready_at.values()
        return max(times) - min(times) if times else 0.0


# -- processes: CPU and memory ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProcSample:
    """One process of the stack: what it is, its CPU seconds so far and its resident memory now."""

    label: str
    cpu_s: float
    rss: int


Snapshot = dict[int, ProcSample]  # by pid


def proc_snapshot(stack: SurgeStack) -> Snapshot:
    """Return the CPU time and RSS of every process of the stack (and of this one), labelled by what it runs.

    The processes of a local Ray cluster the stack started (several workers) count too.
    """
    out: Snapshot = {}
    me = psutil.Process()
    with me.oneshot():
        times = me.cpu_times()
        out[me.pid] = ProcSample(BENCH_LABEL, times.user + times.system, me.memory_info().rss)
    for component in stack.components:
        if component.process is None:
            continue
        try:
            root = psutil.Process(component.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            sample = _sample(proc, component.name, proc.pid == root.pid)
            if sample is not None:
                out[proc.pid] = sample
    for pid in stack.ray_cluster_pids():
        if pid in out:
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            sample = _sample(psutil.Process(pid), "ray cluster", False)
            if sample is not None:
                out[pid] = sample
    return out


def _sample(proc: psutil.Process, component: str, root: bool) -> ProcSample | None:
    try:
        with proc.oneshot():
            times = proc.cpu_times()
            label = _label(component, proc, root)
            return ProcSample(label, times.user + times.system, proc.memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _label(component: str, proc: psutil.Process, root: bool) -> str:
    if root:
        return f"{component} (Faust agents, Ray driver)" if component.startswith("worker") else component
    command = " ".join(proc.cmdline())
    if "TransformActor" in command:
        return "Ray transform actors"
    if component == "ray cluster":
        return "Ray cluster (raylets, GCS, idle workers)"
    return "Ray (raylet, GCS, idle workers)" if component.startswith("worker") else f"{component} (children)"


def cpu_used(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds used between two snapshots, by label, most first."""
    used: dict[str, float] = {}
    for pid, sample in after.items():
        previous = before.get(pid)
        used[sample.label] = (
            used.get(sample.label, 0.0) + sample.cpu_s - (previous.cpu_s if previous else 0.0)
        )
    return dict(sorted(used.items(), key=lambda item: -item[1]))


@dataclass(slots=True)
class Usage:
    """CPU each kind of process used over a run, per source message, and its memory at the end."""

    messages: int
    wall_s: float
    cpu_s: dict[str, float]  # by label, most first
    rss: dict[str, int]  # bytes at the end, summed over the label's processes (shared pages count twice)
    processes: dict[str, int]  # processes of each label at the end

    @property
    def stack_cpu_s(self) -> float:
        """CPU seconds of every process of the stack, the bench's own excluded."""
        return sum(seconds for label, seconds in self.cpu_s.items() if label != BENCH_LABEL)

    @property
    def stack_rss(self) -> int:
        return sum(size for label, size in self.rss.items() if label != BENCH_LABEL)

    def ms_per_message(self, seconds: float) -> float:
        return 1000 * seconds / self.messages if self.messages else math.nan

    @property
    def stack_ms_per_message(self) -> float:
        return self.ms_per_message(self.stack_cpu_s)


def usage(before: Snapshot, after: Snapshot, messages: int, wall_s: float) -> Usage:
    """CPU by label between two snapshots, and RSS and process count by label in the second."""
    rss: dict[str, int] = {}
    count: dict[str, int] = {}
    for sample in after.values():
        rss[sample.label] = rss.get(sample.label, 0) + sample.rss
        count[sample.label] = count.get(sample.label, 0) + 1
    return Usage(messages, wall_s, cpu_used(before, after), rss, count)


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


# -- records per source message ---------------------------------------------------------------------------
def prefixed_topics(topics: Iterable[str], prefix: str) -> list[str]:
    """The topics of one run: every name that starts with its prefix, sorted."""
    return sorted(topic for topic in topics if topic.startswith(prefix))


def records_by_topic(watermarks: Mapping[TopicPartition, int], prefix: str) -> dict[str, int]:
    """Records written to each topic (the sum of its partitions' high watermarks), by name without prefix."""
    out: dict[str, int] = {}
    for tp, end in watermarks.items():
        name = tp.topic.removeprefix(prefix)
        out[name] = out.get(name, 0) + end
    return dict(sorted(out.items()))


def per_message(records: Mapping[str, int], messages: int) -> dict[str, float]:
    """Records of each topic per source message (NaN without messages)."""
    return {topic: count / messages if messages else math.nan for topic, count in records.items()}


async def topic_records(settings: Settings) -> dict[str, int]:
    """Records written to every topic of the run's prefix, high watermarks read from fetch responses."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        topics = prefixed_topics(await admin.list_topics(), settings.topic_prefix)
    finally:
        await admin.close()
    return records_by_topic(await high_watermarks(settings, topics, timeout_s=15.0), settings.topic_prefix)


def read_records(settings: Settings, console: Console) -> dict[str, int]:
    """topic_records, or nothing (said) when the broker does not answer."""
    try:
        return asyncio.run(topic_records(settings))
    except Exception as exc:
        console.print(f"[yellow]records per topic not read[/]: {type(exc).__name__}: {exc}")
        return {}


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


def save(result: Drain | Steady | RateSearch, summary: Mapping[str, Any] | None = None) -> None:
    """Write a run's figures (and the bench's summary, once known) to surge.json in its run directory."""
    data = asdict(result) | ({"summary": dict(summary)} if summary is not None else {})
    (result.run_dir / "surge.json").write_text(json.dumps(data, indent=1, default=str))


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


# -- the do-nothing baselines -----------------------------------------------------------------------------
FAUST, AIOKAFKA = "faust", "aiokafka"
BASELINE_NAMES = {FAUST: "do-nothing Faust consumer", AIOKAFKA: "plain aiokafka consumer"}


@dataclass(frozen=True, slots=True)
class Baseline:
    """A do-nothing consumer's pass over the backlog."""

    kind: str  # FAUST or AIOKAFKA
    messages: int
    seconds: float  # ready -> counted the whole backlog
    first_s: float  # ready -> first batch
    cpu_s: float = 0.0  # CPU of the consumer's process from ready to done
    rss: int = 0  # its resident memory once done

    @property
    def name(self) -> str:
        return BASELINE_NAMES.get(self.kind, self.kind)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_message(self) -> float:
        return 1000 * self.cpu_s / self.messages if self.messages else math.nan


class _Counter:
    """What a baseline child writes: ready (CPU so far) when it has its partitions, done when it has all."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.expected = int(spec["expected"])
        self.ready_file, self.done_file = Path(spec["ready_file"]), Path(spec["done_file"])
        self.count = 0
        self.first = 0.0

    def ready(self) -> None:
        if not self.ready_file.exists():
            _write_atomically(self.ready_file, json.dumps({"at": time.time(), "cpu_s": time.process_time()}))

    def add(self, records: int) -> None:
        now = time.time()
        if not self.count:
            self.first = now
        before = self.count
        self.count += records
        if before < self.expected <= self.count:
            _write_atomically(
                self.done_file,
                json.dumps(
                    {
                        "first": self.first,
                        "done": now,
                        "count": self.count,
                        "cpu_s": time.process_time(),
                        "rss": psutil.Process().memory_info().rss,
                    }
                ),
            )


def _baseline_consumer(spec_path: Path) -> int:
    """Child process: a do-nothing consumer of the raw topic (spec "kind") that writes when it has all."""
    spec: dict[str, Any] = json.loads(spec_path.read_text())
    if spec.get("kind", FAUST) == AIOKAFKA:
        asyncio.run(_aiokafka_consumer(spec))
        return 0
    return _faust_consumer(spec)


def _faust_consumer(spec: Mapping[str, Any]) -> int:
    """A minimal Faust app with the ingest agent's take() loop that only counts."""
    import faust
    from faust.worker import Worker

    counter = _Counter(spec)

    class CountingWorker(Worker):
        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            counter.ready()

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
        broker_session_timeout=BASELINE_SESSION_TIMEOUT_S,
        broker_heartbeat_interval=BASELINE_SESSION_TIMEOUT_S / 6,
    )
    topic = app.topic(spec["topic"], key_serializer="raw", value_serializer="raw")

    @app.agent(topic, name="count")
    async def count(stream: Any) -> None:
        async for batch in stream.take(int(spec["batch_size"]), within=float(spec["window_s"])):
            counter.add(len(batch))

    worker = CountingWorker(app, loglevel="WARNING", loop=loop, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


async def _aiokafka_consumer(spec: Mapping[str, Any]) -> None:
    """A plain aiokafka consumer in a fresh group: getmany in a loop, counting, until it is stopped."""
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

    counter = _Counter(spec)

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            return None

        async def on_partitions_assigned(self, assigned: Any) -> None:
            if assigned:
                counter.ready()

    session_ms = int(BASELINE_SESSION_TIMEOUT_S * 1000)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=spec["bootstrap"],
        group_id=spec["group"],
        auto_offset_reset="earliest",
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=session_ms // 6,
    )
    consumer.subscribe([spec["topic"]], listener=Listener())
    await consumer.start()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        batch, window_ms = int(spec["batch_size"]), int(float(spec["window_s"]) * 1000)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=window_ms, max_records=batch)
            records = sum(len(part) for part in batches.values())
            if records:
                counter.add(records)
    finally:
        await consumer.stop()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def run_baseline(
    settings: Settings, run_dir: Path, messages: int, sample: int, timeout_s: float, kind: str = FAUST
) -> Baseline:
    """Run a do-nothing consumer over the backlog in a child process; stop it once it has counted all."""
    base = run_dir / f"baseline-{kind}-{sample}"
    base.mkdir()
    spec: dict[str, Any] = {
        "kind": kind,
        "bootstrap": settings.bootstrap,
        "topic": TopicNames(settings.topic_prefix).raw_hl7v2,
        # Outside the run's prefix: the Faust baseline's assignor topic is named after its group, and the
        # records per message count the run's topics only.
        "group": f"bench-baseline-{kind}-{settings.topic_prefix.rstrip('.')}-{uuid.uuid4().hex[:6]}",
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
    ready: dict[str, float] = json.loads(ready_file.read_text())
    done: dict[str, float] = json.loads(done_file.read_text())
    return Baseline(
        kind=kind,
        messages=messages,
        seconds=done["done"] - ready["at"],
        first_s=done["first"] - ready["at"],
        cpu_s=done["cpu_s"] - ready["cpu_s"],
        rss=int(done["rss"]),
    )


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
    """One backlog drain with a given number of workers and transform replicas."""

    workers: int
    replicas: int
    messages: int
    preload_s: float
    watch: Watch
    run_dir: Path
    baselines: list[Baseline] = field(default_factory=list)
    usage: Usage | None = None  # CPU by process while it drained, RSS at the end
    records: dict[str, int] = field(default_factory=dict)  # records written to each topic of the run
    ready_spread_s: float = 0.0  # the last worker was ready this long after the first (the clock's start)

    @property
    def rate(self) -> float:
        seconds = self.watch.posted_s
        return self.messages / seconds if seconds else 0.0

    @property
    def name(self) -> str:
        return f"{self.workers} worker(s), {self.replicas} replica(s)"


def drain(
    work: Workload,
    workers: int,
    replicas: int,
    sample: int,
    timeout_s: float,
    console: Console,
    with_baseline: bool,
    overrides: Mapping[str, object] | None = None,
) -> Drain:
    """Pre-load the backlog on a stack without its workers, run the baselines, start the workers, time it."""
    settings = bench_settings(replicas, workers, overrides)
    run_dir = new_run_dir(settings, f"surge-w{workers}r{replicas}")
    console.rule(f"backlog drain, {workers} worker(s), {replicas} transform replica(s): {run_dir}")
    stack = SurgeStack(settings, run_dir)
    with running(stack, console, workers=False):
        with console.status(f"pre-loading {len(work.messages):,} messages on the raw topic ..."):
            started = time.monotonic()
            asyncio.run(preload(settings, work))
            preload_s = time.monotonic() - started
        console.print(f"pre-loaded {len(work.messages):,} messages in {preload_s:.1f}s")
        baselines: list[Baseline] = []
        for kind in (FAUST, AIOKAFKA) if with_baseline else ():
            with console.status(f"{BASELINE_NAMES[kind]} over the backlog ..."):
                b = run_baseline(settings, run_dir, len(work.messages), sample, timeout_s, kind)
            baselines.append(b)
            console.print(
                f"{b.name}: {b.seconds:.1f}s, {b.rate:,.0f} messages/s, "
                f"{b.cpu_ms_per_message:.3f} CPU ms/message, {b.rss / 2**20:,.0f} MB RSS"
            )
        with console.status(f"starting {workers} worker(s) (Ray, the transform pool, Faust) ..."):
            ready = stack.start_workers()
        if workers > 1:
            console.print(f"{workers} workers ready, the last {stack.ready_spread_s:.1f}s after the first")
        before, cpu_from = proc_snapshot(stack), time.monotonic()
        result = asyncio.run(watch(settings, work.day, ready, timeout_s, console))
        after, wall_s = proc_snapshot(stack), time.monotonic() - cpu_from
        records = read_records(settings, console)
    run = Drain(
        workers,
        replicas,
        len(work.messages),
        preload_s,
        result,
        run_dir,
        baselines,
        usage(before, after, len(work.messages), wall_s),
        records,
        stack.ready_spread_s,
    )
    save(run)
    posted = f"{result.posted_s:.1f}s" if result.posted_s is not None else "never (timed out)"
    console.print(f"{run.name}: fully posted after {posted}, {run.rate:,.0f} messages/s")
    return run


# -- phase 3: latency at a steady rate --------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (NaN when there is no value)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def queue_grew(first: float, last: float) -> bool:
    """Whether latency grew through a run (p50 of its first and last fifth): a queue built up."""
    return last > 2 * first and last - first > 1.0


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
    workers: int = 1
    replicas: int = 1
    usage: Usage | None = None  # CPU by process from the first send to fully posted, RSS at the end
    records: dict[str, int] = field(default_factory=dict)

    @property
    def achieved_rate(self) -> float:
        return self.messages / self.send_s if self.send_s > 0 else 0.0


async def send_steadily(
    settings: Settings, messages: Sequence[bytes], keys: Sequence[bytes], rate: float
) -> list[float]:
    """Send every message at ``rate`` per second; return each message's wall-clock send time."""
    topic = TopicNames(settings.topic_prefix).raw_hl7v2
    total = len(messages)
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
                pending.append(await prod.send(topic, value=messages[i], key=keys[i]))
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


def latencies(
    run_dir: Path, correlations: Sequence[str], sent: Sequence[float]
) -> tuple[list[Latencies], int]:
    """Join the postings of the run's SQLite files to the send times; return latencies and unmatched rows.

    Only the messages given are joined: rows of other messages (an earlier search step's) are unmatched.
    """
    sent_by = dict(zip(correlations, sent, strict=True))

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
    rate: float,
    seconds: float,
    workers: int,
    replicas: int,
    seed: int,
    timeout_s: float,
    console: Console,
    overrides: Mapping[str, object] | None = None,
) -> Steady:
    """Send a day at a fixed rate to a running stack, wait until it is posted, join postings to sends."""
    work = workload(max(1, round(rate * seconds)), seed)
    settings = bench_settings(replicas, workers, overrides)
    run_dir = new_run_dir(settings, "surge-steady")
    console.rule(
        f"latency at {rate:g} messages/s, {workers} worker(s), {replicas} transform replica(s): {run_dir}"
    )
    stack = SurgeStack(settings, run_dir)
    with running(stack, console, workers=True):
        before, cpu_from = proc_snapshot(stack), time.monotonic()
        with console.status(f"sending {len(work.messages):,} messages at {rate:g}/s ..."):
            sent = asyncio.run(send_steadily(settings, work.messages, work.keys, rate))
        send_s = sent[-1] - sent[0] if len(sent) > 1 else 0.0
        result = asyncio.run(watch(settings, work.day, sent[0], timeout_s, console))
        after, wall_s = proc_snapshot(stack), time.monotonic() - cpu_from
        # Read while the adapters are idle but still up: their WAL files are then readable as they are.
        lat, unmatched = latencies(run_dir, work.correlations, sent)
        records = read_records(settings, console)
    run = Steady(
        rate,
        len(work.messages),
        send_s,
        result,
        run_dir,
        lat,
        unmatched,
        workers,
        replicas,
        usage(before, after, len(work.messages), wall_s),
        records,
    )
    save(run)
    return run


# -- phase 4: the highest rate with p99 under the limit ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class SearchStep:
    """One step of the rate search: its messages' fully-posted latencies and the verdict."""

    rate: float
    messages: int
    send_s: float
    joined: int  # messages with a posting
    p50_s: float | None
    p99_s: float | None
    max_s: float | None
    trend: tuple[float, float]  # p50 of the first and last fifth of the step's messages
    tail_s: float | None  # last send -> every stage's lag 0; None: not within the wait (fell behind)
    passed: bool
    reason: str

    @property
    def achieved_rate(self) -> float:
        return self.messages / self.send_s if self.send_s > 0 else 0.0


@dataclass(slots=True)
class RateSearch:
    """Steps at increasing (then bisected) rates on one stack, each judged against a p99 limit."""

    workers: int
    replicas: int
    step_s: float
    limit_s: float
    run_dir: Path
    warmup_messages: int = 0  # sent first at the lowest rate, not judged
    steps: list[SearchStep] = field(default_factory=list)
    usage: Usage | None = None  # over every step
    records: dict[str, int] = field(default_factory=dict)
    foreign_stacks: int = 0

    @property
    def highest_passing(self) -> float | None:
        return highest_passing([(step.rate, step.passed) for step in self.steps])

    @property
    def messages(self) -> int:
        """Messages of the judged steps."""
        return sum(step.messages for step in self.steps)

    @property
    def sent(self) -> int:
        """Every message sent to the stack: the warm-up and the steps."""
        return self.warmup_messages + self.messages


def judge_step(
    rate: float,
    achieved: float,
    p99_s: float | None,
    trend: tuple[float, float],
    tail_s: float | None,
    limit_s: float,
) -> tuple[bool, str]:
    """Whether a search step passed, and why (every reason it failed, or its p99 under the limit)."""
    failures = []
    if tail_s is None:
        failures.append("fell behind: the lag was not 0 in time after the last send")
    if achieved < 0.95 * rate:
        failures.append(f"the sender held only {achieved:,.0f} messages/s")
    if p99_s is None or math.isnan(p99_s):
        failures.append("no message was posted")
    elif p99_s >= limit_s:
        failures.append(f"p99 {p99_s:.2f}s >= {limit_s:g}s")
    if queue_grew(*trend):
        failures.append("latency grew through the step: a queue built")
    if failures:
        return False, "; ".join(failures)
    return True, f"p99 {p99_s:.2f}s < {limit_s:g}s"


def next_search_rate(
    rates: Sequence[float], tried: Sequence[tuple[float, bool]], bisections: int
) -> float | None:
    """The next rate to try, or None when the search is over.

    The rates in increasing order until one fails; then up to ``bisections`` rates halfway between the
    highest passing rate below the lowest failing one (0 if none) and that failing rate, in whole messages
    per second, as long as there is a whole rate between them.
    """
    done = [rate for rate, _ in tried]
    failed = [rate for rate, ok in tried if not ok]
    if not failed:
        higher = sorted(rate for rate in rates if rate > max(done, default=0.0))
        return higher[0] if higher else None
    first_failure = next(n for n, (_, ok) in enumerate(tried) if not ok)
    if len(tried) - first_failure - 1 >= bisections:
        return None
    hi = min(failed)
    lo = max((rate for rate, ok in tried if ok and rate < hi), default=0.0)
    mid = float(math.floor((lo + hi) / 2))
    if mid <= lo or mid >= hi or mid in done:
        return None
    return mid


def highest_passing(tried: Sequence[tuple[float, bool]]) -> float | None:
    """The highest rate that passed below the lowest that failed (None: none passed)."""
    lowest_failure = min((rate for rate, ok in tried if not ok), default=math.inf)
    return max((rate for rate, ok in tried if ok and rate < lowest_failure), default=None)


def search_plan_messages(
    rates: Sequence[float], step_s: float, bisections: int, warmup_s: float = 0.0
) -> int:
    """Messages the search may send at most: the warm-up, every listed step, bisected ones below the top."""
    warmup = round(min(rates, default=0.0) * warmup_s)
    listed = sum(max(1, round(rate * step_s)) for rate in rates)
    return warmup + listed + bisections * max(1, round(max(rates, default=0.0) * step_s))


async def wait_idle(settings: Settings, sent_total: int, deadline: float) -> float | None:
    """Wait until every stage's lag is 0 twice in a row with the same ends; return when it first was.

    None when that does not happen before ``deadline`` (wall clock). Two equal samples: a record written
    between the reading of the ends and of the committed offsets of one sample cannot hide in both.
    """
    previous: LagSample | None = None
    while time.time() < deadline:
        sample = await stage_lag(settings, 0.0)
        idle = sample.ends[RAW_HL7V2] >= sent_total and not any(sample.lag.values())
        if idle and previous is not None and previous.ends == sample.ends:
            return previous.at
        previous = sample if idle else None
        await asyncio.sleep(POLL_S)
    return None


def rate_search(
    rates: Sequence[float],
    step_s: float,
    bisections: int,
    workers: int,
    replicas: int,
    seed: int,
    console: Console,
    overrides: Mapping[str, object] | None = None,
    warmup_s: float = 0.0,
) -> RateSearch:
    """Send one day in steps at increasing rates to one stack; judge each step's p99 against the limit."""
    work = workload(search_plan_messages(rates, step_s, bisections, warmup_s), seed)
    settings = bench_settings(replicas, workers, overrides)
    run_dir = new_run_dir(settings, "surge-search")
    console.rule(
        f"rate search ({', '.join(f'{r:g}' for r in rates)}/s, {step_s:g}s each, {bisections} bisection(s)), "
        f"{workers} worker(s), {replicas} transform replica(s): {run_dir}"
    )
    search = RateSearch(workers, replicas, step_s, TARGET_P99_S, run_dir)
    stack = SurgeStack(settings, run_dir)
    with running(stack, console, workers=True):
        offset = round(min(rates, default=0.0) * warmup_s)
        if offset:
            # A fresh worker's first messages meet cold paths (Ray actors, connections): not judged.
            with console.status(f"warm-up: {offset:,} messages at {min(rates):g}/s ..."):
                asyncio.run(send_steadily(settings, work.messages[:offset], work.keys[:offset], min(rates)))
                asyncio.run(wait_idle(settings, offset, time.time() + 600.0))
        before, cpu_from, warm = proc_snapshot(stack), time.monotonic(), offset
        while (
            rate := next_search_rate(rates, [(s.rate, s.passed) for s in search.steps], bisections)
        ) is not None:
            count = max(1, round(rate * step_s))
            if offset + count > len(work.messages):
                console.print("[yellow]the search day is used up[/]")
                break
            if search.steps and search.steps[-1].tail_s is None:
                # The failed step's queue must be gone before a bisected step starts: it would count.
                with console.status("waiting for the previous step's queue to drain ..."):
                    idle = asyncio.run(wait_idle(settings, offset, time.time() + 600.0))
                if idle is None:
                    console.print(
                        "[yellow]the previous step's queue did not drain in 600s: search stopped[/]"
                    )
                    break
            part = slice(offset, offset + count)
            with console.status(f"step {len(search.steps) + 1}: {count:,} messages at {rate:g}/s ..."):
                sent = asyncio.run(send_steadily(settings, work.messages[part], work.keys[part], rate))
                offset += count
                wait_s = max(30.0, step_s)
                idle_at = asyncio.run(wait_idle(settings, offset, time.time() + wait_s))
            lat, _ = latencies(run_dir, work.correlations[part], sent)
            full = lat[-1]
            send_s = sent[-1] - sent[0] if len(sent) > 1 else 0.0
            achieved = count / send_s if send_s > 0 else rate
            p99 = full.percentile(99) if full.samples else None
            tail = idle_at - sent[-1] if idle_at is not None else None
            passed, reason = judge_step(rate, achieved, p99, full.trend(), tail, search.limit_s)
            step = SearchStep(
                rate=rate,
                messages=count,
                send_s=send_s,
                joined=len(full.samples),
                p50_s=full.percentile(50) if full.samples else None,
                p99_s=p99,
                max_s=max(full.seconds) if full.samples else None,
                trend=full.trend(),
                tail_s=tail,
                passed=passed,
                reason=reason,
            )
            search.steps.append(step)
            search.foreign_stacks = max(search.foreign_stacks, foreign_stacks())
            console.print(
                f"step {len(search.steps)} at {rate:g}/s: p99 {_ms(step.p99_s)} ms, "
                f"{'[green]passed[/]' if passed else '[red]failed[/]'} ({reason})"
            )
        after, wall_s = proc_snapshot(stack), time.monotonic() - cpu_from
        search.usage = usage(before, after, offset - warm, wall_s)
        search.warmup_messages = warm
        search.records = read_records(settings, console)
    save(search)
    return search


# -- report -----------------------------------------------------------------------------------------------
def _s(value: float | None) -> str:
    return f"{value:,.1f}" if value is not None else "-"


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1000:,.0f}" if seconds is not None and not math.isnan(seconds) else "-"


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f}"


def drain_table(runs: Sequence[Drain]) -> Table:
    """Drain time, throughput, CPU per message and memory per run, next to the do-nothing consumers."""
    baselines = [b for run in runs for b in run.baselines]
    best = {kind: max((b.rate for b in baselines if b.kind == kind), default=0.0) for kind in BASELINE_NAMES}
    table = Table(title="Backlog drain (seconds from the (first) worker being ready)")
    table.add_column("consumer", no_wrap=True)
    table.add_column("messages", justify="right")
    table.add_column("transformed s\n(raw lag 0)", justify="right")
    table.add_column("done s\n(hcsync: all lag 0, totals agree;\nbaseline: all counted)", justify="right")
    table.add_column("messages/s\nend to end", justify="right")
    for kind in BASELINE_NAMES:
        table.add_column(f"of the fastest\n{BASELINE_NAMES[kind]}", justify="right")
    table.add_column("CPU ms/msg\n(its processes,\nnot the bench)", justify="right")
    table.add_column("RSS MB\nat the end", justify="right")

    def shares(rate: float) -> list[str]:
        return [f"{rate / best[kind]:.1%}" if best[kind] else "-" for kind in BASELINE_NAMES]

    seen: dict[str, int] = {}
    for b in baselines:
        seen[b.kind] = seen.get(b.kind, 0) + 1
        table.add_row(
            f"{b.name} (run {seen[b.kind]})",
            f"{b.messages:,}",
            "",
            f"{b.seconds:,.1f}",
            f"{b.rate:,.0f}",
            *shares(b.rate),
            f"{b.cpu_ms_per_message:.3f}",
            _mb(b.rss),
        )
    for run in runs:
        w = run.watch
        status = "" if w.balanced else " [red](incomplete)[/]"
        table.add_row(
            f"hcsync, {run.name}{status}",
            f"{run.messages:,}",
            _s(w.transformed_s),
            _s(w.posted_s),
            f"{run.rate:,.0f}" if w.balanced else "-",
            *(shares(run.rate) if w.balanced else ["-"] * len(BASELINE_NAMES)),
            f"{run.usage.stack_ms_per_message:.2f}" if run.usage else "-",
            _mb(run.usage.stack_rss) if run.usage else "-",
        )
    return table


def stage_table(run: Drain) -> Table:
    """Per stage: records, peak lag, when its topic drained and the rate that implies."""
    table = Table(title=f"Stages, {run.name}: lag sampled every {LAG_EVERY_S:g}s or faster")
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


def usage_table(title: str, use: Usage) -> Table:
    """CPU and memory of each process of a run: a process near 1 core is a ceiling."""
    table = Table(
        title=f"{title}: {use.wall_s:.1f}s, {use.messages:,} messages, {os.cpu_count()} CPUs",
        caption="RSS of a label sums its processes (pages they share count more than once)",
    )
    for col in ("process", "CPU s", "cores (CPU s / wall s)", "CPU ms/msg", "processes", "RSS MB at the end"):
        table.add_column(col, justify="left" if col == "process" else "right")
    for label, seconds in use.cpu_s.items():
        cores = seconds / use.wall_s if use.wall_s else 0.0
        table.add_row(
            label,
            f"{seconds:,.1f}",
            f"{cores:.2f}",
            f"{use.ms_per_message(seconds):.3f}",
            str(use.processes.get(label, 0)),
            _mb(use.rss.get(label, 0)),
        )
    cores = use.stack_cpu_s / use.wall_s if use.wall_s else 0.0
    table.add_row(
        "[bold]total of the stack (the bench excluded)[/]",
        f"{use.stack_cpu_s:,.1f}",
        f"{cores:.2f}",
        f"[bold]{use.stack_ms_per_message:.3f}[/]",
        str(sum(n for label, n in use.processes.items() if label != BENCH_LABEL)),
        _mb(use.stack_rss),
    )
    return table


def records_table(runs: Sequence[tuple[str, int, Mapping[str, int]]]) -> Table:
    """Records written to each topic per source message, one column per run (name, messages, records)."""
    table = Table(
        title="Records per source message (sum of the partitions' high watermarks / messages sent)",
        caption="topics without the run's prefix; each cell: records per message (records)",
    )
    table.add_column("topic")
    for name, messages, _ in runs:
        table.add_column(f"{name}\n{messages:,} messages", justify="right")
    topics = sorted({topic for _, _, records in runs for topic in records})
    for topic in topics:
        cells = []
        for _, messages, records in runs:
            if topic not in records:
                cells.append("-")
                continue
            cells.append(f"{per_message(records, messages)[topic]:.2f} ({records[topic]:,})")
        table.add_row(topic, *cells)
    return table


def latency_table(run: Steady) -> Table:
    """Latency percentiles of each kind of posting, joined to send times by correlation id."""
    table = Table(
        title=f"Ingest to posting at {run.rate:g} messages/s, "
        f"{run.workers} worker(s), {run.replicas} replica(s)",
        caption=f"{run.messages:,} messages sent in {run.send_s:.1f}s ({run.achieved_rate:,.0f}/s achieved)",
    )
    for col in ("posting", "messages joined", "p50 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="left" if col == "posting" else "right")
    for lat in run.latencies:
        table.add_row(
            lat.name,
            f"{len(lat.seconds):,}",
            _ms(lat.percentile(50)),
            _ms(lat.percentile(99)),
            _ms(max(lat.seconds, default=math.nan)),
        )
    return table


def latency_notes(run: Steady) -> list[str]:
    """Say whether the run was a steady state: latency that grows with send time means a queue builds."""
    full = run.latencies[-1]
    first, last = full.trend()
    notes = [
        f"fully posted p50 of the first / last fifth of the messages sent: {_ms(first)} / "
        f"{_ms(last)} ms; all {run.messages:,} messages were posted "
        f"{_s(run.watch.posted_s)}s after the first was sent"
    ]
    if queue_grew(first, last):
        sustained = run.messages / run.watch.posted_s if run.watch.posted_s else 0.0
        notes.append(
            f"[yellow]latency grew through the run: the stack did not keep up with {run.rate:g} messages/s "
            f"(it averaged {sustained:,.0f}/s end to end): these are queueing delays, not a steady state[/]"
        )
    return notes


def search_table(search: RateSearch) -> Table:
    """Each step of the rate search, fully-posted latencies and verdict."""
    top = search.highest_passing
    table = Table(
        title=f"Rate search: p99 ingest to fully posted < {search.limit_s:g}s, {search.step_s:g}s per step, "
        f"{search.workers} worker(s), {search.replicas} replica(s)",
        caption=f"highest passing rate: {f'{top:g} messages/s' if top is not None else 'none'}",
    )
    for col in ("rate /s", "messages", "joined", "p50 ms", "p99 ms", "max ms", "lag 0 after s", "verdict"):
        table.add_column(col, justify="left" if col == "verdict" else "right")
    for step in search.steps:
        table.add_row(
            f"{step.rate:g}",
            f"{step.messages:,}",
            f"{step.joined:,}",
            _ms(step.p50_s),
            _ms(step.p99_s),
            _ms(step.max_s),
            _s(step.tail_s),
            f"{'[green]passed[/]' if step.passed else '[red]failed[/]'}: {step.reason}",
        )
    return table


@dataclass(frozen=True, slots=True)
class Target:
    """One target of issue 12, the value measured and whether it was met (None: not measured)."""

    name: str
    goal: str
    measured: str
    met: bool | None


def evaluate_targets(
    drain_rate: float | None,
    drain_run: str,
    p99_s: float | None,
    p99_rate: float | None,
    cpu_ms: float | None,
    cpu_run: str,
) -> list[Target]:
    """The three targets against the values measured (None: not measured)."""
    out = [
        Target(
            "drain end to end",
            f">= {TARGET_DRAIN_RATE:,.0f} messages/s",
            f"{drain_rate:,.0f} messages/s ({drain_run})" if drain_rate is not None else "not measured",
            drain_rate >= TARGET_DRAIN_RATE if drain_rate is not None else None,
        )
    ]
    if p99_s is None or p99_rate is None:
        out.append(
            Target(
                "p99 ingest to posted", f"< {TARGET_P99_S:g} s at {TARGET_P99_RATE:g}/s", "not measured", None
            )
        )
    elif p99_rate != TARGET_P99_RATE:
        out.append(
            Target(
                "p99 ingest to posted",
                f"< {TARGET_P99_S:g} s at {TARGET_P99_RATE:g}/s",
                f"{p99_s:.2f} s at {p99_rate:g}/s (another rate: not judged)",
                None,
            )
        )
    else:
        out.append(
            Target(
                "p99 ingest to posted",
                f"< {TARGET_P99_S:g} s at {TARGET_P99_RATE:g}/s",
                f"{p99_s:.2f} s",
                p99_s < TARGET_P99_S,
            )
        )
    out.append(
        Target(
            "CPU per message, whole stack",
            f"<= {TARGET_CPU_MS:g} ms",
            f"{cpu_ms:.2f} ms ({cpu_run})" if cpu_ms is not None else "not measured",
            cpu_ms <= TARGET_CPU_MS if cpu_ms is not None else None,
        )
    )
    return out


def targets(drains: Sequence[Drain], latency: Steady | None) -> list[Target]:
    """The targets from the runs: the fastest complete drain, the steady run's p99, the leanest drain."""
    complete = [run for run in drains if run.watch.balanced]
    fastest = max(complete, key=lambda run: run.rate, default=None)
    lean = min(
        (run for run in complete if run.usage is not None),
        key=lambda run: run.usage.stack_ms_per_message if run.usage else math.inf,
        default=None,
    )
    p99: float | None = None
    if latency is not None and latency.watch.balanced and latency.latencies[-1].samples:
        p99 = latency.latencies[-1].percentile(99)
    return evaluate_targets(
        fastest.rate if fastest else None,
        fastest.name if fastest else "",
        p99,
        latency.rate if latency is not None else None,
        lean.usage.stack_ms_per_message if lean is not None and lean.usage is not None else None,
        lean.name if lean else "",
    )


def targets_table(rows: Sequence[Target]) -> Table:
    table = Table(title="Targets (issue 12)")
    for col in ("target", "goal", "measured", ""):
        table.add_column(col)
    for row in rows:
        verdict = {True: "[green]met[/]", False: "[red]missed[/]", None: "[yellow]not measured[/]"}[row.met]
        table.add_row(row.name, row.goal, row.measured, verdict)
    return table


def targets_line(rows: Sequence[Target]) -> str:
    """The targets on one line, e.g. for a log: name measured (met|missed|-); ..."""
    word = {True: "met", False: "MISSED", None: "not measured"}
    return "targets: " + "; ".join(f"{row.name} {row.goal}: {row.measured} ({word[row.met]})" for row in rows)


# -- main -------------------------------------------------------------------------------------------------
def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("counts must be positive integers")
    return values


_replicas = _counts  # the name the option's parser had


def _rates(text: str) -> list[float]:
    try:
        values = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of rates: {text!r}") from None
    if min(values, default=0.0) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive (an empty list skips the search: use '')")
    return values


# The options whose default depends on --quick.
DEFAULTS: dict[str, object] = {
    "messages": 100_000,
    "workers": [1, 2],
    "steady_s": 300.0,
    "rate_search": [100.0, 200.0, 300.0, 500.0, 800.0, 1000.0],
    "search_s": 60.0,
    "search_bisect": 1,
    "search_warmup_s": 5.0,
}
QUICK_DEFAULTS: dict[str, object] = {
    "messages": QUICK_MESSAGES,
    "workers": [1],
    "steady_s": QUICK_STEADY_S,
    "rate_search": list(QUICK_RATE_SEARCH),
    "search_s": QUICK_SEARCH_S,
    "search_bisect": 0,
    "search_warmup_s": QUICK_SEARCH_WARMUP_S,
}


def resolve_defaults(args: argparse.Namespace) -> None:
    """Give every option left unset its default, the quick one under --quick; options given stay."""
    defaults = QUICK_DEFAULTS if args.quick else DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, list(value) if isinstance(value, list) else value)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.surge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--messages", type=int, help="backlog size (whole encounters, about); default 100,000, quick 1,000"
    )
    parser.add_argument(
        "--workers",
        type=_counts,
        help="Faust workers of the drains, e.g. 1,2; default 1,2, quick 1 (2 do not fit in its 3 minutes)",
    )
    parser.add_argument(
        "--replicas", type=_counts, default=[1], help="transform replicas of the drains, e.g. 1,2 (1)"
    )
    parser.add_argument(
        "--rate", type=float, default=TARGET_P99_RATE, help="messages/s of the steady run (300)"
    )
    parser.add_argument("--steady-s", type=float, help="length of the steady run; default 300, quick 5")
    parser.add_argument(
        "--steady-workers",
        type=int,
        default=1,
        help="Faust workers of the steady run and the rate search (1)",
    )
    parser.add_argument(
        "--rate-search",
        type=lambda text: _rates(text) if text.strip() else [],
        help="rates (messages/s) the search tries in increasing order ('' skips the search); "
        "default 100,200,300,500,800,1000, quick 100,300",
    )
    parser.add_argument("--search-s", type=float, help="length of each search step; default 60, quick 4")
    parser.add_argument(
        "--search-bisect", type=int, help="steps between the last passing and first failing rate; 1, quick 0"
    )
    parser.add_argument(
        "--search-warmup-s",
        type=float,
        help="seconds at the lowest rate before the search's first step, not judged; default 5, quick 2",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every column in under 3 minutes on 2 cores (options given still apply): small runs, baselines "
        "on the first drain only, 1 worker (--workers 1,2 adds about a minute, past 3 minutes)",
    )
    parser.add_argument("--seed", type=int, default=11, help="seed of the synthetic days")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="give up on a phase after this long")
    parser.add_argument("--baseline-consumer", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.baseline_consumer is not None:
        raise SystemExit(_baseline_consumer(args.baseline_consumer))
    resolve_defaults(args)
    # Piped output gets a width the tables fit in, not rich's 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
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
    overrides: dict[str, object] = {}
    if args.quick:
        quick = {
            "consumer_session_timeout_s": QUICK_SESSION_TIMEOUT_S,
            "stop_timeout_s": QUICK_STOP_TIMEOUT_S,
        }
        overrides |= {
            name: value for name, value in quick.items() if f"HCSYNC_{name.upper()}" not in os.environ
        }
    s = bench_settings(1, 1, overrides)
    console.print(
        f"[bold]hcsync surge bench[/]: {os.cpu_count()} CPUs; {s.topic_partitions} partitions, transform "
        f"batches of {s.transform_batch_size} within {s.transform_batch_window_s:g}s, dispatch batches of "
        f"{s.dispatch_batch_size} within {s.dispatch_batch_window_s:g}s, consumer session timeout "
        f"{s.consumer_session_timeout_s:g}s"
    )
    with console.status(f"generating a synthetic day of about {args.messages:,} messages ..."):
        work = workload(args.messages, args.seed)
    console.print(
        f"backlog: {len(work.messages):,} messages, {work.day.expected.encounters:,} encounters, "
        f"{work.day.expected.charge_lines:,} charge lines"
    )
    drains: list[Drain] = []
    latency: Steady | None = None
    search: RateSearch | None = None
    plan = [(workers, replicas) for workers in args.workers for replicas in args.replicas]
    for n, (workers, replicas) in enumerate(plan, 1):
        with _phase(console, f"the drain with {workers} worker(s), {replicas} replica(s)"):
            baselines = n == 1 or not args.quick
            drains.append(drain(work, workers, replicas, n, args.timeout_s, console, baselines, overrides))
            console.print(stage_table(drains[-1]))
            if drains[-1].usage is not None:
                console.print(usage_table(f"CPU while draining, {drains[-1].name}", drains[-1].usage))
    steady_replicas = max(args.replicas)
    with _phase(console, "the steady run"):
        latency = steady(
            args.rate,
            args.steady_s,
            args.steady_workers,
            steady_replicas,
            args.seed + 1,
            args.timeout_s,
            console,
            overrides,
        )
        if latency.usage is not None:
            console.print(usage_table(f"CPU at {latency.rate:g} messages/s", latency.usage))
    if args.rate_search:
        with _phase(console, "the rate search"):
            search = rate_search(
                args.rate_search,
                args.search_s,
                args.search_bisect,
                args.steady_workers,
                steady_replicas,
                args.seed + 2,
                console,
                overrides,
                args.search_warmup_s,
            )
            if search.usage is not None:
                console.print(usage_table("CPU during the rate search", search.usage))
    console.rule("results")
    if drains:
        console.print(drain_table(drains))
    record_runs: list[tuple[str, int, Mapping[str, int]]] = [
        (f"drain, {run.name}", run.messages, run.records) for run in drains if run.records
    ]
    if latency is not None and latency.records:
        record_runs.append((f"steady {latency.rate:g}/s", latency.messages, latency.records))
    if search is not None and search.records:
        record_runs.append(("rate search", search.sent, search.records))
    if record_runs:
        console.print(records_table(record_runs))
    if latency is not None:
        console.print(latency_table(latency))
        for note in latency_notes(latency):
            console.print(note)
        if latency.unmatched_rows:
            console.print(f"[red]{latency.unmatched_rows} posted correlation ids matched no message sent[/]")
    if search is not None:
        console.print(search_table(search))
    rows = targets(drains, latency)
    console.print(targets_table(rows))
    console.print(targets_line(rows))
    results: list[Drain | Steady | RateSearch] = [
        *drains,
        *([latency] if latency is not None else []),
        *([search] if search is not None else []),
    ]
    for result in results:
        if isinstance(result, RateSearch):
            foreign = result.foreign_stacks
        else:
            foreign = result.watch.foreign_stacks
            quarantined = result.watch.counters.get("quarantined", 0)
            if quarantined:
                console.print(f"[yellow]{result.run_dir.name}: {quarantined} message(s) quarantined[/]")
        if foreign:
            console.print(
                f"[yellow]{result.run_dir.name}: another hcsync stack ran on this machine meanwhile "
                f"({foreign} broker/worker processes): its figures are skewed[/]"
            )
    summary = {
        "targets": [asdict(row) for row in rows],
        "highest_rate_p99_under_limit": search.highest_passing if search is not None else None,
        "runs": [str(result.run_dir) for result in results],
        "args": {name: value for name, value in vars(args).items() if name != "baseline_consumer"},
    }
    for result in results:
        save(result, summary)
    console.print("figures of each run (and this summary): surge.json in")
    for result in results:
        console.print(f"  {result.run_dir}")
    return len(drains) == len(plan) and latency is not None and (search is not None or not args.rate_search)


if __name__ == "__main__":
    main()
