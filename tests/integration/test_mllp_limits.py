"""The MLLP listener's bounds: connection caps, frame and idle deadlines, oversize frames, mutual TLS and
the sender allowlist, each refusal counted, and none of them stalling the other connections.

Each test runs the real gateway in-process on a free port over its own message store (as test_mllp does),
with small timeouts; assertions wait with generous guards and never on how long something took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.mllp.client import MllpClientError, client_tls_context, parse_ack, send_mllp
from adapters.mllp.framing import encode
from adapters.mllp.gateway import MllpGateway
from adapters.mllp.run import STATS_FILE, read_gateway_stats, run_gateway, write_gateway_stats
from canonical.errors import ConfigurationError
from canonical.hl7v2.parser import parse_message
from foundation.pki import CertificateAuthority
from foundation.settings import Settings
from tests.integration.conftest import free_port
from tests.integration.test_mllp import HOST, _gateway, _message, _read_ack

# Longest any single wait in these tests may take: a guard against a hang, not a timing assertion.
GUARD_S = 20.0


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = GUARD_S) -> None:
    """Wait until ``condition`` holds; fail naming ``what`` after the guard."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """Read until the gateway closes the connection; True when it did so without sending anything."""
    data = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await asyncio.wait_for(reader.read(65_536), GUARD_S):
            data += chunk
    return data == b""


async def _closed_now(reader: asyncio.StreamReader) -> bool:
    """Look briefly for the gateway's close (EOF or a reset); fail on any data, which must not come."""
    try:
        data = await asyncio.wait_for(reader.read(65_536), 0.05)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    assert data == b"", "the gateway answered a frame that never ended"
    return True


async def _open(port: int, local: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port, local_addr=(local, 0) if local else None)


async def _ack_on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> str:
    """Send one message on an open connection and return its MSA-1."""
    writer.write(encode(raw))
    await writer.drain()
    return parse_ack(await _read_ack(reader, GUARD_S)).code


# -- connection caps ------------------------------------------------------------------------------


def test_a_connection_over_the_total_cap_is_closed_at_once_and_the_others_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with _gateway(tmp_path, mllp_max_connections=3) as (gateway, stored):
            held = [await _open(gateway.bound_port) for _ in range(3)]
            await _until(lambda: gateway.open_connections == 3, "three connections to be served")
            reader, writer = await _open(gateway.bound_port)
            assert await _closed_by_peer(reader), "a refused connection gets no bytes, only the close"
            writer.close()
            assert gateway.counters.refused_total_cap == 1
            # The connections within the cap are unaffected.
            raw = _message()
            assert await _ack_on(*held[0], raw) == "AA"
            assert stored.of(raw) == [raw]
            # Once one closes, a new connection is accepted again.
            held[1][1].close()
            await _until(lambda: gateway.open_connections == 2, "a held connection to close")
            (answer,) = await send_mllp(HOST, gateway.bound_port, [_message()], timeout_s=GUARD_S)
            assert answer.code == "AA"
            await _until(lambda: gateway.open_connections == 2, "the sender's connection to close")
            write_gateway_stats(tmp_path, gateway)
            for _, w in held:
                w.close()
        stats = read_gateway_stats(tmp_path)
        assert stats is not None
        assert (stats["refused_total_cap"], stats["open_connections"], stats["acked"]) == (1, 2, 2)

    with caplog.at_level(logging.WARNING, logger="adapters.mllp"):
        asyncio.run(scenario())
    assert "refused: 3 connections open, HCSYNC_MLLP_MAX_CONNECTIONS is 3" in caplog.text


def test_the_per_peer_cap_counts_each_peer_address_on_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with _gateway(tmp_path, mllp_max_connections_per_peer=2) as (gateway, _):
            held = [await _open(gateway.bound_port, "127.0.0.1") for _ in range(2)]
            await _until(lambda: gateway.open_connections == 2, "two connections to be served")
            reader, writer = await _open(gateway.bound_port, "127.0.0.1")
            assert await _closed_by_peer(reader)
            writer.close()
            assert gateway.counters.refused_peer_cap == 1
            # Another peer address (loopback, 127.0.0.2) has a cap of its own.
            other = [await _open(gateway.bound_port, "127.0.0.2") for _ in range(2)]
            assert await _ack_on(*other[0], _message()) == "AA"
            assert await _ack_on(*held[1], _message()) == "AA"
            assert (gateway.counters.refused_peer_cap, gateway.counters.refused_total_cap) == (1, 0)
            for _, w in held + other:
                w.close()

    with caplog.at_level(logging.WARNING, logger="adapters.mllp"):
        asyncio.run(scenario())
    assert "2 connections open from 127.0.0.1, HCSYNC_MLLP_MAX_CONNECTIONS_PER_PEER is 2" in caplog.text


def test_a_flood_of_refused_connections_is_logged_in_few_lines_and_counted_in_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with _gateway(tmp_path, mllp_max_connections=1) as (gateway, _):
            held = await _open(gateway.bound_port)
            await _until(lambda: gateway.open_connections == 1, "a connection to be served")
            for _ in range(40):
                reader, writer = await _open(gateway.bound_port)
                assert await _closed_by_peer(reader)
                writer.close()
            assert gateway.counters.refused_total_cap == 40
            assert await _ack_on(*held, _message()) == "AA"
            held[1].close()

    with caplog.at_level(logging.WARNING, logger="adapters.mllp"):
        asyncio.run(scenario())
    lines = [r for r in caplog.records if "HCSYNC_MLLP_MAX_CONNECTIONS is 1" in r.getMessage()]
    # At most one line a second; on a machine so loaded that 40 connections take 40 s, still fewer.
    assert 1 <= len(lines) < 40


# -- deadlines ------------------------------------------------------------------------------------


def test_a_trickled_frame_is_cut_at_the_frame_deadline_and_others_are_served_meanwhile(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _message()

    async def scenario() -> None:
        # The idle timeout is far beyond the guard: only the frame deadline can end the trickle.
        settings = {"mllp_frame_timeout_s": 1.0, "mllp_idle_timeout_s": 600.0}
        async with _gateway(tmp_path, **settings) as (gateway, stored):
            reader, writer = await _open(gateway.bound_port)
            # A start block, then one byte of the message every 50 ms: never an end block.
            writer.write(b"\x0b")
            trickled = 0
            served: list[str] = []
            deadline, closed = time.monotonic() + GUARD_S, False
            while not closed:
                assert time.monotonic() < deadline, "the trickled frame was never cut"
                try:
                    writer.write(raw[trickled % len(raw) : trickled % len(raw) + 1])
                    await writer.drain()
                except ConnectionError:
                    break
                trickled += 1
                if trickled % 10 == 0 and len(served) < 3:
                    # Meanwhile another sender is served as usual.
                    (answer,) = await send_mllp(HOST, gateway.bound_port, [_message()], timeout_s=GUARD_S)
                    served.append(answer.code)
                closed = await _closed_now(reader)
            writer.close()
            assert trickled > 0
            assert gateway.counters.frames_timed_out == 1
            assert gateway.counters.idle_closes == 0
            assert stored.of(raw) == []
            assert served and set(served) == {"AA"}

    with caplog.at_level(logging.INFO, logger="adapters.mllp"):
        asyncio.run(scenario())
    assert "frame not ended within 1s of its start (HCSYNC_MLLP_FRAME_TIMEOUT_S)" in caplog.text


def test_start_blocks_that_abandon_a_frame_do_not_restart_its_deadline(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = {"mllp_frame_timeout_s": 1.0, "mllp_idle_timeout_s": 600.0}
        async with _gateway(tmp_path, **settings) as (gateway, _):
            reader, writer = await _open(gateway.bound_port)
            deadline, closed = time.monotonic() + GUARD_S, False
            while not closed:
                assert time.monotonic() < deadline, "restarted frames kept the connection open"
                try:
                    # Each write abandons the partial frame and starts another.
                    writer.write(b"\x0bMSH|")
                    await writer.drain()
                except ConnectionError:
                    break
                closed = await _closed_now(reader)
            writer.close()
            assert gateway.counters.frames_timed_out == 1

    asyncio.run(scenario())


def test_bytes_between_frames_do_not_reset_the_idle_timeout_but_a_finished_frame_does(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        settings = {"mllp_idle_timeout_s": 2.0, "mllp_frame_timeout_s": 600.0}
        async with _gateway(tmp_path, **settings) as (gateway, _):
            reader, writer = await _open(gateway.bound_port)
            # Messages keep a connection open however long it lives, as long as each comes in time.
            for _ in range(3):
                assert await _ack_on(reader, writer, _message()) == "AA"
                await asyncio.sleep(0.3)
            # Line breaks outside any frame (noise) every 50 ms: the idle timeout still closes it.
            deadline, closed = time.monotonic() + GUARD_S, False
            while not closed:
                assert time.monotonic() < deadline, "noise between frames kept the connection open"
                try:
                    writer.write(b"\r\n")
                    await writer.drain()
                except ConnectionError:
                    break
                closed = await _closed_now(reader)
            writer.close()
            assert (gateway.counters.idle_closes, gateway.counters.frames_timed_out) == (1, 0)
            assert gateway.counters.acked == 3

    asyncio.run(scenario())


def test_an_oversize_frame_is_refused_without_being_buffered_and_counted(tmp_path: Path) -> None:
    limit = 4096
    big = _message() + b"NTE|1||" + b"x" * (20 * limit) + b"\r"
    after = _message()

    async def scenario() -> None:
        async with _gateway(tmp_path, max_message_bytes=limit) as (gateway, stored):
            reader, writer = await _open(gateway.bound_port)
            # The AR comes while the frame is still being sent: half of it, then the answer.
            writer.write(b"\x0b" + big[: len(big) // 2])
            await writer.drain()
            rejected = parse_ack(await _read_ack(reader, GUARD_S))
            writer.write(big[len(big) // 2 :] + b"\x1c\r")
            assert await _ack_on(reader, writer, after) == "AA"
            writer.close()
            assert rejected.code == "AR" and "MESSAGE-TOO-LARGE" in rejected.text
            assert rejected.control_id == parse_message(big).control_id
            assert gateway.counters.oversize_frames == 1
            assert stored.of(big) == [] and stored.of(after) == [after]

    asyncio.run(scenario())


# -- mutual TLS -----------------------------------------------------------------------------------


def _pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, the gateway's server certificate, and client certificates: two from the CA, one not."""
    ca = CertificateAuthority.create("test MLLP CA")
    stranger_ca = CertificateAuthority.create("someone else's CA")
    files = {"ca": tmp_path / "ca.pem"}
    files["ca"].write_bytes(ca.cert_pem)
    issued = {
        "server": ca.issue("mllp", names=[HOST]),
        "lab": ca.issue("lab-engine", server=False, client=True),
        "other": ca.issue("other-engine", server=False, client=True),
        "stranger": stranger_ca.issue("lab-engine", server=False, client=True),
    }
    for name, cert in issued.items():
        cert.write(tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        files[name] = tmp_path / f"{name}.pem"
        files[f"{name}_key"] = tmp_path / f"{name}.key"
    return files


def _client(files: dict[str, Path], who: str | None) -> ssl.SSLContext:
    settings = Settings(
        mllp_client_tls_ca_file=files["ca"],
        mllp_client_tls_cert_file=files[who] if who else None,
        mllp_client_tls_key_file=files[f"{who}_key"] if who else None,
    )
    context = client_tls_context(settings)
    assert context is not None
    return context


def test_mutual_tls_refuses_a_sender_without_a_trusted_client_certificate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _pki(tmp_path)
    raw = _message()
    tls = {
        "mllp_tls_cert_file": files["server"],
        "mllp_tls_key_file": files["server_key"],
        "mllp_tls_client_ca_file": files["ca"],
        "mllp_tls_handshake_timeout_s": 2.0,
    }

    async def refused(gateway: MllpGateway, context: ssl.SSLContext, expected: int) -> None:
        # TLS 1.3 finishes the client's side of the handshake before the server checks the certificate:
        # the refusal shows as a connection closed, at the latest when the ACK is awaited.
        with pytest.raises(MllpClientError):
            await send_mllp(HOST, gateway.bound_port, [raw], tls=context, timeout_s=GUARD_S)
        await _until(lambda: gateway.counters.refused_tls == expected, "the TLS refusal to be counted")

    async def scenario() -> None:
        async with _gateway(tmp_path, **tls) as (gateway, stored):
            await refused(gateway, _client(files, None), 1)
            await refused(gateway, _client(files, "stranger"), 2)
            # Plain TCP that never starts a handshake: closed at the handshake timeout.
            reader, writer = await _open(gateway.bound_port)
            assert await _closed_by_peer(reader)
            writer.close()
            assert gateway.counters.refused_tls == 3
            # With a certificate from the CA, the same message is accepted.
            (answer,) = await send_mllp(HOST, gateway.bound_port, [raw], tls=_client(files, "lab"))
            assert answer.code == "AA"
            assert stored.of(raw) == [raw]
            assert (gateway.counters.acked, gateway.counters.connections) == (1, 4)

    with caplog.at_level(logging.INFO, logger="adapters.mllp"):
        asyncio.run(scenario())
    assert "TLS handshake failed (PEER_DID_NOT_RETURN_A_CERTIFICATE)" in caplog.text
    assert "client certificate lab-engine" in caplog.text


def test_client_certificate_settings_must_come_in_pairs_and_with_a_ca() -> None:
    with pytest.raises(ConfigurationError, match="HCSYNC_MLLP_CLIENT_TLS_KEY_FILE"):
        client_tls_context(Settings(mllp_client_tls_cert_file=Path("c.pem")))
    with pytest.raises(ConfigurationError, match="HCSYNC_MLLP_CLIENT_TLS_CA_FILE"):
        client_tls_context(
            Settings(mllp_client_tls_cert_file=Path("c.pem"), mllp_client_tls_key_file=Path("k"))
        )
    assert client_tls_context(Settings()) is None


# -- the sender allowlist -------------------------------------------------------------------------


def _from(app: str, facility: str) -> bytes:
    """Return a fresh message whose MSH-3/MSH-4 are ``app``/``facility``."""
    return _message().replace(b"|EPIC|NMH|", f"|{app}|{facility}|".encode(), 1)


def test_a_peer_may_send_only_as_the_feeds_the_allowlist_gives_its_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    allowed, other_facility, other_app = _from("EPIC", "NMH"), _from("EPIC", "LFH"), _from("LAB", "NMH")
    from_other_peer = _from("LAB", "NMH")
    rules = {"127.0.0.1": ["EPIC^NMH"], "127.0.0.2/31": ["LAB"]}

    async def scenario() -> None:
        async with _gateway(tmp_path, mllp_allowed_senders=rules) as (gateway, stored):
            answers = await send_mllp(
                HOST, gateway.bound_port, [allowed, other_facility, other_app], timeout_s=GUARD_S
            )
            reader, writer = await _open(gateway.bound_port, "127.0.0.3")
            second_peer = await _ack_on(reader, writer, from_other_peer)
            writer.close()
            # A peer no rule names may send as nobody.
            reader, writer = await _open(gateway.bound_port, "127.0.0.9")
            unknown_peer = await _ack_on(reader, writer, _from("EPIC", "NMH"))
            writer.close()
            assert [a.code for a in answers] == ["AA", "AR", "AR"]
            for refused in answers[1:]:
                assert "MLLP-SENDER-NOT-ALLOWED" in refused.text
                assert "HCSYNC_MLLP_ALLOWED_SENDERS" in refused.text
            assert (second_peer, unknown_peer) == ("AA", "AR")
            assert stored.of(allowed) == [allowed] and stored.of(from_other_peer) == [from_other_peer]
            assert stored.of(other_facility) == [] and stored.of(other_app) == []
            assert gateway.counters.senders_refused == 3

    with caplog.at_level(logging.WARNING, logger="adapters.mllp"):
        asyncio.run(scenario())
    assert "sender EPIC^LFH not allowed (HCSYNC_MLLP_ALLOWED_SENDERS)" in caplog.text
    assert "Doe" not in caplog.text and "MRN001" not in caplog.text  # no PHI in the refusal


def test_a_client_certificate_name_decides_which_feeds_a_sender_may_use(tmp_path: Path) -> None:
    files = _pki(tmp_path)
    lab, epic = _from("LAB", "NMH"), _from("EPIC", "NMH")
    other_lab = _from("LAB", "NMH")
    settings = {
        "mllp_tls_cert_file": files["server"],
        "mllp_tls_key_file": files["server_key"],
        "mllp_tls_client_ca_file": files["ca"],
        "mllp_allowed_senders": {"CN=lab-engine": ["LAB"]},
    }

    async def scenario() -> None:
        async with _gateway(tmp_path, **settings) as (gateway, stored):
            as_lab = await send_mllp(HOST, gateway.bound_port, [lab, epic], tls=_client(files, "lab"))
            as_other = await send_mllp(HOST, gateway.bound_port, [other_lab], tls=_client(files, "other"))
            assert [a.code for a in as_lab] == ["AA", "AR"]
            assert [a.code for a in as_other] == ["AR"]
            assert stored.of(lab) == [lab] and stored.of(epic) == [] and stored.of(other_lab) == []
            assert gateway.counters.senders_refused == 2

    asyncio.run(scenario())


def test_enhanced_mode_refuses_a_sender_with_cr(tmp_path: Path) -> None:
    refused = _message(accept_ack="AL").replace(b"|EPIC|NMH|", b"|LAB|NMH|", 1)

    async def scenario() -> None:
        async with _gateway(tmp_path, mllp_allowed_senders={"127.0.0.0/8": ["EPIC"]}) as (gateway, stored):
            (answer,) = await send_mllp(HOST, gateway.bound_port, [refused], timeout_s=GUARD_S)
            assert answer.code == "CR" and "MLLP-SENDER-NOT-ALLOWED" in answer.text
            assert stored.of(refused) == []

    asyncio.run(scenario())


def test_allowlist_settings_are_checked_at_start() -> None:
    with pytest.raises(ValidationError, match="HCSYNC_MLLP_ALLOWED_SENDERS: key 'lab' is neither"):
        Settings(mllp_allowed_senders={"lab": ["LAB"]})
    with pytest.raises(ValidationError, match="must be APPLICATION, APPLICATION\\^FACILITY or \\*"):
        Settings(mllp_allowed_senders={"10.0.0.0/8": ["A^B^C"]})
    os.environ["HCSYNC_MLLP_ALLOWED_SENDERS"] = json.dumps({"10.1.0.0/16": ["LAB^NMH"], "CN=x": ["*"]})
    try:
        assert Settings().mllp_allowed_senders == {"10.1.0.0/16": ["LAB^NMH"], "CN=x": ["*"]}
    finally:
        del os.environ["HCSYNC_MLLP_ALLOWED_SENDERS"]


def test_certificate_rules_without_mutual_tls_refuse_to_start(tmp_path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(ConfigurationError, match="HCSYNC_MLLP_TLS_CLIENT_CA_FILE"):
            async with _gateway(tmp_path, mllp_allowed_senders={"CN=lab-engine": ["LAB"]}):
                pass

    asyncio.run(scenario())


# -- what the process reports ---------------------------------------------------------------------


def test_run_gateway_writes_its_counters_to_the_run_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = Settings(
        run_dir=tmp_path,
        mllp_host=HOST,
        mllp_port=port,
        mllp_max_connections=1,
        mllp_stats_interval_s=0.1,
    )

    async def until_stats(check: Callable[[dict[str, object]], bool], what: str) -> dict[str, object]:
        found: dict[str, object] = {}

        def ready() -> bool:
            nonlocal found
            found = read_gateway_stats(tmp_path) or {}
            return bool(found) and check(found)

        await _until(ready, what)
        return found

    async def scenario() -> None:
        running = asyncio.create_task(run_gateway(settings))
        await until_stats(lambda s: "connections" in s, "the first stats")
        held = await _open(port)
        await until_stats(lambda s: s["open_connections"] == 1, "the held connection in the stats")
        reader, writer = await _open(port)
        assert await _closed_by_peer(reader)
        writer.close()
        stats = await until_stats(lambda s: s["refused_total_cap"] == 1, "the refusal in the stats")
        assert stats["connections"] == 1
        held[1].close()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(running, GUARD_S)

    with caplog.at_level(logging.INFO, logger="adapters.mllp"):
        asyncio.run(scenario())
    assert (tmp_path / STATS_FILE).is_file()
    assert "mllp refusals: 1 connection(s) over the cap, 0 over the per-peer cap" in caplog.text
