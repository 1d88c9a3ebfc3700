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
  and carries on with the next frame. The gateway can so answer AR while the sender is still writing and
  keep the connection (see gateway.py).

Memory: an unfinished frame is held as the list of the pieces received, never more than the limit plus
one byte (the byte that shows the limit is crossed), and input not yet looked at is at most what was fed
since the last ``frames()`` call. A growing bytearray would instead over-allocate by an eighth and, when
reallocated, leave holes in the heap: measured, an unfinished 1 MiB frame cost about 1.4 MiB of resident
memory that way, and about 1.2 MiB as pieces (see docs/security.md).
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

    __slots__ = (
        "_buf",
        "_discarding",
        "_eat_cr",
        "_frame",
        "_frame_bytes",
        "_in_frame",
        "max_frame_bytes",
        "skipped_bytes",
    )

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be positive, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        # Bytes that were not part of any delivered frame: noise, dropped partial or oversize frames.
        self.skipped_bytes = 0
        self._buf = bytearray()
        # The current frame's pieces, and their total length (at most max_frame_bytes + 1).
        self._frame: list[bytearray] = []
        self._frame_bytes = 0
        self._in_frame = False
        self._discarding = False
        # Set right after an end block: a CR next belongs to it and is not counted as noise.
        self._eat_cr = False

    @property
    def pending_bytes(self) -> int:
        """Return how many received bytes are buffered but not yet part of a delivered frame."""
        return len(self._buf) + self._frame_bytes

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
                self.skipped_bytes += self._frame_bytes + restart
                self._drop_frame()
                del self._buf[: restart + 1]
                self._discarding = False
                continue
            if end < 0:
                self._take(len(self._buf))
                if not self._discarding and self._frame_bytes > self.max_frame_bytes:
                    raise self._too_large()
                return
            self._take(end)
            del self._buf[:1]
            self._in_frame = False
            self._eat_cr = True
            if self._discarding:
                self._discarding = False
                continue
            if self._frame_bytes > self.max_frame_bytes:
                raise self._too_large()
            frame = b"".join(self._frame)
            self._drop_frame()
            yield frame

    def _take(self, count: int) -> None:
        """Move ``count`` buffered bytes into the current frame, or drop them when discarding it.

        The frame never grows past the limit plus one byte: what lies beyond is counted as skipped, since
        the frame is refused anyway.
        """
        if self._discarding:
            self.skipped_bytes += count
        else:
            kept = min(count, self.max_frame_bytes + 1 - self._frame_bytes)
            if kept > 0:
                self._frame.append(self._buf[:kept])
                self._frame_bytes += kept
            self.skipped_bytes += count - max(kept, 0)
        del self._buf[:count]

    def _drop_frame(self) -> None:
        self._frame.clear()
        self._frame_bytes = 0

    def _too_large(self) -> FrameTooLargeError:
        """Switch to discarding the current frame and return the error that reports it."""
        size = self._frame_bytes
        head = bytearray()
        for piece in self._frame:
            head += piece[: _HEAD_BYTES - len(head)]
            if len(head) >= _HEAD_BYTES:
                break
        self.skipped_bytes += size
        self._drop_frame()
        # The rest of the frame, until its end block, is dropped as it arrives; when it already ended,
        # there is nothing left to drop.
        self._discarding = self._in_frame
        return FrameTooLargeError(
            Fault(
                rule="MESSAGE-TOO-LARGE",
                reason=f"the frame exceeds the limit of {self.max_frame_bytes} bytes "
                f"(HCSYNC_MAX_MESSAGE_BYTES); more than {self.max_frame_bytes} bytes were received",
                position=self.max_frame_bytes,
            ),
            bytes(head),
            self.max_frame_bytes,
        )
