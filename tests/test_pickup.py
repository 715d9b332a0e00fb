"""Offline pickup (edge/devices/lockers/pickup.py): the per-code salted scrypt hash, its
bounds, the stored format (with the upgrade of the old site-wide hashes), the hash threads,
the documented centre-side snippet, and the wrong-code lockout."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from edge.devices.lockers import pickup
from edge.devices.lockers.commands import LockerAssignArgs, PickupCodeHash
from edge.devices.lockers.pickup import CodeGuard, CodeHash, CodeHasher, hash_code, verify

CHEAP = {"n": 1024, "r": 8, "p": 1}  # the lowest cost allowed: keeps the tests fast
SALT_A = bytes.fromhex("00112233445566778899aabbccddeeff")
SALT_B = bytes.fromhex("ffeeddccbbaa99887766554433221100")
MQTT_DOC = Path(__file__).resolve().parent.parent / "docs" / "mqtt-api.md"


# --------------------------------------------------------------------------- hash_code


def test_equal_codes_get_different_salts_and_hashes() -> None:
    a, b = hash_code("482913", **CHEAP), hash_code("482913", **CHEAP)
    assert a.salt != b.salt and a.digest != b.digest  # a random salt per code
    assert len(a.salt) == 16 and len(a.digest) == 32
    assert verify("482913", a) and verify("482913", b)


def test_hash_is_scrypt_of_the_code_with_its_salt_and_parameters() -> None:
    h = hash_code("482913", n=2048, r=4, p=2, salt=SALT_A)
    expect = hashlib.scrypt(b"482913", salt=SALT_A, n=2048, r=4, p=2, dklen=32)
    assert (h.n, h.r, h.p, h.salt, h.digest) == (2048, 4, 2, SALT_A, expect)
    assert h != hash_code("482913", n=2048, r=4, p=2, salt=SALT_B)


def test_default_cost_is_n_2_14_r_8_p_1() -> None:
    h = hash_code("482913")
    assert (h.n, h.r, h.p) == (2**14, 8, 1)
    assert verify("482913", h)


def test_verify_refuses_other_codes() -> None:
    h = hash_code("K7Q2M9", **CHEAP)
    assert verify("K7Q2M9", h)
    assert not verify("k7q2m9", h)  # case matters
    assert not verify("K7Q2M8", h)
    assert not verify("", h)


def test_stored_form_round_trips_and_does_not_contain_the_code() -> None:
    h = hash_code("48291735", **CHEAP)
    stored = h.to_json()
    assert set(stored) == {"alg", "n", "r", "p", "salt", "hash"}
    assert stored["alg"] == "scrypt"
    assert CodeHash.from_json(json.loads(json.dumps(stored))) == h
    assert "4829" not in json.dumps(stored)
    PickupCodeHash.model_validate(stored)  # the same format the centre sends


def test_old_site_wide_hashes_still_verify() -> None:
    """The format stored before per-code salts: hex scrypt(N=2^14, r=8, p=1) with the one
    site salt (hex) kept under pickup_salt."""
    site_salt = "00112233445566778899aabbccddeeff"
    old_hex = hashlib.scrypt(
        b"482913", salt=bytes.fromhex(site_salt), n=2**14, r=8, p=1, dklen=32
    ).hex()
    h = pickup.from_legacy(old_hex, site_salt)
    assert (h.n, h.r, h.p) == (2**14, 8, 1)
    assert verify("482913", h) and not verify("482914", h)
    assert CodeHash.from_json(h.to_json()) == h


@pytest.mark.parametrize("code", ["123456", "K7Q2M9", "abcdefghijklmnopqrstuvwxyz012345"])
def test_valid_codes(code: str) -> None:
    assert pickup.valid_code(code)
    LockerAssignArgs(locker=1, parcel_id="P", pickup_code=code)


@pytest.mark.parametrize(
    "code", ["", "1234", "12345", "12345 ", "12-456", "코드123456", "a" * 33, "123456\n"]
)
def test_codes_of_the_wrong_form_are_not_codes(code: str) -> None:
    assert not pickup.valid_code(code)


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"n": 2**17, "r": 1, "p": 1}, "power of two from 1024 to 65536"),
        ({"n": 512, "r": 16, "p": 1}, "power of two from 1024 to 65536"),
        ({"n": 3000, "r": 8, "p": 1}, "power of two"),
        ({"n": 2**14, "r": 0, "p": 1}, "r must be 1 to 16"),
        ({"n": 2**10, "r": 17, "p": 1}, "r must be 1 to 16"),
        ({"n": 2**14, "r": 8, "p": 0}, "p must be 1 to 4"),
        ({"n": 2**13, "r": 8, "p": 5}, "p must be 1 to 4"),
        ({"n": 2**16, "r": 8, "p": 1}, "byte limit"),  # 64 MiB
        ({"n": 2**10, "r": 4, "p": 1}, "n*r*p"),  # too cheap
        ({"n": 2**15, "r": 8, "p": 2}, "n*r*p"),  # 4x the default work
    ],
)
def test_cost_out_of_bounds_is_refused(params: dict[str, int], why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        pickup.check_params(**params)
    with pytest.raises(ValueError, match=re.escape(why)):
        hash_code("482913", **params)


def test_cost_bounds_allow_the_default_and_both_ends() -> None:
    for n, r, p in [(2**14, 8, 1), (2**10, 8, 1), (2**15, 8, 1), (2**16, 4, 1), (2**13, 8, 4)]:
        pickup.check_params(n, r, p)


def good_hash() -> dict[str, Any]:
    return hash_code("482913", **CHEAP).to_json()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"alg": "bcrypt"}, "alg"),
        ({"n": True}, "integers"),
        ({"n": "16384"}, "integers"),
        ({"salt": "not base64!"}, "base64"),
        ({"salt": base64.b64encode(b"short").decode()}, "salt must be 16 to 64 bytes"),
        ({"salt": base64.b64encode(bytes(65)).decode()}, "salt must be 16 to 64 bytes"),
        ({"hash": base64.b64encode(bytes(31)).decode()}, "hash must be 32 bytes"),
        ({"salt": 12}, "base64 strings"),
        ({"n": 2**20}, "power of two"),
    ],
)
def test_from_json_refuses_what_is_not_a_stored_hash(change: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        CodeHash.from_json({**good_hash(), **change})


# --------------------------------------------------------------------------- hash threads


def test_hasher_checks_every_candidate_in_order() -> None:
    hashes = [hash_code(c, **CHEAP) for c in ("111111", "222222", "111111", "333333")]
    hasher = CodeHasher(workers=2)
    try:
        assert hasher.matches("111111", hashes) == [True, False, True, False]
        assert hasher.matches("999999", hashes) == [False] * 4
        assert hasher.matches("222222", hashes[1:2]) == [True]
        assert hasher.matches("222222", []) == []
        got: list[Any] = []
        done = threading.Event()

        def callback(result: Any) -> None:
            got.append((result, threading.current_thread().name))
            done.set()

        hasher.check("333333", hashes, callback)
        assert done.wait(10)
        [(result, thread)] = got
        assert result == [False, False, False, True]
        assert thread.startswith("ansim-pickup")  # never the caller's thread
    finally:
        hasher.close()


def test_hasher_reports_a_failure_to_the_callback() -> None:
    bad = CodeHash(3, 8, 1, SALT_A, bytes(32))  # n not a power of two: hashlib refuses it
    hasher = CodeHasher(workers=1)
    got: list[Any] = []
    done = threading.Event()
    try:
        hasher.check("482913", [bad, bad], lambda r: (got.append(r), done.set()))
        assert done.wait(10)
        assert isinstance(got[0], ValueError)
    finally:
        hasher.close()


def test_default_workers_leave_a_core_and_use_at_most_three(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for cores, workers in [(None, 1), (1, 1), (2, 1), (4, 3), (16, 3)]:
        monkeypatch.setattr(pickup.os, "cpu_count", lambda c=cores: c)
        assert pickup.default_workers() == workers


# --------------------------------------------------------------------------- the doc snippet


def doc_block(marker: str) -> str:
    lines = MQTT_DOC.read_text(encoding="utf-8").splitlines()
    i = lines.index(f"<!-- pickup-hash: {marker} -->")
    assert lines[i + 1].startswith("```")
    end = lines.index("```", i + 2)
    return "\n".join(lines[i + 2 : end])


def test_documented_centre_snippet_prints_the_documented_hash_and_it_verifies() -> None:
    namespace: dict[str, Any] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(doc_block("snippet"), "mqtt-api.md snippet", "exec"), namespace)
    printed = json.loads(out.getvalue())
    assert printed == json.loads(doc_block("output"))
    h = CodeHash.from_json(printed)
    assert verify("482913", h) and not verify("482914", h)
    PickupCodeHash.model_validate(printed)
    # Without a salt, the snippet makes a new random one every time.
    fresh = [namespace["pickup_code_hash"]("482913") for _ in range(2)]
    assert fresh[0]["salt"] != fresh[1]["salt"]
    assert all(verify("482913", CodeHash.from_json(f)) for f in fresh)


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
