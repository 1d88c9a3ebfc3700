"""The Ray transform pool: actors that canonicalise and enrich batches, called round-robin with a bound.

The actors have no side effects and hold nothing but a cache of the master data in force (re-read from
Redis when its version changes), so Ray may restart a dead actor and retry its batch (max_restarts,
max_task_retries) without any risk of a duplicate effect downstream.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import ray

from actors.masterdata import MasterDataCache, MasterDataStore
from actors.transform import TransformBatch, TransformResult, transform_batch
from cluster.logmask import mask_all_handlers


@ray.remote(max_restarts=-1, max_task_retries=-1)
class TransformActor:
    """A Ray actor that runs the pure transform step with the master data in force."""

    def __init__(self, redis_url: str, key_prefix: str) -> None:
        mask_all_handlers()  # the actor's process logs through Ray's handlers: mask PHI there too
        self._masterdata = MasterDataCache(MasterDataStore.from_url(redis_url, key_prefix))

    def ping(self) -> str:
        """Answer once the actor process is up (used for readiness)."""
        return ray.get_runtime_context().get_node_id()

    def transform(self, batch: TransformBatch) -> TransformResult:
        """Canonicalise and enrich one batch (MasterDataUnavailable if no master data is loaded)."""
        return transform_batch(batch, self._masterdata.current())


class TransformPool:
    """A fixed set of transform actors with a bound on the batches in flight."""

    def __init__(
        self,
        replicas: int,
        *,
        redis_url: str,
        key_prefix: str = "",
        max_in_flight: int | None = None,
        num_cpus: float = 0.5,
    ) -> None:
        self._num_cpus = num_cpus
        self._redis_url = redis_url
        self._key_prefix = key_prefix
        self._actors: list[Any] = [self._spawn() for _ in range(replicas)]
        self._cycle = itertools.cycle(range(replicas))
        self._slots = asyncio.Semaphore(max_in_flight or 2 * replicas)

    def _spawn(self) -> Any:
        return TransformActor.options(num_cpus=self._num_cpus).remote(  # type: ignore[attr-defined]
            self._redis_url, self._key_prefix
        )

    @property
    def replicas(self) -> int:
        return len(self._actors)

    def wait_ready(self, timeout_s: float) -> list[str]:
        """Block until every actor answers; return the node id each one runs on."""
        nodes: list[str] = ray.get([actor.ping.remote() for actor in self._actors], timeout=timeout_s)
        return nodes

    async def transform(self, batch: TransformBatch) -> TransformResult:
        """Send a batch to the next actor and await its result, never exceeding the in-flight bound."""
        async with self._slots:
            actor = self._actors[next(self._cycle) % len(self._actors)]
            result: TransformResult = await actor.transform.remote(batch)
            return result

    def shutdown(self) -> None:
        """Kill the actors."""
        for actor in self._actors:
            ray.kill(actor)
        self._actors.clear()
