"""Replay on the real embedded stack: quarantined items go back to their topics and get processed."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from canonical.hl7v2.mapping import canonicalize
from canonical.quarantine import ExceptionRecord
from cluster.report import StackReport
from cluster.send import keyed, send_messages
from cluster.settings import Settings
from streams.commands import UpsertAccountCommand
from streams.encounter_state import EncounterState, apply_event
from streams.posting import PostingRules
from streams.quarantine_store import QuarantineStore
from streams.replay import ReplayError, replay
from streams.topics import TopicNames
from tests.hl7_samples import adt, dft
from tests.integration.conftest import charges, report_now, settle, wait_until


def _uid() -> str:
    return uuid.uuid4().hex[:10].upper()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QuarantineStore]:
    opened = QuarantineStore(f"sqlite:///{tmp_path / 'quarantine.db'}")
    yield opened
    opened.close()


def _record(stage: str, original: bytes, encounter_id: str | None, rule: str) -> ExceptionRecord:
    return ExceptionRecord(
        record_id=f"{stage}-{_uid()}",
        stage=stage,
        encounter_id=encounter_id,
        rule=rule,
        reason=f"[{rule}] for the replay test",
        original_b64=base64.b64encode(original).decode("ascii"),
        recorded_at=dt.datetime.now(dt.UTC),
    )


def _account_command(raw_adt: bytes) -> UpsertAccountCommand:
    """Return the account upsert the encounter agent would send for an ADT: a valid billing command."""
    [event] = canonicalize(raw_adt)
    rules = PostingRules(receivables_account="1200", revenue_account="4000", encounter_ref_key=b"test")
    command = apply_event(EncounterState(encounter_id=event.encounter_id), event, rules).billing[0]
    assert isinstance(command, UpsertAccountCommand)
    return command


def _find(settings: Settings, topic: str, key: bytes, value: bytes, timeout_s: float = 30.0) -> bool:
    """Read ``topic`` from the beginning with a fresh consumer until a record with key and value shows up."""

    async def read() -> bool:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        try:
            # Polled until found, never bounded by end offsets: this broker's ListOffsets are wrong for
            # multi-record batches (cluster/kafka.py).
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for messages in batches.values():
                    if any(m.key == key and m.value == value for m in messages):
                        return True
            return False
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _accounts(report: StackReport) -> int:
    return int(report.billing.get("accountCount", 0))


def test_replay_publishes_originals_where_they_failed(settings: Settings, store: QuarantineStore) -> None:
    before = settle(settings, 1.0)
    names = TopicNames(settings.topic_prefix)
    visit, other = f"V{_uid()}", f"V{_uid()}"
    raw_adt = adt("A01", f"A{visit}", visit)
    command = _account_command(adt("A04", f"A{other}", other, patient_class="O"))
    command_json = command.model_dump_json().encode()
    encounter = command.encounter.encounter_id
    ingest = _record("ingest", raw_adt, None, "TEST-INGEST")
    billing = _record("billing", command_json, encounter, "BILLING-REJECTED")
    assert store.add([ingest, billing]) == 2

    report = asyncio.run(replay(settings, store, [ingest.record_id, billing.record_id]))

    assert report.replayed == [ingest.record_id, billing.record_id]
    assert report.by_stage == {"ingest": 1, "billing": 1}
    assert _find(settings, names.raw_hl7v2, keyed(raw_adt), raw_adt)
    assert _find(settings, names.billing, encounter.encode(), command_json)
    for record in (ingest, billing):
        item = store.get(record.record_id)
        assert item is not None and item.status == "replayed" and item.replay_count == 1
        assert item.replayed_at is not None
    assert store.list(status="open") == []

    # Each replay opens one account: the ADT through the whole pipeline, the command at the dispatcher.
    wait_until("two new accounts", lambda: _accounts(report_now(settings)) >= _accounts(before) + 2)
    after = settle(settings)
    assert _accounts(after) - _accounts(before) == 2

    # Safe to repeat: the same messages again post nothing new.
    again = asyncio.run(replay(settings, store, [ingest.record_id, billing.record_id]))
    assert again.replayed == [ingest.record_id, billing.record_id]
    wait_until(
        "the repeated ADT to be seen as a duplicate",
        lambda: (
            report_now(settings).counters.get("duplicate_events", 0)
            >= after.counters.get("duplicate_events", 0) + 1
        ),
    )
    repeated = settle(settings)
    assert _accounts(repeated) == _accounts(after)
    item = store.get(ingest.record_id)
    assert item is not None and item.replay_count == 2


def test_replay_with_a_fixed_message_posts_the_charge(settings: Settings, store: QuarantineStore) -> None:
    start = settle(settings, 1.0)
    visit = f"V{_uid()}"
    asyncio.run(send_messages(settings, [adt("A01", f"A{visit}", visit)]))
    wait_until("the account", lambda: _accounts(report_now(settings)) >= _accounts(start) + 1)
    before = settle(settings, 1.0)
    broken = dft(f"D{visit}", visit, [("CG", "99283", "ED visit", 1, "3x0.00")])
    fixed = dft(f"D{visit}", visit, [("CG", "99283", "ED visit", 1, "350.00")])
    record = _record("ingest", broken, f"NMH:{visit}", "HL7-FT1-11-AMOUNT")
    other = _record("ingest", adt("A01", f"A{_uid()}", visit), None, "TEST-INGEST")
    store.add([record, other])

    with pytest.raises(ReplayError, match="exactly one"):
        asyncio.run(replay(settings, store, [record.record_id, other.record_id], replacement=fixed))
    with pytest.raises(ReplayError, match="no quarantined item"):
        asyncio.run(replay(settings, store, ["missing"]))
    assert len(store.list(status="open")) == 2

    report = asyncio.run(replay(settings, store, [record.record_id], replacement=fixed))

    assert report.replayed == [record.record_id]
    assert _find(settings, TopicNames(settings.topic_prefix).raw_hl7v2, keyed(fixed), fixed)
    wait_until("the fixed charge", lambda: charges(report_now(settings))[0] >= charges(before)[0] + 1)
    after = settle(settings)
    assert charges(after)[0] - charges(before)[0] == 1
    assert charges(after)[1] - charges(before)[1] == 35_000
    assert store.original(record.record_id) == broken
    assert [item.record_id for item in store.list(status="open")] == [other.record_id]
