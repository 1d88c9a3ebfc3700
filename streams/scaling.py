"""The worker's side of scaling: pin, autoscale or keep the pool, and report it.

Each tick (HCSYNC_SCALE_CHECK_INTERVAL_S) the controller reads what was asked for in Redis:

- a pinned count (`hcsync scale transform --replicas N`): the pool runs N, within the bounds, and the
  autoscaler stands aside until someone says `--auto`;
- "auto" (`hcsync scale transform --auto`), or nothing asked and HCSYNC_TRANSFORM_AUTOSCALE on: the
  autoscaler (actors.autoscale) sizes the pool from this worker's raw-topic lag and the pool's saturation,
  and each decision goes to the scaling history with its reason. It does not grow the pool when the pool
  is not the bottleneck: the host's CPU saturated (psutil, every process on the host, the Ray actors
  here among them), finished batches waiting for the routing stage (the ingest pipeline's depth less the
  batches in flight on the pool), or the lag downstream of the pool (the stages' lag from Faust's monitor:
  fetched high watermark less committed offset, on this worker's partitions). A hold goes to the history
  too, with the bottleneck it names, when its cause or bottleneck changes;
- nothing asked and autoscaling off: the pool keeps its size.

It then publishes what it runs (replicas, nodes, batches in flight, lag, saturation, mode, the host's CPU,
the stages' lag, the hold) for `hcsync status`. A Redis outage leaves the pool as it is.
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

from actors.autoscale import AutoscalePolicy, Autoscaler, Hold
from actors.pool import TransformPool
from actors.scaling import AUTO, PoolReport, ScaleSignals, Wanted
from foundation.processes import HostCpu
from foundation.topics import RAW_HL7V2, STAGES, TopicNames

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


def stage_lag(app: faust.App, topics: TopicNames) -> dict[str, int]:
    """Records behind on each stage after the pool, on this worker's partitions, most upstream first.

    The partition's end (the high watermark of the last fetch) less the offset last committed: Faust
    commits every few seconds, so a stage that keeps up shows a small lag, never a lasting one. A
    partition nothing was committed on since its assignment is not counted (unknown, not behind).
    """
    ends = app.monitor.tp_end_offsets
    committed = app.monitor.tp_committed_offsets
    owned = app.consumer.assignment()
    out: dict[str, int] = {}
    for logical, stage in STAGES.items():
        if logical == RAW_HL7V2:
            continue  # the pool's own input: the controller's lag signal
        total = 0
        for tp in owned:
            if tp.topic == topics[logical] and tp in ends and tp in committed:
                total += max(0, ends[tp] - committed[tp])
        out[stage] = total
    return out


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
        topics: TopicNames | None = None,
        cpu: Callable[[], float] | None = None,
    ) -> None:
        self._pool = pool
        self._signals = signals
        self._worker = worker
        self._policy = policy
        self._autoscale_by_default = autoscale
        self._autoscaler = Autoscaler(policy)
        self._clock = clock
        self._topics = topics or TopicNames()
        self._cpu: Callable[[], float] = cpu or HostCpu()
        self._lag: Callable[[], int] = lambda: 0
        self._pending: Callable[[], int] = lambda: 0
        self._app: faust.App | None = None
        self._recorded_hold: tuple[str, str] | None = None
        self._hold_at: float | None = None  # when the last hold was recorded

    def watch(
        self, *, lag: Callable[[], int], pending: Callable[[], int], app: faust.App | None = None
    ) -> None:
        """Give the controller its signals: this worker's raw-topic lag and the ingest pipeline's depth.

        With ``app``, the controller also reads the lag of the stages after the pool from Faust's monitor
        (:func:`stage_lag`); without it the autoscaler cannot tell a downstream bottleneck.
        """
        self._lag = lag
        self._pending = pending
        self._app = app

    def _stage_lag(self) -> dict[str, int]:
        if self._app is None:
            return {}
        try:
            return stage_lag(self._app, self._topics)
        except Exception as exc:  # before the consumer is started, or mid-rebalance: no signal this tick
            log.debug("stage lag not read (%s)", type(exc).__name__)
            return {}

    def _routing_share(self, pending: int) -> float:
        """Share of the ingest pipeline's depth held by batches the pool has finished and not yet routed.

        The pipeline (streams/app.py) holds up to 2 x the pool's in-flight bound batches; those not in
        flight on the pool have been transformed and wait for the routing stage (or, when the pool is at
        its bound, for a slot: the policy looks at this share only when the pool is not).
        """
        depth = 2 * max(1, self._pool.capacity)
        return min(1.0, max(0, pending - self._pool.in_flight) / depth)

    async def _record(self, replicas: int, reason: str, what: str) -> None:
        try:
            await asyncio.to_thread(
                self._signals.record, replicas, by=f"autoscaler {self._worker}", reason=reason
            )
        except RedisError as exc:
            log.warning("autoscaling %s not recorded (%s)", what, type(exc).__name__)

    async def _note_hold(self, hold: Hold | None, now: float) -> None:
        """Record a hold when its cause or bottleneck changes (not every tick: its figures always move).

        At most one hold per window: a signal that hovers around its threshold would otherwise flip the
        named bottleneck every tick. A change held back is recorded at the next tick past the window.
        """
        if hold is None:
            self._recorded_hold = None
            return
        if hold.key == self._recorded_hold:
            return
        if self._hold_at is not None and now - self._hold_at < self._policy.window_s:
            return
        self._recorded_hold, self._hold_at = hold.key, now
        log.info("the transform pool stays at %d: %s", self._pool.replicas, hold.reason)
        await self._record(self._pool.replicas, hold.reason, "hold")

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
        lag, saturation, cpu = self._lag(), self._pool.saturation(), self._cpu()
        pending, stages = self._pending(), self._stage_lag()
        mode = self.mode(wanted)
        hold: Hold | None = None
        if isinstance(wanted, int):
            target = self.target(wanted)
            if target != self._pool.replicas:
                await self._pool.resize(target)
                self._autoscaler.resized(self._clock())
        elif mode == "auto":
            decision = self._autoscaler.observe(
                now,
                replicas=self._pool.replicas,
                lag=lag,
                saturation=saturation,
                cpu=cpu,
                routing=self._routing_share(pending),
                downstream=stages,
            )
            if decision is not None:
                before, after = await self._pool.resize(decision.replicas)
                self._autoscaler.resized(self._clock())
                self._recorded_hold = None
                log.info("autoscaled the transform pool from %d to %d: %s", before, after, decision.reason)
                await self._record(after, decision.reason, "decision")
            else:
                hold = self._autoscaler.hold
                await self._note_hold(hold, now)
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
            pending_batches=pending,
            cpu_share=round(cpu, 3),
            stage_lag=stages,
            hold="" if hold is None else hold.reason,
        )
        try:
            await asyncio.to_thread(self._signals.report, report)
        except RedisError as exc:
            log.warning("pool state not reported (%s)", type(exc).__name__)


__all__ = ["IngestOffsets", "PoolController", "assigned_lag", "stage_lag"]
