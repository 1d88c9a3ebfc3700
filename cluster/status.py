"""`hcsync status`: what an SRE watches in a surge: replicas, lag per topic and partition, throughput and
error rate.

Lag is the consumer group's distance from each partition's end: the high watermark (from fetch responses,
see foundation.kafka) minus the offset the Faust workers committed. Throughput and error rate are measured
over a short sample of the live counters: messages the transform pool finished per second, and the share
of them quarantined.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from actors.scaling import PoolReport, ScaleSignals, Wanted
from foundation.kafka import broker_unreachable, committed_offsets, high_watermarks, redis_unreachable
from foundation.settings import Settings
from foundation.topics import ALL, TopicNames
from streams.stats import Stats

# The topics the Faust workers consume (routed.hl7v2 is for downstream consumers, not hcsync's own).
CONSUMED = tuple(topic for topic in ALL if topic != "routed.hl7v2")


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

    @property
    def replicas(self) -> int:
        return sum(pool.replicas for pool in self.pools)

    @property
    def total_lag(self) -> int:
        return sum(row.lag for row in self.lag)

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


def _rate(after: dict[str, int], before: dict[str, int], *names: str, seconds: float) -> float:
    moved = sum(after.get(name, 0) - before.get(name, 0) for name in names)
    return moved / seconds if seconds > 0 else 0.0


async def collect_status(settings: Settings, sample_s: float = 2.0) -> Status:
    """Read the pools, the lag and a sample of the counters of a running deployment."""
    names = TopicNames(settings.topic_prefix)
    group = f"{settings.topic_prefix}{settings.app_id}"
    client = aioredis.Redis.from_url(settings.redis)
    stats = Stats(client, settings.topic_prefix)
    signals = ScaleSignals.from_url(settings.redis, settings.topic_prefix)
    try:
        before, started = await stats.read(), time.monotonic()
        pools = await asyncio.to_thread(signals.reports)
        desired = await asyncio.to_thread(signals.desired)
        try:
            ends = await high_watermarks(settings, [names[t] for t in CONSUMED])
            committed = await committed_offsets(settings, group, ends)
        except KafkaError as exc:
            raise broker_unreachable(settings, exc) from None
        await asyncio.sleep(max(0.0, sample_s - (time.monotonic() - started)))
        after, elapsed = await stats.read(), time.monotonic() - started
    except RedisError as exc:
        raise redis_unreachable(settings, exc) from None
    finally:
        await client.aclose()
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
    messages = after.get("raw_in", 0) - before.get("raw_in", 0)
    quarantined = after.get("quarantined", 0) - before.get("quarantined", 0)
    return Status(
        group=group,
        pools=pools,
        desired=desired,
        lag=lag,
        sample_s=round(elapsed, 3),
        messages_per_s=_rate(after, before, "raw_in", seconds=elapsed),
        events_per_s=_rate(after, before, "events_out", seconds=elapsed),
        postings_per_s=_rate(
            after, before, "charges_posted", "journal_lines_accepted", "inventory_movements", seconds=elapsed
        ),
        error_rate=quarantined / messages if messages > 0 else 0.0,
        totals={
            name: after.get(name, 0) for name in ("raw_in", "events_out", "quarantined", "charges_posted")
        },
    )


__all__ = ["CONSUMED", "PartitionLag", "Status", "collect_status"]
