"""The Ray transform pool: actors that canonicalise and enrich batches, with a bound on work in flight.

The actors have no side effects and hold nothing but a cache of the master data in force (re-read from
Redis when its version changes), so Ray may restart a dead actor and retry its batch (max_restarts,
max_task_retries) without any risk of a duplicate effect downstream.

The pool can be resized while it works (:meth:`TransformPool.resize`): new actors join the rotation once
they answer, and an actor that leaves finishes the batches it holds before it is killed, so a resize never
loses or repeats a batch. The bound on batches in flight follows the size (``in_flight_per_replica`` per
actor), and the pool measures the share of time it spent at that bound (:meth:`TransformPool.saturation`):
the autoscaler adds actors only when the pool itself is what holds the stream back.

Actors are placed with Ray's SPREAD strategy, so on a multi-node cluster the pool uses every node rather
than filling the node its worker runs on first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import ray

from actors.masterdata import MasterDataCache, MasterDataStore
from actors.transform import TransformBatch, TransformResult, transform_batch
from actors.x12 import X12Batch, X12Outcome, process_batch
from foundation.logmask import mask_all_handlers

log = logging.getLogger(__name__)


@ray.remote(max_restarts=-1, max_task_retries=-1)
class TransformActor:
    """A Ray actor that runs the pure transform step with the master data in force."""

    def __init__(self, redis_url: str, key_prefix: str) -> None:
        mask_all_handlers()  # the actor's process logs through Ray's handlers: mask PHI there too
        self._masterdata = MasterDataCache(MasterDataStore.from_url(redis_url, key_prefix))

    def ping(self) -> str:
        """Answer once the actor process is up (used for readiness): the id of the node it runs on."""
        return ray.get_runtime_context().get_node_id()

    def transform(self, batch: TransformBatch) -> TransformResult:
        """Canonicalise and enrich one batch (MasterDataUnavailable if no master data is loaded)."""
        return transform_batch(batch, self._masterdata.current())

    def x12(self, batch: X12Batch) -> tuple[X12Outcome, ...]:
        """Validate, acknowledge and read a batch of X12 interchanges (actors/x12.py)."""
        return process_batch(batch)


@dataclass(slots=True)
class _Member:
    """One actor of the pool and what it is doing."""

    actor: Any
    node_id: str
    in_flight: int = 0
    leaving: bool = False


class TransformPool:
    """A resizable set of transform actors with a bound on the batches in flight."""

    def __init__(
        self,
        replicas: int,
        *,
        redis_url: str,
        key_prefix: str = "",
        in_flight_per_replica: int = 2,
        num_cpus: float = 0.5,
    ) -> None:
        if replicas < 1:
            raise ValueError(f"a pool needs at least one replica, not {replicas}")
        self._num_cpus = num_cpus
        self._redis_url = redis_url
        self._key_prefix = key_prefix
        self._per_replica = in_flight_per_replica
        self._pending = [self._spawn() for _ in range(replicas)]
        self._members: list[_Member] = []
        self._in_flight = 0
        self._turn = 0
        self._changed: asyncio.Condition | None = None  # made on the event loop that uses the pool
        self._resizing = asyncio.Lock()
        # Time at the in-flight bound since the last reading of saturation().
        self._meter_since = self._meter_mark = time.monotonic()
        self._full_s = 0.0

    def _spawn(self) -> Any:
        return TransformActor.options(  # type: ignore[attr-defined]
            num_cpus=self._num_cpus, scheduling_strategy="SPREAD"
        ).remote(self._redis_url, self._key_prefix)

    @property
    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    @property
    def replicas(self) -> int:
        """Actors in the rotation (leaving ones excluded)."""
        return sum(not m.leaving for m in self._members) or len(self._pending)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def nodes(self) -> list[str]:
        """The node id of each actor in the rotation."""
        return [m.node_id for m in self._members if not m.leaving]

    def wait_ready(self, timeout_s: float) -> list[str]:
        """Block until the first actors answer; return the node id each one runs on."""
        nodes: list[str] = ray.get([actor.ping.remote() for actor in self._pending], timeout=timeout_s)
        self._members = [_Member(actor, node) for actor, node in zip(self._pending, nodes, strict=True)]
        self._pending = []
        return nodes

    @property
    def capacity(self) -> int:
        """The bound on batches in flight: ``in_flight_per_replica`` per actor in the rotation."""
        return self._per_replica * max(1, self.replicas)

    def _limit(self) -> int:
        return self.capacity

    def _meter(self) -> None:
        """Account the time since the last change of ``in_flight`` (call before changing it)."""
        now = time.monotonic()
        if self._in_flight >= self._limit():
            self._full_s += now - self._meter_mark
        self._meter_mark = now

    def saturation(self) -> float:
        """Share of the time since the previous call that the pool spent at its in-flight bound (0..1)."""
        self._meter()
        now = time.monotonic()
        elapsed = now - self._meter_since
        share = self._full_s / elapsed if elapsed > 0 else 0.0
        self._meter_since, self._full_s = now, 0.0
        return min(1.0, share)

    def _pick(self) -> _Member:
        active = [m for m in self._members if not m.leaving]
        # Round robin, skipping ahead to the least busy actor when the next one is busier.
        self._turn = (self._turn + 1) % len(active)
        candidate = active[self._turn]
        least = min(active, key=lambda m: m.in_flight)
        return least if least.in_flight < candidate.in_flight else candidate

    async def transform(self, batch: TransformBatch) -> TransformResult:
        """Send a batch to an actor and await its result, never exceeding the in-flight bound."""
        result: TransformResult = await self._call("transform", batch)
        return result

    async def x12(self, batch: X12Batch) -> tuple[X12Outcome, ...]:
        """Send X12 interchanges to an actor and await what they gave, within the same in-flight bound."""
        result: tuple[X12Outcome, ...] = await self._call("x12", batch)
        return result

    async def _call(self, method: str, batch: Any) -> Any:
        """Call ``method`` of an actor with ``batch``, never exceeding the in-flight bound."""
        condition = self._condition
        async with condition:
            await condition.wait_for(lambda: self._in_flight < self._limit())
            member = self._pick()
            self._meter()
            member.in_flight += 1
            self._in_flight += 1
        try:
            return await getattr(member.actor, method).remote(batch)
        finally:
            async with condition:
                self._meter()
                member.in_flight -= 1
                self._in_flight -= 1
                if member.leaving and member.in_flight == 0:
                    self._retire(member)
                condition.notify_all()

    def _retire(self, member: _Member) -> None:
        self._members.remove(member)
        ray.kill(member.actor)

    async def resize(self, replicas: int, *, ready_timeout_s: float = 60.0) -> tuple[int, int]:
        """Grow or shrink the rotation to ``replicas`` actors; return (before, after).

        New actors join once they answer a ping. Leaving actors take no new batch and are killed when the
        batches they hold are done.
        """
        if replicas < 1:
            raise ValueError(f"a pool needs at least one replica, not {replicas}")
        async with self._resizing:
            before = self.replicas
            if replicas > before:
                fresh = [self._spawn() for _ in range(replicas - before)]
                try:
                    nodes = await asyncio.wait_for(
                        asyncio.gather(*(actor.ping.remote() for actor in fresh)), ready_timeout_s
                    )
                except BaseException:
                    for actor in fresh:  # never joined: nothing was sent to them
                        ray.kill(actor)
                    raise
                joining = [_Member(actor, node) for actor, node in zip(fresh, nodes, strict=True)]
            async with self._condition:
                self._meter()  # the bound changes below
                if replicas > before:
                    self._members.extend(joining)
                else:
                    active = sorted((m for m in self._members if not m.leaving), key=lambda m: m.in_flight)
                    for member in active[: before - replicas]:
                        member.leaving = True
                        if member.in_flight == 0:
                            self._retire(member)
                self._condition.notify_all()
            after = self.replicas
        if after != before:
            log.info("transform pool resized from %d to %d replicas on nodes %s", before, after, self.nodes)
        return before, after

    def shutdown(self) -> None:
        """Kill the actors."""
        for member in self._members:
            ray.kill(member.actor)
        for actor in self._pending:
            ray.kill(actor)
        self._members.clear()
        self._pending.clear()
