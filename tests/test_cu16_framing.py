"""CU16 framing: byte-exact encoders, decoding, and the incremental parser's resync rule."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from drivers.cu16_protocol import (
    ETX,
    FRAME_LENGTHS,
    MAX_FRAME_LEN,
    STX,
    CommandFrame,
    Cu16Parser,
    Frame,
    StatusFrame,
    UnlockTimeFrame,
    checksum,
    encode_query_all,
    encode_set_unlock_time,
    encode_status_query,
    encode_status_reply,
    encode_unlock,
    encode_unlock_all,
    encode_unlock_time_reply,
)

# --------------------------------------------------------------------------- byte-exact examples


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (encode_status_query(0), "02 00 30 03 35"),
        (encode_unlock(0, 1), "02 00 31 03 36"),
        (encode_unlock(1, 3), "02 12 31 03 48"),
        (encode_unlock_all(0), "02 00 33 03 38"),
    ],
    ids=["status-b0", "unlock-b0-l1", "unlock-b1-l3", "unlock-all-b0"],
)
def test_worked_examples_from_the_reference(frame: bytes, expected: str) -> None:
    assert frame == bytes.fromhex(expected)


def test_other_encoders() -> None:
    assert encode_unlock(9, 16) == bytes.fromhex("02 9f 31 03") + bytes(
        [(2 + 0x9F + 0x31 + 3) % 256]
    )
    assert encode_query_all() == bytes.fromhex("02 00 32 03 37")
    assert encode_query_all(0xF0) == bytes.fromhex("02 f0 32 03 27")
    # 500 ms = 50 units of 10 ms = 00 32
    assert encode_set_unlock_time(0, 500) == bytes.fromhex("02 00 37 00 32 03 6e")
    assert encode_set_unlock_time(2, 10_000)[3:5] == (1000).to_bytes(2, "big")
    assert encode_unlock_time_reply(1, 1000) == bytes.fromhex("02 10 38 00 64 03 b1")


def test_status_reply_bit_order() -> None:
    locks = [False] * 16
    locks[0] = True  # lock 1 -> bit 0 of L1-8
    locks[9] = True  # lock 10 -> bit 1 of L9-16
    items = [False] * 16
    items[7] = True  # sensor 8 -> bit 7 of IR1-8
    items[15] = True  # sensor 16 -> bit 7 of IR9-16
    raw = encode_status_reply(3, locks, items)
    assert raw[:3] == bytes.fromhex("02 30 35")
    assert raw[3:7] == bytes.fromhex("01 02 80 80")
    assert raw[7] == ETX and raw[8] == checksum(raw[:8])
    (frame,) = Cu16Parser().feed(raw)
    assert isinstance(frame, StatusFrame)
    assert frame.board == 3
    assert frame.lock_bits == tuple(locks)
    assert frame.item_bits == tuple(items)
    assert frame.encode() == raw


def test_decoded_request_frames() -> None:
    p = Cu16Parser()
    unlock, set_time = p.feed(encode_unlock(1, 3) + encode_set_unlock_time(4, 750))
    assert unlock == CommandFrame(addr=0x12, cmd=0x31)
    assert (unlock.board, unlock.lock) == (1, 3)
    assert isinstance(set_time, UnlockTimeFrame)
    assert (set_time.board, set_time.cmd, set_time.ms) == (4, 0x37, 750)


@pytest.mark.parametrize(
    ("call", "bad_arg"),
    [
        (lambda: encode_status_query(10), "board"),
        (lambda: encode_status_query(-1), "board"),
        (lambda: encode_status_query(True), "board"),
        (lambda: encode_unlock(0, 0), "lock"),
        (lambda: encode_unlock(0, 17), "lock"),
        (lambda: encode_unlock(0, 1.0), "lock"),  # type: ignore[arg-type]
        (lambda: encode_set_unlock_time(0, 0), "ms"),
        (lambda: encode_set_unlock_time(0, 505), "ms"),
        (lambda: encode_set_unlock_time(0, 655_360), "ms"),
        (lambda: encode_query_all(0x10), "broadcast"),
        (lambda: encode_status_reply(0, [True] * 15, [False] * 16), "lock_bits"),
        (lambda: encode_status_reply(0, [True] * 16, [False] * 17), "item_bits"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(call: object, bad_arg: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=rf"^{bad_arg} "):
        call()


# --------------------------------------------------------------------------- parser: examples


def test_split_frame_and_counters() -> None:
    p = Cu16Parser()
    raw = encode_status_reply(1, [True] * 16, [False] * 16)
    assert p.feed(raw[:4]) == []
    assert p.pending == 4
    (frame,) = p.feed(raw[4:])
    assert frame.board == 1
    assert (p.frames, p.garbage_bytes, p.bad_checksum, p.pending) == (1, 0, 0, 0)


def test_garbage_bad_checksum_and_truncated_frames_are_survived() -> None:
    good = encode_unlock(1, 3)
    bad = bytearray(encode_status_query(2))
    bad[-1] ^= 0xFF
    truncated = encode_status_reply(0, [True] * 16, [True] * 16)[:5]
    p = Cu16Parser()
    stream = b"\xff\x00" + bytes(bad) + truncated + good + b"\x02\x02" + good
    out = p.feed(stream)
    assert [f.encode() for f in out] == [good, good]
    assert p.bad_checksum == 1
    assert p.frames == 2
    assert p.garbage_bytes == len(stream) - 2 * len(good)
    assert p.pending == 0


def test_short_frame_behind_truncated_long_frame_needs_idle() -> None:
    """A truncated 9-byte status head followed by a 5-byte frame cannot be judged until 9
    bytes are there; idle() (the line went quiet) drops the false candidate and finds it."""
    head = encode_status_reply(0, [True] * 16, [True] * 16)[:3]
    good = encode_status_query(4)
    p = Cu16Parser()
    assert p.feed(head + good) == []
    assert p.pending == len(head + good)
    (frame,) = p.idle()
    assert frame.encode() == good
    assert p.pending == 0
    assert p.garbage_bytes == len(head)


def test_unknown_command_and_all_boards_reply_are_garbage() -> None:
    p = Cu16Parser()
    all_status = bytes.fromhex("02 00 36 00 00 03 3b")  # 0x36: format undocumented
    assert p.feed(all_status + encode_status_query(0)) == [CommandFrame(0x00, 0x30)]
    assert p.garbage_bytes == len(all_status)


def test_known_limit_checksum_valid_overlap_and_discard() -> None:
    """Garbage + the head of a genuine frame can form a checksum-valid frame; a byte stream
    cannot tell. The half-duplex master discards before each request, which avoids it."""
    genuine = encode_unlock(0, 4)  # 02 03 31 03 39: ADDR 0x03 looks like an ETX
    data = [0x00, 0x00]
    total = STX + 0x10 + 0x35 + sum(data) + genuine[0] + genuine[1]
    data.append((genuine[2] - total) % 256)  # make byte 8 (0x31) the checksum
    garbage = bytes([STX, 0x10, 0x35, *data])
    p = Cu16Parser()
    swallowed = p.feed(garbage + genuine)
    assert len(swallowed) == 1 and isinstance(swallowed[0], StatusFrame)  # false frame
    p2 = Cu16Parser()
    assert p2.feed(garbage) == []
    p2.discard()
    assert [f.encode() for f in p2.feed(genuine)] == [genuine]


# --------------------------------------------------------------------------- parser: properties

boards = st.integers(0, 9)
locks = st.integers(1, 16)
bits16 = st.lists(st.booleans(), min_size=16, max_size=16)
pulse_ms = st.integers(1, 0xFFFF).map(lambda units: units * 10)

valid_frames = st.one_of(
    st.builds(encode_status_query, boards),
    st.builds(encode_unlock, boards, locks),
    st.builds(encode_unlock_all, boards),
    st.builds(encode_query_all, st.sampled_from([0x00, 0xF0])),
    st.builds(encode_set_unlock_time, boards, pulse_ms),
    st.builds(encode_unlock_time_reply, boards, pulse_ms),
    st.builds(encode_status_reply, boards, bits16, bits16),
)

# Bytes that matter to the protocol, so garbage often looks like the start of a frame.
protocol_bytes = st.lists(
    st.sampled_from([STX, ETX, 0x00, 0x10, 0x12, *FRAME_LENGTHS, 0x36, 0xFF]), max_size=24
).map(bytes)
truncated = valid_frames.flatmap(lambda f: st.integers(1, len(f) - 1).map(lambda n: f[:n]))
bad_sum = valid_frames.map(lambda f: f[:-1] + bytes([(f[-1] + 1) % 256]))
garbage = st.lists(
    st.one_of(st.binary(max_size=24), protocol_bytes, truncated, bad_sum), max_size=6
).map(b"".join)


def _encoded(frames: list[Frame]) -> list[bytes]:
    return [f.encode() for f in frames]


def _overlaps_a_valid_frame(stream: bytes, boundary: int) -> bool:
    """True when a checksum-valid frame starts before ``boundary`` and ends after it (the
    documented, unavoidable ambiguity of a byte stream)."""
    for p in range(max(0, boundary - MAX_FRAME_LEN + 1), boundary):
        if stream[p] != STX or p + 2 >= len(stream):
            continue
        length = FRAME_LENGTHS.get(stream[p + 2])
        if length is None or p + length <= boundary or p + length > len(stream):
            continue
        cand = stream[p : p + length]
        if cand[-2] == ETX and checksum(cand[:-1]) == cand[-1]:
            return True
    return False


@given(st.binary(max_size=512))
def test_random_garbage_never_crashes_and_every_byte_is_accounted(data: bytes) -> None:
    p = Cu16Parser()
    out = p.feed(data)
    assert sum(len(f.encode()) for f in out) + p.garbage_bytes + p.pending == len(data)
    out += p.idle()
    assert p.pending == 0
    assert sum(len(f.encode()) for f in out) + p.garbage_bytes == len(data)
    assert p.frames == len(out)


@given(garbage, st.lists(valid_frames, min_size=1, max_size=5))
def test_valid_frames_are_recovered_after_garbage(junk: bytes, frames: list[bytes]) -> None:
    stream = junk + b"".join(frames)
    assume(not _overlaps_a_valid_frame(stream, len(junk)))
    p = Cu16Parser()
    out = p.feed(stream) + p.idle()
    assert _encoded(out)[-len(frames) :] == frames


@given(garbage, st.lists(valid_frames, min_size=1, max_size=5), garbage)
def test_discard_between_bursts_always_recovers(
    before: bytes, frames: list[bytes], after: bytes
) -> None:
    """What the bus does: discard before each request, so whatever came before can never
    swallow the reply, with no exception for adversarial garbage."""
    p = Cu16Parser()
    p.feed(before)
    p.discard()
    out = p.feed(b"".join(frames) + after) + p.idle()
    assert _encoded(out)[: len(frames)] == frames


@given(
    st.lists(st.one_of(valid_frames, garbage), max_size=10).map(b"".join),
    st.lists(st.integers(0, 1000), max_size=12),
)
def test_arbitrary_split_points_give_the_same_frames(stream: bytes, cuts: list[int]) -> None:
    whole = Cu16Parser()
    expected = whole.feed(stream)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    split = Cu16Parser()
    got: list[Frame] = []
    for piece in pieces:
        got += split.feed(piece)
    assert got == expected
    counters = ("frames", "garbage_bytes", "bad_checksum", "bad_etx", "pending")
    assert [getattr(split, c) for c in counters] == [getattr(whole, c) for c in counters]
    assert split.idle() == whole.idle()
