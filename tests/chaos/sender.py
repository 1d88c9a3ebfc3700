"""A sender that behaves like a real interface engine: it resends until it gets a positive ACK.

Each lane is one MLLP connection carrying its messages one at a time, in order; an encounter's messages
all go down one lane, so they reach the gateway in their order. A lane that loses its connection, times out
waiting for an ACK, or is told to resend (AE "not stored") reconnects after a pause and sends the same
message again. Only a positive ACK moves a lane on; the sender records which messages got one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from adapters.mllp.client import AckResult, parse_ack
from adapters.mllp.framing import MllpDecoder, encode
from canonical.hl7v2.parser import parse_message

_MAX_ACK_BYTES = 1_048_576


@dataclass
class SendLog:
    """What the sender saw: positive ACKs by control id, and every retry with its cause."""

    acked: dict[str, AckResult] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)  # control id -> monotonic time of its ACK
    retries: dict[str, int] = field(default_factory=dict)  # cause -> count
    refused: list[AckResult] = field(default_factory=list)  # negative answers that were not "resend"
    started_at: float = field(default_factory=time.monotonic)

    def retry(self, cause: str) -> None:
        self.retries[cause] = self.retries.get(cause, 0) + 1


class _Lane:
    def __init__(self, host: str, port: int, log: SendLog, ack_timeout_s: float) -> None:
        self.host, self.port, self.log, self.ack_timeout_s = host, port, log, ack_timeout_s
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.decoder = MllpDecoder(_MAX_ACK_BYTES)

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        self.decoder = MllpDecoder(_MAX_ACK_BYTES)
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _ack(self) -> bytes:
        assert self.reader is not None
        while True:
            for frame in self.decoder.frames():
                return frame
            chunk = await asyncio.wait_for(self.reader.read(65_536), self.ack_timeout_s)
            if not chunk:
                raise ConnectionResetError("the gateway closed the connection")
            self.decoder.feed(chunk)

    async def send(self, raw: bytes, deadline: float) -> AckResult:
        """Send one message until it is acknowledged positively (or the deadline passes)."""
        control_id = parse_message(raw).control_id
        pause = 0.2
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"message {control_id} never acknowledged positively")
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), 5
                    )
                self.writer.write(encode(raw))
                await self.writer.drain()
                answer = parse_ack(await self._ack())
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self.log.retry(type(exc).__name__)
                await self.close()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            if answer.positive:
                self.log.acked[control_id] = answer
                self.log.acked_at[control_id] = time.monotonic()
                return answer
            if "resend" in answer.text:
                self.log.retry(answer.text.split(" ")[0][:40] or answer.code)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            self.log.refused.append(answer)
            return answer


async def send_all(
    host: str,
    port: int,
    lanes: Sequence[Sequence[bytes]],
    log: SendLog,
    *,
    timeout_s: float = 600.0,
    ack_timeout_s: float = 15.0,
) -> SendLog:
    """Send every lane's messages in order, the lanes side by side; return once all are answered."""
    deadline = time.monotonic() + timeout_s

    async def run(messages: Sequence[bytes]) -> None:
        lane = _Lane(host, port, log, ack_timeout_s)
        try:
            for raw in messages:
                await lane.send(raw, deadline)
        finally:
            await lane.close()

    await asyncio.gather(*(run(messages) for messages in lanes))
    return log
