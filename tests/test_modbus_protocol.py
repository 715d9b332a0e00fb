"""Modbus RTU requests and the receiver, by bytes: documented frames, resync after junk,
CRC errors counted, the simulated board's answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus_protocol import (
    ExceptionResponse,
    ReadDiscreteInputsResponse,
    RtuReceiver,
    WriteCoilRaw,
    all_off_request,
    coil_request,
    encode,
    flash_request,
    inputs_request,
    matches,
)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        # Waveshare "Modbus RTU Relay" protocol: slave 1, relay 1 flash on for 700 ms.
        (flash_request(1, 1, 700), "01 05 02 00 00 07 8d b0"),
        # Write single coil, slave 255 relay 1 on / off (a common 8-relay board's manual).
        (WriteCoilRaw(255, 0, 0xFF00), "ff 05 00 00 ff 00 99 e4"),
        (coil_request(255, 1, False), "ff 05 00 00 00 00 d8 14"),
        # Read 8 discrete inputs of slave 1; all 8 relays of slave 1 off.
        (inputs_request(1, 8), "01 02 00 00 00 08 79 cc"),
        (all_off_request(1, 8), "01 0f 00 00 00 08 01 00 fe 95"),
    ],
)
def test_requests_encode_to_the_documented_bytes(frame: WriteCoilRaw, expected: str) -> None:
    assert encode(frame).hex(" ") == expected


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 100"):
        flash_request(1, 1, 550)
    with pytest.raises(ValueError, match="slave"):
        coil_request(0, 1, True)  # broadcast: never used for a lock
    with pytest.raises(ValueError, match="relay"):
        coil_request(1, 33, True)
    with pytest.raises(ValueError, match="relay"):
        flash_request(1, 0, 500)


def reply(slave: int, bits: list[bool]) -> bytes:
    return encode(ReadDiscreteInputsResponse(dev_id=slave, bits=bits))


def test_a_reply_is_decoded_with_its_slave() -> None:
    rx = RtuReceiver(is_server=False)
    frames = rx.feed(reply(3, [True, False, True]))
    assert len(frames) == 1
    assert frames[0].dev_id == 3 and list(frames[0].bits[:3]) == [True, False, True]
    assert (rx.frames, rx.garbage_bytes, rx.pending) == (1, 0, 0)


def test_a_reply_split_in_pieces_waits_for_its_tail() -> None:
    rx = RtuReceiver(is_server=False)
    data = reply(1, [True] * 8)
    assert rx.feed(data[:3]) == [] and rx.pending == 3
    assert len(rx.feed(data[3:])) == 1 and rx.pending == 0


def test_junk_in_front_is_counted_and_the_frame_still_found() -> None:
    """0x07 is a function code: pymodbus's own FramerRTU.decode would drop everything at
    that candidate's CRC error, reply included. The receiver drops one byte and goes on."""
    rx = RtuReceiver(is_server=False)
    frames = rx.feed(b"\x00\x07" + reply(1, [False] * 8))
    assert len(frames) == 1 and frames[0].dev_id == 1
    assert rx.garbage_bytes == 2 and rx.pending == 0


def test_junk_that_looks_like_a_long_frame_is_judged_when_the_line_goes_quiet() -> None:
    rx = RtuReceiver(is_server=False)
    # 01 02 ff: "slave 1, read inputs, 255 bytes follow": the real reply hides inside.
    assert rx.feed(b"\x01\x02\xff" + reply(2, [True] * 8)) == []
    frames = rx.idle()
    assert [f.dev_id for f in frames] == [2]
    assert rx.garbage_bytes == 3 and rx.pending == 0


def test_a_bad_crc_is_counted_and_nothing_comes_out() -> None:
    rx = RtuReceiver(is_server=False)
    bad = bytearray(reply(1, [True] * 8))
    bad[-1] ^= 0xFF
    assert rx.feed(bytes(bad)) == [] and rx.idle() == []
    assert rx.bad_crc >= 1
    assert rx.garbage_bytes == len(bad) and rx.frames == 0


def test_exception_replies_and_echoes() -> None:
    rx = RtuReceiver(is_server=False)
    request = flash_request(4, 2, 500)
    (refusal,) = rx.feed(encode(ExceptionResponse(5, 2, device_id=4)))
    assert refusal.isError() and refusal.exception_code == 2 and not matches(request, refusal)
    (echo,) = rx.feed(encode(request))
    assert isinstance(echo, WriteCoilRaw) and (echo.address, echo.value) == (0x201, 5)
    assert matches(request, echo)
    assert not matches(request, WriteCoilRaw(4, 0x201, 6))


def test_the_board_side_decodes_every_request_the_driver_sends() -> None:
    rx = RtuReceiver(is_server=True)
    sent = [inputs_request(7, 8), coil_request(7, 3, True), flash_request(7, 8, 1200)]
    sent.append(all_off_request(7, 8))
    got = [rx.feed(encode(r)) for r in sent]
    assert [len(g) for g in got] == [1, 1, 1, 1]
    assert [g[0].function_code for g in got] == [2, 5, 5, 15]
    assert (got[2][0].address, got[2][0].value) == (0x207, 12)


@given(
    junk=st.binary(max_size=40),
    bits=st.lists(st.booleans(), min_size=1, max_size=32),
    slave=st.integers(1, 255),
    cut=st.integers(0, 60),
)
def test_every_byte_is_accounted_for_and_a_clean_reply_after_junk_is_found(
    junk: bytes, bits: list[bool], slave: int, cut: int
) -> None:
    rx = RtuReceiver(is_server=False)
    frame = reply(slave, bits)
    data = junk + frame
    cut = min(cut, len(data))
    frames = rx.feed(data[:cut]) + rx.feed(data[cut:]) + rx.idle()
    # The genuine reply is the last frame found (junk may by chance hold a valid frame).
    assert frames and frames[-1].dev_id == slave and list(frames[-1].bits[: len(bits)]) == bits
    assert rx.pending == 0
    # Every byte fed is either in a frame or counted as garbage.
    framed = sum(len(encode(f)) for f in frames)
    assert framed + rx.garbage_bytes == len(data)
