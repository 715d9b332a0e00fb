"""Offline pickup by code: codes are kept only as a salted slow hash (scrypt), and a
reader that sees too many wrong codes locks itself out for a while."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque

# scrypt cost: ~16 MiB and tens of ms per hash on a Pi, so a stolen SD card does not
# give the codes away cheaply. One random salt per site (no cross-site precomputation).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def new_salt() -> str:
    return secrets.token_hex(16)


def hash_code(code: str, salt_hex: str) -> str:
    digest = hashlib.scrypt(
        code.encode("utf-8"),
        salt=bytes.fromhex(salt_hex),
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )
    return digest.hex()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


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
