"""Offline pickup (edge/pickup.py): the salted code hash and the wrong-code lockout."""

from __future__ import annotations

import re

from edge.pickup import CodeGuard, hash_code, new_salt, same_hash

SALT_A = "00112233445566778899aabbccddeeff"
SALT_B = "ffeeddccbbaa99887766554433221100"


# --------------------------------------------------------------------------- hash_code


def test_hash_is_deterministic_for_a_code_and_salt() -> None:
    assert hash_code("482913", SALT_A) == hash_code("482913", SALT_A)


def test_hash_depends_on_the_salt() -> None:
    assert hash_code("482913", SALT_A) != hash_code("482913", SALT_B)


def test_hash_depends_on_the_code() -> None:
    assert hash_code("482913", SALT_A) != hash_code("482914", SALT_A)
    assert hash_code("abcd", SALT_A) != hash_code("ABCD", SALT_A)


def test_hash_is_not_the_code_and_does_not_contain_it() -> None:
    for code in ("482913", "K7Q2M9", "0000"):
        digest = hash_code(code, SALT_A)
        assert digest != code
        assert code.lower() not in digest
        assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_new_salt_is_random_hex() -> None:
    a, b = new_salt(), new_salt()
    assert a != b
    assert re.fullmatch(r"[0-9a-f]{32}", a)
    assert hash_code("1234", a) != hash_code("1234", b)


def test_same_hash() -> None:
    h = hash_code("1234", SALT_A)
    assert same_hash(h, hash_code("1234", SALT_A))
    assert not same_hash(h, hash_code("1235", SALT_A))


# --------------------------------------------------------------------------- CodeGuard


def test_five_wrong_codes_in_the_window_lock_the_reader() -> None:
    g = CodeGuard(max_failures=5, window_s=600, lockout_s=300)
    for t in (0.0, 10.0, 20.0, 30.0):
        assert g.failure(t) is False
        assert g.locked(t) is False
    assert g.failure(40.0) is True
    assert g.locked(40.0) is True
    assert g.locked_until == 340.0


def test_failures_outside_the_window_do_not_count() -> None:
    g = CodeGuard(max_failures=5, window_s=600, lockout_s=300)
    for t in (0.0, 100.0, 200.0, 300.0):
        assert g.failure(t) is False
    # The first one is now 600.5 s old: only four count, with this one.
    assert g.failure(600.5) is False
    assert g.locked(600.5) is False
    # The fifth within 600 s of the one at 100 s does lock.
    assert g.failure(700.0) is True


def test_a_failure_exactly_window_s_old_still_counts() -> None:
    g = CodeGuard(max_failures=5, window_s=600, lockout_s=300)
    for t in (0.0, 1.0, 2.0, 3.0):
        g.failure(t)
    assert g.failure(600.0) is True


def test_the_lockout_ends_and_the_count_starts_again() -> None:
    g = CodeGuard(max_failures=3, window_s=600, lockout_s=300)
    for t in (0.0, 1.0, 2.0):
        g.failure(t)
    assert g.locked(2.0)
    assert g.locked(301.999)
    assert not g.locked(302.0)
    assert g.locked_until is None
    # The failures that caused the lockout are forgotten.
    assert g.failure(303.0) is False
    assert g.failure(304.0) is False
    assert not g.locked(304.0)
    assert g.failure(305.0) is True


def test_a_good_code_clears_the_count() -> None:
    g = CodeGuard(max_failures=5, window_s=600, lockout_s=300)
    for t in (0.0, 1.0, 2.0, 3.0):
        g.failure(t)
    g.success()
    for t in (4.0, 5.0, 6.0, 7.0):
        assert g.failure(t) is False
    assert g.failure(8.0) is True


def test_max_failures_one_locks_at_the_first_wrong_code() -> None:
    g = CodeGuard(max_failures=1, window_s=60, lockout_s=10)
    assert g.failure(0.0) is True
    assert g.locked(9.0)
    assert not g.locked(10.0)
