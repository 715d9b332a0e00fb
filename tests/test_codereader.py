"""Pickup-code reader: CodeFramer (pure, with hypothesis) and CodeReader against
SimulatedCodeReader over a real pty. No sleeps: every wait is on a condition with a deadline.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.codereader import CodeReader
from drivers.codereader_protocol import CodeFramer
from simulator.codereader_device import SimulatedCodeReader
from tests.support.wait import wait_until

FAST_BACKOFF = (0.02, 0.05)


# --------------------------------------------------------------------------- helpers


class Recorder:
    """Records codes, faults and recoveries from the reader thread; waits on a Condition."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.codes: list[str] = []
        self.faults: list[str] = []
        self.recovered = 0

    def code(self, code: str) -> None:
        with self.cond:
            self.codes.append(code)
            self.cond.notify_all()

    def fault(self, reason: str) -> None:
        with self.cond:
            self.faults.append(reason)
            self.cond.notify_all()

    def recover(self) -> None:
        with self.cond:
            self.recovered += 1
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = 3.0, what: str = "") -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(
                    f"timed out waiting for {what or predicate}: codes={len(self.codes)} "
                    f"faults={self.faults} recovered={self.recovered}"
                )

    def wait_codes(self, n: int, timeout: float = 3.0) -> list[str]:
        self.wait(lambda: len(self.codes) >= n, timeout, f"{n} codes")
        with self.cond:
            return list(self.codes)


@pytest.fixture
def sim() -> Iterator[SimulatedCodeReader]:
    with SimulatedCodeReader() as device:
        yield device


@pytest.fixture
def make_reader() -> Iterator[Callable[..., tuple[CodeReader, Recorder]]]:
    readers: list[CodeReader] = []

    def make(url: str, **kwargs: Any) -> tuple[CodeReader, Recorder]:
        rec = Recorder()
        kwargs.setdefault("listener", rec.code)
        kwargs.setdefault("on_fault", rec.fault)
        kwargs.setdefault("on_recovered", rec.recover)
        kwargs.setdefault("reopen_backoff", FAST_BACKOFF)
        reader = CodeReader(url, **kwargs)
        readers.append(reader)
        reader.start()
        return reader, rec

    yield make
    for reader in readers:
        reader.close()


def connected(reader: CodeReader) -> None:
    wait_until(lambda: reader.stats()["connected"], message="reader connected")


# --------------------------------------------------------------------------- framing


def test_cr_lf_crlf_and_mixed_terminators() -> None:
    f = CodeFramer()
    assert f.feed(b"1111\r2222\n3333\r\n4444\n\r5555") == ["1111", "2222", "3333", "4444"]
    assert f.pending == 4
    assert f.feed(b"\r\n") == ["5555"]
    assert (f.lines, f.garbage, f.pending) == (5, 0, 0)


def test_crlf_split_across_feeds_is_one_terminator() -> None:
    f = CodeFramer()
    assert f.feed(b"123456\r") == ["123456"]
    assert f.feed(b"\n") == []
    assert f.feed(b"\n654321\r") == ["654321"]
    assert (f.lines, f.garbage) == (2, 0)


def test_empty_and_whitespace_lines_dropped_and_codes_stripped() -> None:
    f = CodeFramer()
    assert f.feed(b"\r\n\r\n\n\r   \t \r  12 34 \t\r\n") == ["12 34"]
    assert (f.lines, f.garbage) == (1, 0)


def test_utf8_code_accepted_and_undecodable_line_is_garbage() -> None:
    f = CodeFramer()
    assert f.feed("택배함-7\r".encode()) == ["택배함-7"]
    assert f.feed(b"ab\xff\xfecd\r9876\r") == ["9876"]
    assert (f.lines, f.garbage) == (2, 1)


def test_control_characters_make_a_line_garbage() -> None:
    f = CodeFramer()
    assert f.feed(b"12\x0034\r\x1b[A\r\x07\r5555\r") == ["5555"]
    assert (f.lines, f.garbage) == (1, 3)


def test_max_len_boundary_in_characters() -> None:
    f = CodeFramer(max_len=8)
    assert f.feed(b"12345678\r123456789\r") == ["12345678"]
    assert f.garbage == 1
    # 8 three-byte characters are 24 bytes: still 8 characters, accepted.
    assert f.feed(("가" * 8 + "\n").encode()) == ["가" * 8]
    assert f.feed(("가" * 9 + "\n").encode()) == []
    assert (f.lines, f.garbage) == (2, 2)


def test_overlong_raw_line_discarded_until_next_terminator() -> None:
    f = CodeFramer(max_len=4)  # raw bound: 16 bytes
    assert f.feed(b"x" * 17) == []
    assert (f.garbage, f.pending) == (1, 0)
    assert f.feed(b"1234" * 50) == []  # still discarding, counted once
    assert f.feed(b"99\r\n4321\r") == ["4321"]
    assert (f.lines, f.garbage) == (1, 1)


def test_reset_drops_partial_line_as_garbage() -> None:
    f = CodeFramer()
    f.feed(b"12")
    f.reset()
    assert (f.pending, f.garbage) == (0, 1)
    assert f.feed(b"34\r") == ["34"]
    f.reset()  # nothing pending: nothing counted
    assert f.garbage == 1


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "64"])
def test_max_len_validated(bad: object) -> None:
    with pytest.raises(ValueError):
        CodeFramer(bad)  # type: ignore[arg-type]


codes_st = st.text(
    alphabet=st.characters(categories=("Lu", "Ll", "Lo", "Nd"), max_codepoint=0xD7A3),
    min_size=1,
    max_size=64,
)
terminators_st = st.sampled_from([b"\r", b"\n", b"\r\n"])
pieces_st = st.lists(
    st.one_of(
        st.tuples(codes_st, terminators_st).map(lambda ct: ct[0].encode() + ct[1]),
        st.binary(max_size=40),
        st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\xff", b"x" * 300]),
    ),
    max_size=30,
)


def feed_in_chunks(data: bytes, cuts: list[int]) -> tuple[list[str], CodeFramer]:
    f = CodeFramer()
    out: list[str] = []
    bounds = [0, *sorted({min(c, len(data)) for c in cuts}), len(data)]
    for a, b in itertools.pairwise(bounds):
        out += f.feed(data[a:b])
    return out, f


@settings(max_examples=300, deadline=None)
@given(pieces=pieces_st, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=40))
def test_any_split_yields_the_same_lines(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    whole, f1 = feed_in_chunks(data, [])
    split, f2 = feed_in_chunks(data, cuts)
    bytewise, f3 = feed_in_chunks(data, list(range(len(data))))
    assert whole == split == bytewise
    assert (f1.lines, f1.garbage, f1.pending) == (f2.lines, f2.garbage, f2.pending)
    assert (f1.lines, f1.garbage, f1.pending) == (f3.lines, f3.garbage, f3.pending)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), max_len=st.integers(min_value=1, max_value=80))
def test_random_garbage_never_raises(data: bytes, max_len: int) -> None:
    f = CodeFramer(max_len)
    out = f.feed(data)
    assert f.lines == len(out)
    assert f.garbage >= 0 and f.pending <= 4 * max_len
    for line in out:
        assert line and line == line.strip() and line.isprintable() and len(line) <= max_len


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=600), codes=st.lists(codes_st, min_size=1, max_size=5))
def test_valid_lines_recovered_after_garbage_and_a_terminator(
    garbage: bytes, codes: list[str]
) -> None:
    f = CodeFramer()
    f.feed(garbage)
    lines_before = f.lines
    tail = b"\n" + b"".join(c.encode() + b"\r\n" for c in codes)
    out = f.feed(tail)
    # The first terminator may finish one line begun inside the garbage (if it happens to
    # be a valid code); every code after it comes out intact and in order.
    assert out[-len(codes) :] == codes
    assert len(out) - len(codes) in (0, 1)
    assert f.lines == lines_before + len(out)


# --------------------------------------------------------------------------- driver over a pty


def test_codes_arrive_in_order(sim: SimulatedCodeReader, make_reader: Any) -> None:
    reader, rec = make_reader(sim.port)
    connected(reader)
    codes = [f"{n:06d}" for n in range(100, 130)] + ["QR-택배-ÄB9"]
    for code in codes:
        assert sim.type_code(code)
    assert rec.wait_codes(len(codes)) == codes
    stats = reader.stats()
    assert stats["lines"] == len(codes)
    assert (stats["garbage"], stats["faults"], stats["connected"]) == (0, 0, True)
    assert stats["last_line_t"] is not None
    assert rec.faults == [] and rec.recovered == 0
    assert sim.snapshot()["typed"] == len(codes)


@pytest.mark.parametrize("terminator", [b"\r", b"\n", b"\r\n"], ids=["CR", "LF", "CRLF"])
def test_terminators(terminator: bytes, make_reader: Any) -> None:
    with SimulatedCodeReader(terminator) as device:
        reader, rec = make_reader(device.port)
        connected(reader)
        for code in ("4821", "77 31", "000009"):
            device.type_code(code)
        device.type_code("5150", terminator=b"\n")  # a mixed stream too
        device.type_code("6160", terminator=b"\r\n")
        assert rec.wait_codes(5) == ["4821", "77 31", "000009", "5150", "6160"]
        assert reader.stats()["garbage"] == 0


def test_garbage_is_counted_and_survived(sim: SimulatedCodeReader, make_reader: Any) -> None:
    reader, rec = make_reader(sim.port, max_len=16)
    connected(reader)
    sim.send_raw(b"\xff\xfe\x80\x81\r")  # undecodable
    sim.send_raw(b"\x00\x01\x02\x1b\n")  # control bytes (noise)
    sim.send_raw(b"9" * 300)  # overlong, terminated below
    sim.type_code("1234")  # glued to the overlong line: discarded with it
    sim.type_code("31415926")
    assert rec.wait_codes(1) == ["31415926"]
    stats = reader.stats()
    assert (stats["lines"], stats["garbage"], stats["faults"]) == (1, 3, 0)
    assert stats["connected"]


def test_missing_device_faults_once_and_recovers_when_path_appears(
    tmp_path: Path, make_reader: Any
) -> None:
    path = tmp_path / "by-id" / "usb-scanner"
    reader, rec = make_reader(str(path))
    rec.wait(lambda: len(rec.faults) == 1, what="fault")
    wait_until(lambda: reader.stats()["port_errors"] >= 3, message="retries")
    stats = reader.stats()
    assert (stats["faults"], stats["connected"], stats["faulted"]) == (1, False, True)
    assert rec.recovered == 0

    with SimulatedCodeReader(b"\r\n") as device:
        assert device.tty is not None
        path.parent.mkdir()
        path.symlink_to(device.tty)  # udev creates the by-id link when the scanner appears
        rec.wait(lambda: rec.recovered == 1, what="recovery")
        connected(reader)
        device.type_code("246810")
        assert rec.wait_codes(1) == ["246810"]
        assert len(rec.faults) == 1 and rec.recovered == 1
        assert "No such file" in rec.faults[0]
        assert reader.stats()["faults"] == 1


def test_unplug_while_running_faults_once_and_replug_recovers(make_reader: Any) -> None:
    with SimulatedCodeReader(plugged=False) as device:
        reader, rec = make_reader(device.port)
        rec.wait(lambda: len(rec.faults) == 1, what="fault at boot")
        device.set_unplugged(False)
        rec.wait(lambda: rec.recovered == 1, what="first recovery")
        connected(reader)
        device.type_code("1111")
        rec.wait_codes(1)

        device.set_unplugged(True)
        assert device.type_code("2222") is False  # keystrokes into the void
        rec.wait(lambda: len(rec.faults) == 2, what="unplug fault")
        wait_until(lambda: reader.stats()["port_errors"] >= 4, message="retries while unplugged")
        assert len(rec.faults) == 2 and not reader.stats()["connected"]

        device.set_unplugged(False)
        rec.wait(lambda: rec.recovered == 2, what="second recovery")
        connected(reader)
        device.type_code("3333")
        assert rec.wait_codes(2) == ["1111", "3333"]
        snap = device.snapshot()
        assert (snap["typed"], snap["lost"], snap["plug_count"]) == (2, 1, 2)
        assert reader.stats()["faults"] == 2


def test_close_is_prompt(sim: SimulatedCodeReader, make_reader: Any) -> None:
    reader, _ = make_reader(sim.port)
    connected(reader)
    t0 = time.monotonic()
    reader.close()
    assert time.monotonic() - t0 < 1.0
    assert not reader.stats()["connected"]
    assert not any(t.name.startswith("codereader[") and t.is_alive() for t in threading.enumerate())
    reader.close()  # twice is fine
    with pytest.raises(RuntimeError):
        reader.start()


def test_close_is_prompt_during_a_long_backoff(tmp_path: Path, make_reader: Any) -> None:
    reader, rec = make_reader(str(tmp_path / "absent"), reopen_backoff=(30.0, 60.0))
    rec.wait(lambda: len(rec.faults) == 1, what="fault")
    t0 = time.monotonic()
    reader.close()
    assert time.monotonic() - t0 < 1.0


def test_listener_errors_are_swallowed(sim: SimulatedCodeReader, make_reader: Any) -> None:
    rec = Recorder()

    def listener(code: str) -> None:
        if code == "0000":
            raise RuntimeError("boom")
        rec.code(code)

    def bad_fault(reason: str) -> None:
        raise ValueError(reason)

    reader, _ = make_reader(sim.port, listener=listener, on_fault=bad_fault)
    connected(reader)
    sim.type_code("0000")
    sim.type_code("1357")
    assert rec.wait_codes(1) == ["1357"]
    sim.set_unplugged(True)  # on_fault raises too: still no harm
    wait_until(lambda: reader.stats()["listener_errors"] == 2, message="two callback errors")
    sim.set_unplugged(False)
    connected(reader)
    sim.type_code("2468")
    assert rec.wait_codes(2) == ["1357", "2468"]


def test_close_from_the_listener_does_not_deadlock(
    sim: SimulatedCodeReader, make_reader: Any
) -> None:
    holder: list[CodeReader] = []
    done = threading.Event()

    def listener(code: str) -> None:
        holder[0].close()
        done.set()

    reader, _ = make_reader(sim.port, listener=listener)
    holder.append(reader)
    connected(reader)
    sim.type_code("9999")
    assert done.wait(2.0)
    wait_until(lambda: not reader.stats()["connected"], message="reader stopped")


def test_socket_url(make_reader: Any) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    host, port = server.getsockname()[:2]
    accepted: list[socket.socket] = []
    ready = threading.Event()

    def accept() -> None:
        conn, _ = server.accept()
        accepted.append(conn)
        ready.set()

    threading.Thread(target=accept, daemon=True).start()
    try:
        reader, rec = make_reader(f"socket://{host}:{port}")
        assert ready.wait(3.0)
        connected(reader)  # pyserial drains what arrived before open() returned
        accepted[0].sendall(b"8080\r\n80")
        accepted[0].sendall(b"81\n")
        assert rec.wait_codes(2) == ["8080", "8081"]
        reader.close()
    finally:
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"baudrate": 0},
        {"reopen_backoff": (0.0, 1.0)},
        {"reopen_backoff": (2.0, 1.0)},
        {"max_len": 0},
    ],
)
def test_constructor_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CodeReader("/dev/null", listener=lambda code: None, **kwargs)


# --------------------------------------------------------------------------- secrecy


def test_no_code_text_in_logs(tmp_path: Path) -> None:
    secrets = ["48291735", "KX7Q93ZP", "QR-택배함-5512"]
    too_long = "73920155" * 20  # an overlong line must not leak either
    got: list[str] = []
    got_cond = threading.Condition()

    def listener(code: str) -> None:
        with got_cond:
            got.append(code)
            got_cond.notify_all()
        if code == secrets[1]:
            raise KeyError(code)  # the classic leak: lockers[code]

    with structlog.testing.capture_logs() as logs, SimulatedCodeReader() as device:
        reader = CodeReader(device.port, listener=listener, reopen_backoff=FAST_BACKOFF, max_len=32)
        reader.start()
        try:
            connected(reader)
            for code in secrets:
                device.type_code(code)
            device.send_raw(too_long.encode() + b"\r")
            device.send_raw(secrets[0][:4].encode() + b"\xff\r")
            with got_cond:
                assert got_cond.wait_for(lambda: len(got) == 3, 3.0)
            wait_until(lambda: reader.stats()["garbage"] == 2, message="garbage counted")
            device.send_raw(b"5512")  # a partial code cut off by the unplug
            device.set_unplugged(True)
            wait_until(lambda: reader.stats()["faults"] == 1, message="fault")
            device.set_unplugged(False)
            connected(reader)
        finally:
            reader.close()

    assert got == secrets
    events = [entry["event"] for entry in logs]
    assert "codereader_code" in events and "codereader_listener_error" in events
    assert "codereader_fault" in events and "codereader_recovered" in events
    assert any(e.get("error_type") == "KeyError" for e in logs)
    assert [e["length"] for e in logs if e["event"] == "codereader_code"] == [
        len(s) for s in secrets
    ]
    dump = repr(logs)
    for secret in [*secrets, too_long]:
        for i in range(len(secret) - 3):
            part = secret[i : i + 4]
            assert part not in dump, f"part of a code ({i}..{i + 4}) appears in the logs"
