"""The worker's side of scaling: pin, autoscale or keep the pool, and report it.

Each tick (HCSYNC_SCALE_CHECK_INTERVAL_S) the controller reads what was asked for in Redis:

- a pinned count (`hcsync scale transform --replicas N`): the pool runs N, within the bounds, and the
  autoscaler stands aside until someone says `--auto`;
- "auto" (`hcsync scale transform --auto`), or nothing asked and HCSYNC_TRANSFORM_AUTOSCALE on: the
  autoscaler (actors.autoscale) sizes the pool from this worker's raw-topic lag and the pool's saturation,
  and each decision goes to the scaling history with its reason;
- nothing asked and autoscaling off: the pool keeps its size.

It then publishes what it runs (replicas, nodes, batches in flight, lag, saturation, mode) for
`hcsync status`. A Redis outage leaves the pool as it is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping

import faust
from faust.types import TP
from redis.exceptions import RedisError

from actors.autoscale import AutoscalePolicy, Autoscaler
from actors.pool import TransformPool
from actors.scaling import AUTO, PoolReport, ScaleSignals, Wanted

log = logging.getLogger(__name__)


class IngestOffsets:
    """Where the ingest agent stands in each raw partition it owns, for the autoscaler's lag signal.

    The lag is the partition's end (the high watermark of the last fetch, from Faust's monitor) minus the
    next record not yet acknowledged. Reading ahead does not hide a backlog: records taken into the
    pipeline but not routed still count. Faust's own committed offsets would lag by a commit interval,
    and its read offsets run ahead of the work.
    """

    def __init__(self) -> None:
        self._first: dict[TP, int] = {}  # first record taken since the partition was assigned
        self._done: dict[TP, int] = {}  # the record after the last one acknowledged

    def taken(self, tp: TP, offset: int) -> None:
        self._first.setdefault(tp, offset)

    def acked(self, tp: TP, offset: int) -> None:
        self._done[tp] = max(offset + 1, self._done.get(tp, 0))

    def forget(self, tps: Iterable[TP]) -> None:
        """Drop partitions this worker no longer owns (a rebalance)."""
        for tp in tps:
            self._first.pop(tp, None)
            self._done.pop(tp, None)

    def lag(self, ends: Mapping[TP, int], owned: Iterable[TP]) -> int:
        """Records of the ``owned`` partitions up to ``ends`` that are not yet acknowledged."""
        total = 0
        for tp in owned:
            position = self._done.get(tp, self._first.get(tp))
            end = ends.get(tp)
            if position is not None and end is not None:
                total += max(0, end - position)
        return total


def assigned_lag(app: faust.App, topic: str, offsets: IngestOffsets) -> int:
    """This worker's lag on ``topic``: records of its partitions not yet acknowledged by the ingest."""
    owned = [tp for tp in app.consumer.assignment() if tp.topic == topic]
    return offsets.lag(app.monitor.tp_end_offsets, owned)


class PoolController:
    """Resize one worker's transform pool (pinned, autoscaled or fixed) and report it."""

    def __init__(
        self,
        pool: TransformPool,
        signals: ScaleSignals,
        worker: str,
        *,
        policy: AutoscalePolicy,
        autoscale: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._signals = signals
        self._worker = worker
        self._policy = policy
        self._autoscale_by_default = autoscale
        self._autoscaler = Autoscaler(policy)
        self._clock = clock
        self._lag: Callable[[], int] = lambda: 0
        self._pending: Callable[[], int] = lambda: 0

    def watch(self, *, lag: Callable[[], int], pending: Callable[[], int]) -> None:
        """Give the controller its signals: this worker's raw-topic lag and the ingest pipeline's depth."""
        self._lag = lag
        self._pending = pending

    def target(self, desired: int | None) -> int:
        """Return the replicas to run for a pinned count: within bounds; None keeps the current size."""
        wanted = self._pool.replicas if desired is None else desired
        return self._policy.clamp(wanted)

    def mode(self, wanted: Wanted) -> str:
        if isinstance(wanted, int):
            return "manual"
        if wanted == AUTO or self._autoscale_by_default:
            return "auto"
        return "fixed"

    async def tick(self) -> None:
        """Apply what was asked for (or what the autoscaler decides) once, and publish the pool's state."""
        try:
            wanted = await asyncio.to_thread(self._signals.desired)
        except RedisError as exc:
            log.warning(
                "scaling signal not read (%s); the pool stays at %d", type(exc).__name__, self._pool.replicas
            )
            return
        now = self._clock()
        lag, saturation = self._lag(), self._pool.saturation()
        mode = self.mode(wanted)
        if isinstance(wanted, int):
            target = self.target(wanted)
            if target != self._pool.replicas:
                await self._pool.resize(target)
                self._autoscaler.resized(self._clock())
        elif mode == "auto":
            decision = self._autoscaler.observe(
                now, replicas=self._pool.replicas, lag=lag, saturation=saturation
            )
            if decision is not None:
                before, after = await self._pool.resize(decision.replicas)
                self._autoscaler.resized(self._clock())
                log.info("autoscaled the transform pool from %d to %d: %s", before, after, decision.reason)
                try:
                    await asyncio.to_thread(
                        self._signals.record, after, by=f"autoscaler {self._worker}", reason=decision.reason
                    )
                except RedisError as exc:
                    log.warning("autoscaling decision not recorded (%s)", type(exc).__name__)
        report = PoolReport(
            worker=self._worker,
            replicas=self._pool.replicas,
            desired=self.target(wanted if isinstance(wanted, int) else None),
            in_flight=self._pool.in_flight,
            nodes=self._pool.nodes,
            at=dt.datetime.now(dt.UTC).isoformat(),
            mode=mode,
            lag=lag,
            saturation=round(saturation, 3),
            pending_batches=self._pending(),
        )
        try:
            await asyncio.to_thread(self._signals.report, report)
        except RedisError as exc:
            log.warning("pool state not reported (%s)", type(exc).__name__)


__all__ = ["IngestOffsets", "PoolController", "assigned_lag"]
