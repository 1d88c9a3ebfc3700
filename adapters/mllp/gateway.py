"""The MLLP gateway: HL7 v2 over TCP (or TLS) in, each message durable in the message store before its ACK.

Every frame of a connection is handled in order, and the answer to it is written only once its fate is
settled:

1. The frame is parsed with the fast parser; bytes that cannot be read get AR (CR in enhanced mode) with an
   ERR naming the fault, and nothing is stored. So does a message without MSH-10, since resends are
   recognised by it.
2. With ``mllp_strict_validation``, hl7apy validates the structure (:mod:`canonical.hl7v2.strict`); a
   failure gets AE (CE) with hl7apy's error text, and nothing is stored. A message over
   ``strict_validation_max_bytes`` or ``strict_validation_max_elements`` gets AE (CE) HL7-STRICT-TOO-LARGE
   without being validated, which bounds the time one validation takes.
3. The message goes to the message store (:mod:`adapters.inbound.store`) through the group-commit writer,
   with the ACK it is answered with; only once the transaction is committed (on disk) is the ACK written
   to the socket. The forwarder, not the gateway, moves stored messages to the broker. A connection
   dropped before the ACK arrives loses nothing: the resend is recognised by the store.
4. A resend (same sender, MSH-10 and content; MSH-7 and line endings may differ) is answered with the ACK
   stored the first time, byte for byte, and stores nothing. The same sender and MSH-10 with *other*
   content is stored as a conflict, never processed, quarantined as HL7-MSH-10-CONFLICT (so it shows in
   ``hcsync exceptions``), and answered AE (CE) with ERR-3 205 (duplicate key identifier).
5. When the store fails or does not answer within ``message_store_timeout_s``, the answer is AE (CE)
   STORE-NOT-COMMITTED "not stored, resend", and the gateway logs why. When the sender's MSH-15 asks for no
   answer in that case (NE, SU), the connection is closed instead, which is the only other signal MLLP has.

A frame over ``max_message_bytes`` is answered AR (CR) as soon as the limit is crossed, with the control
id read from its first bytes; the rest of the frame is discarded as it arrives and the connection stays
open, so the sender reads the reject and goes on with its next message.

The listener is bounded (docs/security.md, "The MLLP listener's bounds"), each bound a setting:

- At most ``mllp_max_connections`` connections at once, and ``mllp_max_connections_per_peer`` from one
  peer address; one more is closed as soon as it is accepted, before any TLS handshake. MLLP has no
  connection-level refusal, and bytes that are not an ACK would only confuse a sender: the close says it.
- A frame must end within ``mllp_frame_timeout_s`` of its start block, however many bytes trickle in
  (a start block that abandons a frame does not restart the clock); between frames, a connection may
  stay ``mllp_idle_timeout_s``, and bytes outside a frame do not reset that either. A TLS handshake must
  complete within ``mllp_tls_handshake_timeout_s``.
- An unfinished frame holds at most ``max_message_bytes`` plus one byte (framing.py); the read buffer of a
  connection adds at most two reads of 64 KiB.
- With ``mllp_tls_client_ca_file``, TLS asks for a client certificate and refuses a connection without
  one signed by that CA. With ``mllp_allowed_senders``, a message whose MSH-3/MSH-4 the connection (its
  peer address or its certificate's CN) may not send as is answered AR (CR) MLLP-SENDER-NOT-ALLOWED and
  not stored.

Each refusal is counted in :class:`GatewayCounters` (written to ``mllp.stats.json`` in the run directory
by run.py) and logged; connection refusals, which an attacker can make by the thousand, log at most one
line per reason each second with the count of those not logged.

Logs name connections, control ids, rules and counts, never message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import itertools
import logging
import ssl
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from adapters.inbound.hl7v2 import CONFLICT_RULE, hl7v2_inbound
from adapters.inbound.store import Receipt, Verdict
from adapters.inbound.writer import GroupCommitWriter, StoreUnavailableError
from adapters.mllp.ack import Outcome, ack_code, build_ack, header_of
from adapters.mllp.framing import FrameTooLargeError, MllpDecoder, encode
from adapters.mllp.senders import SenderRules, peer_common_name
from canonical.errors import ConfigurationError, DecodeError, Fault
from canonical.hl7v2.parser import Hl7Message, parse_message
from canonical.hl7v2.strict import strict_fault
from foundation.settings import Settings

__all__ = ["GatewayCounters", "MllpGateway", "server_tls_context"]

log = logging.getLogger(__name__)

_READ_BYTES = 65_536
# Connection refusals are logged at most once per reason in this interval (a flood would drown the log).
_REFUSAL_LOG_INTERVAL_S = 1.0


@dataclass(slots=True)
class GatewayCounters:
    """What the gateway has done since it started."""

    connections: int = 0
    frames: int = 0
    # Stored (answered positively, or not answered when MSH-15 asked for no answer).
    acked: int = 0
    # Answered negatively (AE, AR, CE, CR) or, where MSH-15 asked for no answer, refused silently.
    rejected: int = 0
    # Resends of a stored message, answered with its stored ACK.
    duplicates: int = 0
    # Same sender and MSH-10 as a stored message with other content: stored as conflicts, answered AE.
    conflicts: int = 0
    # Bytes received outside any delivered frame (noise, abandoned or oversize frames).
    skipped_bytes: int = 0
    # Connections closed as soon as accepted: over mllp_max_connections, over mllp_max_connections_per_peer.
    refused_total_cap: int = 0
    refused_peer_cap: int = 0
    # TLS handshakes that failed or timed out (no or an untrusted client certificate, not TLS at all).
    refused_tls: int = 0
    # Connections closed because a frame did not end within mllp_frame_timeout_s of its start block.
    frames_timed_out: int = 0
    # Connections closed after mllp_idle_timeout_s without an unfinished frame.
    idle_closes: int = 0
    # Frames over max_message_bytes (answered AR, the rest discarded).
    oversize_frames: int = 0
    # Messages whose MSH-3/MSH-4 the connection may not send as (answered AR, not stored).
    senders_refused: int = 0

    def snapshot(self) -> dict[str, int]:
        """Return the counters by name (what mllp.stats.json holds)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class _Reply:
    """What to send back for one frame: the ACK (None for nothing) and whether to close afterwards."""

    ack: bytes | None
    close: bool = False


@dataclass(slots=True)
class _Connection:
    """One client connection: its task, its writer, and whether it is handling frames."""

    number: int
    task: asyncio.Task[None]
    writer: asyncio.StreamWriter
    peer: str = ""
    # The peer's IP address: what the per-peer cap counts and peer rules match.
    address: str = ""
    busy: bool = False
    # Frames ended (delivered or refused as oversize): a new one restarts the frame deadline.
    ended: int = 0
    # The feeds this connection may send as, when there is an allowlist.
    feeds: frozenset[str] = frozenset()
    common_name: str | None = None


class _RefusalLog:
    """Log refusals at most once per reason each interval, with how many went unlogged since."""

    def __init__(self, interval_s: float = _REFUSAL_LOG_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def warning(self, reason: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval_s:
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return
        self._last[reason] = now
        unlogged = self._unlogged.pop(reason, 0)
        if unlogged:
            message += f" ({unlogged} more refused for this reason since the last line)"
        log.warning(message, *args)


def server_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """Return the server-side TLS context from the settings, or None when TLS is not configured."""
    cert, key = settings.mllp_tls_cert_file, settings.mllp_tls_key_file
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigurationError(
            "HCSYNC_MLLP_TLS_CERT_FILE and HCSYNC_MLLP_TLS_KEY_FILE must be set together to enable TLS"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load the MLLP TLS certificate {cert} with key {key} "
            f"(HCSYNC_MLLP_TLS_CERT_FILE, HCSYNC_MLLP_TLS_KEY_FILE): {exc}"
        ) from exc
    client_ca = settings.mllp_tls_client_ca_file
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load the MLLP client CA {client_ca} (HCSYNC_MLLP_TLS_CLIENT_CA_FILE): {exc}"
            ) from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _check_settings(settings: Settings, rules: SenderRules) -> None:
    """Refuse settings that would not do what they say."""
    tls = settings.mllp_tls_cert_file is not None
    if settings.mllp_tls_client_ca_file is not None and not tls:
        raise ConfigurationError(
            "HCSYNC_MLLP_TLS_CLIENT_CA_FILE needs TLS: set HCSYNC_MLLP_TLS_CERT_FILE and "
            "HCSYNC_MLLP_TLS_KEY_FILE too"
        )
    if rules.names_certificates and settings.mllp_tls_client_ca_file is None:
        # Without verified client certificates, a CN= rule would match nothing (or, if it did, anyone).
        raise ConfigurationError(
            "HCSYNC_MLLP_ALLOWED_SENDERS names client certificates (CN=...): set "
            "HCSYNC_MLLP_TLS_CLIENT_CA_FILE so that senders must present verified ones"
        )


class MllpGateway:
    """An asyncio MLLP listener that makes each message durable in the message store before acknowledging it.

    The store writer belongs to the caller, who starts and stops it; the gateway only uses it. ``host`` and
    ``port`` override the settings (port 0 picks a free port, see ``bound_port``).
    """

    def __init__(
        self,
        settings: Settings,
        writer: GroupCommitWriter,
        *,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.settings = settings
        self.counters = GatewayCounters()
        self._writer = writer
        self._host = host if host is not None else settings.mllp_host
        self._port = port if port is not None else settings.mllp_port
        self._server: asyncio.Server | None = None
        self._bound_port: int | None = None
        self._connections: dict[int, _Connection] = {}
        self._numbers = itertools.count(1)
        self._stopping = False
        # hl7apy is pure Python: one thread keeps the event loop responsive without running it concurrently.
        self._validator: ThreadPoolExecutor | None = None
        # Whether the listener speaks TLS; set by start() from the settings.
        self.tls = False
        self._tls_context: ssl.SSLContext | None = None
        self._rules = SenderRules.from_settings(settings)
        # Open connections per peer address, for mllp_max_connections_per_peer.
        self._per_peer: dict[str, int] = {}
        self._refusals = _RefusalLog()

    @property
    def open_connections(self) -> int:
        """Return how many connections are open now."""
        return len(self._connections)

    @property
    def bound_port(self) -> int:
        """Return the port the listener is bound to."""
        if self._bound_port is None:
            raise RuntimeError("the MLLP gateway is not started")
        return self._bound_port

    @property
    def address(self) -> str:
        """Return host:port, as a client dials it."""
        return f"{self._host}:{self.bound_port}"

    async def start(self) -> None:
        """Start listening."""
        if self._server is not None:
            raise RuntimeError("the MLLP gateway is already started")
        _check_settings(self.settings, self._rules)
        # The handshake is made per connection (_serve), after the connection caps: a refused connection
        # costs no handshake, and a failed one is counted.
        context = server_tls_context(self.settings)
        if self.settings.mllp_strict_validation:
            self._validator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mllp-validate")
        self._stopping = False
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=_READ_BYTES)
        self._bound_port = int(self._server.sockets[0].getsockname()[1])
        self._tls_context = context
        self.tls = context is not None

    async def stop(self) -> None:
        """Stop listening, let frames being handled finish, and close every connection."""
        server = self._server
        if server is None:
            return
        self._stopping = True
        server.close()
        # An idle connection has nothing in flight: closing it ends its read with EOF. One handling frames
        # stops after the current frame (and a frame read but not started is never acknowledged).
        for conn in list(self._connections.values()):
            if not conn.busy:
                conn.writer.close()
        tasks = [conn.task for conn in self._connections.values()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.settings.stop_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("cancelled %d mllp connection(s) still busy after the stop timeout", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()
        if self._validator is not None:
            # Every connection has ended, so no validation is waiting for the thread.
            self._validator.shutdown(wait=False, cancel_futures=True)
            self._validator = None
        self._server = None

    # -- connections ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until the peer closes it, it times out or the gateway stops."""
        task = asyncio.current_task()
        assert task is not None
        peername = writer.get_extra_info("peername")
        conn = _Connection(next(self._numbers), task, writer, _peer(peername), _address(peername))
        if not self._admit(conn):
            writer.close()
            return
        self._connections[conn.number] = conn
        self._per_peer[conn.address] = self._per_peer.get(conn.address, 0) + 1
        self.counters.connections += 1
        log.info("mllp connection %d from %s", conn.number, conn.peer)
        decoder = MllpDecoder(self.settings.max_message_bytes)
        try:
            if self._tls_context is not None and not await self._handshake(conn, self._tls_context):
                return
            if self._rules.enabled:
                conn.feeds = self._rules.feeds_for(conn.address, conn.common_name)
            await self._read_frames(conn, reader, decoder)
        except OSError as exc:
            # Reset by the peer, a TLS failure, or a peer that stopped reading its ACKs (TimeoutError).
            log.info("mllp connection %d lost: %s", conn.number, type(exc).__name__)
        except asyncio.CancelledError:
            # Only stop() cancels a connection, once its stop timeout has passed. Ending normally matters:
            # Python 3.11's stream server logs a cancelled connection task as an error.
            log.warning("mllp connection %d cancelled while handling a frame", conn.number)
        except Exception as exc:
            log.error("mllp connection %d failed (%s); closing it", conn.number, type(exc).__name__)
        finally:
            self.counters.skipped_bytes += decoder.skipped_bytes
            if decoder.in_frame:
                log.info(
                    "mllp connection %d closed inside a frame; %d byte(s) unacknowledged",
                    conn.number,
                    decoder.pending_bytes,
                )
            del self._connections[conn.number]
            left = self._per_peer[conn.address] - 1
            if left:
                self._per_peer[conn.address] = left
            else:
                del self._per_peer[conn.address]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            log.info("mllp connection %d closed", conn.number)

    def _admit(self, conn: _Connection) -> bool:
        """Say whether a new connection is within the caps; count and log it when it is not."""
        cap = self.settings.mllp_max_connections
        if self._stopping:
            return False
        if len(self._connections) >= cap:
            self.counters.refused_total_cap += 1
            self._refusals.warning(
                "total",
                "mllp connection from %s refused: %d connections open, HCSYNC_MLLP_MAX_CONNECTIONS is %d",
                conn.peer,
                len(self._connections),
                cap,
            )
            return False
        per_peer = self.settings.mllp_max_connections_per_peer
        if self._per_peer.get(conn.address, 0) >= per_peer:
            self.counters.refused_peer_cap += 1
            self._refusals.warning(
                "peer",
                "mllp connection from %s refused: %d connections open from %s, "
                "HCSYNC_MLLP_MAX_CONNECTIONS_PER_PEER is %d",
                conn.peer,
                self._per_peer[conn.address],
                conn.address,
                per_peer,
            )
            return False
        return True

    async def _handshake(self, conn: _Connection, context: ssl.SSLContext) -> bool:
        """Make the TLS handshake within its timeout; count, log and return False when it fails."""
        try:
            await conn.writer.start_tls(
                context, ssl_handshake_timeout=self.settings.mllp_tls_handshake_timeout_s
            )
        except (OSError, ssl.SSLError) as exc:
            if self._stopping:
                return False  # stop() closed it mid-handshake: not the peer's failure
            # TimeoutError is an OSError; an SSLError's reason names the cause (no or a bad certificate).
            self.counters.refused_tls += 1
            why = _handshake_failure(exc, self.settings.mllp_tls_handshake_timeout_s)
            self._refusals.warning(
                "tls",
                "mllp connection %d from %s refused: TLS handshake failed (%s)",
                conn.number,
                conn.peer,
                why,
            )
            return False
        conn.common_name = peer_common_name(conn.writer.get_extra_info("peercert"))
        if conn.common_name is not None:
            log.info("mllp connection %d: client certificate %s", conn.number, _shown(conn.common_name))
        return True

    async def _read_frames(
        self, conn: _Connection, reader: asyncio.StreamReader, decoder: MllpDecoder
    ) -> None:
        """Read and answer frames until the peer closes, a deadline passes or the gateway stops.

        Two clocks, never both: between frames, ``mllp_idle_timeout_s`` from the connection's start or its
        last ended frame; inside a frame, ``mllp_frame_timeout_s`` from when its start block was seen.
        Bytes arriving reset neither: only a frame that ends does.
        """
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        frame_deadline: float | None = None
        while not self._stopping:
            if frame_deadline is not None:
                wait_s = frame_deadline - loop.time()
            else:
                wait_s = idle_since + self._idle_s - loop.time()
            try:
                chunk = await asyncio.wait_for(reader.read(_READ_BYTES), max(wait_s, 0.0))
            except TimeoutError:
                self._timed_out(conn, decoder, in_frame=frame_deadline is not None)
                return
            if not chunk:
                return
            decoder.feed(chunk)
            ended = conn.ended
            conn.busy = True
            try:
                keep_open = await self._answer_frames(conn, decoder, conn.writer)
            finally:
                conn.busy = False
            if conn.ended != ended:
                frame_deadline = None
                idle_since = loop.time()
            if decoder.in_frame and frame_deadline is None:
                frame_deadline = loop.time() + self.settings.mllp_frame_timeout_s
            if not keep_open:
                return

    def _timed_out(self, conn: _Connection, decoder: MllpDecoder, *, in_frame: bool) -> None:
        """Count and log a connection closed by one of its deadlines."""
        if in_frame:
            self.counters.frames_timed_out += 1
            log.warning(
                "mllp connection %d from %s: frame not ended within %gs of its start "
                "(HCSYNC_MLLP_FRAME_TIMEOUT_S), %d byte(s) received; closing",
                conn.number,
                conn.peer,
                self.settings.mllp_frame_timeout_s,
                decoder.pending_bytes,
            )
        else:
            self.counters.idle_closes += 1
            log.info("mllp connection %d idle for %gs, closing", conn.number, self._idle_s)

    @property
    def _idle_s(self) -> float:
        return self.settings.mllp_idle_timeout_s

    async def _answer_frames(
        self, conn: _Connection, decoder: MllpDecoder, writer: asyncio.StreamWriter
    ) -> bool:
        """Handle and answer every complete frame, in order; return False when the connection must close."""
        frames = decoder.frames()
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return True
            except FrameTooLargeError as exc:
                conn.ended += 1
                reply = self._too_large(conn, exc)
                # The generator ended with the error; a new one continues after the oversize frame.
                frames = decoder.frames()
            else:
                conn.ended += 1
                reply = await self._handle_safely(conn, frame)
            if reply.ack is not None:
                writer.write(encode(reply.ack))
                await asyncio.wait_for(writer.drain(), self._idle_s)
            if reply.close or self._stopping:
                return False

    # -- one frame --------------------------------------------------------------------------------

    async def _handle_safely(self, conn: _Connection, frame: bytes) -> _Reply:
        """Handle one frame; an unexpected failure answers an error (nothing stored) instead of crashing."""
        try:
            return await self._handle(conn, frame)
        except Exception as exc:
            # Frames but not the message: an exception's text may quote message values, which can be PHI.
            log.error(
                "mllp connection %d: frame failed with %s\n%s",
                conn.number,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            msg = header_of(frame)
            fault = Fault(
                rule="INTERNAL",
                reason=f"internal error ({type(exc).__name__}); the message was not stored, resend it",
                message_id=msg.control_id if msg is not None else "",
            )
            self.counters.rejected += 1
            code = ack_code(msg, Outcome.ERROR)
            if code is None:
                return _Reply(None, close=True)
            try:
                return _Reply(build_ack(msg, frame, code, fault))
            except Exception:
                return _Reply(None, close=True)

    async def _handle(self, conn: _Connection, frame: bytes) -> _Reply:
        """Parse, validate and store one frame; return the answer."""
        self.counters.frames += 1
        try:
            msg = parse_message(frame)
        except DecodeError as exc:
            return self._refuse(conn, header_of(frame), frame, Outcome.REJECT, exc.fault)
        if not msg.control_id.strip():
            fault = Fault(
                rule="HL7-MSH-10-MISSING",
                reason="MSH-10 (message control id) is required: resends are recognised by it",
                segment="MSH",
                field="MSH-10",
                position=0,
            )
            return self._refuse(conn, msg, frame, Outcome.REJECT, fault)
        if self._rules.enabled and not SenderRules.permits(conn.feeds, msg):
            return self._refuse_sender(conn, msg, frame)
        if self._validator is not None:
            loop = asyncio.get_running_loop()
            validate = functools.partial(
                strict_fault,
                msg,
                max_bytes=self.settings.strict_validation_max_bytes,
                max_elements=self.settings.strict_validation_max_elements,
            )
            strict = await loop.run_in_executor(self._validator, validate)
            if strict is not None:
                return self._refuse(conn, msg, frame, Outcome.ERROR, strict)
        return await self._store(conn, msg, frame)

    async def _store(self, conn: _Connection, msg: Hl7Message, frame: bytes) -> _Reply:
        """Make the message durable in the store and answer with the ACK stored with it."""
        # Both answers are built before the store is asked: nothing that can fail may stand between the
        # commit and the ACK, or the sender would resend a message that is already stored.
        accept = self._ack(msg, frame, Outcome.ACCEPT, None)
        conflict = self._ack(
            msg,
            frame,
            Outcome.ERROR,
            Fault(
                rule=CONFLICT_RULE,
                reason=(
                    "this sender's MSH-10 was already received with other content; this message is stored "
                    "as a conflict for review and will not be processed: send a correction with a new MSH-10"
                ),
                message_id=msg.control_id,
                segment="MSH",
                field="MSH-10",
                position=0,
            ),
        )

        def ack_for(verdict: Verdict, _first: Receipt | None) -> bytes:
            return conflict if verdict is Verdict.CONFLICT else accept

        inbound = hl7v2_inbound(frame, msg, f"mllp {conn.peer}", dt.datetime.now(dt.UTC))
        try:
            receipt = await self._writer.store(inbound, ack_for)
        except StoreUnavailableError as exc:
            log.warning(
                "mllp connection %d: control id %s not stored, answered resend: %s",
                conn.number,
                _shown(msg.control_id),
                exc,
            )
            fault = Fault(
                rule="STORE-NOT-COMMITTED",
                reason="the message was not stored (the message store is unavailable); resend it",
                message_id=msg.control_id,
            )
            self.counters.rejected += 1
            code = ack_code(msg, Outcome.ERROR)
            if code is None:
                return _Reply(None, close=True)
            return _Reply(build_ack(msg, frame, code, fault))
        if receipt.verdict is Verdict.DUPLICATE:
            return self._duplicate(conn, msg, receipt.ack or b"")
        if receipt.verdict is Verdict.CONFLICT:
            self.counters.conflicts += 1
            log.warning(
                "mllp connection %d: control id %s conflicts with stored message %s; stored as conflict %s",
                conn.number,
                _shown(msg.control_id),
                receipt.first_message_id,
                receipt.message_id,
            )
            return _Reply(receipt.ack or None)
        self.counters.acked += 1
        log.debug("mllp connection %d: control id %s stored", conn.number, _shown(msg.control_id))
        return _Reply(receipt.ack or None)

    @staticmethod
    def _ack(msg: Hl7Message, frame: bytes, outcome: Outcome, fault: Fault | None) -> bytes:
        """Return the ACK for an outcome, or b"" when the sender's MSH-15 asks for none."""
        code = ack_code(msg, outcome)
        return build_ack(msg, frame, code, fault) if code is not None else b""

    def _duplicate(self, conn: _Connection, msg: Hl7Message, stored: bytes) -> _Reply:
        """Answer a resend of a stored message with the ACK it got the first time."""
        self.counters.duplicates += 1
        log.info(
            "mllp connection %d: control id %s is a resend, answering the stored ack",
            conn.number,
            _shown(msg.control_id),
        )
        return _Reply(stored or None)

    def _refuse(
        self, conn: _Connection, msg: Hl7Message | None, frame: bytes, outcome: Outcome, fault: Fault
    ) -> _Reply:
        """Answer a message that is not stored: AE/AR, CE/CR, or nothing when MSH-15 says so."""
        self.counters.rejected += 1
        control_id = msg.control_id if msg is not None else ""
        shown = _shown(control_id) or "?"
        log.info("mllp connection %d: refused control id %s: %s", conn.number, shown, fault.rule)
        code = ack_code(msg, outcome)
        if code is None:
            return _Reply(None)
        if not fault.message_id and control_id:
            fault = dataclasses.replace(fault, message_id=control_id)
        return _Reply(build_ack(msg, frame, code, fault))

    def _refuse_sender(self, conn: _Connection, msg: Hl7Message, frame: bytes) -> _Reply:
        """Answer AR to a message whose feed this connection may not send as; nothing is stored."""
        self.counters.senders_refused += 1
        self._refusals.warning(
            "sender",
            "mllp connection %d from %s (certificate %s): sender %s^%s not allowed "
            "(HCSYNC_MLLP_ALLOWED_SENDERS), control id %s refused",
            conn.number,
            conn.peer,
            _shown(conn.common_name) if conn.common_name is not None else "none",
            _shown(msg.sending_application),
            _shown(msg.sending_facility),
            _shown(msg.control_id),
        )
        return self._refuse(conn, msg, frame, Outcome.REJECT, SenderRules.fault(msg))

    def _too_large(self, conn: _Connection, exc: FrameTooLargeError) -> _Reply:
        """Answer a frame over the size limit, naming the message when its MSH was received."""
        self.counters.frames += 1
        self.counters.oversize_frames += 1
        return self._refuse(conn, header_of(exc.head), exc.head, Outcome.REJECT, exc.fault)


def _shown(control_id: str) -> str:
    """Render a control id for a log line: as sent when printable, else escaped (a CR could forge a line)."""
    return control_id if control_id.isprintable() else ascii(control_id)


def _handshake_failure(exc: BaseException, timeout_s: float) -> str:
    """Name why a TLS handshake failed: OpenSSL's reason, or the timeout (asyncio aborts the connection)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, TimeoutError | ConnectionAbortedError):
        return f"not completed within {timeout_s:g}s, HCSYNC_MLLP_TLS_HANDSHAKE_TIMEOUT_S"
    return type(exc).__name__


def _address(peer: object) -> str:
    """Return a peer's IP address (what the per-peer cap counts), without its port."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


def _peer(peer: object) -> str:
    """Render a peer address as host:port."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
