"""Live counters in Redis: what the progress display, `hcsync report` and the autoscaler read."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Counters named MESSAGE_TYPE_PREFIX + "ORU^R01" count the messages the pool read, by type.
MESSAGE_TYPE_PREFIX = "type:"
COUNTERS = (
    "raw_in",
    "mapped",
    "events_out",
    "ignored",
    "quarantined",
    "duplicate_events",
    "held_charges",
    "held_released",
    "stale_events",
    "merges",
    "merges_duplicate",
    "accounts_merged",
    "patient_updates",
    "patient_updates_stale",
    "patient_updates_duplicate",
    "accounts_updated_by_patient",
    "account_moves",
    "account_moves_duplicate",
    "accounts_moved",
    "accounts_duplicate",
    "accounts_stale",
    "coding_updates",
    "coding_stale",
    "coding_duplicate",
    "inventory_movements",
    "inventory_duplicates",
    "inventory_rejected",
    "accounts_upserted",
    "charges_posted",
    "charges_duplicate",
    "charges_rejected",
    # Credits billing holds until their original is posted, credits so released, reused keys refused.
    "charges_held",
    "credits_released",
    "key_reuse_refused",
    "journal_lines_accepted",
    "journal_lines_duplicate",
    "journal_lines_rejected",
    "dispatch_cache_hits",
    "billing_commands",
    "erp_commands",
)


def stats_key(prefix: str) -> str:
    """Return the Redis hash that holds the counters of one deployment."""
    return f"{prefix}hcsync:stats"


def done_key(prefix: str, command_id: str) -> str:
    """Return the Redis key that caches a dispatched command's idempotency key."""
    return f"{prefix}hcsync:done:{command_id}"


class Stats:
    """Increment and read the counters; one round trip per update."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._key = stats_key(prefix)

    async def add(self, counts: Mapping[str, int]) -> None:
        """Add the non-zero counts."""
        todo = {name: n for name, n in counts.items() if n}
        if not todo:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for name, n in todo.items():
                    pipe.hincrby(self._key, name, n)
                await pipe.execute()
        except RedisError as exc:
            # Live counters are best effort: a Redis outage must not hold up the stream.
            log.warning("counters not updated, redis unavailable (%s)", type(exc).__name__)

    async def read(self) -> dict[str, int]:
        """Return every counter, zero when never set."""
        raw = await self._client.hgetall(self._key)
        values = {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}
        return {name: values.get(name, 0) for name in COUNTERS} | values
