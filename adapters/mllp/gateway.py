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
open, so the sender reads the reject and goes on with its next message. Memory per connection is bounded
by the limit. Connections idle for ``mllp_idle_timeout_s`` are closed.

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
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from adapters.inbound.hl7v2 import CONFLICT_RULE, hl7v2_inbound
from adapters.inbound.store import Receipt, Verdict
from adapters.inbound.writer import GroupCommitWriter, StoreUnavailableError
from adapters.mllp.ack import Outcome, ack_code, build_ack, header_of
from adapters.mllp.framing import FrameTooLargeError, MllpDecoder, encode
from canonical.errors import ConfigurationError, DecodeError, Fault
from canonical.hl7v2.parser import Hl7Message, parse_message
from canonical.hl7v2.strict import strict_fault
from foundation.settings import Settings

__all__ = ["GatewayCounters", "MllpGateway", "server_tls_context"]

log = logging.getLogger(__name__)

_READ_BYTES = 65_536


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
    busy: bool = False


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
    return context


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
        context = server_tls_context(self.settings)
        if self.settings.mllp_strict_validation:
            self._validator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mllp-validate")
        self._stopping = False
        self._server = await asyncio.start_server(self._serve, self._host, self._port, ssl=context)
        self._bound_port = int(self._server.sockets[0].getsockname()[1])
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
        """Serve one connection until the peer closes it, it idles out or the gateway stops."""
        task = asyncio.current_task()
        assert task is not None
        conn = _Connection(next(self._numbers), task, writer, _peer(writer.get_extra_info("peername")))
        self._connections[conn.number] = conn
        self.counters.connections += 1
        log.info("mllp connection %d from %s", conn.number, conn.peer)
        decoder = MllpDecoder(self.settings.max_message_bytes)
        try:
            while not self._stopping:
                try:
                    chunk = await asyncio.wait_for(
                        reader.read(_READ_BYTES), self.settings.mllp_idle_timeout_s
                    )
                except TimeoutError:
                    log.info("mllp connection %d idle for %gs, closing", conn.number, self._idle_s)
                    break
                if not chunk:
                    break
                decoder.feed(chunk)
                conn.busy = True
                try:
                    keep_open = await self._answer_frames(conn, decoder, writer)
                finally:
                    conn.busy = False
                if not keep_open:
                    break
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
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            log.info("mllp connection %d closed", conn.number)

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
                reply = self._too_large(conn, exc)
                # The generator ended with the error; a new one continues after the oversize frame.
                frames = decoder.frames()
            else:
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

    def _too_large(self, conn: _Connection, exc: FrameTooLargeError) -> _Reply:
        """Answer a frame over the size limit, naming the message when its MSH was received."""
        self.counters.frames += 1
        return self._refuse(conn, header_of(exc.head), exc.head, Outcome.REJECT, exc.fault)


def _shown(control_id: str) -> str:
    """Render a control id for a log line: as sent when printable, else escaped (a CR could forge a line)."""
    return control_id if control_id.isprintable() else ascii(control_id)


def _peer(peer: object) -> str:
    """Render a peer address as host:port."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
