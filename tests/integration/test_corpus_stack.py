"""The HL7 corpus through the running stack: every message is mapped, routed or quarantined, none lost.

The corpus goes into the message store as `hcsync send` puts it there. Public samples reuse control ids
(a dozen files say "1" or "0123456789" from the same sender): the first message of a sender and control id
goes through, an exact copy is a resend, and a later one with other content is a conflict, quarantined as
HL7-MSH-10-CONFLICT instead of being processed (before the store, its events shared the first one's ids and
were dropped as repeats without a trace).

Every message that goes through must end as the mapper says offline: its events on events.canonical, its
receipt on routed.hl7v2, or a quarantine record with a specific rule (never INTERNAL) carrying its original
bytes; and the message store records that outcome. The worker must survive the whole corpus.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections import Counter

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from actors.masterdata import MasterDataStore
from actors.transform import transform_one
from adapters.inbound.hl7v2 import hl7v2_inbound_bytes
from adapters.inbound.store import MessageStore, Verdict
from canonical.envelope import EventEnvelope, MessageReceipt
from canonical.hl7v2.parser import parse_message, split_messages
from canonical.quarantine import ExceptionRecord
from cluster.stack import Stack
from foundation.settings import Settings
from foundation.topics import TopicNames
from streams.records import split
from tests.corpus import hl7_files
from tests.integration.conftest import report_now, wait_until


def _read(settings: Settings, topic: str) -> list[bytes]:
    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        out: list[bytes] = []
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=2000, max_records=10_000)
                got = [m.value for ms in batches.values() for m in ms if m.value is not None]
                if not got:
                    return out
                out.extend(got)
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_every_corpus_message_is_mapped_routed_or_quarantined(settings: Settings, stack: Stack) -> None:
    files = hl7_files("hl7", "hl7_batch")
    messages: list[bytes] = []
    expected: dict[bytes, str] = {}
    rules: Counter[str] = Counter()
    # The offline answer is the actors' own step with the master data in force on the stack.
    masterdata = MasterDataStore.from_url(settings.redis, settings.topic_prefix).current()
    assert masterdata is not None
    for path in files:
        for raw in split_messages(path.read_bytes()):
            messages.append(raw)
            outcome = transform_one(raw, masterdata=masterdata)
            if outcome.exception is not None:
                expected[raw] = "quarantined"
                rules[ExceptionRecord.model_validate_json(outcome.exception).rule] += 1
                continue
            expected[raw] = "mapped" if outcome.events else "routed"
    before = report_now(settings).counters
    store = MessageStore(f"sqlite:///{stack.run_dir / 'messages.db'}")
    try:
        now = dt.datetime.now(dt.UTC)
        receipts = store.store([(hl7v2_inbound_bytes(raw, "file", now), lambda *_: None) for raw in messages])
    finally:
        store.close()
    through = [raw for raw, r in zip(messages, receipts, strict=True) if r.verdict is Verdict.NEW]
    conflicts = [raw for raw, r in zip(messages, receipts, strict=True) if r.verdict is Verdict.CONFLICT]
    resends = sum(r.verdict is Verdict.DUPLICATE for r in receipts)

    wait_until(
        f"the corpus through the pool: counter raw_in >= {before['raw_in'] + len(through)}",
        lambda: report_now(settings).counters["raw_in"],
        timeout_s=180,
        done=lambda raw_in: raw_in - before["raw_in"] >= len(through),
    )
    after = report_now(settings).counters
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in ("mapped", "ignored", "quarantined")}
    offline = Counter(expected[raw] for raw in through)
    print(
        f"\ncorpus through the stack: {len(files)} files, {len(messages)} messages: {len(through)} through "
        f"({delta['mapped']} mapped to events, {delta['ignored']} routed with no financial effect, "
        f"{delta['quarantined']} quarantined), {len(conflicts)} control id conflicts, {resends} resends; "
        f"rules {dict(rules.most_common())}"
    )
    assert after["raw_in"] - before["raw_in"] == len(through), "a message went through twice, or not at all"
    assert delta == {
        "mapped": offline["mapped"],
        "ignored": offline["routed"],
        "quarantined": offline["quarantined"],
    }

    names = TopicNames(settings.topic_prefix)
    routed = {
        base64.b64decode(MessageReceipt.model_validate_json(v).original_b64)
        for v in _read(settings, names.routed)
    }
    records = [ExceptionRecord.model_validate_json(v) for v in _read(settings, names.exceptions)]
    quarantined = {base64.b64decode(r.original_b64): r for r in records if r.stage == "ingest"}
    sources = set()
    for value in (item for record in _read(settings, names.events) for item in split(record)):
        try:  # other tests put poison records here on purpose
            event = EventEnvelope.model_validate_json(value)
        except ValidationError:
            continue
        sources.add((event.source_sender, event.source_message_id))
    conflicted = {base64.b64decode(r.original_b64) for r in records if r.rule == "HL7-MSH-10-CONFLICT"}
    missing = [raw[:60] for raw in conflicts if raw not in conflicted]
    assert not missing, f"{len(missing)} of {len(conflicts)} conflicts not quarantined: {missing[:3]}"
    for raw in through:
        outcome = expected[raw]
        if outcome == "routed":
            assert raw in routed, raw[:80]
        elif outcome == "quarantined":
            record = quarantined.get(raw)
            assert record is not None, raw[:80]
            assert record.rule != "INTERNAL" and record.reason, (record.rule, record.reason)
        else:
            msg = parse_message(raw)
            assert (msg.sender, msg.control_id) in sources

    # The message store knows what became of each message (outcomes arrive a batch at a time).
    def recorded() -> dict[str, str | None]:
        store = MessageStore(f"sqlite:///{stack.run_dir / 'messages.db'}")
        try:
            ids_ = {
                r.message_id for r, raw in zip(receipts, messages, strict=True) if r.verdict is Verdict.NEW
            }
            return {i.message_id: i.outcome for i in store.list(limit=None) if i.message_id in ids_}
        finally:
            store.close()

    wait_until("every outcome in the message store", lambda: None not in recorded().values(), timeout_s=60)
    by_id = recorded()
    wrong = [
        (raw[:40], by_id[r.message_id], expected[raw])
        for r, raw in zip(receipts, messages, strict=True)
        if r.verdict is Verdict.NEW and by_id[r.message_id] != expected[raw]
    ]
    assert not wrong, f"{len(wrong)} outcome(s) recorded wrong (message, recorded, expected): {wrong[:5]}"
    assert stack.check() == [], "a component died while it read the corpus"
