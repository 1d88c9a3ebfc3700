"""`hcsync exceptions` against a quarantine store file: list, show, resolve, stats, and replay (by id and
by filter, dry runs, and a replay racing its own new failure) with the Kafka producer stood in for.

Replay against the real broker is in tests/integration/test_quarantine_replay.py.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import streams.replay
from canonical.quarantine import ExceptionRecord
from cluster.cli.exceptions import exceptions_app
from foundation.keys import keyed
from foundation.settings import Settings, get_settings
from foundation.topics import TopicNames
from streams.quarantine_agent import decode_record
from streams.quarantine_store import QuarantineStore
from streams.replay import replay
from tests.hl7_samples import adt, dft

T0 = dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)
BAD_DFT = dft("D77", "V77", [("CG", "99283", "ED visit", 1, "3x0.00")])
COMMAND = b'{"kind":"post_charge","command_id":"c1","source_event_id":"e1"}'


def _record(
    record_id: str, stage: str, rule: str, original: bytes, at: dt.datetime, **extra: object
) -> ExceptionRecord:
    return ExceptionRecord.model_validate(
        {
            "record_id": record_id,
            "stage": stage,
            "rule": rule,
            "reason": f"message D77, segment FT1, field FT1-11, position 1: [{rule}] not a number",
            "original_b64": base64.b64encode(original).decode("ascii"),
            "recorded_at": at,
            **extra,
        }
    )


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'quarantine.db'}"
    store = QuarantineStore(url)
    store.add(
        [
            _record(
                "ingest-1",
                "ingest",
                "HL7-FT1-11-AMOUNT",
                BAD_DFT,
                T0,
                source_message_id="D77",
                message_key="EPIC^NMH|D77",
                encounter_id="NMH:V77",
                segment="FT1",
                field="FT1-11",
                position=1,
                found="3x0.00",
            ),
            _record(
                "ingest-2", "ingest", "HL7-MSH-MISSING", b"NOT HL7 \xff\xfe\r", T0 + dt.timedelta(hours=1)
            ),
            _record(
                "billing-1",
                "billing",
                "BILLING-REJECTED",
                COMMAND,
                T0 + dt.timedelta(hours=2),
                encounter_id="NMH:V88",
            ),
        ]
    )
    store.close()
    # Settings are read once per process; each test must see its own store.
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _run(url: str, *args: str, stdin: str | None = None) -> Result:
    # show and replay write the PHI access audit, in the home directory: the test's, next to the store.
    home = Path(url.removeprefix("sqlite:///")).parent / "home"
    env = {"HCSYNC_QUARANTINE_DATABASE_URL": url, "HCSYNC_HOME_DIR": str(home)}
    return CliRunner().invoke(exceptions_app, list(args), env=env, input=stdin)


def _status(url: str, record_id: str) -> str:
    store = QuarantineStore(url)
    try:
        item = store.get(record_id)
        assert item is not None
        return item.status
    finally:
        store.close()


def test_list_shows_open_items_newest_first(store_url: str) -> None:
    result = _run(store_url, "list")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("billing-1") < out.index("ingest-2") < out.index("ingest-1")
    assert "HL7-FT1-11-AMOUNT" in out and "BILLING-REJECTED" in out and "NMH:V77" in out
    assert "2026-11-20 08:30:00Z" in out


def test_list_as_json_lines_with_filters(store_url: str) -> None:
    result = _run(store_url, "list", "--json", "--stage", "ingest")
    assert result.exit_code == 0, result.output
    items = [json.loads(line) for line in result.stdout.splitlines()]
    assert [i["record_id"] for i in items] == ["ingest-2", "ingest-1"]
    assert items[1]["source_message_id"] == "D77" and items[1]["original_size"] == len(BAD_DFT)
    assert "original" not in items[1] and "original_b64" not in items[1]

    def ids(*args: str) -> list[str]:
        result = _run(store_url, "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [json.loads(line)["record_id"] for line in result.stdout.splitlines()]

    assert ids("--rule", "BILLING-REJECTED") == ["billing-1"]
    assert ids("--encounter", "NMH:V77") == ["ingest-1"]
    assert ids("--message-id", "D77") == ["ingest-1"]
    assert ids("--since", "2026-11-20T09:00") == ["billing-1", "ingest-2"]
    assert ids("--since", "2026-11-20T10:00:00+01:00") == ["billing-1", "ingest-2"]
    assert ids("--since", "2026-11-21") == []
    assert ids("--limit", "1") == ["billing-1"]
    assert ids("--status", "resolved") == []


def test_list_refuses_bad_options(store_url: str) -> None:
    assert _run(store_url, "list", "--status", "closed").exit_code == 2
    assert _run(store_url, "list", "--since", "yesterday").exit_code == 2


def test_show_prints_fields_reason_and_segments_as_lines(store_url: str) -> None:
    result = _run(store_url, "show", "ingest-1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("ingest-1", "HL7-FT1-11-AMOUNT", "FT1-11", "3x0.00", "EPIC^NMH|D77", "NMH:V77", "open"):
        assert text in out, text
    assert "[HL7-FT1-11-AMOUNT] not a number" in out
    segments = BAD_DFT.decode().rstrip("\r").split("\r")
    lines = out.splitlines()
    start = lines.index(segments[0])
    assert lines[start : start + len(segments)] == segments
    assert "\r" not in out


def test_show_renders_non_utf8_bytes_visibly_and_commands_as_json(store_url: str) -> None:
    result = _run(store_url, "show", "ingest-2")
    assert result.exit_code == 0, result.output
    assert "NOT HL7 \\xff\\xfe" in result.stdout
    command = _run(store_url, "show", "billing-1")
    assert command.exit_code == 0, command.output
    assert '"kind": "post_charge"' in command.stdout


def test_show_raw_writes_the_exact_original(store_url: str) -> None:
    result = _run(store_url, "show", "ingest-2", "--raw")
    assert result.exit_code == 0
    assert result.stdout_bytes == b"NOT HL7 \xff\xfe\r"


def test_show_json_includes_the_original(store_url: str) -> None:
    result = _run(store_url, "show", "ingest-1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert base64.b64decode(doc["original_b64"]) == BAD_DFT
    assert doc["rule"] == "HL7-FT1-11-AMOUNT" and doc["position"] == 1 and doc["occurrences"] == 1
    assert doc["recorded_at"].startswith("2026-11-20T08:30:00")


def test_show_unknown_id_exits_1(store_url: str) -> None:
    result = _run(store_url, "show", "nope")
    assert result.exit_code == 1
    assert "no quarantined item 'nope'" in result.stderr


def test_resolve_marks_items_and_names_unknown_ids(store_url: str) -> None:
    result = _run(store_url, "resolve", "ingest-2", "billing-1")
    assert result.exit_code == 0, result.output
    assert "resolved 2 item(s)" in result.stdout
    assert _status(store_url, "ingest-2") == "resolved"
    listed = _run(store_url, "list", "--json")
    assert [json.loads(line)["record_id"] for line in listed.stdout.splitlines()] == ["ingest-1"]
    every = _run(store_url, "list", "--json", "--status", "all")
    assert len(every.stdout.splitlines()) == 3

    unknown = _run(store_url, "resolve", "ingest-1", "ghost")
    assert unknown.exit_code == 1
    assert "ghost" in unknown.stderr
    assert _status(store_url, "ingest-1") == "resolved"


def test_stats_counts_by_stage_rule_and_status(store_url: str) -> None:
    _run(store_url, "resolve", "billing-1")
    result = _run(store_url, "stats", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "stage": {"ingest": 2, "billing": 1},
        "rule": {"BILLING-REJECTED": 1, "HL7-FT1-11-AMOUNT": 1, "HL7-MSH-MISSING": 1},
        "status": {"open": 2, "resolved": 1},
    }
    table = _run(store_url, "stats")
    assert table.exit_code == 0, table.output
    for text in (
        "Items by stage",
        "Items by rule",
        "Items by status",
        "ingest",
        "HL7-MSH-MISSING",
        "resolved",
        "total",
    ):
        assert text in table.stdout, text


def test_replay_checks_its_arguments_before_touching_the_broker(store_url: str, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed.hl7"
    fixed.write_bytes(adt("A01", "A1", "V1"))
    assert "record ids" in _run(store_url, "replay").stderr
    both = _run(store_url, "replay", "ingest-1", "--stage", "ingest")
    assert both.exit_code == 2 and "not both" in both.stderr
    two = _run(store_url, "replay", "ingest-1", "ingest-2", "--with-file", str(fixed))
    assert two.exit_code == 2 and "exactly one" in two.stderr
    filtered = _run(store_url, "replay", "--with-file", str(fixed), "--all-open")
    assert filtered.exit_code == 2
    none = _run(store_url, "replay", "--stage", "erp")
    assert none.exit_code == 0 and "nothing to replay" in none.stdout
    many = tmp_path / "two.hl7"
    many.write_bytes(adt("A01", "A1", "V1") + adt("A03", "A2", "V1"))
    refused = _run(store_url, "replay", "ingest-1", "--with-file", str(many))
    assert refused.exit_code == 2 and "2 HL7 messages" in refused.stderr


def test_replay_by_filter_asks_first(store_url: str) -> None:
    result = _run(store_url, "replay", "--stage", "ingest", stdin="n\n")
    assert result.exit_code == 1
    assert "ingest-1" in result.stdout and "ingest-2" in result.stdout and "billing-1" not in result.stdout
    assert "Replay these 2 item(s)?" in result.stdout
    assert _status(store_url, "ingest-1") == "open"


def test_missing_store_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    get_settings.cache_clear()
    try:
        result = _run(f"sqlite:///{tmp_path / 'absent' / 'quarantine.db'}", "list")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "no quarantine store" in result.stderr
    assert not (tmp_path / "absent").exists()


def test_replay_by_filter_skips_what_cannot_be_replayed(store_url: str) -> None:
    store = QuarantineStore(store_url)
    try:
        store.add([decode_record(b"not a record")])
    finally:
        store.close()
    result = _run(store_url, "replay", "--all-open", stdin="n\n")
    assert result.exit_code == 1
    assert "skipping 1 item(s)" in result.stdout
    assert "Replay these 3 item(s)?" in result.stdout


Sent = tuple[str, bytes | None, bytes]


class FakeProducer:
    """The Kafka producer of a replay, stood in for: it keeps what is sent and acknowledges it at once.

    ``on_send`` runs as each record is acknowledged, to play the pipeline that reads it.
    """

    def __init__(self, on_send: Callable[[Sent], None] | None = None) -> None:
        self.sent: list[Sent] = []
        self.on_send = on_send

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, *, value: bytes, key: bytes | None) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        if self.on_send is not None:
            self.on_send((topic, key, value))
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


@pytest.fixture
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    fake = FakeProducer()
    monkeypatch.setattr(streams.replay, "producer", lambda settings: fake)
    return fake


@pytest.fixture
def no_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(settings: Settings) -> Any:
        raise AssertionError("a dry run must not open a producer")

    monkeypatch.setattr(streams.replay, "producer", refuse)


def _topics() -> TopicNames:
    return TopicNames(Settings().topic_prefix)


def _item(url: str, record_id: str) -> Any:
    store = QuarantineStore(url)
    try:
        return store.get(record_id)
    finally:
        store.close()


@pytest.mark.usefixtures("no_producer")
def test_replay_dry_run_by_id_shows_where_each_goes_and_sends_nothing(store_url: str) -> None:
    result = _run(store_url, "replay", "ingest-1", "billing-1", "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Would replay 2 item(s) (billing 1, ingest 1)" in out
    assert "dry run: nothing was sent" in out
    topics = _topics()
    for text in ("ingest-1", "billing-1", topics.raw_hl7v2, topics.billing, "EPIC^NMH|D77", "NMH:V88"):
        assert text in out, text
    assert "ingest-2" not in out
    assert _status(store_url, "ingest-1") == _status(store_url, "billing-1") == "open"

    unknown = _run(store_url, "replay", "ingest-1", "ghost", "--dry-run")
    assert unknown.exit_code == 1 and "no quarantined item 'ghost'" in unknown.stderr


@pytest.mark.usefixtures("no_producer")
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--rule", "HL7-FT1-11-AMOUNT"], {"ingest-1"}),
        (["--stage", "ingest"], {"ingest-1", "ingest-2"}),
        (["--sender", "EPIC^NMH"], {"ingest-1"}),
        (["--encounter", "NMH:V88"], {"billing-1"}),
        (["--message-id", "D77"], {"ingest-1"}),
        (["--since", "2026-11-20T09:00"], {"ingest-2", "billing-1"}),
        (["--until", "2026-11-20T09:00"], {"ingest-1"}),
        (["--since", "2026-11-20T09:00", "--until", "2026-11-20T10:00"], {"ingest-2"}),
        (["--stage", "ingest", "--since", "2026-11-20T09:00Z"], {"ingest-2"}),
        (["--all-open"], {"ingest-1", "ingest-2", "billing-1"}),
        (["--status", "resolved"], {"ingest-2"}),
        (["--status", "all", "--stage", "ingest"], {"ingest-1", "ingest-2"}),
    ],
)
def test_replay_dry_run_by_filter_shows_exactly_the_matches(
    store_url: str, options: list[str], expected: set[str]
) -> None:
    if "--status" in options:
        assert _run(store_url, "resolve", "ingest-2").exit_code == 0
    result = _run(store_url, "replay", *options, "--dry-run")
    assert result.exit_code == 0, result.output
    shown = {record_id for record_id in ("ingest-1", "ingest-2", "billing-1") if record_id in result.stdout}
    assert shown == expected
    assert f"Would replay {len(expected)} item(s)" in result.stdout
    assert "Replay these" not in result.stdout  # a dry run does not ask


@pytest.mark.usefixtures("no_producer")
def test_replay_by_filter_says_when_nothing_matches_and_refuses_contradictions(store_url: str) -> None:
    none = _run(store_url, "replay", "--sender", "CERNER^UCH", "--dry-run")
    assert none.exit_code == 0 and "no open items match; nothing to replay" in none.stdout
    replayed = _run(store_url, "replay", "--status", "replayed")
    assert replayed.exit_code == 0 and "no replayed items match" in replayed.stdout
    both = _run(store_url, "replay", "--all-open", "--status", "resolved")
    assert both.exit_code == 2 and "--all-open" in both.stderr
    bad = _run(store_url, "replay", "--until", "tomorrow")
    assert bad.exit_code == 2


def test_replay_by_filter_publishes_where_each_failed_and_marks_them(
    store_url: str, fake_producer: FakeProducer
) -> None:
    result = _run(store_url, "replay", "--since", "2026-11-20T09:00", "--yes")
    assert result.exit_code == 0, result.output
    assert "replayed 2 item(s) (billing 1, ingest 1)" in result.stdout
    topics = _topics()
    assert sorted(fake_producer.sent) == sorted(
        [
            (topics.raw_hl7v2, keyed(b"NOT HL7 \xff\xfe\r"), b"NOT HL7 \xff\xfe\r"),
            (topics.billing, b"NMH:V88", COMMAND),
        ]
    )
    for record_id in ("ingest-2", "billing-1"):
        item = _item(store_url, record_id)
        assert (item.status, item.replay_count) == ("replayed", 1)
    assert _status(store_url, "ingest-1") == "open"

    # Replayed items are left alone by the default filter and can be replayed again by status.
    assert "nothing to replay" in _run(store_url, "replay", "--stage", "billing", "--yes").stdout
    again = _run(store_url, "replay", "--stage", "billing", "--status", "replayed", "--yes")
    assert again.exit_code == 0, again.output
    assert _item(store_url, "billing-1").replay_count == 2


def test_replay_by_filter_asks_and_sends_only_when_told(store_url: str, fake_producer: FakeProducer) -> None:
    refused = _run(store_url, "replay", "--rule", "HL7-FT1-11-AMOUNT", stdin="n\n")
    assert refused.exit_code == 1 and fake_producer.sent == []
    accepted = _run(store_url, "replay", "--rule", "HL7-FT1-11-AMOUNT", stdin="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert [value for _, _, value in fake_producer.sent] == [BAD_DFT]
    assert _status(store_url, "ingest-1") == "replayed"


def test_replay_by_id_with_a_fixed_message(
    store_url: str, fake_producer: FakeProducer, tmp_path: Path
) -> None:
    fixed = dft("D77", "V77", [("CG", "99283", "ED visit", 1, "350.00")])
    path = tmp_path / "fixed.hl7"
    path.write_bytes(fixed)
    dry = _run(store_url, "replay", "ingest-1", "--with-file", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "(fixed)" in dry.stdout and fake_producer.sent == []
    result = _run(store_url, "replay", "ingest-1", "--with-file", str(path))
    assert result.exit_code == 0, result.output
    assert fake_producer.sent == [(_topics().raw_hl7v2, b"EPIC^NMH|D77", fixed)]
    # By id, whatever the status: a resolved item can be replayed too.
    assert _run(store_url, "resolve", "ingest-2").exit_code == 0
    assert _run(store_url, "replay", "ingest-2").exit_code == 0
    assert _status(store_url, "ingest-2") == "replayed"


def _failure_of(store_url: str, record_id: str) -> ExceptionRecord:
    """Return the record the pipeline writes when the replayed message of ``record_id`` fails again now."""
    store = QuarantineStore(store_url)
    try:
        item = store.get(record_id)
        assert item is not None
        original = store.original(record_id)
    finally:
        store.close()
    return _record(record_id, item.stage, item.rule, original, dt.datetime.now(dt.UTC))


@pytest.mark.parametrize("stored", ["before the replay is marked", "after the replay is marked"])
def test_a_replay_that_fails_again_is_open_whichever_reaches_the_store_first(
    store_url: str, monkeypatch: pytest.MonkeyPatch, stored: str
) -> None:
    store = QuarantineStore(store_url)
    late: list[ExceptionRecord] = []

    def pipeline(sent: Sent) -> None:
        # The replayed message fails again as soon as the broker has it.
        failure = _failure_of(store_url, "ingest-1")
        if stored == "before the replay is marked":
            store.add([failure])
        else:
            late.append(failure)

    monkeypatch.setattr(streams.replay, "producer", lambda settings: FakeProducer(pipeline))
    try:
        report = asyncio.run(replay(Settings(), store, ["ingest-1"]))
        assert report.replayed == ["ingest-1"]
        assert store.add(late) == len(late)
        item = store.get("ingest-1")
        assert item is not None
        assert (item.status, item.occurrences, item.replay_count) == ("open", 2, 1)
        # A redelivery of the new failure, or of the original one, changes nothing.
        assert store.add([_record("ingest-1", "ingest", "HL7-FT1-11-AMOUNT", BAD_DFT, T0)]) == 0
        assert store.add(late) == 0
    finally:
        store.close()
    listed = _run(store_url, "list")
    assert "open (replay failed)" in listed.stdout


def test_a_replay_that_does_not_fail_again_stays_replayed(
    store_url: str, fake_producer: FakeProducer
) -> None:
    store = QuarantineStore(store_url)
    try:
        asyncio.run(replay(Settings(), store, ["ingest-1"]))
        # Only the original failure, delivered again after the replay.
        assert store.add([_record("ingest-1", "ingest", "HL7-FT1-11-AMOUNT", BAD_DFT, T0)]) == 0
        item = store.get("ingest-1")
        assert item is not None and (item.status, item.occurrences) == ("replayed", 1)
    finally:
        store.close()


def test_list_by_sender_and_until(store_url: str) -> None:
    def ids(*args: str) -> list[str]:
        result = _run(store_url, "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [json.loads(line)["record_id"] for line in result.stdout.splitlines()]

    assert ids("--sender", "EPIC^NMH") == ["ingest-1"]
    assert ids("--until", "2026-11-20T10:00") == ["ingest-2", "ingest-1"]
    assert ids("--since", "2026-11-20T09:00", "--until", "2026-11-20T10:00") == ["ingest-2"]
