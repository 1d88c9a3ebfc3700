"""Batch records: many events or commands in one broker record, and the partition of an encounter.

Records, not logic, are the cost on the hot path (a record costs the broker, aiokafka and Faust far more
than the work it carries), so events and commands travel in batches: the ingest agent writes one
events record per transform batch and partition, and the encounters agent one billing and one ERP record
per batch of events and partition.

A batch record is JSON Lines: one compact JSON document per line. Compact JSON never holds a raw line
feed (a line feed inside a string is escaped), so a record splits into its items' exact bytes without
parsing, each item is validated on its own, and one bad item is quarantined with its own bytes while the
rest go on. A record of one JSON document, as replay and older writers send, is a batch of one.

Order per encounter needs every record about an encounter on one partition: ``partition_of`` is the
producer's default partitioner (murmur2 of the key) applied to the encounter id, so a batch record lands
where a record keyed by the encounter id would, and the encounter table writes its changelog to that same
partition (streams/app.py ``EncounterTable``), which is the partition the encounter's events come from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache

from aiokafka.partitioner import murmur2

__all__ = ["MAX_RECORD_BYTES", "PartitionedBatches", "pack", "partition_of", "split"]

# A batch record stays well below the broker's and the producer's request limits; a larger batch becomes
# several records (the producer's max request size is 4 MiB: streams/app.py).
MAX_RECORD_BYTES = 512 * 1024
_LF = b"\n"


@lru_cache(maxsize=65_536)  # aiokafka's murmur2 is pure Python; an encounter's id comes back often
def partition_of(key: str, partitions: int) -> int:
    """Return the partition a record keyed by ``key`` goes to (the producer's default partitioner)."""
    hashed: int = murmur2(key.encode("utf-8"))
    return (hashed & 0x7FFFFFFF) % partitions


def _one_line(item: bytes) -> bytes:
    if _LF in item:
        # Not compact JSON (a pretty-printed document): its line feeds are whitespace between tokens, and
        # a line feed inside a JSON string is always escaped, so they can go.
        return item.replace(b"\r\n", b" ").replace(_LF, b" ")
    return item


def pack(items: Iterable[bytes], max_bytes: int = MAX_RECORD_BYTES) -> Iterator[bytes]:
    """Yield batch records holding ``items`` in order, each at most ``max_bytes`` (or one larger item)."""
    chunk: list[bytes] = []
    size = 0
    for raw in items:
        item = _one_line(raw)
        if chunk and size + len(item) + 1 > max_bytes:
            yield _LF.join(chunk)
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        yield _LF.join(chunk)


def split(record: bytes) -> list[bytes]:
    """Return the items of a batch record, each its exact bytes; blank lines are not items."""
    return [item for item in record.split(_LF) if item.strip()]


class PartitionedBatches:
    """Items gathered per partition, in the order they were added, to be sent as batch records."""

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._items: dict[int, list[bytes]] = {}

    def add(self, key: str, item: bytes) -> None:
        """Add ``item``, about ``key`` (an encounter or patient id), to its partition's batch."""
        self._items.setdefault(partition_of(key, self._partitions), []).append(item)

    def __len__(self) -> int:
        return sum(len(items) for items in self._items.values())

    def records(self, max_bytes: int = MAX_RECORD_BYTES) -> Iterator[tuple[int, bytes]]:
        """Yield (partition, batch record) pairs, partitions in ascending order."""
        for partition in sorted(self._items):
            for record in pack(self._items[partition], max_bytes):
                yield partition, record
