"""Pickup-code reader wire format (pure: no I/O, no threads): :class:`CodeFramer`.

Wire format: one code per line, terminated by CR, LF or CRLF; 9600 8N1 by default. Nothing is
ever written to the reader. The driver that owns the port is :class:`drivers.codereader.CodeReader`.

:class:`CodeFramer`, fed whatever bytes the line produced, returns complete codes. It never
raises on input and counts what it threw away. It is not thread-safe: it belongs to one
thread. It keeps no code text beyond the unfinished line.
"""

from __future__ import annotations

from typing import Final

_CR: Final = 0x0D
_LF: Final = 0x0A

MAX_UTF8_BYTES_PER_CHAR: Final = 4


class CodeFramer:
    """Splits the reader's byte stream into codes: ``feed(bytes) -> list[str]``.

    * A line ends at CR, LF or CRLF. CRLF is one terminator, also when CR and LF arrive in
      different feeds. Empty (or whitespace-only) lines are dropped silently.
    * A line is decoded as UTF-8 (ASCII is a subset) and stripped of surrounding whitespace.
    * Garbage, counted in ``garbage`` (one per line) and dropped:

      - a line that is not valid UTF-8;
      - a line holding a non-printable character (control bytes, line noise) after
        stripping;
      - a line longer than ``max_len`` characters after stripping. To bound memory, a line
        whose raw bytes exceed ``4 * max_len`` (the most UTF-8 bytes ``max_len`` characters
        can take) is counted as soon as it crosses that bound and everything up to the next
        terminator is discarded.

    The result depends only on the byte stream, never on how it was split into feeds. After
    any garbage, the next terminator resynchronises: the following line is read normally.

    Counters: ``lines`` returned, ``garbage`` lines dropped. :attr:`pending` is the number of
    bytes of an unfinished line.
    """

    def __init__(self, max_len: int = 64) -> None:
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
        self.max_len = max_len
        self._max_raw = max_len * MAX_UTF8_BYTES_PER_CHAR
        self.lines = 0
        self.garbage = 0
        self._buf = bytearray()
        self._discarding = False
        self._after_cr = False

    @property
    def pending(self) -> int:
        """Bytes of a line not yet terminated."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget an unfinished line (after the port was reopened). A non-empty partial line
        is counted as garbage: it was cut off and can never complete."""
        if self._buf:
            self.garbage += 1
        self._buf.clear()
        self._discarding = False
        self._after_cr = False

    def feed(self, data: bytes | bytearray) -> list[str]:
        """Consume ``data``; return the codes completed by it, in order."""
        out: list[str] = []
        buf = self._buf
        for byte in data:
            if byte == _LF and self._after_cr:  # the LF of a CRLF: same terminator
                self._after_cr = False
                continue
            self._after_cr = byte == _CR
            if byte in (_CR, _LF):
                if self._discarding:
                    self._discarding = False
                elif buf:
                    self._finish(out)
                continue
            if self._discarding:
                continue
            buf.append(byte)
            if len(buf) > self._max_raw:
                self.garbage += 1
                buf.clear()
                self._discarding = True
        return out

    def _finish(self, out: list[str]) -> None:
        raw = bytes(self._buf)
        self._buf.clear()
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.garbage += 1
            return
        if not text:
            return
        if len(text) > self.max_len or not text.isprintable():
            self.garbage += 1
            return
        self.lines += 1
        out.append(text)
