"""The worker's side of scaling: follow the replica count asked for in Redis, and report the pool.

An SRE's `hcsync scale transform --replicas N` writes the desired count; every worker's controller reads
it each tick, resizes its own pool within the configured bounds, and publishes what it runs (replicas,
nodes, batches in flight) for `hcsync status`. A Redis outage leaves the pool as it is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from redis.exceptions import RedisError

from actors.pool import TransformPool
from actors.scaling import PoolReport, ScaleSignals

log = logging.getLogger(__name__)


class PoolController:
    """Resize one worker's transform pool to the desired count, within bounds, and report it."""

    def __init__(
        self,
        pool: TransformPool,
        signals: ScaleSignals,
        worker: str,
        *,
        min_replicas: int,
        max_replicas: int,
    ) -> None:
        self._pool = pool
        self._signals = signals
        self._worker = worker
        self._min = min_replicas
        self._max = max_replicas

    def target(self, desired: int | None) -> int:
        """Return the replicas to run: the desired count within bounds, else the current size."""
        wanted = self._pool.replicas if desired is None else desired
        return max(self._min, min(self._max, wanted))

    async def tick(self) -> None:
        """Apply the desired count once and publish the pool's state."""
        try:
            desired = await asyncio.to_thread(self._signals.desired)
        except RedisError as exc:
            log.warning(
                "scaling signal not read (%s); the pool stays at %d", type(exc).__name__, self._pool.replicas
            )
            return
        target = self.target(desired)
        if target != self._pool.replicas:
            await self._pool.resize(target)
        report = PoolReport(
            worker=self._worker,
            replicas=self._pool.replicas,
            desired=target,
            in_flight=self._pool.in_flight,
            nodes=self._pool.nodes,
            at=dt.datetime.now(dt.UTC).isoformat(),
        )
        try:
            await asyncio.to_thread(self._signals.report, report)
        except RedisError as exc:
            log.warning("pool state not reported (%s)", type(exc).__name__)


__all__ = ["PoolController"]
