"""Offline pickup by code: each code is kept only as a slow hash (scrypt) with its own
random salt and its own cost parameters, and a reader that sees too many wrong codes locks
itself out for a while.

A stored hash is the JSON object ``{"alg": "scrypt", "n", "r", "p", "salt", "hash"}``
(salt and hash in standard base64), the same format the centre may send pre-hashed in
``locker.assign`` (``pickup_code_hash``). The parameters travel with every hash, so the
cost can be raised later without breaking the hashes already stored.

Costs, measured with hashlib.scrypt (OpenSSL) on the development VM (AMD EPYC, one core):
N=2^12 r=8 5.4 ms, 2^13 11 ms, 2^14 22 ms, 2^15 64 ms, 2^16 127 ms (docs/mqtt-api.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

# ---- what a code is ----
CODE_MIN_LEN, CODE_MAX_LEN = 6, 32
CODE_RE = re.compile(rf"[A-Za-z0-9]{{{CODE_MIN_LEN},{CODE_MAX_LEN}}}")

# ---- scrypt parameters ----
# Default for codes hashed at the site: 16 MiB, 22 ms on the development VM, about
# 0.1-0.2 s on a Raspberry Pi 4 core (see docs/mqtt-api.md, "Offline pickup by code").
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2**14, 8, 1
DKLEN = 32
# Bounds for any hash the site computes or accepts: a (signed but wrong) command must not
# make the Pi hash for seconds per code or run out of memory, nor store a toy hash.
N_MIN, N_MAX = 2**10, 2**16
R_MAX, P_MAX = 16, 4
WORK_MIN, WORK_MAX = 2**13, 2**18  # n * r * p; the default is 2**17
MEM_MAX = 32 * 1024 * 1024  # 128 * n * r bytes
SALT_MIN, SALT_MAX = 16, 64  # bytes
MAXMEM = 64 * 1024 * 1024  # hashlib's limit: above MEM_MAX plus scrypt's small extras

# The format of the site-wide hashes stored before per-code salts (one salt per site in
# the store under "pickup_salt", hex digest in the locker row): still verified.
LEGACY_N, LEGACY_R, LEGACY_P = 2**14, 8, 1


def valid_code(code: str) -> bool:
    """Could this be a pickup code at all (6-32 ASCII letters and digits)?"""
    return CODE_RE.fullmatch(code) is not None


def check_params(n: int, r: int, p: int) -> None:
    """Raise ValueError (a clear message, no secrets) unless the cost is within bounds."""
    if n < N_MIN or n > N_MAX or n & (n - 1):
        raise ValueError(f"n must be a power of two from {N_MIN} to {N_MAX}, got {n}")
    if not 1 <= r <= R_MAX:
        raise ValueError(f"r must be 1 to {R_MAX}, got {r}")
    if not 1 <= p <= P_MAX:
        raise ValueError(f"p must be 1 to {P_MAX}, got {p}")
    if 128 * n * r > MEM_MAX:
        raise ValueError(f"128*n*r = {128 * n * r} bytes is over the {MEM_MAX} byte limit")
    work = n * r * p
    if not WORK_MIN <= work <= WORK_MAX:
        raise ValueError(f"n*r*p = {work} must be {WORK_MIN} to {WORK_MAX}")


def b64decode(text: str) -> bytes:
    """Strict standard base64 (with padding); ValueError otherwise."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not standard base64") from exc


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class CodeHash:
    """One stored pickup code: scrypt(code, salt, n, r, p) with a 32-byte output."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "alg": "scrypt",
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "salt": b64encode(self.salt),
            "hash": b64encode(self.digest),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CodeHash:
        """Parse and check a stored or received hash (ValueError if it is not one)."""
        if d.get("alg") != "scrypt":
            raise ValueError("alg must be 'scrypt'")
        n, r, p = d.get("n"), d.get("r"), d.get("p")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n, r, p)):
            raise ValueError("n, r and p must be integers")
        assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
        check_params(n, r, p)
        salt, digest = d.get("salt"), d.get("hash")
        if not isinstance(salt, str) or not isinstance(digest, str):
            raise ValueError("salt and hash must be base64 strings")
        salt_b, digest_b = b64decode(salt), b64decode(digest)
        if not SALT_MIN <= len(salt_b) <= SALT_MAX:
            raise ValueError(f"salt must be {SALT_MIN} to {SALT_MAX} bytes")
        if len(digest_b) != DKLEN:
            raise ValueError(f"hash must be {DKLEN} bytes")
        return cls(n, r, p, salt_b, digest_b)


def new_salt() -> bytes:
    return secrets.token_bytes(16)


def _scrypt(code: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        code.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=DKLEN
    )


def hash_code(
    code: str,
    n: int = DEFAULT_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
) -> CodeHash:
    """Hash a code with a fresh random salt (slow on purpose: never on the core thread)."""
    check_params(n, r, p)
    salt = new_salt() if salt is None else salt
    return CodeHash(n, r, p, salt, _scrypt(code, salt, n, r, p))


def verify(code: str, stored: CodeHash) -> bool:
    """Does ``code`` hash to ``stored``? (Slow on purpose, constant-time compare.)"""
    digest = _scrypt(code, stored.salt, stored.n, stored.r, stored.p)
    return hmac.compare_digest(digest, stored.digest)


def from_legacy(hex_digest: str, site_salt_hex: str) -> CodeHash:
    """A hash stored before per-code salts (hex, with the site's one salt), as a CodeHash
    with the same parameters: it verifies exactly as before."""
    return CodeHash(
        LEGACY_N, LEGACY_R, LEGACY_P, bytes.fromhex(site_salt_hex), bytes.fromhex(hex_digest)
    )


def default_workers() -> int:
    """Hash threads: leave one core to the core loop and the drivers, use at most three
    (a Raspberry Pi 4 has four cores)."""
    return max(1, min(3, (os.cpu_count() or 1) - 1))


class CodeHasher:
    """Runs scrypt off the core thread. ``matches`` (blocking, for worker threads) checks one
    code against many stored hashes on a small pool; ``check`` does the same without
    blocking and hands the answer to a callback. hashlib.scrypt releases the GIL, so the
    pool uses several cores and the core loop keeps running."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._pool: ThreadPoolExecutor | None = None
        self._coordinator: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        with self._lock:
            if self._pool is None or self._coordinator is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ansim-hash")
                self._coordinator = ThreadPoolExecutor(1, thread_name_prefix="ansim-pickup")
            return self._pool, self._coordinator

    def matches(self, code: str, stored: Sequence[CodeHash]) -> list[bool]:
        """One bool per stored hash; every one is computed (no early exit)."""
        if len(stored) <= 1:
            return [verify(code, h) for h in stored]
        pool, _ = self._pools()
        return list(pool.map(lambda h: verify(code, h), stored))

    def check(
        self,
        code: str,
        stored: Sequence[CodeHash],
        done: Callable[[list[bool] | BaseException], None],
    ) -> Future[None]:
        """Run ``matches`` on the coordinator thread, then ``done(result or error)`` there."""
        _, coordinator = self._pools()

        def run() -> None:
            try:
                result: list[bool] | BaseException = self.matches(code, stored)
            except Exception as exc:
                result = exc
            done(result)

        return coordinator.submit(run)

    def close(self) -> None:
        with self._lock:
            for ex in (self._coordinator, self._pool):
                if ex is not None:
                    ex.shutdown(wait=False, cancel_futures=True)
            self._pool = self._coordinator = None


class CodeGuard:
    """``max_failures`` wrong codes within ``window_s`` lock the reader for ``lockout_s``."""

    def __init__(self, max_failures: int, window_s: float, lockout_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._failures: deque[float] = deque()
        self.locked_until: float | None = None

    def locked(self, now: float) -> bool:
        if self.locked_until is not None and now >= self.locked_until:
            self.locked_until = None
        return self.locked_until is not None

    def failure(self, now: float) -> bool:
        """Record a wrong code; True when this one starts a lockout."""
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.max_failures:
            self._failures.clear()
            self.locked_until = now + self.lockout_s
            return True
        return False

    def success(self) -> None:
        self._failures.clear()
