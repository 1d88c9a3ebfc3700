"""The quarantine store on SQLite (adds, occurrences, filters, status, replay races, exact originals,
an older database) and its agent."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import faust
import pytest
import sqlalchemy
from pydantic import SecretStr
from sqlalchemy.exc import OperationalError

from canonical.errors import StackError
from canonical.quarantine import ExceptionRecord
from foundation.settings import Settings
from streams.quarantine_agent import UNDECODABLE_RULE, decode_record, register_quarantine_agent
from streams.quarantine_store import QuarantineStore, default_quarantine_url
from tests.hl7_samples import adt
from tests.waiting import wait_until

T0 = dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)


def record(
    record_id: str,
    *,
    stage: str = "ingest",
    rule: str = "HL7-FT1-11-AMOUNT",
    encounter_id: str | None = "NMH:V1",
    message_id: str = "D1",
    original: bytes = b"MSH|^~\\&|EPIC|NMH\r",
    at: dt.datetime = T0,
    reason: str = "amount is not a number",
) -> ExceptionRecord:
    return ExceptionRecord(
        record_id=record_id,
        stage=stage,
        message_key=f"EPIC^NMH|{message_id}",
        source_message_id=message_id,
        encounter_id=encounter_id,
        rule=rule,
        reason=reason,
        segment="FT1",
        field="FT1-11",
        position=1,
        found="3x0.00",
        original_b64=base64.b64encode(original).decode("ascii"),
        recorded_at=at,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QuarantineStore]:
    opened = QuarantineStore(f"sqlite:///{tmp_path / 'quarantine.db'}")
    yield opened
    opened.close()


def test_add_is_idempotent_on_the_same_record(store: QuarantineStore) -> None:
    first = record("r1")
    assert store.add([first]) == 1
    assert store.add([first]) == 0
    assert store.add([first, first]) == 0
    [item] = store.list()
    assert item.record_id == "r1"
    assert item.occurrences == 1
    assert item.status == "open"
    assert item.first_seen_at == item.last_seen_at == T0


def test_a_repeated_failure_counts_an_occurrence_not_a_row(store: QuarantineStore) -> None:
    later = T0 + dt.timedelta(minutes=5)
    earlier = T0 - dt.timedelta(minutes=5)
    store.add([record("r1")])
    assert (
        store.add([record("r1", at=later, reason="amount still not a number"), record("r1", at=earlier)]) == 2
    )
    [item] = store.list()
    assert item.occurrences == 3
    assert item.first_seen_at == earlier
    assert item.last_seen_at == later
    assert item.reason == "amount still not a number"


def test_repeats_within_one_batch_make_one_row(store: QuarantineStore) -> None:
    batch = [record("r1"), record("r1", at=T0 + dt.timedelta(seconds=1)), record("r2")]
    assert store.add(batch) == 3
    counts = {item.record_id: item.occurrences for item in store.list()}
    assert counts == {"r1": 2, "r2": 1}


def test_list_filters_and_orders_newest_first(store: QuarantineStore) -> None:
    store.add(
        [
            record("a", at=T0),
            record("b", at=T0 + dt.timedelta(hours=1), stage="billing", rule="BILLING-REJECTED"),
            record("c", at=T0 + dt.timedelta(hours=2), encounter_id="NMH:V2", message_id="D2"),
            record("d", at=T0 + dt.timedelta(hours=3), encounter_id=None, message_id=""),
        ]
    )
    assert [i.record_id for i in store.list()] == ["d", "c", "b", "a"]
    assert [i.record_id for i in store.list(stage="billing")] == ["b"]
    assert [i.record_id for i in store.list(rule="HL7-FT1-11-AMOUNT")] == ["d", "c", "a"]
    assert [i.record_id for i in store.list(encounter_id="NMH:V2")] == ["c"]
    assert [i.record_id for i in store.list(message_id="D1")] == ["b", "a"]
    assert [i.record_id for i in store.list(since=T0 + dt.timedelta(minutes=90))] == ["d", "c"]
    # A naive time is UTC.
    assert [i.record_id for i in store.list(since=dt.datetime(2026, 11, 20, 10, 0))] == ["d", "c"]
    assert [i.record_id for i in store.list(limit=2)] == ["d", "c"]
    assert len(store.list(limit=None)) == 4
    assert store.list(stage="erp") == []


def test_status_changes_and_reopening(store: QuarantineStore) -> None:
    store.add([record("a"), record("b"), record("c")])
    assert store.mark_replayed(["a", "missing"], at=T0 + dt.timedelta(minutes=1)) == 1
    assert store.mark_resolved(["b"]) == 1
    a = store.get("a")
    assert a is not None and a.status == "replayed" and a.replay_count == 1
    assert a.replayed_at == T0 + dt.timedelta(minutes=1)
    store.mark_replayed(["a"], at=T0 + dt.timedelta(minutes=2))
    a = store.get("a")
    assert a is not None and a.replay_count == 2 and a.replayed_at == T0 + dt.timedelta(minutes=2)
    assert [i.record_id for i in store.list(status="open")] == ["c"]
    assert [i.record_id for i in store.list(status="resolved")] == ["b"]
    assert store.get("missing") is None

    # A failure recorded before the replay (a late delivery) leaves it replayed...
    store.add([record("a", at=T0 + dt.timedelta(seconds=30))])
    a = store.get("a")
    assert a is not None and a.status == "replayed" and a.occurrences == 2
    # ...one after the replay means the replay failed again: it is open again.
    store.add([record("a", at=T0 + dt.timedelta(minutes=3))])
    a = store.get("a")
    assert a is not None and a.status == "open" and a.occurrences == 3 and a.replay_count == 2


def test_a_redelivery_of_any_earlier_occurrence_is_not_counted(store: QuarantineStore) -> None:
    times = [T0 + dt.timedelta(minutes=n) for n in range(4)]
    assert store.add([record("r1", at=at) for at in times]) == 4
    # Redeliveries of occurrences in the middle, in another order, in later batches, and in one batch with
    # a new failure: only the new failure counts.
    assert store.add([record("r1", at=times[2])]) == 0
    assert store.add([record("r1", at=times[1]), record("r1", at=times[2])]) == 0
    new = T0 + dt.timedelta(minutes=10)
    assert store.add([record("r1", at=times[1]), record("r1", at=new), record("r1", at=new)]) == 1
    item = store.get("r1")
    assert item is not None and item.occurrences == 5
    assert item.first_seen_at == times[0] and item.last_seen_at == new
    assert store.occurrences("r1") == [*times, new]
    assert store.occurrences("missing") == []


def test_the_same_bytes_failing_again_count_but_a_redelivery_does_not(store: QuarantineStore) -> None:
    # Same bytes, same rule: the same record id. A resend by the source is a new failure (a new time);
    # the same exceptions-topic record delivered twice is not, however the time is written.
    first = record("r1", at=dt.datetime(2026, 11, 20, 8, 30, 0, 123456, tzinfo=dt.UTC))
    resent = record("r1", at=first.recorded_at + dt.timedelta(microseconds=1))
    same_in_another_zone = record("r1", at=first.recorded_at.astimezone(dt.timezone(dt.timedelta(hours=-5))))
    assert store.add([first]) == 1
    assert store.add([same_in_another_zone]) == 0
    assert store.add([ExceptionRecord.model_validate_json(first.model_dump_json())]) == 0
    assert store.add([resent]) == 1
    item = store.get("r1")
    assert item is not None and item.occurrences == 2


def test_a_replay_failing_before_it_is_marked_leaves_the_item_open(store: QuarantineStore) -> None:
    store.add([record("a")])
    started = T0 + dt.timedelta(minutes=1)
    # The replayed message fails again and that failure is stored before the replay is marked.
    assert store.add([record("a", at=started + dt.timedelta(milliseconds=50), reason="still bad")]) == 1
    assert store.mark_replayed(["a"], at=started) == 1
    a = store.get("a")
    assert a is not None
    assert (a.status, a.occurrences, a.replay_count) == ("open", 2, 1)
    assert a.replayed_at == started and a.reason == "still bad"


def test_a_replay_failing_after_it_is_marked_reopens_the_item(store: QuarantineStore) -> None:
    store.add([record("a")])
    started = T0 + dt.timedelta(minutes=1)
    store.mark_replayed(["a"], at=started)
    a = store.get("a")
    assert a is not None and a.status == "replayed"
    # Recorded at the very instant the replay began still counts as a failure of the replay.
    assert store.add([record("a", at=started)]) == 1
    a = store.get("a")
    assert a is not None
    assert (a.status, a.occurrences, a.replay_count) == ("open", 2, 1)


def test_old_failures_arriving_late_leave_a_replay_alone(store: QuarantineStore) -> None:
    before = T0 + dt.timedelta(seconds=30)
    store.add([record("a"), record("a", at=before)])
    started = T0 + dt.timedelta(minutes=1)
    store.mark_replayed(["a"], at=started)
    # A redelivery of a failure from before the replay: neither counted nor reopening.
    assert store.add([record("a", at=before), record("a")]) == 0
    # A failure from before the replay never seen until now: counted, but the replay still stands.
    assert store.add([record("a", at=started - dt.timedelta(microseconds=1))]) == 1
    a = store.get("a")
    assert a is not None and (a.status, a.occurrences) == ("replayed", 3)

    # The replay fails; a second replay is marked; then the first replay's failure is delivered again.
    failed = started + dt.timedelta(seconds=5)
    store.add([record("a", at=failed)])
    again = started + dt.timedelta(minutes=5)
    store.mark_replayed(["a"], at=again)
    assert store.add([record("a", at=failed)]) == 0
    a = store.get("a")
    assert a is not None
    assert (a.status, a.occurrences, a.replay_count, a.replayed_at) == ("replayed", 4, 2, again)


def test_replays_marked_out_of_order_are_judged_by_the_latest(store: QuarantineStore) -> None:
    store.add([record("a")])
    first, second = T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=3)
    # The first replay failed in between; the second replay, begun after that failure, is marked first.
    store.add([record("a", at=T0 + dt.timedelta(minutes=2))])
    store.mark_replayed(["a"], at=second)
    store.mark_replayed(["a"], at=first)
    a = store.get("a")
    assert a is not None and (a.status, a.replay_count, a.replayed_at) == ("replayed", 2, second)


def test_a_failure_after_a_resolution_reopens_one_before_it_does_not(store: QuarantineStore) -> None:
    store.add([record("a")])
    store.mark_resolved(["a"], at=T0 + dt.timedelta(minutes=1))
    store.add([record("a", at=T0 + dt.timedelta(seconds=59))])
    a = store.get("a")
    assert a is not None and a.status == "resolved"
    store.add([record("a", at=T0 + dt.timedelta(minutes=2))])
    a = store.get("a")
    assert a is not None and a.status == "open" and a.occurrences == 3


def test_list_by_sender_and_until(store: QuarantineStore) -> None:
    store.add(
        [
            record("a", at=T0),
            record("b", at=T0 + dt.timedelta(hours=1)).model_copy(update={"message_key": "CERNER^UCH|D2"}),
            # LIKE wildcards in a key must not make a sender match more than itself.
            record("c", at=T0 + dt.timedelta(hours=2)).model_copy(update={"message_key": "EPIC_NMH|D3"}),
            record("d", at=T0 + dt.timedelta(hours=3)).model_copy(update={"message_key": ""}),
        ]
    )
    assert [i.record_id for i in store.list(sender="EPIC^NMH")] == ["a"]
    assert [i.record_id for i in store.list(sender="CERNER^UCH")] == ["b"]
    assert [i.record_id for i in store.list(sender="EPIC_NMH")] == ["c"]
    assert store.list(sender="EPIC%") == [] and store.list(sender="EPIC") == []
    assert [i.record_id for i in store.list(until=T0 + dt.timedelta(hours=2))] == ["b", "a"]
    window = store.list(since=T0 + dt.timedelta(hours=1), until=T0 + dt.timedelta(hours=3))
    assert [i.record_id for i in window] == ["c", "b"]


# The quarantine table as the version before the occurrence table created it.
_OLD_SCHEMA = """
CREATE TABLE quarantine_items (
    record_id VARCHAR NOT NULL, stage VARCHAR NOT NULL, source_system VARCHAR NOT NULL,
    message_key VARCHAR NOT NULL, source_message_id VARCHAR NOT NULL, encounter_id VARCHAR,
    rule VARCHAR NOT NULL, reason TEXT NOT NULL, segment VARCHAR NOT NULL, field VARCHAR NOT NULL,
    position INTEGER, found TEXT NOT NULL, original BLOB NOT NULL, recorded_at DATETIME NOT NULL,
    first_seen_at DATETIME NOT NULL, last_seen_at DATETIME NOT NULL, occurrences INTEGER NOT NULL,
    status VARCHAR NOT NULL, status_changed_at DATETIME, replayed_at DATETIME, replay_count INTEGER NOT NULL,
    PRIMARY KEY (record_id)
)
"""


def test_a_database_of_the_previous_schema_opens_and_keeps_its_items(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    first, last = "2026-11-20 08:30:00.000000", "2026-11-20 09:30:00.000000"
    with engine.begin() as connection:
        connection.exec_driver_sql(_OLD_SCHEMA)
        connection.exec_driver_sql(
            "INSERT INTO quarantine_items VALUES ('r1', 'ingest', 'hl7v2', 'EPIC^NMH|D1', 'D1', 'NMH:V1', "
            "'HL7-FT1-11-AMOUNT', 'amount is not a number', 'FT1', 'FT1-11', 1, '3x0.00', X'4d5348', "
            f"'{last}', '{first}', '{last}', 3, 'replayed', '{last}', '2026-11-20 10:00:00.000000', 1)"
        )
    engine.dispose()

    for _ in range(2):  # opening it again changes nothing
        reopened = QuarantineStore(f"sqlite:///{path}")
        try:
            item = reopened.get("r1")
            assert item is not None and (item.occurrences, item.status, item.replay_count) == (
                3,
                "replayed",
                1,
            )
            assert reopened.original("r1") == b"MSH"
            assert item.fix_hint == ""  # a column added with master-data rules
            assert reopened.occurrences("r1") == [T0, T0 + dt.timedelta(hours=1)]
        finally:
            reopened.close()

    store = QuarantineStore(f"sqlite:///{path}")
    try:
        # The first and last failures it knew are recognised when delivered again; a new one counts.
        assert store.add([record("r1", at=T0), record("r1", at=T0 + dt.timedelta(hours=1))]) == 0
        assert store.add([record("r1", at=T0 + dt.timedelta(hours=2))]) == 1
        item = store.get("r1")
        assert item is not None and (item.occurrences, item.status) == (4, "open")
        assert store.add([record("r2")]) == 1
    finally:
        store.close()


def test_counts_by_stage_rule_and_status(store: QuarantineStore) -> None:
    store.add(
        [
            record("a"),
            record("b"),
            record("c", stage="billing", rule="BILLING-REJECTED"),
            record("d", stage="erp", rule="ADAPTER-REFUSED"),
        ]
    )
    store.mark_resolved(["d"])
    assert store.counts_by("stage") == {"ingest": 2, "billing": 1, "erp": 1}
    assert store.counts_by("rule") == {"HL7-FT1-11-AMOUNT": 2, "ADAPTER-REFUSED": 1, "BILLING-REJECTED": 1}
    assert store.counts_by("status") == {"open": 3, "resolved": 1}
    with pytest.raises(ValueError, match="cannot count by"):
        store.counts_by("reason")  # type: ignore[arg-type]


def test_originals_round_trip_byte_for_byte(store: QuarantineStore) -> None:
    latin1 = "MSH|^~\\&|EPIC|NMH\rPID|1||M1||Müller^Zoë\r".encode("latin-1")
    binary = bytes(range(256)) + b"\x00\x0b\x1c\x0d"
    hl7 = adt("A01", "A1", "V1")
    store.add(
        [record("latin1", original=latin1), record("binary", original=binary), record("hl7", original=hl7)]
    )
    assert store.original("latin1") == latin1
    assert store.original("binary") == binary
    assert store.original("hl7") == hl7
    item = store.get("binary")
    assert item is not None and item.original_size == len(binary)
    with pytest.raises(KeyError):
        store.original("missing")


def test_all_record_fields_are_kept(store: QuarantineStore) -> None:
    source = record("r1")
    store.add([source])
    item = store.get("r1")
    assert item is not None
    for name in (
        "record_id",
        "stage",
        "source_system",
        "message_key",
        "source_message_id",
        "encounter_id",
        "rule",
        "reason",
        "segment",
        "field",
        "position",
        "found",
        "recorded_at",
    ):
        assert getattr(item, name) == getattr(source, name), name


def test_nul_in_text_is_stored_escaped(store: QuarantineStore) -> None:
    store.add([record("r1", reason="bad \x00 byte")])
    item = store.get("r1")
    assert item is not None and item.reason == "bad \\x00 byte"


def test_store_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    first = QuarantineStore(url)
    first.add([record("r1")])
    first.close()
    second = QuarantineStore(url)
    try:
        item = second.get("r1")
        assert item is not None and item.recorded_at == T0
        assert second.add([record("r1")]) == 0
    finally:
        second.close()


def test_undecodable_topic_record_is_kept_whole() -> None:
    junk = b'{"record_id": "x", "stage": \xff not json'
    decoded = decode_record(junk)
    assert decoded.rule == UNDECODABLE_RULE
    assert decoded.original == junk
    assert decode_record(junk).record_id == decoded.record_id
    bad_base64 = record("r9").model_copy(update={"original_b64": "abc"}).model_dump_json().encode()
    assert decode_record(bad_base64).rule == UNDECODABLE_RULE
    good = record("r1")
    assert decode_record(good.model_dump_json().encode()) == good
    assert decode_record(None).rule == UNDECODABLE_RULE
    # Stamped with the broker's write time when known, so a redelivery is the same occurrence.
    assert decode_record(junk, T0).recorded_at == T0
    assert decode_record(good.model_dump_json().encode(), T0 + dt.timedelta(hours=1)) == good


def test_default_url(tmp_path: Path) -> None:
    explicit = Settings(
        quarantine_database_url="postgresql+psycopg://hcsync@db/q",
        quarantine_database_password=SecretStr("p@ss/word"),
        encounter_ref_key=SecretStr(secrets.token_hex(32)),  # a remote database: no demo key
    )
    assert default_quarantine_url(explicit) == "postgresql+psycopg://hcsync:p%40ss%2Fword@db/q"
    in_run = Settings(run_dir=tmp_path / "run")
    assert default_quarantine_url(in_run) == f"sqlite:///{tmp_path / 'run' / 'quarantine.db'}"
    latest = Settings(home_dir=tmp_path / "home")
    with pytest.raises(StackError, match="HCSYNC_QUARANTINE_DATABASE_URL"):
        default_quarantine_url(latest)  # no run yet: named, not created
    assert not (tmp_path / "home" / "runs" / "latest").exists()
    (tmp_path / "home" / "runs" / "latest").mkdir(parents=True)
    assert (
        default_quarantine_url(latest)
        == f"sqlite:///{tmp_path / 'home' / 'runs' / 'latest' / 'quarantine.db'}"
    )


class FlakyStore(QuarantineStore):
    """A store whose first write fails, like a database that is briefly locked or down."""

    failures = 1

    def add(self, records: Sequence[ExceptionRecord]) -> int:
        if self.failures:
            self.failures -= 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return super().add(records)


def _wait_for_items(store: QuarantineStore, count: int, timeout_s: float = 10.0) -> None:
    wait_until(
        f"{count} items in the quarantine store (rule and occurrences of each)",
        lambda: [(item.rule, item.occurrences) for item in store.list(limit=None)],
        timeout_s,
        done=lambda items: len(items) >= count,
        poll_s=0.1,
    )


def test_agent_stores_records_retries_and_keeps_undecodable_ones(tmp_path: Path) -> None:
    store = FlakyStore(f"sqlite:///{tmp_path / 'q.db'}")
    app = faust.App(f"quarantine-test-{tmp_path.name}", broker="kafka://127.0.0.1:1", web_enabled=False)
    topic = app.topic("exceptions", key_serializer="raw", value_serializer="raw")
    register_quarantine_agent(app, topic, store)
    agent = app.agents["quarantine"]
    good = record("r1", original=b"\xff\x00 not utf-8")

    written = time.time() - 60

    async def run() -> None:
        async with agent.test_context() as running:
            # The same record twice (an at-least-once redelivery) and a value that is no record at all,
            # twice too: the same broker record (same timestamp), delivered again.
            for value in (good.model_dump_json().encode(), good.model_dump_json().encode()):
                await running.put(value)
            for _ in range(2):
                await running.put(b"\x00junk", timestamp=written)
            await asyncio.to_thread(_wait_for_items, store, 2)

    try:
        asyncio.run(run())
        assert store.failures == 0
        assert store.counts_by("rule") == {"HL7-FT1-11-AMOUNT": 1, UNDECODABLE_RULE: 1}
        item = store.get("r1")
        assert item is not None and item.occurrences == 1
        assert store.original("r1") == b"\xff\x00 not utf-8"
        [junk] = store.list(rule=UNDECODABLE_RULE)
        assert store.original(junk.record_id) == b"\x00junk"
        assert junk.occurrences == 1
        assert junk.recorded_at == dt.datetime.fromtimestamp(written, dt.UTC)
    finally:
        store.close()


def test_the_fix_hint_is_kept_and_follows_the_latest_failure(store: QuarantineStore) -> None:
    hinted = record("h1").model_copy(update={"fix_hint": "add the charge code"})
    store.add([hinted])
    item = store.get("h1")
    assert item is not None and item.fix_hint == "add the charge code"
    later = record("h1", at=T0 + dt.timedelta(hours=1)).model_copy(update={"fix_hint": "add the account"})
    store.add([later])
    item = store.get("h1")
    assert item is not None and item.fix_hint == "add the account"
