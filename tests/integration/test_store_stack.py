"""The message store in the running stack: every message stored, forwarded, and its outcome recorded;
conflicts quarantined and never replayed as is; `hcsync messages`, `hcsync send` and `hcsync status`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from adapters.inbound.store import MessageFilter, MessageInfo, MessageStore
from adapters.mllp.client import send_mllp
from canonical import ids
from cluster.stack import Stack
from foundation.topics import TopicNames
from tests.hl7_samples import adt, dft
from tests.integration.conftest import charges, report_now, run_cli, wait_until
from tests.x12_samples import interchange


def _uid() -> str:
    return uuid.uuid4().hex[:8].upper()


def _stored(stack: Stack, control_id: str) -> list[MessageInfo]:
    store = MessageStore(f"sqlite:///{stack.run_dir / 'messages.db'}")
    try:
        return store.list(MessageFilter(control_id=control_id), limit=None)
    finally:
        store.close()


def _wait_outcome(stack: Stack, control_id: str, outcome: str) -> MessageInfo:
    found: list[MessageInfo] = []

    def recorded() -> bool:
        found[:] = _stored(stack, control_id)
        return any(info.outcome == outcome for info in found)

    wait_until(f"control id {control_id} recorded {outcome} (last seen: {found})", recorded, timeout_s=90)
    return next(info for info in found if info.outcome == outcome)


def test_a_message_is_stored_forwarded_and_its_outcome_recorded(stack: Stack) -> None:
    settings = stack.settings
    uid = _uid()
    visit = f"S{uid}"
    admit, charge = (
        adt("A04", f"A{uid}", visit, patient_class="E", dept="ED"),
        dft(f"D{uid}", visit, [("CG", "99283", "ED visit", 1, "450.00")], dept="ED"),
    )
    before = charges(report_now(settings))
    answers = asyncio.run(send_mllp(settings.mllp_host, settings.mllp_port, [admit, charge]))
    assert [a.code for a in answers] == ["AA", "AA"]
    mapped = _wait_outcome(stack, f"D{uid}", "mapped")
    assert mapped.state == "forwarded" and mapped.channel.startswith("mllp ")
    assert mapped.event_ids == (ids.event_id("EPIC^NMH", f"D{uid}", 0),)
    assert mapped.ack == answers[1].raw
    wait_until("the charge", lambda: charges(report_now(settings)) == (before[0] + 1, before[1] + 45_000))
    # The engineer's view of it.
    [listed] = [
        json.loads(line)
        for line in run_cli(
            settings, "messages", "list", "--visit", visit, "--type", "DFT^", "--json"
        ).splitlines()
    ]
    assert (listed["control_id"], listed["outcome"], listed["state"]) == (f"D{uid}", "mapped", "forwarded")
    shown = run_cli(settings, "messages", "show", mapped.message_id[:10])
    assert "FT1|1|" in shown and "MSA|AA|" in shown and mapped.event_ids[0] in shown


def test_a_quarantined_message_records_its_exception(stack: Stack) -> None:
    uid = _uid()
    bad = dft(f"Q{uid}", f"S{uid}", [("CG", "99283", "ED visit", 1, "12.3.4")], dept="ED")
    [answer] = asyncio.run(send_mllp(stack.settings.mllp_host, stack.settings.mllp_port, [bad]))
    assert answer.code == "AA"  # stored: the pipeline, not the gateway, finds the fault
    info = _wait_outcome(stack, f"Q{uid}", "quarantined")
    assert info.outcome_rule == "HL7-FT1-11-AMOUNT" and info.exception_id
    exception_id = info.exception_id
    wait_until(
        f"quarantine item {exception_id} listed",
        lambda: (
            exception_id in run_cli(stack.settings, "exceptions", "list", "--message-id", f"Q{uid}", "--json")
        ),
    )


def test_a_conflict_is_quarantined_and_replayed_only_under_a_new_control_id(
    stack: Stack, tmp_path: Path
) -> None:
    settings = stack.settings
    uid = _uid()
    visit = f"S{uid}"
    first = dft(f"K{uid}", visit, [("CG", "99283", "ED visit", 1, "100.00")], dept="ED")
    corrected = dft(f"K{uid}", visit, [("CG", "99283", "ED visit", 1, "120.00")], dept="ED")
    before = charges(report_now(settings))
    answers = asyncio.run(
        send_mllp(
            settings.mllp_host,
            settings.mllp_port,
            [adt("A04", f"A{uid}", visit, dept="ED"), first, corrected],
        )
    )
    assert [a.code for a in answers] == ["AA", "AA", "AE"]
    assert "HL7-MSH-10-CONFLICT" in answers[2].text
    stored = _stored(stack, f"K{uid}")
    assert sorted(info.state for info in stored) == ["conflict", "forwarded"] or len(stored) == 2
    # The conflict reaches the quarantine with its bytes, and only the first message is posted.
    found: list[dict[str, object]] = []

    def quarantined() -> bool:
        out = run_cli(
            settings,
            "exceptions",
            "list",
            "--rule",
            "HL7-MSH-10-CONFLICT",
            "--message-id",
            f"K{uid}",
            "--json",
        )
        found[:] = [json.loads(line) for line in out.splitlines()]
        return len(found) == 1

    wait_until("the conflict in the quarantine", quarantined)
    record_id = str(found[0]["record_id"])
    wait_until(
        "the first charge", lambda: charges(report_now(settings)) == (before[0] + 1, before[1] + 10_000)
    )
    refused = run_cli(settings, "exceptions", "replay", record_id, code=1)
    assert refused == "" or "new MSH-10" in refused
    same_id = tmp_path / "same.hl7"
    same_id.write_bytes(corrected)
    run_cli(settings, "exceptions", "replay", record_id, "--with-file", str(same_id), code=1)
    renamed = tmp_path / "renamed.hl7"
    renamed.write_bytes(corrected.replace(f"K{uid}".encode(), f"N{uid}".encode()))
    run_cli(settings, "exceptions", "replay", record_id, "--with-file", str(renamed))
    wait_until(
        "the corrected charge under its new control id",
        lambda: charges(report_now(settings)) == (before[0] + 2, before[1] + 22_000),
    )


def test_replaying_stored_messages_posts_nothing_twice(stack: Stack) -> None:
    settings = stack.settings
    uid = _uid()
    visit = f"S{uid}"
    messages = [
        adt("A04", f"A{uid}", visit, patient_class="E", dept="ED"),
        dft(f"D{uid}", visit, [("CG", "99283", "ED visit", 1, "75.00")], dept="ED"),
    ]
    before = charges(report_now(settings))
    asyncio.run(send_mllp(settings.mllp_host, settings.mllp_port, messages))
    after_once = (before[0] + 1, before[1] + 7_500)
    wait_until("the charge", lambda: charges(report_now(settings)) == after_once)
    _wait_outcome(stack, f"D{uid}", "mapped")
    seen = report_now(settings).counters.get("duplicate_events", 0)
    out = run_cli(settings, "messages", "replay", "--visit", visit, "--yes")
    assert "queued 2 message(s)" in out
    # The replayed events reach the encounter table, which drops them as repeats: wait for that, not a clock.
    wait_until(
        "the replayed events to be dropped as repeats",
        lambda: report_now(settings).counters.get("duplicate_events", 0) >= seen + 2,
    )
    assert charges(report_now(settings)) == after_once
    replayed = _stored(stack, f"D{uid}")
    assert [info.replay_count for info in replayed] == [1]


def test_send_stores_files_and_knows_a_resend(stack: Stack, tmp_path: Path) -> None:
    settings = stack.settings
    uid = _uid()
    path = tmp_path / "day.hl7"
    path.write_bytes(
        adt("A04", f"F{uid}", f"S{uid}", dept="ED") + adt("A08", f"G{uid}", f"S{uid}", dept="ED")
    )
    assert "stored 2 message(s)" in run_cli(settings, "send", str(path))
    again = run_cli(settings, "send", str(path))
    assert "stored 0 message(s)" in again and "2 already stored" in again
    _wait_outcome(stack, f"G{uid}", "mapped")
    [info] = _stored(stack, f"F{uid}")
    assert info.channel == "file" and info.ack is None


def test_send_stores_x12_interchanges_and_the_forwarder_puts_them_on_raw_x12(
    stack: Stack, tmp_path: Path
) -> None:
    settings = stack.settings
    uid = str(uuid.uuid4().int)[:9]  # ISA13 is nine digits
    path = tmp_path / "claims.txt"  # named as clearinghouses name them: told by content
    path.write_bytes(b"\xef\xbb\xbf" + interchange(uid, after="\r\n").encode())
    out = " ".join(run_cli(settings, "send", str(path)).split())  # as one line, whatever the terminal's width
    assert "stored 1 message(s)" in out and f"1 X12 interchange(s) (ISA13 {uid})" in out, out
    assert "stored 0 message(s)" in run_cli(settings, "send", str(path))
    [info] = _stored(stack, uid)
    assert (info.standard, info.sender, info.message_type, info.channel) == (
        "x12",
        "ZZ:SUBMITTER",
        "837",
        "file",
    )
    wait_until(
        f"interchange {uid} forwarded", lambda: _stored(stack, uid)[0].state == "forwarded", timeout_s=60
    )
    # On the broker: one record on raw.x12, keyed sender|ISA13, the interchange's bytes as received.
    records = _read_topic(settings.bootstrap, TopicNames(settings.topic_prefix).raw_x12)
    mine = [r for r in records if r.key == f"ZZ:SUBMITTER|{uid}".encode()]
    # (The interchange ends with its IEA's terminator; the line end after it is not part of it.)
    assert [r.value for r in mine] == [interchange(uid, after="\r\n").removesuffix("\r\n").encode()]
    # Found by its transaction sets' ST02 and its group's GS06 too.
    found = run_cli(
        settings, "messages", "list", "--st02", "0002", "--gs06", "77", "--json", "--limit", "1000"
    )
    assert uid in [json.loads(line)["control_id"] for line in found.splitlines()]


def _read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    async def read() -> list[ConsumerRecord[bytes, bytes]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        out: list[ConsumerRecord[bytes, bytes]] = []
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=2000)
                got = [record for records in batches.values() for record in records]
                if not got:
                    return out
                out.extend(got)
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_status_shows_every_component_and_the_message_store(stack: Stack) -> None:
    # The supervisor writes its status each second, the MLLP listener its counters each
    # HCSYNC_MLLP_STATS_INTERVAL_S (5 s): a stack just started may have written neither yet.
    deadline = time.monotonic() + 30
    doc = json.loads(run_cli(stack.settings, "status", "--json", "--sample-s", "0.2"))
    while (doc["supervisor"] is None or doc["mllp"] is None) and time.monotonic() < deadline:
        time.sleep(0.5)
        doc = json.loads(run_cli(stack.settings, "status", "--json", "--sample-s", "0.2"))
    components = {c["name"]: c for c in doc["supervisor"]["components"]}
    assert set(components) == {
        "broker",
        "redis",
        "billing",
        "erp",
        "payer",
        "forwarder",
        "inbox",
        "mllp",
        "worker",
    }
    assert all(c["state"] == "running" and c["pid"] for c in components.values()), components
    assert doc["messages"]["messages"] >= 1 and doc["problems"] == []
    assert doc["mllp"]["connections"] >= 0 and doc["mllp"]["refused_total_cap"] == 0, doc["mllp"]
    table = run_cli(stack.settings, "status", "--sample-s", "0.2")
    assert "Components" in table and "forwarder" in table and "Message store" in table
    assert "MLLP listener" in table and "connections accepted" in table
