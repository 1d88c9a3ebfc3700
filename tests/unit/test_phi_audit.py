"""The PHI access audit: the store refuses changes and detects tampering; every PHI-showing command writes
its record first (who, what, why, outcome) and shows nothing when it cannot; `hcsync audit list` reads it."""

from __future__ import annotations

import base64
import datetime as dt
import getpass
import json
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner, Result

import streams.replay
from adapters.inbound.hl7v2 import hl7v2_inbound
from adapters.inbound.store import MessageStore
from canonical.errors import ConfigurationError
from canonical.hl7v2.parser import parse_message
from canonical.quarantine import ExceptionRecord
from cluster.cli.audit import audit_app
from cluster.cli.console import operator
from cluster.cli.exceptions import exceptions_app
from cluster.cli.messages import messages_app
from foundation.audit import GENESIS_HASH, AuditLog, AuditStoreError, default_audit_url
from foundation.settings import Settings, get_settings
from foundation.sql import open_engine
from streams.quarantine_store import QuarantineStore
from tests.hl7_samples import adt, dft
from tests.unit.test_exceptions_cli import FakeProducer

T0 = dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)
# The PHI a command shows: the original message holds the patient's name.
ORIGINAL = dft("D77", "V77", [("CG", "99283", "ED visit", 1, "3x0.00")])


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")
    yield log
    log.close()


# -- the store -----------------------------------------------------------------------------------------


def test_records_chain_and_read_back_with_filters(audit: AuditLog) -> None:
    first = audit.append(who="ann@h1", what="exceptions show", objects=["q-1"], outcome="shown", at=T0)
    audit.append(
        who="bob@h2",
        what="messages show",
        objects=["m-1"],
        outcome="shown",
        reason="INC-1",
        at=T0 + dt.timedelta(hours=1),
    )
    audit.append(
        who="ann@h1",
        what="messages replay",
        objects=["m-1", "m-2"],
        outcome="replaying",
        at=T0 + dt.timedelta(hours=2),
    )
    assert first.seq == 1 and first.prev_hash == GENESIS_HASH
    every = audit.records()
    assert [r.seq for r in every] == [1, 2, 3]
    assert [r.prev_hash for r in every[1:]] == [r.hash for r in every[:-1]]
    assert [r.what for r in audit.records(who="ann@h1")] == ["exceptions show", "messages replay"]
    assert [r.seq for r in audit.records(what="messages")] == [2, 3]
    assert [r.seq for r in audit.records(what="messages show")] == [2]
    assert audit.records(what="message") == []  # a command's words, not a prefix of a word
    assert [r.seq for r in audit.records(since=T0 + dt.timedelta(minutes=30))] == [2, 3]
    assert [r.seq for r in audit.records(until=T0 + dt.timedelta(minutes=30))] == [1]
    assert [r.seq for r in audit.records(limit=2)] == [2, 3]
    assert every[1].reason == "INC-1" and every[2].objects == ("m-1", "m-2") and every[0].at == T0
    assert audit.verify() == ([], every[-1].hash)


def test_the_database_refuses_update_and_delete(audit: AuditLog, tmp_path: Path) -> None:
    audit.append(who="ann@h1", what="exceptions show", objects=["q-1"], outcome="shown")
    raw = sqlite3.connect(tmp_path / "audit.db")
    try:
        for statement in (
            "UPDATE phi_access_audit SET who = 'nobody'",
            "DELETE FROM phi_access_audit",
            "DELETE FROM phi_access_audit WHERE seq = 1",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="phi_access_audit is append-only"):
                raw.execute(statement)
    finally:
        raw.close()
    engine = open_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    try:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text("UPDATE phi_access_audit SET outcome = 'denied'"))
    finally:
        engine.dispose()
    # Reopening the store keeps the triggers (and the records).
    again = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")
    try:
        assert [r.who for r in again.records()] == ["ann@h1"]
    finally:
        again.close()


def test_tampering_behind_the_triggers_breaks_the_chain(audit: AuditLog, tmp_path: Path) -> None:
    for n in range(1, 5):
        audit.append(who="ann@h1", what="messages show", objects=[f"m-{n}"], outcome="shown")
    raw = sqlite3.connect(tmp_path / "audit.db")
    try:
        raw.execute("DROP TRIGGER phi_access_audit_no_update")
        raw.execute("DROP TRIGGER phi_access_audit_no_delete")
        raw.execute("UPDATE phi_access_audit SET who = 'bob@h2' WHERE seq = 2")
        raw.execute("DELETE FROM phi_access_audit WHERE seq = 4")
        raw.execute("DELETE FROM phi_access_audit WHERE seq = 3")
        raw.commit()
    finally:
        raw.close()
    breaks, head = audit.verify()
    assert [(b.seq, b.problem) for b in breaks] == [(2, "its content does not match its hash (altered)")]
    # Removing the last records leaves a shorter, intact chain: only a head hash kept elsewhere tells.
    assert head == audit.records()[-1].hash
    raw = sqlite3.connect(tmp_path / "audit.db")
    try:
        raw.execute("DELETE FROM phi_access_audit WHERE seq = 1")
        raw.commit()
    finally:
        raw.close()
    problems = {(b.seq, b.problem) for b in audit.verify()[0]}
    assert (2, "expected record 1: records are missing") in problems
    assert (2, "does not link to the record before it") in problems


def test_concurrent_appenders_keep_one_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    logs = [AuditLog(url) for _ in range(4)]
    errors: list[BaseException] = []

    def work(log: AuditLog, n: int) -> None:
        try:
            for i in range(10):
                log.append(who=f"user{n}@h", what="messages show", objects=[f"m-{n}-{i}"], outcome="shown")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(log, n)) for n, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert not errors, errors
        records = logs[0].records()
        assert [r.seq for r in records] == list(range(1, 41))
        assert logs[0].verify()[0] == []
    finally:
        for log in logs:
            log.close()


def test_the_default_store_is_in_the_home_directory_and_required_outside_the_embedded_stack(
    tmp_path: Path,
) -> None:
    assert (
        default_audit_url(Settings(_env_file=None, home_dir=tmp_path)) == f"sqlite:///{tmp_path / 'audit.db'}"
    )
    deployed = Settings(_env_file=None, kafka_bootstrap="kafka:9092", encounter_ref_key=secrets.token_hex(32))
    with pytest.raises(
        ConfigurationError, match="HCSYNC_AUDIT_DATABASE_URL must name the shared audit store"
    ):
        default_audit_url(deployed)
    with pytest.raises(ConfigurationError, match="must be SQLite or PostgreSQL"):
        AuditLog("mysql+pymysql://audit@db/audit")


def test_an_unwritable_store_is_named(tmp_path: Path) -> None:
    (tmp_path / "audit.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(AuditStoreError, match="cannot be opened: DatabaseError"):
        AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")


# -- the commands --------------------------------------------------------------------------------------


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A quarantine store and a message store with one item each, and the environment pointing at them."""
    quarantine = QuarantineStore(f"sqlite:///{tmp_path / 'quarantine.db'}")
    quarantine.add(
        [
            ExceptionRecord.model_validate(
                {
                    "record_id": "ingest-1",
                    "stage": "ingest",
                    "rule": "HL7-FT1-11-AMOUNT",
                    "reason": "message D77, segment FT1, field FT1-11, position 1: not a number",
                    "original_b64": base64.b64encode(ORIGINAL).decode("ascii"),
                    "recorded_at": T0,
                    "source_message_id": "D77",
                    "message_key": "EPIC^NMH|D77",
                    "encounter_id": "NMH:V77",
                }
            )
        ]
    )
    quarantine.close()
    messages = MessageStore(f"sqlite:///{tmp_path / 'messages.db'}")
    raw = adt("A01", "C1", "V1")
    [receipt] = messages.store(
        [(hl7v2_inbound(raw, parse_message(raw), "mllp test", T0), lambda v, f: b"ACK")]
    )
    messages.close()
    get_settings.cache_clear()
    yield {
        "HCSYNC_QUARANTINE_DATABASE_URL": f"sqlite:///{tmp_path / 'quarantine.db'}",
        "HCSYNC_MESSAGE_STORE_URL": f"sqlite:///{tmp_path / 'messages.db'}",
        "HCSYNC_HOME_DIR": str(tmp_path / "home"),
        "message_id": receipt.message_id,
    }
    get_settings.cache_clear()


def _run(app: object, env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    get_settings.cache_clear()
    settings_env = {name: value for name, value in env.items() if name.startswith("HCSYNC_")}
    return CliRunner().invoke(app, list(args), env=settings_env, input=stdin)  # type: ignore[arg-type]


def _records(env: dict[str, str]) -> list[tuple[str, tuple[str, ...], str, str, str]]:
    log = AuditLog(f"sqlite:///{Path(env['HCSYNC_HOME_DIR']) / 'audit.db'}")
    try:
        return [(r.what, r.objects, r.outcome, r.reason, r.who) for r in log.records()]
    finally:
        log.close()


def test_each_phi_command_records_who_what_why_and_outcome(stores: dict[str, str]) -> None:
    me, message_id = operator(), stores["message_id"]
    assert _run(exceptions_app, stores, "show", "ingest-1", "--reason", "INC-9 fix amount").exit_code == 0
    assert _run(exceptions_app, stores, "show", "nope").exit_code == 1
    assert _run(exceptions_app, stores, "list").exit_code == 0
    assert _run(exceptions_app, stores, "replay", "ingest-1", "--dry-run").exit_code == 0
    assert _run(messages_app, stores, "show", message_id[:8], "--raw").exit_code == 0
    assert _run(messages_app, stores, "list").exit_code == 0  # the table: no PHI, no record
    assert _run(messages_app, stores, "list", "--json").exit_code == 0
    assert (
        _run(messages_app, stores, "list", "--patient", "NOBODY").exit_code == 0
    )  # nothing found, nothing read
    assert _run(messages_app, stores, "list", "--visit", "V1").exit_code == 0  # a search by visit: who has it
    assert _run(messages_app, stores, "replay", "--visit", "V1", "--dry-run").exit_code == 0
    replayed = _run(messages_app, stores, "replay", message_id, "--reason", "resend after outage")
    assert replayed.exit_code == 0, replayed.output
    assert _records(stores) == [
        ("exceptions show", ("ingest-1",), "shown", "INC-9 fix amount", me),
        ("exceptions show", ("nope",), "not found", "", me),
        ("exceptions list", ("ingest-1",), "shown", "", me),
        ("exceptions replay", ("ingest-1",), "dry run", "", me),
        ("messages show", (message_id,), "shown", "", me),  # the full id, not the prefix given
        ("messages list", (message_id,), "shown", "", me),
        ("messages list", (message_id,), "shown", "", me),
        ("messages replay", (message_id,), "dry run", "", me),
        ("messages replay", (message_id,), "replaying", "resend after outage", me),
    ]


def test_a_replay_by_filter_records_the_listing_and_the_replay(
    stores: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeProducer()
    monkeypatch.setattr(streams.replay, "producer", lambda settings: fake)
    refused = _run(exceptions_app, stores, "replay", "--all-open", stdin="n\n")
    assert refused.exit_code == 1 and not fake.sent
    done = _run(exceptions_app, stores, "replay", "--all-open", "--reason", "INC-9", stdin="y\n")
    assert done.exit_code == 0, done.output
    assert [value for _, _, value in fake.sent] == [ORIGINAL]
    assert [(what, objects, outcome, reason) for what, objects, outcome, reason, _ in _records(stores)] == [
        ("exceptions replay", ("ingest-1",), "listed for confirmation", ""),
        ("exceptions replay", ("ingest-1",), "listed for confirmation", "INC-9"),
        ("exceptions replay", ("ingest-1",), "replaying", "INC-9"),
    ]


def test_nothing_is_shown_or_replayed_when_the_audit_cannot_be_written(
    stores: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(stores["HCSYNC_HOME_DIR"])
    home.mkdir()
    (home / "audit.db").write_bytes(b"this is not a database" * 100)

    def no_producer(settings: Settings) -> object:
        raise AssertionError("nothing may be replayed without its audit record")

    monkeypatch.setattr(streams.replay, "producer", no_producer)
    message_id = stores["message_id"]
    for app, args in [
        (exceptions_app, ["show", "ingest-1"]),
        (exceptions_app, ["show", "ingest-1", "--raw"]),
        (exceptions_app, ["list", "--json"]),
        (exceptions_app, ["replay", "ingest-1", "--yes"]),
        (exceptions_app, ["replay", "ingest-1", "--dry-run"]),
        (messages_app, ["show", message_id, "--json"]),
        (messages_app, ["list", "--json"]),
        (messages_app, ["replay", message_id]),
    ]:
        result = _run(app, stores, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "PHI not shown: audit store" in result.stderr and str(home / "audit.db") in result.stderr, args
        assert "HCSYNC_AUDIT_DATABASE_URL" in result.stderr
        assert result.stdout == "", args  # not a byte of PHI
    quarantined = QuarantineStore(stores["HCSYNC_QUARANTINE_DATABASE_URL"])
    messages = MessageStore(stores["HCSYNC_MESSAGE_STORE_URL"])
    try:
        item = quarantined.get("ingest-1")
        info = messages.get(message_id)
        assert item is not None and item.status == "open" and item.replay_count == 0
        assert info is not None and info.replay_count == 0
    finally:
        quarantined.close()
        messages.close()


def test_phi_commands_refuse_outside_the_embedded_stack_without_an_audit_store(
    stores: dict[str, str],
) -> None:
    deployed = stores | {
        "HCSYNC_ERP_TARGET": "erp.prod:50062",
        "HCSYNC_ENCOUNTER_REF_KEY": secrets.token_hex(32),
    }
    result = _run(exceptions_app, deployed, "show", "ingest-1")
    assert (
        result.exit_code == 2
        and "HCSYNC_AUDIT_DATABASE_URL must name the shared audit store" in result.stderr
    )
    assert "D77" not in result.stdout
    audited = deployed | {
        "HCSYNC_AUDIT_DATABASE_URL": f"sqlite:///{Path(stores['HCSYNC_HOME_DIR']) / 'shared.db'}"
    }
    assert _run(exceptions_app, audited, "show", "ingest-1").exit_code == 0


def test_audit_list_filters_prints_json_and_verifies(stores: dict[str, str], tmp_path: Path) -> None:
    _run(exceptions_app, stores, "show", "ingest-1", "--reason", "INC-9")
    _run(messages_app, stores, "show", stores["message_id"])
    listed = _run(audit_app, stores, "list")
    assert listed.exit_code == 0, listed.output
    assert (
        "exceptions show" in listed.stdout and "INC-9" in listed.stdout and "messages show" in listed.stdout
    )
    as_json = _run(audit_app, stores, "list", "--json", "--what", "messages")
    docs = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(d["what"], d["objects"], d["who"]) for d in docs] == [
        ("messages show", [stores["message_id"]], operator())
    ]
    assert _run(audit_app, stores, "list", "--json", "--who", "nobody@nowhere").stdout == ""
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    assert "no audit records match" in _run(audit_app, stores, "list", "--since", tomorrow).stdout
    verified = _run(audit_app, stores, "list", "--verify", "--json")
    assert verified.exit_code == 0 and "chain intact; head hash " in verified.stderr
    assert verified.stderr.split()[-1] == json.loads(verified.stdout.splitlines()[-1])["hash"]

    raw = sqlite3.connect(Path(stores["HCSYNC_HOME_DIR"]) / "audit.db")
    try:
        raw.execute("DROP TRIGGER phi_access_audit_no_update")
        raw.execute("UPDATE phi_access_audit SET reason = '' WHERE seq = 1")
        raw.commit()
    finally:
        raw.close()
    broken = _run(audit_app, stores, "list", "--verify")
    assert broken.exit_code == 1 and "chain broken at record 1: its content does not match" in broken.stderr


def test_a_container_user_without_a_name_is_recorded_by_uid(
    stores: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_name() -> str:
        raise KeyError(f"getpwuid(): uid not found: {os.getuid()}")  # what getpass raises in such a pod

    monkeypatch.setattr(getpass, "getuser", no_name)
    assert _run(exceptions_app, stores, "show", "ingest-1").exit_code == 0
    ((*_, who),) = _records(stores)
    assert who == f"uid:{os.getuid()}@{socket.gethostname()}"
