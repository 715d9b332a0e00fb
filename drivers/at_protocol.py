"""AT command protocol of GSM/LTE modems (pure: no I/O, no threads), tested by feeding it bytes
and lines. The threaded driver that speaks it is :class:`drivers.modem.GsmModem`.

* :class:`LineFramer` turns the raw byte stream into lines and the SMS prompt ``"> "``.
* :func:`classify_line` says what a line is, given the command in flight: a command reply
  (final ``OK`` / ``ERROR`` / ``+CME ERROR: n`` / ``+CMS ERROR: n``, or an information line),
  a call result code, or an unsolicited result code (URC: ``RING``, ``+CLIP: ...``, ...).
* Reply parsers (``+CREG``/``+CEREG``, ``+CSQ``, ``+CLCC``) and the text-mode SMS encoding
  (:func:`plan_sms`: GSM 7-bit for ASCII, UCS2 hex otherwise, with their length limits).

Privacy helpers: :func:`mask_number` for logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "CALL_CODES",
    "CALL_NUMBER_RE",
    "CTRL_Z",
    "ESC",
    "GSM_EXTENSION",
    "GSM_MAX_SEPTETS",
    "PROMPT",
    "SMS_NUMBER_RE",
    "UCS2_MAX_UNITS",
    "LineFramer",
    "LineKind",
    "SmsPlan",
    "classify_line",
    "fields",
    "gsm_text",
    "info_prefix",
    "is_dial_command",
    "mask_number",
    "parse_clcc",
    "parse_csq",
    "parse_registration",
    "plan_sms",
    "rssi_to_dbm",
    "ucs2_hex",
]

# --------------------------------------------------------------------------- framing

PROMPT: Final = "> "
"""Frame yielded by :class:`LineFramer` for the SMS text prompt (it has no line end).
A real line can never equal it: lines are stripped of surrounding whitespace."""

_CR: Final = 0x0D
_LF: Final = 0x0A
CTRL_Z: Final = b"\x1a"
"""Ends the SMS text typed after the prompt (sends it)."""
ESC: Final = b"\x1b"
"""Aborts the SMS text typed after the prompt."""


class LineFramer:
    """Splits modem output into lines; recognises the SMS prompt ``"> "``.

    * A line ends at CR or LF (so CRLF, LF and lone CR all work); empty lines are skipped;
      lines are stripped of surrounding whitespace.
    * ``"> "`` at the start of a line is emitted as :data:`PROMPT` at once (it never gets a
      line end).
    * A line holding anything other than printable ASCII (and tab) is dropped as garbage; so
      is a line longer than ``max_line`` bytes. ``garbage`` counts the dropped lines.

    Not thread-safe: one owner (the modem worker) feeds it.
    """

    def __init__(self, max_line: int = 1024) -> None:
        if max_line < 8:
            raise ValueError("max_line must be at least 8")
        self.max_line = max_line
        self.garbage = 0
        self._buf = bytearray()
        self._discarding = False

    def reset(self) -> None:
        """Forget a partial line (after reopening the port)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[str]:
        """Consume ``data``; return the complete lines (and prompts) it finished, in order."""
        out: list[str] = []
        buf = self._buf
        for byte in data:
            if byte in (_CR, _LF):
                if self._discarding:
                    self._discarding = False
                elif buf:
                    self._finish_line(out)
                continue
            if self._discarding:
                continue
            buf.append(byte)
            if len(buf) == 2 and buf[0] == 0x3E and buf[1] == 0x20:  # "> "
                buf.clear()
                out.append(PROMPT)
            elif len(buf) > self.max_line:
                self.garbage += 1
                buf.clear()
                self._discarding = True
        return out

    def _finish_line(self, out: list[str]) -> None:
        raw = bytes(self._buf)
        self._buf.clear()
        if any((b < 0x20 and b != 0x09) or b > 0x7E for b in raw):
            self.garbage += 1
            return
        text = raw.decode("ascii").strip()
        if text:
            out.append(text)


# --------------------------------------------------------------------------- classification


class LineKind(StrEnum):
    """What a line from the modem is, relative to the command in flight."""

    ECHO = "echo"  # the command itself, echoed back (echo still on)
    FINAL_OK = "final_ok"
    FINAL_ERROR = "final_error"  # ERROR, +CME ERROR: n, +CMS ERROR: n
    CALL_CODE = "call_code"  # NO CARRIER / BUSY / NO ANSWER / NO DIALTONE during a call
    INFO = "info"  # information line belonging to the command in flight
    URC = "urc"  # unsolicited result code -> listener
    STRAY = "stray"  # a final result with no command in flight (late reply): dropped


CALL_CODES: Final = frozenset({"NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"})
_BARE_URCS: Final = frozenset(
    {"RING", "RDY", "CALL READY", "SMS READY", "PB DONE", "NORMAL POWER DOWN", "POWERED DOWN"}
)
_URC_PREFIXES: Final = ("VOICE CALL:", "MISSED_CALL:", "UNDER-VOLTAGE", "OVER-VOLTAGE")


def info_prefix(command: str) -> str | None:
    """``"AT+CREG?"`` -> ``"+CREG"``; ``None`` for commands without a ``+XXX:`` reply."""
    upper = command.upper()
    if not upper.startswith("AT") or len(upper) < 4 or upper[2] not in "+^$#%":
        return None
    name = re.split(r"[=?]", upper[2:], maxsplit=1)[0]
    return name or None


def classify_line(line: str, command: str | None, *, call_active: bool = False) -> LineKind:
    """Classify one framed line.

    ``command`` is the AT command in flight (``None`` when idle); ``call_active`` says a
    voice call set up by this driver is in progress. Call result codes end a dial command,
    belong to the call in progress, or else are URCs. ``+XXX:`` lines are information for
    the command in flight when its name matches, URCs otherwise. Other unknown lines are
    information while a command is in flight (``ATI`` style replies), URCs otherwise.
    """
    upper = line.upper()
    if command is not None and upper == command.upper():
        return LineKind.ECHO
    if upper == "OK":
        return LineKind.FINAL_OK if command is not None else LineKind.STRAY
    if upper == "ERROR" or upper.startswith(("+CME ERROR", "+CMS ERROR")):
        return LineKind.FINAL_ERROR if command is not None else LineKind.STRAY
    if upper in CALL_CODES:
        dialing = command is not None and is_dial_command(command)
        return LineKind.CALL_CODE if dialing or call_active else LineKind.URC
    if upper in _BARE_URCS or upper.startswith(_URC_PREFIXES):
        return LineKind.URC
    if line.startswith("+"):
        prefix = upper.split(":", 1)[0].strip()
        if command is not None and prefix == info_prefix(command):
            return LineKind.INFO
        return LineKind.URC
    return LineKind.INFO if command is not None else LineKind.URC


def is_dial_command(command: str) -> bool:
    """True for a dial command (``ATD...``)."""
    return command[:3].upper() == "ATD"


# --------------------------------------------------------------------------- replies and text

GSM_MAX_SEPTETS: Final = 160
UCS2_MAX_UNITS: Final = 70
GSM_EXTENSION: Final = frozenset("^{}\\[~]|")
CALL_NUMBER_RE: Final = re.compile(r"\+?[0-9*#]{2,32}")
SMS_NUMBER_RE: Final = re.compile(r"\+?[0-9]{2,20}")


def mask_number(number: str) -> str:
    """``"+821012345678"`` -> ``"***5678"`` (for logs)."""
    return "***" + number[-4:] if len(number) > 4 else "***"


def ucs2_hex(text: str) -> str:
    """Text as the UCS2 hex string text-mode SMS expects (UTF-16BE, uppercase)."""
    return text.encode("utf-16-be").hex().upper()


def rssi_to_dbm(rssi: int) -> int | None:
    """``+CSQ`` rssi (0..31) to dBm; 99 or anything out of range -> ``None``."""
    return -113 + 2 * rssi if 0 <= rssi <= 31 else None


def gsm_text(text: str) -> str:
    """Make ASCII text safe for text-mode input: CR would re-prompt, Ctrl-Z would send and
    ESC would abort, so CR/CRLF become LF and other control characters become spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(c if c == "\n" or 0x20 <= ord(c) < 0x7F else " " for c in text)


def fields(line: str) -> list[str]:
    """The comma-separated fields after the ``:`` of an information line, stripped."""
    return [f.strip() for f in line.split(":", 1)[1].split(",")] if ":" in line else []


def parse_registration(lines: list[str], prefix: str) -> int | None:
    """Registration stat from a ``+CREG?`` / ``+CEREG?`` reply (``+CREG: n,stat[,...]``)."""
    for line in lines:
        if not line.upper().startswith(prefix + ":"):
            continue
        f = fields(line)
        if len(f) >= 2 and f[0].isdigit() and f[1].isdigit():
            return int(f[1])
    return None


def parse_csq(lines: list[str]) -> int | None:
    """Signal in dBm from a ``+CSQ: rssi,ber`` reply (``None`` when unknown)."""
    for line in lines:
        if line.upper().startswith("+CSQ:"):
            f = fields(line)
            if f and f[0].isdigit():
                return rssi_to_dbm(int(f[0]))
    return None


def parse_clcc(lines: list[str]) -> list[int]:
    """Stats of the outgoing voice calls in a ``+CLCC`` reply (0 active, 1 held, 2 dialing,
    3 alerting); other calls and unparsable lines are ignored."""
    stats: list[int] = []
    for line in lines:
        if not line.upper().startswith("+CLCC:"):
            continue
        f = fields(line)
        if len(f) >= 4 and f[1] == "0" and f[3] == "0" and f[2].isdigit():
            stats.append(int(f[2]))
    return stats


# --------------------------------------------------------------------------- SMS encoding


@dataclass(frozen=True)
class SmsPlan:
    """How to submit one text-mode SMS: ``AT+CSCS="<charset>"``, ``AT+CSMP=<csmp>``, then
    ``AT+CMGS="<dest>"`` and, after the prompt, ``payload`` + :data:`CTRL_Z`."""

    charset: str
    csmp: str
    dest: str
    payload: bytes

    @property
    def ucs2(self) -> bool:
        return self.charset == "UCS2"


def plan_sms(number: str, text: str, ascii_charset: str = "GSM") -> SmsPlan:
    """Encode an SMS for text mode. ASCII text goes as GSM 7-bit in ``ascii_charset`` (control
    characters made safe by :func:`gsm_text`, at most 160 septets, extension characters
    counting two); any other text as UCS2 hex (at most 70 UTF-16 units), the number too.
    Raises ValueError (its message is the failure detail) for an invalid number or an
    overlong text."""
    if not SMS_NUMBER_RE.fullmatch(number):
        raise ValueError("invalid number (expected +digits)")
    if text.isascii():
        body = gsm_text(text)
        septets = len(body) + sum(c in GSM_EXTENSION for c in body)
        if septets > GSM_MAX_SEPTETS:
            raise ValueError(f"text too long: {septets} > {GSM_MAX_SEPTETS} GSM septets")
        return SmsPlan(ascii_charset, "17,167,0,0", number, body.encode("ascii"))
    units = len(text.encode("utf-16-be")) // 2
    if units > UCS2_MAX_UNITS:
        raise ValueError(f"text too long: {units} > {UCS2_MAX_UNITS} UCS2 characters")
    return SmsPlan("UCS2", "17,167,0,8", ucs2_hex(number), ucs2_hex(text).encode("ascii"))
