"""The MLLP gateway against the real embedded stack: ACK after commit, resends, concurrency, TLS.

Each test runs its own gateway in-process on a free port against the session's broker and Redis. The last
tests use stand-ins for the broker and Redis (no stack) to show what a broker failure and a stop do.
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
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from adapters.mllp.client import AckResult, MllpClientError, parse_ack, send_mllp
from adapters.mllp.framing import MllpDecoder, encode
from adapters.mllp.gateway import MllpGateway, ack_store_key
from adapters.mllp.run import run_gateway
from canonical.hl7v2.parser import parse_message
from foundation.kafka import producer
from foundation.keys import keyed
from foundation.settings import Settings
from foundation.topics import TopicNames
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


@contextlib.asynccontextmanager
async def _gateway(settings: Settings, **overrides: object) -> AsyncIterator[MllpGateway]:
    """Run a gateway on a free port with its own producer and Redis client."""
    effective = settings.model_copy(update=overrides) if overrides else settings
    kafka = producer(effective)
    await kafka.start()
    redis_client = aioredis.Redis.from_url(effective.redis)
    gateway = MllpGateway(effective, kafka, redis_client, host=HOST, port=0)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()
        await kafka.stop()
        await redis_client.aclose()


async def _raw_records(
    settings: Settings, keys: set[bytes], timeout_s: float = 30.0
) -> dict[bytes, list[bytes]]:
    """Read raw.hl7v2 from the beginning to its high watermarks; return the values of the wanted keys.

    High watermarks come from fetch responses, not ListOffsets: the embedded broker's ListOffsets is
    wrong after multi-record batches (see foundation/kafka.py).
    """
    topic = TopicNames(settings.topic_prefix).raw_hl7v2
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        assert tps, f"no partitions for {topic}"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: dict[bytes, list[bytes]] = {key: [] for key in keys}
        deadline = time.monotonic() + timeout_s
        while True:
            batches = await consumer.getmany(*tps, timeout_ms=300, max_records=5_000)
            for records in batches.values():
                for record in records:
                    if record.key in found:
                        found[record.key].append(record.value)
            behind: dict[int, tuple[int, int | None]] = {}
            for tp in tps:
                high = consumer.highwater(tp)
                position = await consumer.position(tp)
                if high is None or position < high:
                    behind[tp.partition] = (position, high)
            if not behind:
                return found
            assert time.monotonic() < deadline, (
                f"{topic} was not read to its end in {timeout_s:g}s: (position, high watermark) of the "
                f"partitions behind {behind}; records so far per wanted key "
                f"{ {key: len(values) for key, values in found.items()} }"
            )
    finally:
        await consumer.stop()


async def _wait_for_records(settings: Settings, key: bytes, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (found := len((await _raw_records(settings, {key}))[key])) < count:
        assert time.monotonic() < deadline, (
            f"{count} record(s) for {key!r} never appeared in {timeout_s:g}s: {found} found"
        )
        await asyncio.sleep(0.2)


async def _read_ack(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> bytes:
    decoder = MllpDecoder(1_048_576)
    while True:
        for frame in decoder.frames():
            return frame
        chunk = await asyncio.wait_for(reader.read(65_536), timeout_s)
        assert chunk, "the gateway closed the connection without answering"
        decoder.feed(chunk)


# -- against the embedded stack ---------------------------------------------------------------------


def test_ack_comes_after_the_record_is_on_the_broker(settings: Settings) -> None:
    cid = _cid()
    # LF separators: the record must hold the bytes as sent, not the parser's normalised text.
    lf_message = _message(cid).replace(b"\r", b"\n")
    others = [_message() for _ in range(2)]

    async def scenario() -> None:
        async with _gateway(settings) as gateway:
            results = await send_mllp(HOST, gateway.bound_port, [lf_message, *others], timeout_s=30)
            # Read right after the ACKs, with no waiting: a positive ACK means the broker already has it.
            records = await _raw_records(settings, {keyed(m) for m in [lf_message, *others]})
            assert gateway.counters.acked == 3
        assert [r.code for r in results] == ["AA", "AA", "AA"]
        assert [r.control_id for r in results] == [parse_message(m).control_id for m in [lf_message, *others]]
        assert all(r.positive and r.text == "" for r in results)
        assert records[keyed(lf_message)] == [lf_message]
        for raw in others:
            assert records[keyed(raw)] == [raw]
        assert parse_message(results[0].raw).control_id == f"ACK{cid}"

    asyncio.run(scenario())


def test_resent_duplicate_gets_the_identical_ack_and_no_second_record(settings: Settings) -> None:
    raw = _message()

    async def scenario() -> None:
        async with _gateway(settings) as gateway:
            first = await send_mllp(HOST, gateway.bound_port, [raw])
            # Again on a new connection, and twice more on one connection.
            again = await send_mllp(HOST, gateway.bound_port, [raw])
            twice = await send_mllp(HOST, gateway.bound_port, [raw, raw])
            assert gateway.counters.duplicates == 3
            assert gateway.counters.acked == 1
        answers = [first[0], again[0], *twice]
        assert {a.raw for a in answers} == {first[0].raw}
        assert first[0].code == "AA"
        assert len((await _raw_records(settings, {keyed(raw)}))[keyed(raw)]) == 1

    asyncio.run(scenario())


def test_dropped_connection_after_the_broker_write_then_resend_gives_one_record_and_the_same_ack(
    settings: Settings,
) -> None:
    raw = _message()
    key = keyed(raw)
    cid = parse_message(raw).control_id

    async def scenario() -> None:
        async with _gateway(settings) as gateway:
            reader, writer = await asyncio.open_connection(HOST, gateway.bound_port)
            writer.write(encode(raw))
            await writer.drain()
            # The gateway has written to the broker once the record is visible; drop before reading the ACK.
            await _wait_for_records(settings, key, 1)
            writer.transport.abort()
            del reader
            resent = await send_mllp(HOST, gateway.bound_port, [raw])
            once_more = await send_mllp(HOST, gateway.bound_port, [raw])
            redis_client = aioredis.Redis.from_url(settings.redis)
            try:
                stored = await redis_client.get(ack_store_key(settings.topic_prefix, key))
            finally:
                await redis_client.aclose()
            assert gateway.counters.acked == 1
            assert gateway.counters.duplicates == 2
        # The ACK the resend gets is the one stored for the first transmission, before it was written.
        assert resent[0].raw == stored
        assert once_more[0].raw == stored
        assert (resent[0].code, resent[0].control_id) == ("AA", cid)
        assert (await _raw_records(settings, {key}))[key] == [raw]

    asyncio.run(scenario())


def test_many_concurrent_connections(settings: Settings) -> None:
    batches = [[_message() for _ in range(10)] for _ in range(20)]

    async def scenario() -> None:
        async with _gateway(settings) as gateway:
            started = time.monotonic()
            results = await asyncio.gather(
                *(send_mllp(HOST, gateway.bound_port, batch, timeout_s=60) for batch in batches)
            )
            elapsed = time.monotonic() - started
            assert gateway.counters.connections == 20
            assert gateway.counters.acked == 200
        print(f"\n20 connections x 10 messages acknowledged in {elapsed:.2f}s")
        for batch, answers in zip(batches, results, strict=True):
            assert [a.code for a in answers] == ["AA"] * 10
            assert [a.control_id for a in answers] == [parse_message(m).control_id for m in batch]
        records = await _raw_records(settings, {keyed(m) for batch in batches for m in batch})
        assert all(len(values) == 1 for values in records.values())

    asyncio.run(scenario())


def test_unparsable_frames_get_ar_with_err_and_nothing_is_written(settings: Settings) -> None:
    cid = _cid()
    bad_segment = _message(cid) + b"not a segment\r"
    no_control_id = adt("A08", "", "VNOID")

    async def scenario() -> None:
        async with _gateway(settings) as gateway:
            results = await send_mllp(
                HOST, gateway.bound_port, [b"NOT HL7 AT ALL\r", bad_segment, no_control_id]
            )
            assert gateway.counters.rejected == 3
            assert gateway.counters.acked == 0
        garbage, segment, missing = results
        assert (garbage.code, garbage.control_id) == ("AR", "")
        assert "HL7-MSH-MISSING" in garbage.text
        assert parse_message(garbage.raw).segment("ERR") is not None
        # The message as a whole does not parse, but its MSH does: MSA-2 still echoes MSH-10.
        assert (segment.code, segment.control_id) == ("AR", cid)
        assert "HL7-SEGMENT-NAME" in segment.text
        assert missing.code == "AR" and "HL7-MSH-10-MISSING" in missing.text
        records = await _raw_records(settings, {keyed(b"NOT HL7 AT ALL\r"), keyed(bad_segment)})
        assert all(values == [] for values in records.values())

    asyncio.run(scenario())


def test_oversize_frame_is_rejected_and_the_connection_goes_on(settings: Settings) -> None:
    big = _message() + b"NTE|1||" + b"x" * 8_000 + b"\r"
    small = _message()

    async def scenario() -> None:
        async with _gateway(settings, max_message_bytes=4_096) as gateway:
            results = await send_mllp(HOST, gateway.bound_port, [big, small])
        # Counted when the connection closes, which stop() has waited for.
        assert gateway.counters.skipped_bytes >= len(big)
        rejected, accepted = results
        assert (rejected.code, rejected.control_id) == ("AR", parse_message(big).control_id)
        assert "MESSAGE-TOO-LARGE" in rejected.text and "4096" in rejected.text
        assert accepted.code == "AA"
        records = await _raw_records(settings, {keyed(big), keyed(small)})
        assert records == {keyed(big): [], keyed(small): [small]}

    asyncio.run(scenario())


def test_enhanced_mode_commit_acks(settings: Settings) -> None:
    always = _message(accept_ack="AL")
    never = _message(accept_ack="NE")
    on_error = _message(accept_ack="ER")

    async def scenario() -> None:
        async with _gateway(settings) as gateway:
            (commit,) = await send_mllp(HOST, gateway.bound_port, [always])
            reader, writer = await asyncio.open_connection(HOST, gateway.bound_port)
            try:
                writer.write(encode(never) + encode(on_error))
                await writer.drain()
                await _wait_for_records(settings, keyed(never), 1)
                await _wait_for_records(settings, keyed(on_error), 1)
                # NE never gets an answer and ER only on an error: nothing may arrive.
                with pytest.raises(TimeoutError):
                    await _read_ack(reader, timeout_s=1.0)
            finally:
                writer.close()
            assert gateway.counters.acked == 3
        assert (commit.code, commit.control_id, commit.positive) == (
            "CA",
            parse_message(always).control_id,
            True,
        )

    asyncio.run(scenario())


def test_strict_validation_answers_ae_with_the_hl7apy_error(settings: Settings) -> None:
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
        async with _gateway(settings, mllp_strict_validation=True) as gateway:
            refused, accepted = await send_mllp(HOST, gateway.bound_port, [no_evn, valid])
            started = time.monotonic()
            (too_large,) = await send_mllp(HOST, gateway.bound_port, [bomb])
            too_large_s = time.monotonic() - started
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
        records = await _raw_records(settings, {keyed(no_evn), keyed(bomb)})
        assert records == {keyed(no_evn): [], keyed(bomb): []}

    asyncio.run(scenario())


def test_strict_validation_caps_are_settings(settings: Settings) -> None:
    # The sample ADT has about a hundred elements and 330 bytes: caps of 50 elements or 100 bytes refuse it.
    small = _message()

    async def scenario() -> None:
        async with _gateway(
            settings, mllp_strict_validation=True, strict_validation_max_elements=50
        ) as gateway:
            (by_elements,) = await send_mllp(HOST, gateway.bound_port, [small])
        async with _gateway(
            settings, mllp_strict_validation=True, strict_validation_max_bytes=100
        ) as gateway:
            (by_bytes,) = await send_mllp(HOST, gateway.bound_port, [small])
        assert by_elements.code == "AE" and "more than the 50 strict validation accepts" in by_elements.text
        assert by_bytes.code == "AE" and "more than the 100 strict validation accepts" in by_bytes.text
        assert (await _raw_records(settings, {keyed(small)}))[keyed(small)] == []

    asyncio.run(scenario())


def test_control_characters_in_msh10_are_echoed_exactly(settings: Settings) -> None:
    cid = _cid()
    # MSH-10 holds a CR and an LF as escapes, and a tab and a 0x01 as raw bytes.
    raw = _message(cid).replace(cid.encode(), cid.encode() + b"\\X0D\\\\.br\\\t\x01", 1)
    sent_id = parse_message(raw).control_id
    assert sent_id == cid + "\r\n\t\x01"

    async def scenario() -> None:
        async with _gateway(settings) as gateway:
            # send_mllp itself refuses an ACK whose MSA-2 is not the message's MSH-10.
            first, again = await send_mllp(HOST, gateway.bound_port, [raw, raw])
            assert gateway.counters.acked == 1 and gateway.counters.duplicates == 1
        assert (first.code, first.control_id) == ("AA", sent_id)
        assert again.raw == first.raw
        assert b"\\X0D\\\\X0A\\\\X09\\\\X01\\" in first.raw
        assert (await _raw_records(settings, {keyed(raw)}))[keyed(raw)] == [raw]

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


def test_tls(settings: Settings, tmp_path: Path) -> None:
    pair = _self_signed(tmp_path)
    if pair is None:
        pytest.skip("neither the cryptography package nor openssl is available to make a certificate")
    cert, key = pair
    raw = _message()
    client_context = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> None:
        async with _gateway(settings, mllp_tls_cert_file=cert, mllp_tls_key_file=key) as gateway:
            assert gateway.tls
            (answer,) = await send_mllp(HOST, gateway.bound_port, [raw], tls=client_context)
            # A client that does not trust the certificate cannot talk to it.
            with pytest.raises(MllpClientError, match="cannot connect"):
                await send_mllp(
                    HOST, gateway.bound_port, [raw], tls=ssl.create_default_context(), timeout_s=5
                )
        assert (answer.code, answer.control_id) == ("AA", parse_message(raw).control_id)
        assert (await _raw_records(settings, {keyed(raw)}))[keyed(raw)] == [raw]

    asyncio.run(scenario())


def test_run_gateway_logs_ready_serves_and_stops_on_sigterm(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    effective = settings.model_copy(update={"mllp_host": HOST, "mllp_port": port})
    raw = _message()

    async def scenario() -> None:
        running = asyncio.create_task(run_gateway(effective))
        deadline = time.monotonic() + 30
        while f"ready: mllp on {HOST}:{port}" not in caplog.text:
            assert not running.done(), f"run_gateway ended early: {running!r}"
            assert time.monotonic() < deadline, (
                f"the gateway never logged 'ready: mllp on {HOST}:{port}' in 30s; it logged: "
                f"{caplog.text[-1000:]!r}"
            )
            await asyncio.sleep(0.1)
        (answer,) = await send_mllp(HOST, port, [raw])
        assert answer.code == "AA"
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(running, 30)

    with caplog.at_level(logging.INFO, logger="adapters.mllp"):
        asyncio.run(scenario())
    assert "stopped: mllp after 1 connection(s), 1 frame(s): 1 committed" in caplog.text


# -- stand-ins for the broker and Redis: failures and shutdown ---------------------------------------


class _FakeRedis:
    """The two calls the gateway makes, over a dict."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}

    async def get(self, key: bytes) -> bytes | None:
        return self.values.get(key)

    async def set(self, key: bytes, value: bytes, ex: int | None = None) -> None:
        self.values[key] = value


class _FakeProducer:
    """A producer whose broker is down until ``up`` is set, and that takes ``delay_s`` per record."""

    def __init__(self, *, up: bool = True, delay_s: float = 0.0) -> None:
        self.up = up
        self.delay_s = delay_s
        self.sent: list[tuple[bytes, bytes]] = []
        self.called = asyncio.Event()

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.called.set()
        await asyncio.sleep(self.delay_s)
        if not self.up:
            raise KafkaConnectionError("broker down")
        self.sent.append((key, value))


@contextlib.asynccontextmanager
async def _fake_gateway(
    fake_producer: _FakeProducer, fake_redis: _FakeRedis, **overrides: object
) -> AsyncIterator[MllpGateway]:
    settings = Settings.model_validate({"topic_prefix": "fake.", **overrides})
    gateway = MllpGateway(settings, fake_producer, fake_redis, host=HOST, port=0)  # type: ignore[arg-type]
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


def test_broker_failure_answers_not_committed_and_stores_nothing() -> None:
    raw = _message()

    async def scenario() -> None:
        fake_producer, fake_redis = _FakeProducer(up=False), _FakeRedis()
        async with _fake_gateway(fake_producer, fake_redis) as gateway:
            (failed,) = await send_mllp(HOST, gateway.bound_port, [raw])
            assert fake_redis.values == {}
            fake_producer.up = True
            (retried,) = await send_mllp(HOST, gateway.bound_port, [raw])
        assert (failed.code, failed.control_id) == ("AE", parse_message(raw).control_id)
        assert "BROKER-NOT-COMMITTED" in failed.text and "resend" in failed.text
        assert retried.code == "AA"
        assert fake_producer.sent == [(keyed(raw), raw)]
        assert list(fake_redis.values.values()) == [retried.raw]

    asyncio.run(scenario())


def test_broker_failure_in_enhanced_mode() -> None:
    commit_always = _message(accept_ack="AL")
    never = _message(accept_ack="NE")

    async def scenario() -> None:
        async with _fake_gateway(_FakeProducer(up=False), _FakeRedis()) as gateway:
            (answer,) = await send_mllp(HOST, gateway.bound_port, [commit_always])
            assert answer.code == "CE"
            # NE forbids an answer, so closing the connection is the only way to say "not committed".
            reader, writer = await asyncio.open_connection(HOST, gateway.bound_port)
            writer.write(encode(never))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()

    asyncio.run(scenario())


def test_stop_lets_the_frame_in_flight_finish() -> None:
    raw = _message()

    async def scenario() -> None:
        fake_producer = _FakeProducer(delay_s=1.0)
        async with _fake_gateway(fake_producer, _FakeRedis()) as gateway:
            idle_reader, idle_writer = await asyncio.open_connection(HOST, gateway.bound_port)
            sending = asyncio.create_task(send_mllp(HOST, gateway.bound_port, [raw]))
            await asyncio.wait_for(fake_producer.called.wait(), 10)
            await gateway.stop()
            (answer,) = await sending
            assert answer.code == "AA"
            # The idle connection was closed, and the listener no longer accepts.
            assert await asyncio.wait_for(idle_reader.read(), 5) == b""
            idle_writer.close()
            with pytest.raises(MllpClientError, match="cannot connect"):
                await send_mllp(HOST, gateway.bound_port, [raw], timeout_s=2)

    asyncio.run(scenario())


def test_idle_connections_are_closed() -> None:
    async def scenario() -> None:
        async with _fake_gateway(_FakeProducer(), _FakeRedis(), mllp_idle_timeout_s=0.3) as gateway:
            reader, writer = await asyncio.open_connection(HOST, gateway.bound_port)
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert time.monotonic() - started < 3
            writer.close()

    asyncio.run(scenario())


def test_parse_ack_reads_an_answer() -> None:
    answer: AckResult = parse_ack(b"MSH|^~\\&|A|B|C|D|20260101||ACK|ACK1|P|2.5\rMSA|AE|C1\rERR||||E||||why\r")
    assert (answer.code, answer.control_id, answer.positive, answer.text) == ("AE", "C1", False, "why")
