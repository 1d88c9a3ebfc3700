"""Replay on the real embedded stack: quarantined items go back to their topics and get processed; a
replayed message that fails again leaves its item open; a redelivered quarantine record counts once; the
CLI replays by filter."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from canonical.hl7v2.mapping import canonicalize
from canonical.quarantine import ExceptionRecord
from cluster.cli.exceptions import exceptions_app
from cluster.report import StackReport
from cluster.send import send_messages
from cluster.stack import Stack, settings_env
from foundation.kafka import producer
from foundation.keys import keyed
from foundation.settings import Settings, get_settings
from foundation.topics import TopicNames
from streams.commands import UpsertAccountCommand
from streams.encounter_state import EncounterState, apply_event
from streams.posting import PostingRules
from streams.quarantine_store import QuarantineItem, QuarantineStore
from streams.replay import ReplayError, replay
from tests.hl7_samples import adt, dft
from tests.integration.conftest import charges, report_now, settle, wait_for_charges, wait_until


def _uid() -> str:
    return uuid.uuid4().hex[:10].upper()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QuarantineStore]:
    opened = QuarantineStore(f"sqlite:///{tmp_path / 'quarantine.db'}")
    yield opened
    opened.close()


@pytest.fixture
def stack_store(stack: Stack) -> Iterator[QuarantineStore]:
    """The store the stack's quarantine agent writes, opened as `hcsync exceptions` opens it."""
    opened = QuarantineStore(f"sqlite:///{stack.run_dir / 'quarantine.db'}")
    yield opened
    opened.close()


def _item_where(
    store: QuarantineStore,
    what: str,
    check: Callable[[QuarantineItem], bool],
    *,
    rule: str | None = None,
    message_id: str | None = None,
) -> QuarantineItem:
    """Wait until the store holds one item of ``rule`` or ``message_id``, and ``check`` holds for it."""
    [item] = wait_until(
        f"{what}: one item of rule {rule} message {message_id} "
        "(found: id, rule, status, occurrences, replays)",
        lambda: store.list(rule=rule, message_id=message_id, status=None, limit=None),
        done=lambda found: len(found) == 1 and check(found[0]),
        show=lambda found: [(i.record_id, i.rule, i.status, i.occurrences, i.replay_count) for i in found],
    )
    return item


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
    rules = PostingRules(encounter_ref_key=b"test")
    command = apply_event(EncounterState(encounter_id=event.encounter_id), event, rules).billing[0]
    assert isinstance(command, UpsertAccountCommand)
    return command


def _find(settings: Settings, topic: str, key: bytes, value: bytes, timeout_s: float = 30.0) -> None:
    """Read ``topic`` from the beginning with a fresh consumer until a record with key and value shows up.

    Fails naming the topic, the key and what was read: how many records, and the values under that key.
    """
    read_count = 0
    under_key: list[bytes] = []

    async def read() -> bool:
        nonlocal read_count
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
            # multi-record batches (foundation/kafka.py).
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for messages in batches.values():
                    read_count += len(messages)
                    under_key.extend(m.value or b"" for m in messages if m.key == key)
                    if any(m.key == key and m.value == value for m in messages):
                        return True
            return False
        finally:
            await consumer.stop()

    found = asyncio.run(read())
    assert found, (
        f"no record {value[:80]!r} under key {key!r} in {topic} after {timeout_s:g}s: read {read_count} "
        f"records, {len(under_key)} under that key: {[v[:80] for v in under_key[:5]]}"
    )


def _accounts(report: StackReport) -> int:
    return int(report.billing.get("accountCount", 0))


def _wait_for_accounts(settings: Settings, what: str, at_least: int) -> StackReport:
    return wait_until(
        f"{what}: billing accountCount >= {at_least}",
        lambda: report_now(settings),
        done=lambda report: _accounts(report) >= at_least,
        show=_accounts,
    )


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
    _find(settings, names.raw_hl7v2, keyed(raw_adt), raw_adt)
    _find(settings, names.billing, encounter.encode(), command_json)
    for record in (ingest, billing):
        item = store.get(record.record_id)
        assert item is not None and item.status == "replayed" and item.replay_count == 1
        assert item.replayed_at is not None
    assert store.list(status="open") == []

    # Each replay opens one account: the ADT through the whole pipeline, the command at the dispatcher.
    _wait_for_accounts(settings, "two new accounts", _accounts(before) + 2)
    after = settle(settings)
    assert _accounts(after) - _accounts(before) == 2

    # Safe to repeat: the same messages again post nothing new. The repeated ADT's event is a duplicate
    # at the encounter agent; the repeated command is a dispatcher cache hit (or, were the cache gone, a
    # duplicate at billing). Once both are counted, nothing of the replay is still on its way.
    again = asyncio.run(replay(settings, store, [ingest.record_id, billing.record_id]))
    assert again.replayed == [ingest.record_id, billing.record_id]
    repeats = ("duplicate_events", "dispatch_cache_hits", "accounts_duplicate")
    seen_before = {name: after.counters.get(name, 0) for name in repeats}
    wait_until(
        "the repeated ADT as a duplicate event and the repeated command as a cache hit or duplicate: "
        f"counters from {seen_before} to duplicate_events +1 and the other two +1 together",
        lambda: report_now(settings),
        done=lambda now: (
            now.counters.get("duplicate_events", 0) >= seen_before["duplicate_events"] + 1
            and now.counters.get("dispatch_cache_hits", 0) + now.counters.get("accounts_duplicate", 0)
            >= seen_before["dispatch_cache_hits"] + seen_before["accounts_duplicate"] + 1
        ),
        show=lambda now: {name: now.counters.get(name, 0) for name in repeats},
    )
    repeated = settle(settings)
    assert _accounts(repeated) == _accounts(after)
    item = store.get(ingest.record_id)
    assert item is not None and item.replay_count == 2


def test_replay_with_a_fixed_message_posts_the_charge(settings: Settings, store: QuarantineStore) -> None:
    start = settle(settings, 1.0)
    visit = f"V{_uid()}"
    asyncio.run(send_messages(settings, [adt("A01", f"A{visit}", visit)]))
    _wait_for_accounts(settings, "the account", _accounts(start) + 1)
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
    _find(settings, TopicNames(settings.topic_prefix).raw_hl7v2, keyed(fixed), fixed)
    wait_for_charges(settings, "the fixed charge", count=charges(before)[0] + 1)
    after = settle(settings)
    assert charges(after)[0] - charges(before)[0] == 1
    assert charges(after)[1] - charges(before)[1] == 35_000
    assert store.original(record.record_id) == broken
    assert [item.record_id for item in store.list(status="open")] == [other.record_id]


def test_a_replayed_message_that_fails_again_leaves_its_item_open(
    settings: Settings, stack_store: QuarantineStore
) -> None:
    visit = f"V{_uid()}"
    control_id = f"D{visit}"
    broken = dft(control_id, visit, [("CG", "99283", "ED visit", 1, "3x0.00")])
    asyncio.run(send_messages(settings, [broken]))
    item = _item_where(stack_store, "the broken charge in quarantine", lambda i: True, message_id=control_id)
    assert (item.rule, item.status, item.occurrences) == ("HL7-FT1-11-AMOUNT", "open", 1)

    # Replayed unchanged, it fails again at once, racing the replay's own mark: whichever reaches the
    # store first, the item ends open with both failures counted.
    report = asyncio.run(replay(settings, stack_store, [item.record_id]))
    assert report.replayed == [item.record_id]
    again = _item_where(
        stack_store,
        "the replay's failure: 2 occurrences, 1 replay",
        lambda i: i.occurrences == 2 and i.replay_count == 1,
        message_id=control_id,
    )
    assert again.record_id == item.record_id
    assert again.status == "open"
    assert again.replayed_at is not None and again.last_seen_at >= again.replayed_at
    assert len(stack_store.occurrences(item.record_id)) == 2


def test_a_quarantine_record_delivered_twice_counts_once(
    settings: Settings, stack_store: QuarantineStore
) -> None:
    first = _record("ingest", adt("A01", f"A{_uid()}", f"V{_uid()}"), None, "TEST-REDELIVERY")
    later = first.model_copy(update={"recorded_at": first.recorded_at + dt.timedelta(seconds=1)})
    marker = _record("ingest", b"marker", None, "TEST-REDELIVERY-MARKER")

    async def publish() -> None:
        prod = producer(settings)
        await prod.start()
        try:
            topic = TopicNames(settings.topic_prefix).exceptions
            # The same record twice (what an at-least-once producer or consumer can deliver), then a new
            # failure of the same message, then a marker: one key, so one partition, read in this order.
            for record in (first, first, later, marker):
                await prod.send_and_wait(
                    topic, key=b"redelivery-test", value=record.model_dump_json().encode()
                )
        finally:
            await prod.stop()

    asyncio.run(publish())
    # Once the marker is stored, everything before it in its partition is.
    _item_where(stack_store, "the marker", lambda i: True, rule="TEST-REDELIVERY-MARKER")
    [item] = stack_store.list(rule="TEST-REDELIVERY", status=None)
    assert item.occurrences == 2
    assert stack_store.occurrences(item.record_id) == [first.recorded_at, later.recorded_at]


def test_the_cli_replays_by_filter_on_the_stack(
    settings: Settings, store: QuarantineStore, tmp_path: Path
) -> None:
    visit, other = f"V{_uid()}", f"V{_uid()}"
    wanted = _record("ingest", adt("A01", f"A{visit}", visit), f"NMH:{visit}", "TEST-CLI")
    unwanted = _record("ingest", adt("A01", f"A{other}", other), f"NMH:{other}", "TEST-CLI")
    store.add([wanted, unwanted])
    env = settings_env(settings) | {"HCSYNC_QUARANTINE_DATABASE_URL": store.database_url}

    def run(*args: str) -> str:
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(exceptions_app, list(args), env=env)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        return result.stdout

    dry = run("replay", "--encounter", f"NMH:{visit}", "--dry-run")
    assert wanted.record_id in dry and unwanted.record_id not in dry and "nothing was sent" in dry
    assert {i.status for i in store.list(status=None)} == {"open"}

    done = run("replay", "--encounter", f"NMH:{visit}", "--rule", "TEST-CLI", "--yes")
    assert "replayed 1 item(s) (ingest 1)" in done and wanted.record_id in done
    raw = base64.b64decode(wanted.original_b64)
    _find(settings, TopicNames(settings.topic_prefix).raw_hl7v2, keyed(raw), raw)
    replayed = store.get(wanted.record_id)
    assert replayed is not None and (replayed.status, replayed.replay_count) == ("replayed", 1)
    assert [i.record_id for i in store.list(status="open")] == [unwanted.record_id]
