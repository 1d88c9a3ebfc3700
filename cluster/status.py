"""`hcsync status`: what an SRE watches: each component's state, restarts and last exit; the message store;
replicas, lag per topic and partition, throughput and error rate.

Each part is read on its own: when Redis or the broker is down (which is when an SRE asks), the parts that
need it are reported unavailable with the reason, and the rest is still shown.

Lag is the consumer group's distance from each partition's end: the high watermark (from fetch responses,
see foundation.kafka) minus the offset the Faust workers committed. Throughput and error rate are measured
over a short sample of the live counters: messages the transform pool finished per second, and the share
of them quarantined.

The bottleneck line names the stage that limits throughput now (:func:`name_bottleneck`): the lag of each
stage's input topic is read twice, at the start and the end of the sample, for its trend; with it go the
pools' saturation and holds (from the workers' reports), the CPU of each supervised component's process
(pids from supervisor.json) and the host's CPU over the sample.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from actors.scaling import PoolReport, ScaleSignals, Wanted
from adapters.inbound.inbox import read_inbox_stats
from adapters.inbound.store import MessageStore, default_message_store_url
from adapters.mllp.run import read_gateway_stats
from canonical.errors import StackError
from cluster.supervision import ComponentStatus, SupervisorStatus, read_status
from foundation.kafka import broker_unreachable, committed_offsets, high_watermarks, redis_unreachable
from foundation.processes import HostCpu
from foundation.settings import Settings
from foundation.sql import sqlite_path
from foundation.topics import STAGES, WORKER_INPUTS, TopicNames
from streams.stats import Stats

# The topics the Faust workers consume (routed.hl7v2 is for downstream consumers, outcomes.ingest for the
# forwarder).
CONSUMED = WORKER_INPUTS


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far the workers are behind on one partition."""

    topic: str
    partition: int
    end_offset: int
    committed: int | None
    lag: int


@dataclass(frozen=True, slots=True)
class StageLag:
    """One stage's input: records behind at the start and at the end of the sample."""

    stage: str
    topic: str
    before: int
    after: int


@dataclass(frozen=True, slots=True)
class Bottleneck:
    """The stage that limits throughput now, and what shows it."""

    stage: str  # "transform pool", "ingest", "encounters", ..., "none (idle)", "unknown"
    detail: str

    def line(self) -> str:
        return f"bottleneck: {self.stage}" + (f" ({self.detail})" if self.detail else "")


# A component whose process uses at least this share of one core counts as busy.
BUSY_CORE_SHARE = 0.8
# The host counts as saturated from this share of all its cores on.
HOST_SATURATED = 0.9
# The processes that serve each stage besides the workers (whose one event loop runs every stage).
_HELPERS = {"billing dispatch": "billing", "ERP dispatch": "erp"}


def _core(share: float) -> str:
    return f"{share:.0%} of a core"


def name_bottleneck(
    stages: Sequence[StageLag],
    seconds: float,
    *,
    pools: Sequence[PoolReport] = (),
    process_cpu: Mapping[str, float] | None = None,
    host_cpu: float | None = None,
    large: int = 2000,
    saturation: float = 0.7,
) -> Bottleneck:
    """Name the stage that limits throughput, from each stage's lag at two moments ``seconds`` apart
    (0: one reading only, no trend).

    ``stages`` go most upstream first; ``process_cpu`` is each component's share of one core over the
    sample; ``large`` is a lag that counts as a backlog even when it shrinks, ``saturation`` the share of
    time at its in-flight bound from which a pool counts as the bottleneck.

    The rule: the most upstream stage that is behind (its lag grew over the sample, or is at least
    ``large``) and whose consumer is busy (the workers' processes or the stage's adapter at least
    ``BUSY_CORE_SHARE`` of a core, or for the ingest the pool at its bound); when no stage that is behind
    has a busy consumer, the most upstream one that is behind. At the ingest, a saturated pool names the
    transform pool itself. Every stage at lag 0: "none (idle)".
    """
    if not stages:
        return Bottleneck("unknown", "the consumer lag could not be read")
    if all(s.after == 0 for s in stages):
        return Bottleneck("none (idle)", "every stage at lag 0")
    behind = [s for s in stages if s.after > 0 and (s.after > s.before or s.after >= large)]
    if not behind:
        waiting = ", ".join(f"{s.stage} {s.after:,}" for s in stages if s.after)
        return Bottleneck("none (keeping up)", f"small lags, not growing: {waiting}")
    cpu = dict(process_cpu or {})
    workers = [share for name, share in cpu.items() if name.startswith("worker")]
    worker_cpu = max(workers) if workers else None
    pool_share = max((p.saturation for p in pools), default=None)

    def busy(stage: StageLag) -> list[str]:
        why: list[str] = []
        if stage.stage == "ingest" and pool_share is not None and pool_share >= saturation:
            why.append(f"the transform pool at its in-flight bound {pool_share:.0%}")
        if worker_cpu is not None and worker_cpu >= BUSY_CORE_SHARE:
            why.append(f"the worker process at {_core(worker_cpu)}")
        helper = _HELPERS.get(stage.stage)
        if helper is not None and cpu.get(helper, 0.0) >= BUSY_CORE_SHARE:
            why.append(f"the {helper} adapter at {_core(cpu[helper])}")
        return why

    chosen = next((stage for stage in behind if busy(stage)), behind[0])
    reasons = busy(chosen)
    trend = f", {(chosen.after - chosen.before) / seconds:+,.0f}/s" if seconds > 0 else ""
    parts = [f"{chosen.topic} {chosen.after:,} behind{trend}"]
    name = chosen.stage
    if chosen.stage == "ingest":
        if pool_share is not None and pool_share >= saturation:
            name = "transform pool"
        elif pool_share is not None:
            parts.append(f"the pool at its bound only {pool_share:.0%}: routing or the event loop holds it")
        holds = sorted({p.hold for p in pools if p.hold})
        parts.extend(f"autoscaler: {hold}" for hold in holds)
    parts.extend(r for r in reasons if not r.startswith("the transform pool"))
    if not reasons:
        parts.append("no busy consumer seen: it waits on something else, or is stalled")
    if host_cpu is not None and host_cpu >= HOST_SATURATED:
        parts.append(f"the host's CPU {host_cpu:.0%} busy")
    return Bottleneck(name, "; ".join(parts))


def stage_lags(before: Sequence[PartitionLag], after: Sequence[PartitionLag]) -> list[StageLag]:
    """Each stage's lag at the two readings, most upstream first (a topic not read twice is left out)."""

    def by_topic(rows: Sequence[PartitionLag]) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in rows:
            out[row.topic] = out.get(row.topic, 0) + row.lag
        return out

    first, second = by_topic(before), by_topic(after)
    return [
        StageLag(stage, topic, first[topic], second[topic])
        for topic, stage in STAGES.items()
        if topic in first and topic in second
    ]


class _ProcessCpu:
    """Each supervised component's process CPU over the sample, in shares of one core."""

    def __init__(self, components: Sequence[ComponentStatus]) -> None:
        self._procs: dict[str, psutil.Process] = {}
        for component in components:
            if component.pid is None or component.state != "running":
                continue
            try:
                proc = psutil.Process(component.pid)
                proc.cpu_percent(None)  # starts the measurement
            except (psutil.Error, OSError):
                continue
            self._procs[component.name] = proc

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, proc in self._procs.items():
            try:
                out[name] = round(proc.cpu_percent(None) / 100, 3)
            except (psutil.Error, OSError):
                continue
        return out


@dataclass(slots=True)
class Status:
    """The figures `hcsync status` shows."""

    group: str
    pools: list[PoolReport]
    desired: Wanted  # a pinned count, "auto", or None (each worker's HCSYNC_TRANSFORM_AUTOSCALE decides)
    lag: list[PartitionLag]
    sample_s: float
    messages_per_s: float
    events_per_s: float
    postings_per_s: float
    error_rate: float  # quarantined / messages over the sample (0 when nothing moved)
    totals: dict[str, int] = field(default_factory=dict)
    # The supervisor's view of the embedded stack (None: no stack run found, e.g. a deployment).
    supervisor: SupervisorStatus | None = None
    supervisor_stale: bool = False
    # Messages received, pending forwarding, conflicts and outcomes (None: store not readable).
    messages: dict[str, int] | None = None
    # What could not be read, and why.
    problems: list[str] = field(default_factory=list)
    # The stage that limits throughput now (None: not judged).
    bottleneck: Bottleneck | None = None
    # Each running component's process CPU over the sample (share of one core) and the host's (all cores).
    cpu: dict[str, float] = field(default_factory=dict)
    host_cpu_share: float | None = None
    # The MLLP listener's counters as it last wrote them (connections, frames, refusals); None: none written.
    mllp: dict[str, int] | None = None
    # The watched inbox's counters (files taken and rejected, messages stored); None: none written.
    inbox: dict[str, int] | None = None

    @property
    def replicas(self) -> int:
        return sum(pool.replicas for pool in self.pools)

    @property
    def total_lag(self) -> int:
        return sum(row.lag for row in self.lag)

    @property
    def components(self) -> list[ComponentStatus]:
        return [] if self.supervisor is None else self.supervisor.components

    def lag_by_topic(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.lag:
            out[row.topic] = out.get(row.topic, 0) + row.lag
        return out

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["replicas"] = self.replicas
        doc["total_lag"] = self.total_lag
        doc["lag_by_topic"] = self.lag_by_topic()
        return doc


_TOTALS = ("raw_in", "events_out", "quarantined", "charges_posted")


def _rate(after: dict[str, int], before: dict[str, int], *names: str, seconds: float) -> float:
    moved = sum(after.get(name, 0) - before.get(name, 0) for name in names)
    return moved / seconds if seconds > 0 else 0.0


def _run_dir(settings: Settings) -> Path | None:
    if settings.run_dir is not None:
        return settings.run_dir
    latest = settings.home_dir.resolve() / "runs" / "latest"
    return latest if latest.is_dir() else None


def _message_totals(settings: Settings, problems: list[str]) -> dict[str, int] | None:
    try:
        url = default_message_store_url(settings)
    except StackError:
        return None  # no run here, no store configured: nothing to show, nothing wrong
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return None
    try:
        store = MessageStore(url, busy_timeout_s=2.0)
        try:
            return store.totals()
        finally:
            store.close()
    except Exception as exc:
        problems.append(f"message store unavailable ({type(exc).__name__}: {str(exc)[:200]})")
        return None


async def collect_status(settings: Settings, sample_s: float = 2.0) -> Status:
    """Read the components, the message store, the pools, the lag and a sample of the counters."""
    names = TopicNames(settings.topic_prefix)
    group = f"{settings.topic_prefix}{settings.app_id}"
    problems: list[str] = []
    run_dir = _run_dir(settings)
    supervisor = read_status(run_dir) if run_dir is not None else None
    live = supervisor is not None and not supervisor.stale()
    process_cpu = _ProcessCpu(supervisor.components if supervisor is not None and live else [])
    host = HostCpu()
    messages = await asyncio.to_thread(_message_totals, settings, problems)
    client = aioredis.Redis.from_url(settings.redis, socket_timeout=3, socket_connect_timeout=3)
    stats = Stats(client, settings.topic_prefix)
    signals = ScaleSignals.from_url(settings.redis, settings.topic_prefix)
    before: dict[str, int] | None = None
    pools: list[PoolReport] = []
    desired: Wanted = None
    started = time.monotonic()
    ends: dict[TopicPartition, int] = {}
    committed: dict[TopicPartition, int] = {}
    ends2: dict[TopicPartition, int] = {}
    committed2: dict[TopicPartition, int] = {}
    try:
        try:
            before, started = await stats.read(), time.monotonic()
            pools = await asyncio.to_thread(signals.reports)
            desired = await asyncio.to_thread(signals.desired)
        except RedisError as exc:
            problems.append(str(redis_unreachable(settings, exc)))
        try:
            ends = await high_watermarks(settings, [names[t] for t in CONSUMED])
            committed = await committed_offsets(settings, group, ends)
        except (KafkaError, StackError, OSError) as exc:
            problems.append(str(broker_unreachable(settings, exc)))
        after: dict[str, int] = {}
        if before is not None or ends:
            await asyncio.sleep(max(0.0, sample_s - (time.monotonic() - started)))
        if before is not None:
            try:
                after = await stats.read()
            except RedisError as exc:
                problems.append(str(redis_unreachable(settings, exc)))
                before = None
        if ends:
            try:  # the lag again, for its trend (the bottleneck line)
                ends2 = await high_watermarks(settings, [names[t] for t in CONSUMED])
                committed2 = await committed_offsets(settings, group, ends2)
            except (KafkaError, StackError, OSError):
                ends2 = {}  # the first reading stands; the bottleneck goes without a trend
    finally:
        await client.aclose()
    elapsed = time.monotonic() - started
    cpu, host_share = process_cpu.read(), host()
    logical = {names[t]: t for t in CONSUMED}

    def lag_rows(ends: dict[TopicPartition, int], committed: dict[TopicPartition, int]) -> list[PartitionLag]:
        return [
            PartitionLag(
                topic=logical[tp.topic],
                partition=tp.partition,
                end_offset=end,
                committed=committed.get(tp),
                lag=max(0, end - committed.get(tp, 0)),
            )
            for tp, end in sorted(ends.items(), key=lambda item: (item[0].topic, item[0].partition))
        ]

    lag = lag_rows(ends, committed)
    later = lag_rows(ends2, committed2) if ends2 else lag
    bottleneck = name_bottleneck(
        stage_lags(lag, later),
        elapsed if ends2 else 0.0,
        pools=pools,
        process_cpu=cpu,
        host_cpu=host_share,
        large=settings.autoscale_lag_per_replica,
        saturation=settings.autoscale_saturation,
    )
    # Rates only from a complete sample of the counters (both reads answered).
    base, moved = (before, after) if before is not None and after else ({}, {})
    postings = ("charges_posted", "journal_lines_accepted", "inventory_movements")
    messages_moved = moved.get("raw_in", 0) - base.get("raw_in", 0)
    quarantined = moved.get("quarantined", 0) - base.get("quarantined", 0)
    return Status(
        group=group,
        pools=pools,
        desired=desired,
        lag=lag,
        sample_s=round(elapsed, 3),
        messages_per_s=_rate(moved, base, "raw_in", seconds=elapsed),
        events_per_s=_rate(moved, base, "events_out", seconds=elapsed),
        postings_per_s=_rate(moved, base, *postings, seconds=elapsed),
        error_rate=quarantined / messages_moved if messages_moved > 0 else 0.0,
        totals={
            name: moved[name] for name in ("raw_in", "events_out", "quarantined", "charges_posted") if moved
        },
        supervisor=supervisor,
        supervisor_stale=supervisor is not None and supervisor.stale(),
        messages=messages,
        problems=problems,
        bottleneck=bottleneck,
        cpu=cpu,
        host_cpu_share=round(host_share, 3),
        mllp=_gateway_counters(run_dir),
        inbox=_inbox_counters(run_dir),
    )


def _inbox_counters(run_dir: Path | None) -> dict[str, int] | None:
    """The inbox's counters from its stats file (integers only), or None when it wrote none."""
    data = read_inbox_stats(run_dir) if run_dir is not None else None
    if data is None:
        return None
    return {name: value for name, value in data.items() if isinstance(value, int)}


def _gateway_counters(run_dir: Path | None) -> dict[str, int] | None:
    """The MLLP listener's counters from its stats file (integers only), or None when it wrote none."""
    data = read_gateway_stats(run_dir) if run_dir is not None else None
    if data is None:
        return None
    return {name: value for name, value in data.items() if isinstance(value, int)}


__all__ = [
    "CONSUMED",
    "Bottleneck",
    "PartitionLag",
    "StageLag",
    "Status",
    "collect_status",
    "name_bottleneck",
    "stage_lags",
]
