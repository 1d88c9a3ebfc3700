"""MLLP framing: each message travels as 0x0B, the message bytes, 0x1C 0x0D.

:class:`MllpDecoder` is fed the bytes of a connection as they arrive, in chunks of any size, and hands out
complete frames. It is lenient where real senders are sloppy and strict where leniency would cost memory:

- Bytes outside a frame (line breaks or NULs after the end block, noise before a start block) are skipped
  and counted in ``skipped_bytes``; they never reach the parser.
- The end block is 0x1C; the 0x0D that should follow it is consumed when present, and a sender that omits
  it is still understood.
- A start block inside an unfinished frame means the sender gave up on that frame and began again: the
  partial frame is dropped (and counted), since HL7 content cannot contain 0x0B. The sender never gets an
  ACK for it, so it resends.
- A frame longer than ``max_frame_bytes`` raises :class:`FrameTooLargeError` as soon as the limit is
  crossed. The decoder then discards the rest of that frame, without buffering it, up to its end block,
  and carries on with the next frame. Memory per connection is therefore bounded by the limit, and the
  gateway can answer AR while the sender is still writing and keep the connection (see gateway.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from canonical.errors import DecodeError, Fault

__all__ = ["END_BLOCK", "START_BLOCK", "FrameTooLargeError", "MllpDecoder", "encode"]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\r"
_SB = 0x0B
_EB = 0x1C
_CR = 0x0D
# What an oversize error keeps of the frame: enough for the MSH segment, so the reject can name the message.
_HEAD_BYTES = 65_536


class FrameTooLargeError(DecodeError):
    """A frame grew past the size limit; ``head`` holds its first bytes (normally the MSH segment)."""

    def __init__(self, fault: Fault, head: bytes, limit: int) -> None:
        super().__init__(fault)
        self.head = head
        self.limit = limit


def encode(payload: bytes) -> bytes:
    """Wrap a message in an MLLP frame."""
    return START_BLOCK + payload + END_BLOCK


class MllpDecoder:
    """Incremental MLLP decoder: ``feed`` it chunks, then iterate ``frames()`` for the complete frames."""

    __slots__ = ("_buf", "_discarding", "_eat_cr", "_frame", "_in_frame", "max_frame_bytes", "skipped_bytes")

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be positive, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        # Bytes that were not part of any delivered frame: noise, dropped partial or oversize frames.
        self.skipped_bytes = 0
        self._buf = bytearray()
        self._frame = bytearray()
        self._in_frame = False
        self._discarding = False
        # Set right after an end block: a CR next belongs to it and is not counted as noise.
        self._eat_cr = False

    @property
    def pending_bytes(self) -> int:
        """Return how many received bytes are buffered but not yet part of a delivered frame."""
        return len(self._buf) + len(self._frame)

    @property
    def in_frame(self) -> bool:
        """Say whether a frame has started and not yet ended."""
        return self._in_frame

    def feed(self, data: bytes) -> None:
        """Append received bytes; call ``frames()`` afterwards to collect what they completed."""
        self._buf += data

    def frames(self) -> Iterator[bytes]:
        """Yield every complete frame buffered so far, in order.

        Raises FrameTooLargeError when a frame crosses the limit; the decoder stays consistent, so calling
        ``frames()`` again continues after that frame.
        """
        while self._buf:
            if self._eat_cr:
                self._eat_cr = False
                if self._buf[0] == _CR:
                    del self._buf[0]
                    continue
            if not self._in_frame:
                start = self._buf.find(_SB)
                if start < 0:
                    self.skipped_bytes += len(self._buf)
                    self._buf.clear()
                    return
                self.skipped_bytes += start
                del self._buf[: start + 1]
                self._in_frame = True
                self._discarding = False
                continue
            end = self._buf.find(_EB)
            restart = self._buf.find(_SB, 0, end if end >= 0 else len(self._buf))
            if restart >= 0:
                # A new start block before this frame ended: the sender abandoned the frame.
                self.skipped_bytes += len(self._frame) + restart
                self._frame.clear()
                del self._buf[: restart + 1]
                self._discarding = False
                continue
            if end < 0:
                self._take(len(self._buf))
                if not self._discarding and len(self._frame) > self.max_frame_bytes:
                    raise self._too_large()
                return
            self._take(end)
            del self._buf[:1]
            self._in_frame = False
            self._eat_cr = True
            if self._discarding:
                self._discarding = False
                continue
            if len(self._frame) > self.max_frame_bytes:
                raise self._too_large()
            frame = bytes(self._frame)
            self._frame.clear()
            yield frame

    def _take(self, count: int) -> None:
        """Move ``count`` buffered bytes into the current frame, or drop them when discarding it."""
        if self._discarding:
            self.skipped_bytes += count
        else:
            self._frame += self._buf[:count]
        del self._buf[:count]

    def _too_large(self) -> FrameTooLargeError:
        """Switch to discarding the current frame and return the error that reports it."""
        size = len(self._frame)
        head = bytes(self._frame[:_HEAD_BYTES])
        self.skipped_bytes += size
        self._frame.clear()
        # The rest of the frame, until its end block, is dropped as it arrives; when it already ended,
        # there is nothing left to drop.
        self._discarding = self._in_frame
        return FrameTooLargeError(
            Fault(
                rule="MESSAGE-TOO-LARGE",
                reason=f"the frame exceeds the limit of {self.max_frame_bytes} bytes "
                f"(HCSYNC_MAX_MESSAGE_BYTES); at least {size} bytes were received",
                position=size,
            ),
            head,
            self.max_frame_bytes,
        )
