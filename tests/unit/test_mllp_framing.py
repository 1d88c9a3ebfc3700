"""MLLP framing: chunking, several frames per chunk, noise between frames, oversize frames."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.mllp.framing import FrameTooLargeError, MllpDecoder, encode

MSG_A = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|A1|P|2.5\rPID|1\r"
MSG_B = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|B2|P|2.5\rPID|2\r"


def drain(decoder: MllpDecoder) -> list[bytes]:
    """Collect every frame the decoder has, treating an oversize error as a marker in the list."""
    out: list[bytes] = []
    while True:
        try:
            out.extend(decoder.frames())
            return out
        except FrameTooLargeError:
            out.append(b"<too large>")


def decode(*chunks: bytes, limit: int = 1_000) -> tuple[list[bytes], MllpDecoder]:
    decoder = MllpDecoder(limit)
    frames: list[bytes] = []
    for chunk in chunks:
        decoder.feed(chunk)
        frames.extend(drain(decoder))
    return frames, decoder


def test_encode_wraps_in_start_and_end_blocks() -> None:
    assert encode(b"MSH|x") == b"\x0bMSH|x\x1c\r"


def test_one_frame_in_one_chunk() -> None:
    frames, decoder = decode(encode(MSG_A))
    assert frames == [MSG_A]
    assert decoder.skipped_bytes == 0
    assert not decoder.in_frame
    assert decoder.pending_bytes == 0


def test_frame_split_at_every_byte() -> None:
    wire = encode(MSG_A) + encode(MSG_B)
    frames, decoder = decode(*(wire[i : i + 1] for i in range(len(wire))))
    assert frames == [MSG_A, MSG_B]
    assert decoder.skipped_bytes == 0


def test_several_frames_in_one_chunk_keep_their_order() -> None:
    frames, _ = decode(encode(MSG_A) + encode(MSG_B) + encode(MSG_A))
    assert frames == [MSG_A, MSG_B, MSG_A]


def test_partial_frame_waits_for_the_rest() -> None:
    wire = encode(MSG_A)
    decoder = MllpDecoder(1_000)
    decoder.feed(wire[:10])
    assert drain(decoder) == []
    assert decoder.in_frame
    decoder.feed(wire[10:])
    assert drain(decoder) == [MSG_A]


def test_noise_before_and_between_frames_is_skipped_and_counted() -> None:
    frames, decoder = decode(b"noise" + encode(MSG_A) + b"\r\n\x00xx" + encode(MSG_B) + b"tail")
    assert frames == [MSG_A, MSG_B]
    # The CR right after each end block belongs to it; every other byte outside a frame is noise.
    assert decoder.skipped_bytes == len(b"noise") + len(b"\r\n\x00xx") + len(b"tail")


def test_cr_after_end_block_in_the_next_chunk_is_not_noise() -> None:
    wire = encode(MSG_A)
    frames, decoder = decode(wire[:-1], wire[-1:], encode(MSG_B))
    assert frames == [MSG_A, MSG_B]
    assert decoder.skipped_bytes == 0


def test_end_block_without_cr_still_ends_the_frame() -> None:
    frames, decoder = decode(b"\x0b" + MSG_A + b"\x1c" + b"\x0b" + MSG_B + b"\x1c")
    assert frames == [MSG_A, MSG_B]
    assert decoder.skipped_bytes == 0


def test_start_block_inside_a_frame_abandons_the_partial_frame() -> None:
    frames, decoder = decode(b"\x0bMSH|partial", encode(MSG_A))
    assert frames == [MSG_A]
    assert decoder.skipped_bytes == len(b"MSH|partial")


def test_empty_frame_is_delivered_for_the_gateway_to_reject() -> None:
    frames, _ = decode(b"\x0b\x1c\r")
    assert frames == [b""]


def test_frame_at_the_limit_is_accepted() -> None:
    frames, _ = decode(encode(b"x" * 100), limit=100)
    assert frames == [b"x" * 100]


def test_oversize_frame_raises_as_soon_as_the_limit_is_crossed_then_is_discarded() -> None:
    decoder = MllpDecoder(100)
    body = MSG_A + b"NTE|1||" + b"x" * 500 + b"\r"
    wire = encode(body)
    decoder.feed(wire[:150])
    with pytest.raises(FrameTooLargeError) as info:
        list(decoder.frames())
    assert info.value.limit == 100
    assert info.value.fault.rule == "MESSAGE-TOO-LARGE"
    assert "100 bytes" in info.value.fault.reason
    # The head keeps the start of the frame, so the reject can name the message by its MSH.
    assert info.value.head.startswith(MSG_A)
    # The rest of the oversize frame is dropped as it arrives, never buffered.
    decoder.feed(wire[150:400])
    assert drain(decoder) == []
    assert decoder.pending_bytes == 0
    decoder.feed(wire[400:] + encode(MSG_B))
    assert drain(decoder) == [MSG_B]
    assert decoder.skipped_bytes == len(body)


def test_oversize_frame_complete_in_one_chunk_does_not_lose_the_next_frame() -> None:
    frames, decoder = decode(encode(b"y" * 300) + encode(MSG_A), limit=100)
    assert frames == [b"<too large>", MSG_A]
    assert decoder.skipped_bytes == 300


def test_start_block_while_discarding_starts_a_new_frame() -> None:
    # A sender that gives up on an oversize frame and starts the next one is understood.
    frames, _ = decode(b"\x0b" + b"z" * 300, encode(MSG_B), limit=100)
    assert frames == [b"<too large>", MSG_B]


def test_decoder_rejects_a_nonpositive_limit() -> None:
    with pytest.raises(ValueError, match="positive"):
        MllpDecoder(0)


@given(
    messages=st.lists(
        st.binary(max_size=60).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")), max_size=6
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_any_chunking_yields_the_same_frames(messages: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode(m) for m in messages)
    points = sorted({c for c in cuts if c < len(wire)} | {0, len(wire)})
    chunks = [wire[a:b] for a, b in itertools.pairwise(points)]
    frames, decoder = decode(*chunks)
    assert frames == messages
    assert decoder.skipped_bytes == 0


def test_an_unfinished_frame_never_holds_more_than_the_limit_plus_one_byte() -> None:
    # A sender streaming far past the limit in large chunks: whatever the chunk size, the decoder holds
    # at most the limit plus the one byte that shows it was crossed, and counts every byte it dropped.
    limit, chunk = 1_000, 4_096
    decoder = MllpDecoder(limit)
    decoder.feed(b"\x0b" + b"x" * (chunk - 1))
    held: list[int] = []
    errors = 0
    for _ in range(50):
        try:
            list(decoder.frames())
        except FrameTooLargeError as exc:
            errors += 1
            assert len(exc.head) <= limit + 1
        held.append(decoder.pending_bytes)
        decoder.feed(b"y" * chunk)
    assert errors == 1
    assert max(held) <= limit + 1
    decoder.feed(b"\x1c\r" + encode(MSG_A))
    assert drain(decoder) == [MSG_A]
    assert decoder.skipped_bytes == 51 * chunk - 1  # the whole oversize frame, start block aside


def test_a_frame_one_byte_over_the_limit_in_one_chunk_is_refused() -> None:
    frames, decoder = decode(encode(b"x" * 101) + encode(MSG_A), limit=100)
    assert frames == [b"<too large>", MSG_A]
    assert decoder.skipped_bytes == 101
