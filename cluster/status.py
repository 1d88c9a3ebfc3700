"""`hcsync status`: what an SRE watches: each component's state, restarts and last exit; the message store;
replicas, lag per topic and partition, throughput and error rate.

Each part is read on its own: when Redis or the broker is down (which is when an SRE asks), the parts that
need it are reported unavailable with the reason, and the rest is still shown.

Lag is the consumer group's distance from each partition's end: the high watermark (from fetch responses,
see foundation.kafka) minus the offset the Faust workers committed. Throughput and error rate are measured
over a short sample of the live counters: messages the transform pool finished per second, and the share
of them quarantined.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from actors.scaling import PoolReport, ScaleSignals, Wanted
from adapters.inbound.store import MessageStore, default_message_store_url
from canonical.errors import StackError
from cluster.supervision import ComponentStatus, SupervisorStatus, read_status
from foundation.kafka import broker_unreachable, committed_offsets, high_watermarks, redis_unreachable
from foundation.settings import Settings
from foundation.sql import sqlite_path
from foundation.topics import WORKER_INPUTS, TopicNames
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
        if before is not None:
            await asyncio.sleep(max(0.0, sample_s - (time.monotonic() - started)))
            try:
                after = await stats.read()
            except RedisError as exc:
                problems.append(str(redis_unreachable(settings, exc)))
                before = None
    finally:
        await client.aclose()
    elapsed = time.monotonic() - started
    logical = {names[t]: t for t in CONSUMED}
    lag = [
        PartitionLag(
            topic=logical[tp.topic],
            partition=tp.partition,
            end_offset=end,
            committed=committed.get(tp),
            lag=max(0, end - committed.get(tp, 0)),
        )
        for tp, end in sorted(ends.items(), key=lambda item: (item[0].topic, item[0].partition))
    ]
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
    )


__all__ = ["CONSUMED", "PartitionLag", "Status", "collect_status"]
