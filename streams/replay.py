"""Replay quarantined items: publish their original (or fixed) bytes back to the topic they failed after.

Replay is safe to repeat. Event, command and line ids are deterministic and every sink is idempotent, so a
replayed message that was already processed posts nothing twice. An item is marked replayed only after
the broker has acknowledged its record, and the mark carries the time the replay began: a replayed message
can fail again, and its new failure reach the store, before the mark is written, and the store must still
see that failure as one of the replay (streams/quarantine_store.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaError

from adapters.inbound.hl7v2 import CONFLICT_RULE
from canonical.errors import HcsyncError, StackError
from foundation.kafka import producer
from foundation.keys import keyed
from foundation.settings import Settings
from foundation.topics import TopicNames
from streams.quarantine_store import QuarantineItem, QuarantineStore

__all__ = [
    "REPLAYABLE_STAGES",
    "PlannedRecord",
    "ReplayError",
    "ReplayReport",
    "key_of",
    "plan_replay",
    "publish",
    "replay",
    "topic_of",
]

REPLAYABLE_STAGES = ("ingest", "encounters", "billing", "erp", "x12", "revenue")


class ReplayError(HcsyncError):
    """The replay asked for cannot be done (unknown id, unreplayable stage, misuse of a replacement)."""


@dataclass(frozen=True, slots=True)
class PlannedRecord:
    """One record a replay publishes: the item it replays, where to, with which key and which bytes."""

    item: QuarantineItem
    topic: str
    key: bytes | None
    payload: bytes
    replacement: bool


@dataclass(slots=True)
class ReplayReport:
    """What a replay published: the ids, in order, and how many per stage."""

    replayed: list[str] = field(default_factory=list)
    by_stage: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.replayed)


def topic_of(names: TopicNames, stage: str) -> str:
    """Return the topic an item of ``stage`` is replayed to: the input of the step that refused it."""
    topics = {
        "ingest": names.raw_hl7v2,
        "encounters": names.events,
        "billing": names.billing,
        "erp": names.erp,
        "x12": names.raw_x12,
        "revenue": names.revenue,
    }
    if stage not in topics:
        raise ReplayError(
            f"items of stage {stage!r} cannot be replayed (only {', '.join(REPLAYABLE_STAGES)})"
        )
    return topics[stage]


def _encounter_in(payload: bytes) -> str | None:
    """Return the encounter id an event or command carries, when its JSON still says it."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    # An event envelope has it on top, an account command in its encounter, a charge command in its charge.
    candidates: list[Any] = [
        doc.get("encounter_id"),
        (doc.get("encounter") or {}).get("encounter_id") if isinstance(doc.get("encounter"), dict) else None,
        (doc.get("charge") or {}).get("encounter_id") if isinstance(doc.get("charge"), dict) else None,
    ]
    return next((value for value in candidates if isinstance(value, str) and value), None)


def key_of(item: QuarantineItem, payload: bytes) -> bytes | None:
    """Return the broker key to publish ``payload`` of ``item`` with, the one its topic is keyed by."""
    if item.stage == "ingest":
        return keyed(payload)
    if item.stage == "x12":
        return item.message_key.encode() if item.message_key else None
    # Keyed by encounter so it lands on the partition that holds the encounter's state and order.
    encounter = item.encounter_id or _encounter_in(payload)
    return encounter.encode() if encounter else None


def _check_conflict_replay(item: QuarantineItem, replacement: bytes | None) -> None:
    """A control id conflict is replayed only as a message of its own (a new MSH-10), never as is.

    Its events would share the first message's ids (they derive from sender and control id), so the
    pipeline would drop them as repeats: replaying it unchanged would look done and post nothing.
    """
    if replacement is None:
        raise ReplayError(
            f"{item.record_id} is a control id conflict ({item.source_message_id}): replaying it as is would "
            "post nothing (its events share the first message's ids); replay it with --with-file after "
            "giving it a new MSH-10, or resolve it"
        )
    if keyed(replacement).decode("utf-8", "replace") == item.message_key:
        raise ReplayError(
            f"the replacement for {item.record_id} keeps control id {item.source_message_id}: give it a "
            "new MSH-10, or it is the same conflict again"
        )


def plan_replay(
    settings: Settings,
    store: QuarantineStore,
    record_ids: Sequence[str],
    *,
    replacement: bytes | None = None,
) -> list[PlannedRecord]:
    """Check a replay and return the records it would publish, in order, without publishing anything."""
    ids = list(dict.fromkeys(record_ids))
    if replacement is not None and len(ids) != 1:
        raise ReplayError(f"a replacement message replays exactly one item, not {len(ids)}")
    if replacement is not None and len(replacement) > settings.max_message_bytes:
        raise ReplayError(
            f"the replacement is {len(replacement)} bytes, over {settings.max_message_bytes} "
            "(HCSYNC_MAX_MESSAGE_BYTES)"
        )
    names = TopicNames(settings.topic_prefix)
    # Check everything before sending anything, so a typo in one id does not leave a half-done replay.
    planned: list[PlannedRecord] = []
    for record_id in ids:
        item = store.get(record_id)
        if item is None:
            raise ReplayError(f"no quarantined item {record_id!r}; nothing was replayed")
        topic = topic_of(names, item.stage)
        payload = replacement if replacement is not None else store.original(record_id)
        if item.rule == CONFLICT_RULE:
            _check_conflict_replay(item, replacement)
        planned.append(
            PlannedRecord(
                item=item,
                topic=topic,
                key=key_of(item, payload),
                payload=payload,
                replacement=replacement is not None,
            )
        )
    return planned


async def replay(
    settings: Settings,
    store: QuarantineStore,
    record_ids: Sequence[str],
    *,
    replacement: bytes | None = None,
) -> ReplayReport:
    """Publish each item's original bytes (or ``replacement``, for one item) and mark it replayed."""
    planned = await asyncio.to_thread(plan_replay, settings, store, record_ids, replacement=replacement)
    return await publish(settings, store, planned)


async def publish(
    settings: Settings, store: QuarantineStore, planned: Sequence[PlannedRecord]
) -> ReplayReport:
    """Publish the records of a planned replay and mark the items the broker acknowledged replayed."""
    report = ReplayReport()
    if not planned:
        return report

    # Taken before anything is published: every failure of the replayed records is recorded after it.
    started = dt.datetime.now(dt.UTC)
    prod = producer(settings)
    acked: list[QuarantineItem] = []
    failures: list[BaseException] = []
    try:
        await prod.start()
        pending: list[tuple[QuarantineItem, Awaitable[Any]]] = []
        for record in planned:
            future = await prod.send(record.topic, value=record.payload, key=record.key)
            pending.append((record.item, future))
        results = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
        for (item, _), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(result)
            else:
                acked.append(item)
    except KafkaConnectionError as exc:
        raise StackError(
            f"broker at {settings.bootstrap} unreachable (HCSYNC_KAFKA_BOOTSTRAP): {exc}"
        ) from None
    except KafkaError as exc:
        raise StackError(f"the broker at {settings.bootstrap} refused a record: {exc!r}") from None
    finally:
        await prod.stop()
        # Whatever the broker acknowledged was replayed, even if another record of the batch failed.
        if acked:
            await asyncio.to_thread(store.mark_replayed, [item.record_id for item in acked], at=started)
    for item in acked:
        report.replayed.append(item.record_id)
        report.by_stage[item.stage] = report.by_stage.get(item.stage, 0) + 1
    if failures:
        raise StackError(
            f"the broker at {settings.bootstrap} did not acknowledge {len(failures)} of {len(planned)} "
            f"record(s) ({type(failures[0]).__name__}); those stay as they were, replay them again"
        )
    return report
