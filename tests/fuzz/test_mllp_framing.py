"""MLLP framing (adapters/mllp/framing.py) under arbitrary byte streams cut into arbitrary chunks.

Properties of :class:`MllpDecoder`, whatever the bytes and wherever a chunk boundary falls:

- the only error it raises is :class:`FrameTooLargeError` (a DecodeError), and that refusal is located:
  rule MESSAGE-TOO-LARGE, a reason naming the limit and setting, and ``position`` the offset in the frame
  of its first byte past the limit (the limit itself: nothing past it is buffered); its ``head`` is at most
  the 64 KiB the gateway needs to name the message, and never more than the limit plus one byte;
- memory is bounded: once a chunk is drained, at most ``max_frame_bytes`` stay buffered;
- chunking does not change what is delivered: the frames equal those of the whole stream fed at once;
- every byte is accounted for: delivered, skipped, still pending, or a framing byte (0x0B, 0x1C, 0x0D);
- well-formed frames split anywhere come out exactly as they went in;
- each input is decoded within the time bound.
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from adapters.mllp.framing import FrameTooLargeError, MllpDecoder, encode
from tests.fuzz.harness import assert_located, fuzz_settings, time_bound
from tests.fuzz.hl7_inputs import sample_seeds

_HEAD_LIMIT = 65_536
_FRAMING = (0x0B, 0x1C, 0x0D)

# Streams rich in framing bytes: random bytes interleaved with start blocks, end blocks and CRs.
_PIECES = st.binary(max_size=40) | st.sampled_from(
    (b"\x0b", b"\x1c", b"\x1c\r", b"\r", b"\x0b\x1c\r", b"\x00")
)
_STREAMS = st.lists(_PIECES, max_size=30).map(b"".join) | st.binary(max_size=600)
_LIMITS = st.integers(min_value=1, max_value=120)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _decode(chunks: list[bytes], limit: int) -> tuple[list[bytes], int, MllpDecoder]:
    """Feed chunks one by one, draining after each; return the frames, the refusals and the decoder."""
    decoder = MllpDecoder(limit)
    frames: list[bytes] = []
    refusals = 0
    received = 0
    for chunk in chunks:
        decoder.feed(chunk)
        received += len(chunk)
        while True:
            try:
                with time_bound():
                    frames.extend(decoder.frames())
                break
            except FrameTooLargeError as exc:
                refusals += 1
                assert_located(exc.fault)
                assert exc.fault.rule == "MESSAGE-TOO-LARGE", exc.fault.describe()
                assert exc.fault.position == limit, exc.fault.describe()
                assert exc.limit == limit
                assert len(exc.head) <= min(_HEAD_LIMIT, limit + 1)
        assert decoder.pending_bytes <= limit, f"{decoder.pending_bytes} bytes buffered, limit {limit}"
    return frames, refusals, decoder


@fuzz_settings()
@given(data=_STREAMS, cuts=st.lists(st.integers(min_value=0), max_size=20), limit=_LIMITS)
def test_any_stream_any_chunking(data: bytes, cuts: list[int], limit: int) -> None:
    frames, _, decoder = _decode(_chunks(data, cuts), limit)
    whole, _, _ = _decode([data], limit)
    assert frames == whole, "chunk boundaries changed the frames delivered"
    delivered = sum(map(len, frames))
    accounted = delivered + decoder.skipped_bytes + decoder.pending_bytes
    framing = sum(data.count(bytes([b])) for b in _FRAMING)
    assert accounted <= len(data), f"{accounted} bytes accounted for out of {len(data)}"
    assert len(data) - accounted <= framing, f"{len(data) - accounted} bytes lost, {framing} framing bytes"
    for frame in frames:
        assert len(frame) <= limit
        assert b"\x0b" not in frame and b"\x1c" not in frame


@fuzz_settings()
@given(
    messages=st.lists(st.sampled_from(sample_seeds()) | st.binary(max_size=80), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
    noise=st.sampled_from((b"", b"\r\n", b"\x00\x00", b"noise")),
)
def test_frames_split_anywhere_come_out_whole(messages: list[bytes], cuts: list[int], noise: bytes) -> None:
    payloads = [m.replace(b"\x0b", b"").replace(b"\x1c", b"") for m in messages]
    wire = b"".join(noise + encode(p) for p in payloads)
    frames, refusals, decoder = _decode(_chunks(wire, cuts), 4_096)
    assert (frames, refusals) == (payloads, 0)
    assert decoder.skipped_bytes == len(noise) * len(payloads)
    assert not decoder.in_frame and decoder.pending_bytes == 0


@fuzz_settings()
@given(
    size=st.integers(min_value=101, max_value=3_000),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    ended=st.booleans(),
)
def test_an_oversize_frame_is_refused_once_and_the_next_frame_survives(
    size: int, cuts: list[int], ended: bool
) -> None:
    after = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|N1|P|2.5\r"
    oversize = b"\x0b" + b"x" * size + (b"\x1c\r" if ended else b"")
    frames, refusals, _ = _decode(_chunks(oversize + encode(after), cuts), 100)
    assert frames == [after]
    # An ended oversize frame is refused once. One abandoned (a start block before its end) is refused when
    # the limit was crossed in an earlier chunk, and silently dropped when its restart arrives in the same
    # chunk: the decoder looks for a restart before it checks the size (framing.py, frames()).
    assert refusals == 1 if ended else refusals <= 1
