"""The MLLP gateway: ACK once the message is durable in the message store, resends, conflicts, failures.

Each test runs its own gateway in-process on a free port, over its own message store (a SQLite file, as
embedded): the gateway needs neither the broker nor Redis. What happens to stored messages next (the
forwarder, the pipeline) is tested through the running stack in test_pipeline, test_store_stack and the
chaos suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from adapters.inbound.store import MessageFilter, MessageStore, Receipt
from adapters.inbound.writer import GroupCommitWriter
from adapters.mllp.client import AckResult, MllpClientError, parse_ack, send_mllp
from adapters.mllp.framing import MllpDecoder, encode
from adapters.mllp.gateway import MllpGateway
from adapters.mllp.run import run_gateway
from canonical.hl7v2.parser import parse_message
from foundation.settings import Settings
from tests.hl7_samples import adt
from tests.integration.conftest import free_port

HOST = "127.0.0.1"


def _cid() -> str:
    return f"M{uuid.uuid4().hex[:12].upper()}"


def _message(control_id: str | None = None, *, accept_ack: str = "") -> bytes:
    """Return an ADT^A08 with a fresh visit; MSH-15 set when accept_ack is given."""
    cid = control_id or _cid()
    raw = adt("A08", cid, f"V{cid}")
    if accept_ack:
        raw = raw.replace(b"|P|2.5.1\r", b"|P|2.5.1|||" + accept_ack.encode() + b"\r", 1)
    return raw


class _Stored:
    """Read a gateway's message store from outside, as another process would."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path}"

    def _open(self) -> MessageStore:
        return MessageStore(self.url)

    def of(self, raw: bytes) -> list[bytes]:
        """Return the stored bytes of every message with this one's control id (conflicts included)."""
        store = self._open()
        try:
            infos = store.list(MessageFilter(control_id=parse_message(raw).control_id), limit=None)
            return [store.content(info.message_id) for info in reversed(infos)]
        finally:
            store.close()

    def acks_of(self, raw: bytes) -> list[bytes | None]:
        store = self._open()
        try:
            infos = store.list(MessageFilter(control_id=parse_message(raw).control_id), limit=None)
            return [info.ack for info in reversed(infos)]
        finally:
            store.close()

    def count(self, **where: object) -> int:
        store = self._open()
        try:
            return store.count(MessageFilter(**where))  # type: ignore[arg-type]
        finally:
            store.close()


@contextlib.asynccontextmanager
async def _gateway(
    tmp_path: Path, store: MessageStore | None = None, **overrides: object
) -> AsyncIterator[tuple[MllpGateway, _Stored]]:
    """Run a gateway on a free port over a message store in ``tmp_path``."""
    settings = Settings.model_validate({"run_dir": tmp_path, **overrides})
    store = store or MessageStore.from_settings(settings)
    writer = GroupCommitWriter(store, timeout_s=settings.message_store_timeout_s)
    await writer.start()
    gateway = MllpGateway(settings, writer, host=HOST, port=0)
    await gateway.start()
    try:
        yield gateway, _Stored(tmp_path / "messages.db")
    finally:
        await gateway.stop()
        await writer.stop()
        store.close()


async def _read_ack(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> bytes:
    decoder = MllpDecoder(1_048_576)
    while True:
        for frame in decoder.frames():
            return frame
        chunk = await asyncio.wait_for(reader.read(65_536), timeout_s)
        assert chunk, "the gateway closed the connection without answering"
        decoder.feed(chunk)


def test_ack_comes_after_the_message_is_durable_in_the_store(tmp_path: Path) -> None:
    cid = _cid()
    # LF separators: the store must hold the bytes as sent, not the parser's normalised text.
    lf_message = _message(cid).replace(b"\r", b"\n")
    others = [_message() for _ in range(2)]

    async def scenario() -> None:
        async with _gateway(tmp_path) as (gateway, stored):
            results = await send_mllp(HOST, gateway.bound_port, [lf_message, *others], timeout_s=30)
            # Read right after the ACKs, from another connection: a positive ACK means it is on disk.
            found = {raw: stored.of(raw) for raw in [lf_message, *others]}
            acks = {raw: stored.acks_of(raw) for raw in [lf_message, *others]}
            assert gateway.counters.acked == 3
        assert [r.code for r in results] == ["AA", "AA", "AA"]
        assert [r.control_id for r in results] == [parse_message(m).control_id for m in [lf_message, *others]]
        assert all(r.positive and r.text == "" for r in results)
        for raw, result in zip([lf_message, *others], results, strict=True):
            assert found[raw] == [raw], f"stored {found[raw]!r}, sent {raw!r}"
            assert acks[raw] == [result.raw], "the store keeps the ACK the sender got"
        assert parse_message(results[0].raw).control_id == f"ACK{cid}"

    asyncio.run(scenario())


def test_resent_duplicate_gets_the_identical_ack_and_nothing_new_is_stored(tmp_path: Path) -> None:
    raw = _message()
    # What real senders change on a resend: MSH-7 re-stamped, CRLF line endings.
    restamped = raw.replace(raw.split(b"|")[6], b"20991231235959", 1).replace(b"\r", b"\r\n")

    async def scenario() -> None:
        async with _gateway(tmp_path) as (gateway, stored):
            first = await send_mllp(HOST, gateway.bound_port, [raw])
            # Again on a new connection, twice more on one connection, and re-stamped.
            again = await send_mllp(HOST, gateway.bound_port, [raw])
            twice = await send_mllp(HOST, gateway.bound_port, [raw, raw])
            changed = await send_mllp(HOST, gateway.bound_port, [restamped])
            assert (gateway.counters.duplicates, gateway.counters.acked) == (4, 1)
            assert stored.of(raw) == [raw]
        answers = [first[0], again[0], *twice, changed[0]]
        assert {a.raw for a in answers} == {first[0].raw}
        assert first[0].code == "AA"

    asyncio.run(scenario())


def test_dropped_connection_after_the_store_then_resend_gives_one_message_and_the_same_ack(
    tmp_path: Path,
) -> None:
    raw = _message()
    cid = parse_message(raw).control_id

    async def scenario() -> None:
        async with _gateway(tmp_path) as (gateway, stored):
            reader, writer = await asyncio.open_connection(HOST, gateway.bound_port)
            writer.write(encode(raw))
            await writer.drain()
            # Drop the connection once the message is stored, before reading its ACK.
            deadline = time.monotonic() + 10
            while not stored.of(raw):
                assert time.monotonic() < deadline, "the message was never stored"
                await asyncio.sleep(0.05)
            writer.transport.abort()
            del reader
            resent = await send_mllp(HOST, gateway.bound_port, [raw])
            once_more = await send_mllp(HOST, gateway.bound_port, [raw])
            [stored_ack] = stored.acks_of(raw)
            assert (gateway.counters.acked, gateway.counters.duplicates) == (1, 2)
            assert stored.of(raw) == [raw]
        # The ACK the resend gets is the one stored with the first transmission.
        assert resent[0].raw == stored_ack == once_more[0].raw
        assert (resent[0].code, resent[0].control_id) == ("AA", cid)

    asyncio.run(scenario())


def test_same_control_id_with_other_content_is_stored_as_a_conflict_and_answered_ae(tmp_path: Path) -> None:
    cid = _cid()
    original = _message(cid)
    corrected = (
        original.replace(b"Doe^Jane", b"Doe^Janet") if b"Doe^Jane" in original else original + b"NTE|1||x\r"
    )
    assert corrected != original

    async def scenario() -> None:
        async with _gateway(tmp_path) as (gateway, stored):
            first, conflict = await send_mllp(HOST, gateway.bound_port, [original, corrected])
            (repeat,) = await send_mllp(HOST, gateway.bound_port, [corrected])
            assert (gateway.counters.acked, gateway.counters.conflicts, gateway.counters.duplicates) == (
                1,
                1,
                1,
            )
            assert stored.of(original) == [original, corrected], "both contents are kept"
            assert stored.count(state="conflict") == 1
        assert first.code == "AA"
        assert (conflict.code, conflict.control_id) == ("AE", cid)
        assert "HL7-MSH-10-CONFLICT" in conflict.text and "new MSH-10" in conflict.text
        err = parse_message(conflict.raw).segment("ERR")
        assert err is not None and err.get(3, 1) == "205"  # table 0357: duplicate key identifier
        assert repeat.raw == conflict.raw  # a resend of the conflict gets the same answer

    asyncio.run(scenario())


def test_many_concurrent_connections_share_store_transactions(tmp_path: Path) -> None:
    batches = [[_message() for _ in range(10)] for _ in range(20)]

    async def scenario() -> None:
        async with _gateway(tmp_path) as (gateway, stored):
            started = time.monotonic()
            results = await asyncio.gather(
                *(send_mllp(HOST, gateway.bound_port, batch, timeout_s=60) for batch in batches)
            )
            elapsed = time.monotonic() - started
            assert gateway.counters.connections == 20
            assert gateway.counters.acked == 200
            assert stored.count() == 200
        print(f"\n20 connections x 10 messages stored and acknowledged in {elapsed:.2f}s")
        for batch, answers in zip(batches, results, strict=True):
            assert [a.code for a in answers] == ["AA"] * 10
            assert [a.control_id for a in answers] == [parse_message(m).control_id for m in batch]

    asyncio.run(scenario())


def test_unparsable_frames_get_ar_with_err_and_nothing_is_stored(tmp_path: Path) -> None:
    cid = _cid()
    bad_segment = _message(cid) + b"not a segment\r"
    no_control_id = adt("A08", "", "VNOID")

    async def scenario() -> None:
        async with _gateway(tmp_path) as (gateway, stored):
            results = await send_mllp(
                HOST, gateway.bound_port, [b"NOT HL7 AT ALL\r", bad_segment, no_control_id]
            )
            assert gateway.counters.rejected == 3
            assert gateway.counters.acked == 0
            assert stored.count() == 0
        garbage, segment, missing = results
        assert (garbage.code, garbage.control_id) == ("AR", "")
        assert "HL7-MSH-MISSING" in garbage.text
        assert parse_message(garbage.raw).segment("ERR") is not None
        # The message as a whole does not parse, but its MSH does: MSA-2 still echoes MSH-10.
        assert (segment.code, segment.control_id) == ("AR", cid)
        assert "HL7-SEGMENT-NAME" in segment.text
        assert missing.code == "AR" and "HL7-MSH-10-MISSING" in missing.text

    asyncio.run(scenario())


def test_oversize_frame_is_rejected_and_the_connection_goes_on(tmp_path: Path) -> None:
    big = _message() + b"NTE|1||" + b"x" * 8_000 + b"\r"
    small = _message()

    async def scenario() -> None:
        async with _gateway(tmp_path, max_message_bytes=4_096) as (gateway, stored):
            results = await send_mllp(HOST, gateway.bound_port, [big, small])
            found = (stored.of(big), stored.of(small))
        # Counted when the connection closes, which stop() has waited for.
        assert gateway.counters.skipped_bytes >= len(big)
        rejected, accepted = results
        assert (rejected.code, rejected.control_id) == ("AR", parse_message(big).control_id)
        assert "MESSAGE-TOO-LARGE" in rejected.text and "4096" in rejected.text
        assert accepted.code == "AA"
        assert found == ([], [small])

    asyncio.run(scenario())


def test_enhanced_mode_commit_acks(tmp_path: Path) -> None:
    always = _message(accept_ack="AL")
    never = _message(accept_ack="NE")
    on_error = _message(accept_ack="ER")

    async def scenario() -> None:
        async with _gateway(tmp_path) as (gateway, stored):
            (commit,) = await send_mllp(HOST, gateway.bound_port, [always])
            reader, writer = await asyncio.open_connection(HOST, gateway.bound_port)
            try:
                writer.write(encode(never) + encode(on_error))
                await writer.drain()
                deadline = time.monotonic() + 10
                while not (stored.of(never) and stored.of(on_error)):
                    assert time.monotonic() < deadline, "NE and ER messages were never stored"
                    await asyncio.sleep(0.05)
                # NE never gets an answer and ER only on an error: nothing may arrive.
                with pytest.raises(TimeoutError):
                    await _read_ack(reader, timeout_s=1.0)
            finally:
                writer.close()
            assert gateway.counters.acked == 3
            # "No answer" is what the store keeps for them, so a resend gets none either.
            assert stored.acks_of(never) == [b""]
        assert (commit.code, commit.control_id, commit.positive) == (
            "CA",
            parse_message(always).control_id,
            True,
        )

    asyncio.run(scenario())


def test_strict_validation_answers_ae_with_the_hl7apy_error(tmp_path: Path) -> None:
    cid = _cid()
    no_evn = (
        f"MSH|^~\\&|EPIC|NMH|HCSYNC|HCSYNC|20261120083000||ADT^A01^ADT_A01|{cid}|P|2.5\r"
        "PID|1||MRN1^^^NMH^MR||Doe^Jane\rPV1|1|I\r"
    ).encode()
    # 20 KB, 10,000 repetitions of PID-3: 3.1 s in hl7apy, so refused before it without being validated.
    bomb_id = _cid()
    bomb = _message(bomb_id).replace(b"MRN001^^^NMH^MR", b"~".join([b"1"] * 10_000))
    valid = _message()

    async def scenario() -> None:
        async with _gateway(tmp_path, mllp_strict_validation=True) as (gateway, stored):
            refused, accepted = await send_mllp(HOST, gateway.bound_port, [no_evn, valid])
            started = time.monotonic()
            (too_large,) = await send_mllp(HOST, gateway.bound_port, [bomb])
            too_large_s = time.monotonic() - started
            assert (stored.of(no_evn), stored.of(bomb), stored.of(valid)) == ([], [], [valid])
        assert (refused.code, refused.control_id) == ("AE", cid)
        assert "Missing required child ADT_A01.EVN" in refused.text
        err = parse_message(refused.raw).segment("ERR")
        assert err is not None and err.get(2) == "EVN" and err.get(3, 1) == "100"
        assert accepted.code == "AA"
        assert (too_large.code, too_large.control_id) == ("AE", bomb_id)
        assert "HL7-STRICT-TOO-LARGE" in too_large.text and "without being validated" in too_large.text
        err = parse_message(too_large.raw).segment("ERR")
        assert err is not None and err.get(2, 0).split("^") == ["PID", "1", "3"]
        assert too_large_s < 1.0

    asyncio.run(scenario())


def test_strict_validation_caps_are_settings(tmp_path: Path) -> None:
    # The sample ADT has about a hundred elements and 330 bytes: caps of 50 elements or 100 bytes refuse it.
    small = _message()

    async def scenario() -> None:
        async with _gateway(tmp_path, mllp_strict_validation=True, strict_validation_max_elements=50) as (
            gateway,
            _,
        ):
            (by_elements,) = await send_mllp(HOST, gateway.bound_port, [small])
        async with _gateway(tmp_path, mllp_strict_validation=True, strict_validation_max_bytes=100) as (
            gateway,
            stored,
        ):
            (by_bytes,) = await send_mllp(HOST, gateway.bound_port, [small])
            assert stored.of(small) == []
        assert by_elements.code == "AE" and "more than the 50 strict validation accepts" in by_elements.text
        assert by_bytes.code == "AE" and "more than the 100 strict validation accepts" in by_bytes.text

    asyncio.run(scenario())


def test_control_characters_in_msh10_are_echoed_exactly(tmp_path: Path) -> None:
    cid = _cid()
    # MSH-10 holds a CR and an LF as escapes, and a tab and a 0x01 as raw bytes.
    raw = _message(cid).replace(cid.encode(), cid.encode() + b"\\X0D\\\\.br\\\t\x01", 1)
    sent_id = parse_message(raw).control_id
    assert sent_id == cid + "\r\n\t\x01"

    async def scenario() -> None:
        async with _gateway(tmp_path) as (gateway, stored):
            # send_mllp itself refuses an ACK whose MSA-2 is not the message's MSH-10.
            first, again = await send_mllp(HOST, gateway.bound_port, [raw, raw])
            assert gateway.counters.acked == 1 and gateway.counters.duplicates == 1
            assert stored.of(raw) == [raw]
        assert (first.code, first.control_id) == ("AA", sent_id)
        assert again.raw == first.raw
        assert b"\\X0D\\\\X0A\\\\X09\\\\X01\\" in first.raw

    asyncio.run(scenario())


def _self_signed(directory: Path) -> tuple[Path, Path] | None:
    """Write a self-signed certificate for 127.0.0.1; None when neither cryptography nor openssl exists."""
    cert_path, key_path = directory / "mllp.crt", directory / "mllp.key"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            return None
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                "-keyout", str(key_path), "-out", str(cert_path),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_tls(tmp_path: Path) -> None:
    pair = _self_signed(tmp_path)
    if pair is None:
        pytest.skip("neither the cryptography package nor openssl is available to make a certificate")
    cert, key = pair
    raw = _message()
    client_context = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> None:
        async with _gateway(tmp_path, mllp_tls_cert_file=cert, mllp_tls_key_file=key) as (gateway, stored):
            assert gateway.tls
            (answer,) = await send_mllp(HOST, gateway.bound_port, [raw], tls=client_context)
            # A client that does not trust the certificate cannot talk to it.
            with pytest.raises(MllpClientError, match="cannot connect"):
                await send_mllp(
                    HOST, gateway.bound_port, [raw], tls=ssl.create_default_context(), timeout_s=5
                )
            assert stored.of(raw) == [raw]
        assert (answer.code, answer.control_id) == ("AA", parse_message(raw).control_id)

    asyncio.run(scenario())


def test_run_gateway_logs_ready_serves_and_stops_on_sigterm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = Settings(run_dir=tmp_path, mllp_host=HOST, mllp_port=port)
    raw = _message()

    async def scenario() -> None:
        running = asyncio.create_task(run_gateway(settings))
        deadline = time.monotonic() + 30
        while f"ready: mllp on {HOST}:{port}" not in caplog.text:
            assert not running.done(), f"run_gateway ended early: {running!r}"
            assert time.monotonic() < deadline, "the gateway never logged ready"
            await asyncio.sleep(0.1)
        (answer,) = await send_mllp(HOST, port, [raw])
        assert answer.code == "AA"
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(running, 30)

    with caplog.at_level(logging.INFO, logger="adapters.mllp"):
        asyncio.run(scenario())
    assert "stopped: mllp after 1 connection(s), 1 frame(s): 1 stored" in caplog.text
    assert _Stored(tmp_path / "messages.db").of(raw) == [raw]


# -- a store that fails, hangs or is slow ---------------------------------------------------------


class _SlowStore(MessageStore):
    """A real store that takes ``delay_s`` per transaction, and tells when one has begun."""

    def __init__(self, url: str, delay_s: float) -> None:
        super().__init__(url)
        self.delay_s = delay_s
        self.began = threading.Event()

    def store(self, items: Sequence[object]) -> list[Receipt]:  # type: ignore[override]
        self.began.set()
        time.sleep(self.delay_s)
        return super().store(items)  # type: ignore[arg-type]


def test_an_unavailable_store_answers_resend_and_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _message()
    always = _message(accept_ack="AL")
    never = _message(accept_ack="NE")
    path = tmp_path / "messages.db"
    MessageStore(f"sqlite:///{path}").close()  # created, then locked by another writer
    locker = sqlite3.connect(path, isolation_level=None)

    async def scenario() -> None:
        store = MessageStore(f"sqlite:///{path}", busy_timeout_s=0.3)
        async with _gateway(tmp_path, store, message_store_timeout_s=0.5) as (gateway, stored):
            locker.execute("BEGIN EXCLUSIVE")
            (failed,) = await send_mllp(HOST, gateway.bound_port, [raw])
            (commit_failed,) = await send_mllp(HOST, gateway.bound_port, [always])
            # NE forbids an answer, so closing the connection is the only way to say "not stored".
            reader, writer = await asyncio.open_connection(HOST, gateway.bound_port)
            writer.write(encode(never))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            locker.execute("COMMIT")
            (retried,) = await send_mllp(HOST, gateway.bound_port, [raw])
            assert stored.of(raw) == [raw]
        assert (failed.code, failed.control_id) == ("AE", parse_message(raw).control_id)
        assert "STORE-NOT-COMMITTED" in failed.text and "resend" in failed.text
        assert commit_failed.code == "CE"
        assert retried.code == "AA"

    with caplog.at_level(logging.WARNING, logger="adapters"):
        try:
            asyncio.run(scenario())
        finally:
            locker.close()
    assert "not stored, answered resend" in caplog.text
    assert "message store unavailable" in caplog.text and "locked" in caplog.text


def test_stop_lets_the_frame_in_flight_finish(tmp_path: Path) -> None:
    raw = _message()

    async def scenario() -> None:
        store = _SlowStore(f"sqlite:///{tmp_path / 'messages.db'}", delay_s=1.0)
        async with _gateway(tmp_path, store) as (gateway, stored):
            idle_reader, idle_writer = await asyncio.open_connection(HOST, gateway.bound_port)
            sending = asyncio.create_task(send_mllp(HOST, gateway.bound_port, [raw]))
            await asyncio.to_thread(store.began.wait, 10)
            await gateway.stop()
            (answer,) = await sending
            assert answer.code == "AA"
            assert stored.of(raw) == [raw]
            # The idle connection was closed, and the listener no longer accepts.
            assert await asyncio.wait_for(idle_reader.read(), 5) == b""
            idle_writer.close()
            with pytest.raises(MllpClientError, match="cannot connect"):
                await send_mllp(HOST, gateway.bound_port, [raw], timeout_s=2)

    asyncio.run(scenario())


def test_idle_connections_are_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _gateway(tmp_path, mllp_idle_timeout_s=0.3) as (gateway, _):
            reader, writer = await asyncio.open_connection(HOST, gateway.bound_port)
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert time.monotonic() - started < 3
            writer.close()

    asyncio.run(scenario())


def test_parse_ack_reads_an_answer() -> None:
    answer: AckResult = parse_ack(b"MSH|^~\\&|A|B|C|D|20260101||ACK|ACK1|P|2.5\rMSA|AE|C1\rERR||||E||||why\r")
    assert (answer.code, answer.control_id, answer.positive, answer.text) == ("AE", "C1", False, "why")
