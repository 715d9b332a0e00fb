"""Offline pickup at the locker bank's code reader: typed codes queued (at most
``MAX_PENDING_CODES``), each checked against the stored hashes on the hash threads
(:class:`~edge.devices.lockers.pickup.CodeHasher`) while the core goes on, the wrong-code
lockout (:class:`~edge.devices.lockers.pickup.CodeGuard`) decided before any hashing, the
matching locker opened through the bank, and the reader's faults reported. Also the upgrade
of hashes stored before each code had its own salt.

Core thread only, but :meth:`PickupDesk.code_from_reader` (the reader thread: it only posts).
A code is never logged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog

from drivers.base import CodeReaderListener, Startable
from drivers.settings import SerialSettings
from edge.core.clock import rfc3339
from edge.core.errors import CommandError
from edge.core.ports import Ports
from edge.devices.lockers import pickup
from edge.devices.lockers.config import CodeReaderConfig
from edge.devices.lockers.events import PickupLockedOut, PickupRejected
from edge.devices.lockers.hardware import LockerHardware
from edge.devices.lockers.pickup import CodeGuard, CodeHash, CodeHasher
from edge.machines.locker import LockerMachine, OpenReason
from edge.models import Emit, InputFault, InputRestored

log = structlog.get_logger("edge.devices.lockers.controller")

# The one site-wide salt of the hashes stored before each code had its own: read only to
# upgrade those hashes (they keep verifying); new sites never create it.
SALT_KEY = "pickup_salt"
MAX_PENDING_CODES = 8  # typed while one is being checked; more are refused (reader_busy)

# One stored code: its locker, the stored JSON (to see whether it changed meanwhile), parsed.
Stored = tuple[int, dict[str, Any], CodeHash]


def parsed(pairs: list[tuple[int, dict[str, Any]]]) -> list[Stored]:
    """Stored hashes that can be read (an unreadable one is logged and left out)."""
    out: list[Stored] = []
    for locker, stored in pairs:
        try:
            out.append((locker, stored, CodeHash.from_json(stored)))
        except (ValueError, TypeError, AttributeError):
            log.error("pickup_hash_unreadable", locker=locker)
    return out


def upgrade_legacy_hashes(machine: LockerMachine, ports: Ports, state_key: str) -> None:
    """Hashes stored before per-code salts (a hex string and the site's one salt) become
    CodeHash objects with the same parameters: they verify as before."""
    legacy = [lk for lk in machine.lockers.values() if isinstance(lk.code_hash, str)]
    if not legacy:
        return
    salt = ports.store.get_state(SALT_KEY)
    for lk in legacy:
        old = str(lk.code_hash)
        try:
            if salt is None:
                raise ValueError("no site salt")
            lk.code_hash = pickup.from_legacy(old, salt).to_json()
        except ValueError:
            # Cannot be verified: the code no longer opens the locker (a centre's
            # locker.assign sets a new one; the parcel stays where it is).
            log.error("pickup_code_unverifiable", locker=lk.id)
            lk.code_hash = None
    ports.store.put_state(state_key, machine.dump())
    log.info("pickup_hashes_upgraded", count=len(legacy))


class PickupDesk:
    """The code reader's side of a locker bank; see the module docstring. ``open`` queues a
    locker's pulse (the bank's, CommandError when refused); ``run`` records emits."""

    def __init__(
        self,
        machine: LockerMachine,
        ports: Ports,
        hasher: CodeHasher,
        open: Callable[[int, OpenReason, str], int],
        run: Callable[[list[Emit]], None],
    ) -> None:
        self.machine = machine
        self.p = ports
        self.hasher = hasher
        self._open = open
        self._run = run
        self._codes: deque[str] = deque()  # typed, waiting to be checked (never logged)
        self._checking = False
        self.guard: CodeGuard | None = None
        self.reader: Startable | None = None

    def attach(self, cfg: CodeReaderConfig, hardware: LockerHardware) -> None:
        """The code reader of ``cfg``, from ``hardware`` (started with the bank)."""
        loop = self.p.loop
        self.guard = CodeGuard(cfg.max_failures, cfg.failure_window_s, cfg.lockout_s)
        self.reader = hardware.code_reader(
            SerialSettings(cfg.url, cfg.baudrate),
            CodeReaderListener(
                on_code=self.code_from_reader,
                on_fault=lambda reason: loop.post(lambda: self._reader_fault(reason)),
                on_recovered=lambda: loop.post(self._reader_recovered),
            ),
        )

    def code_from_reader(self, code: str) -> None:
        # Reader thread: only hand the code over (it is never logged).
        self.p.loop.post(lambda: self._code_entered(code))

    def _code_entered(self, code: str) -> None:
        if len(self._codes) >= MAX_PENDING_CODES:
            self._run([self._rejected("reader_busy")])
            return
        self._codes.append(code)
        self._next_code()

    def _next_code(self) -> None:
        """Check the typed codes one at a time: the lockout is decided before each one is
        hashed, so a locked reader costs no hashing."""
        assert self.guard is not None
        while self._codes and not self._checking:
            code = self._codes.popleft()
            if self.guard.locked(self.p.clock.monotonic()):
                self._run([self._rejected("locked_out")])
                continue
            candidates = parsed(self.machine.pickup_candidates())
            if not candidates or not pickup.valid_code(code):
                self._wrong_code()
                continue
            self._start_check(code, candidates)

    def _start_check(self, code: str, candidates: list[Stored]) -> None:
        # Each code has its own salt: the typed code is hashed once per candidate locker,
        # on the hash threads (the core loop goes on meanwhile).
        self._checking = True
        post = self.p.loop.post

        def done(result: list[bool] | BaseException) -> None:
            post(lambda: self._code_checked(candidates, result))

        try:
            self.hasher.check(code, [h for _, _, h in candidates], done)
        except RuntimeError as exc:  # the pool is shutting down: never wedge the reader
            self._code_checked(candidates, exc)

    def _code_checked(self, candidates: list[Stored], result: list[bool] | BaseException) -> None:
        assert self.guard is not None
        self._checking = False
        try:
            if isinstance(result, BaseException):
                log.error("pickup_code_check_failed", error=type(result).__name__)
                self._run([self._rejected("check_failed")])
                return
            now_stored = dict(self.machine.pickup_candidates())
            matched = [
                locker
                for (locker, stored, _), ok in zip(candidates, result, strict=True)
                if ok and now_stored.get(locker) == stored  # unchanged while it was checked
            ]
            if not matched:
                self._wrong_code()
                return
            if len(matched) > 1:
                # Two lockers hold the same code (possible only with codes hashed by the
                # centre, or two assigns of one code at once): open neither.
                log.warning("pickup_code_ambiguous", lockers=matched)
                self._run([self._rejected("ambiguous_code")])
                return
            try:
                self._open(matched[0], "pickup", "code")
            except CommandError as exc:
                self._run([self._rejected(exc.code, matched[0])])
                return
            self.guard.success()
        finally:
            self._next_code()

    def _wrong_code(self) -> None:
        assert self.guard is not None
        now = self.p.clock.monotonic()
        emits = [self._rejected("unknown_code")]
        if self.guard.failure(now):
            until = self.p.clock.now() + timedelta(seconds=self.guard.lockout_s)
            emits.append(
                Emit(
                    "code-reader",
                    PickupLockedOut(until=rfc3339(until), failures=self.guard.max_failures),
                )
            )
        self._run(emits)

    @staticmethod
    def _rejected(reason: str, locker: int | None = None) -> Emit:
        return Emit("code-reader", PickupRejected(reason=reason, locker=locker))

    def _reader_fault(self, reason: str) -> None:
        self._run([Emit("code-reader", InputFault(reason=reason))])

    def _reader_recovered(self) -> None:
        self._run([Emit("code-reader", InputRestored())])
