"""Pickup codes through a whole Site (issue 7 §5): a Site on its own thread with a FakeClock,
GPIO lockers on MockFactory pins and the simulated code reader on a pty, the link down (the
store holds the results and events). Per-code salts, the 6-character minimum, codes hashed
by the centre, hostile hash parameters, the upgrade of old site-wide hashes, no code text in
logs or in the store."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import structlog

from edge.core.clock import FakeClock
from edge.core.store import Store
from simulator.factories import lockers as locker_hw
from tests.support.mqtt import dead_broker_url
from tests.support.site import Keys, ThreadedSite, command, make_keys
from tests.support.wait import wait_until

CHEAP = {"n": 1024, "r": 8, "p": 1}  # the lowest cost allowed: keeps the tests fast
PINS = [(5, 6), (13, 19), (20, 21)]
SITE = "lk-codes"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    (tmp_path / "keys").mkdir()
    return make_keys(tmp_path / "keys")


def config(data: Path, keys: Keys, **lockers: Any) -> dict[str, Any]:
    return {
        "site": {"id": SITE},
        "broker": {"url": dead_broker_url(), "keepalive_s": 5},  # link down
        "data_dir": str(data),
        "keys": keys.trusted(),
        "devices": {
            "lockers": {
                "pulse_ms": 300,
                "cooldown_ms": 200,
                "gpio": [
                    {"locker": n + 1, "solenoid_pin": coil, "door_pin": door, "debounce_ms": 0}
                    for n, (coil, door) in enumerate(PINS)
                ],
                "code_reader": {"url": "/dev/null", "max_failures": 3, "lockout_s": 300},
                "code_hash": CHEAP,
                **lockers,
            }
        },
    }


def centre_hash(code: str, n: int = 1024, r: int = 8, p: int = 1) -> dict[str, Any]:
    """What the centre sends as pickup_code_hash (as in docs/mqtt-api.md)."""
    salt = hashlib.sha256(code.encode() + bytes([n % 251, r, p])).digest()[:16]
    digest = hashlib.scrypt(code.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=32)
    return {
        "alg": "scrypt",
        "n": n,
        "r": r,
        "p": p,
        "salt": base64.b64encode(salt).decode(),
        "hash": base64.b64encode(digest).decode(),
    }


class Rig(ThreadedSite):
    """The shared ThreadedSite on a FakeClock, with the centre's signed commands."""

    def __init__(self, cfg: dict[str, Any], keys: Keys) -> None:
        super().__init__(cfg, clock=FakeClock(start=datetime.now(UTC), mono=1000.0))
        self.keys = keys
        self.data = Path(cfg["data_dir"])
        bank = self.site.devices.get("lockers")
        assert bank is not None and bank.reader is not None
        reader = bank.reader
        wait_until(lambda: reader.stats()["connected"], message="code reader open")  # type: ignore[attr-defined]
        self.sync()

    def send(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """A signed command as the uplink hands it over; waits for its result."""
        cmd = command(name, args, self.keys.centre, site=SITE)
        self.inject(cmd)
        return cast(
            dict[str, Any],
            wait_until(lambda: self.result(cmd["command_id"]), message=f"result of {name}"),
        )

    def assign(self, locker: int, **args: Any) -> dict[str, Any]:
        deposited = {"deposited_at": datetime.now(UTC).isoformat()}
        return self.send(
            "locker.assign", {"locker": locker, "parcel_id": f"P-{locker}", **deposited, **args}
        )

    def type_code(self, code: str) -> None:
        assert locker_hw.of(self.hw).code_readers[0].type_code(code)

    def stored_code(self, locker: int) -> Any:
        bank = self.site.devices.get("lockers")
        assert bank is not None
        return self.call(lambda: bank.machine.lockers[locker].code_hash)

    def pulses(self) -> list[str]:
        return [c["name"] for c in self.hw.coil_intervals()]


def rejections(r: Rig, count: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(r.events("pickup.rejected")) >= count, message=f"{count} rejections")
    return [e["data"] for e in r.events("pickup.rejected")]


# --------------------------------------------------------------------------- per-code salt


def test_every_stored_code_has_its_own_salt_and_no_site_salt(keys: Keys, tmp_path: Path) -> None:
    with Rig(config(tmp_path / "d", keys), keys) as r:
        assert r.assign(1, pickup_code="482913")["ok"] is True
        first = r.stored_code(1)
        assert r.send("locker.release", {"locker": 1})["ok"] is True
        assert r.assign(1, pickup_code="482913")["ok"] is True  # the same code again
        again = r.stored_code(1)
        assert r.assign(2, pickup_code="K7Q2M9")["ok"] is True
        other = r.stored_code(2)
    assert first["salt"] != again["salt"] and first["hash"] != again["hash"]
    assert other["salt"] not in (first["salt"], again["salt"])
    assert (first["alg"], first["n"], first["r"], first["p"]) == ("scrypt", 1024, 8, 1)
    store = Store(tmp_path / "d" / "ansim-edge.db")
    try:
        assert store.get_state("pickup_salt") is None  # no site-wide salt any more
        rows = {row["id"]: row for row in json.loads(store.get_state("lockers") or "[]")}
    finally:
        store.close()
    assert rows[1]["code_hash"] == again and rows[2]["code_hash"] == other


def test_the_same_code_for_another_locker_is_still_a_duplicate(keys: Keys, tmp_path: Path) -> None:
    with Rig(config(tmp_path / "d", keys), keys) as r:
        assert r.assign(1, pickup_code="482913")["ok"] is True
        res = r.assign(2, pickup_code="482913")
        assert res["ok"] is False and res["error"]["code"] == "duplicate_code"
        assert r.state("locker-2")["state"] == "free"
        # also against a code the centre hashed (another salt: found by hashing)
        assert r.assign(3, pickup_code_hash=centre_hash("555555"))["ok"] is True
        res = r.assign(2, pickup_code="555555")
        assert res["ok"] is False and res["error"]["code"] == "duplicate_code"
        # the same locker may get its code replaced
        assert r.assign(1, pickup_code="482913")["ok"] is True


def test_a_code_shorter_than_six_is_refused_with_a_clear_error(keys: Keys, tmp_path: Path) -> None:
    with Rig(config(tmp_path / "d", keys), keys) as r:
        res = r.assign(1, pickup_code="12345")
        assert res["ok"] is False
        assert res["error"] == {
            "code": "invalid_args",
            "message": "pickup_code: String should have at least 6 characters",
        }
        assert r.state("locker-1")["state"] == "free" and r.stored_code(1) is None
        assert r.assign(1, pickup_code="123456")["ok"] is True


# --------------------------------------------------------------------------- pre-hashed


def test_a_code_hashed_by_the_centre_opens_its_locker(keys: Keys, tmp_path: Path) -> None:
    sent = centre_hash("482913", n=2**14)  # the documented default cost
    with Rig(config(tmp_path / "d", keys), keys) as r:
        res = r.assign(2, pickup_code_hash=sent)
        assert res["ok"] is True and res["data"] == {"locker": 2, "state": "occupied"}
        assert r.stored_code(2) == sent  # stored as it came
        r.type_code("482914")  # wrong
        assert rejections(r, 1) == [{"reason": "unknown_code", "locker": None}]
        r.type_code("482913")
        wait_until(lambda: r.pulses() == ["coil-2"], message="locker 2's coil pulses")
        wait_until(lambda: r.events("door.opened"), message="door.opened")
        [opened] = r.events("door.opened")
        assert opened["data"] == {"locker": 2, "reason": "pickup", "via": "code"}
        assert len(r.events("pickup.rejected")) == 1


def test_the_documented_worked_example_opens_the_locker(keys: Keys, tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "mqtt-api.md").read_text()
    lines = doc.splitlines()
    i = lines.index("<!-- pickup-hash: output -->")
    example = json.loads(lines[i + 2])
    with Rig(config(tmp_path / "d", keys), keys) as r:
        assert r.assign(1, pickup_code_hash=example)["ok"] is True
        r.type_code("482913")
        wait_until(lambda: r.pulses() == ["coil-1"], message="locker 1's coil pulses")


def test_the_same_pre_hashed_code_twice_is_a_duplicate_and_two_equal_codes_open_nothing(
    keys: Keys, tmp_path: Path
) -> None:
    with Rig(config(tmp_path / "d", keys), keys) as r:
        sent = centre_hash("777777")
        assert r.assign(1, pickup_code_hash=sent)["ok"] is True
        res = r.assign(2, pickup_code_hash=sent)
        assert res["ok"] is False and res["error"]["code"] == "duplicate_code"
        # The same code hashed with another salt cannot be told apart at assign time...
        assert r.assign(2, pickup_code_hash=centre_hash("777777", r=4, n=2048))["ok"] is True
        r.type_code("777777")
        # ...and a code that matches two lockers opens neither.
        assert rejections(r, 1) == [{"reason": "ambiguous_code", "locker": None}]
        assert r.pulses() == []


def bad_hashes() -> list[Any]:
    good = centre_hash("482913")
    huge = {**good, "n": 2**20, "r": 8, "p": 1}  # 1 GiB, minutes on a Pi
    return [
        pytest.param({**good, "n": 2**20}, "pickup_code_hash.n", id="n-2^20"),
        pytest.param(huge | {"r": 64}, "pickup_code_hash", id="r-64"),
        pytest.param({**good, "p": 16}, "pickup_code_hash.p", id="p-16"),
        pytest.param({**good, "n": 2**16, "r": 16}, "byte limit", id="memory-128MiB"),
        pytest.param({**good, "n": 2**15, "r": 8, "p": 4}, "n*r*p", id="work-8x"),
        pytest.param({**good, "n": 3000}, "power of two", id="n-not-power-of-two"),
        pytest.param({**good, "n": 1024, "r": 1}, "n*r*p", id="toy-cost"),
        pytest.param({**good, "alg": "md5"}, "pickup_code_hash.alg", id="alg"),
        pytest.param({**good, "salt": "c2FsdA=="}, "pickup_code_hash.salt", id="salt-short"),
        pytest.param({**good, "hash": "AAAA"}, "pickup_code_hash.hash", id="hash-short"),
        pytest.param({**good, "extra": 1}, "pickup_code_hash.extra", id="extra-field"),
        pytest.param({**good, "n": 16384.5}, "pickup_code_hash.n", id="n-fraction"),
    ]


@pytest.mark.parametrize(("bad", "why"), bad_hashes())
def test_hostile_or_broken_hash_parameters_are_refused_with_a_result(
    keys: Keys, tmp_path: Path, bad: dict[str, Any], why: str
) -> None:
    with Rig(config(tmp_path / "d", keys), keys) as r:
        res = r.assign(1, pickup_code_hash=bad)
        assert res["ok"] is False and res["error"]["code"] == "invalid_args", res
        assert why in res["error"]["message"]
        assert r.state("locker-1")["state"] == "free" and r.stored_code(1) is None


@pytest.mark.parametrize(
    "args",
    [
        pytest.param({}, id="neither"),
        pytest.param({"pickup_code": "482913", "pickup_code_hash": None}, id="hash-null"),
        pytest.param(
            {"pickup_code": "482913", "pickup_code_hash": centre_hash("482913")}, id="both"
        ),
    ],
)
def test_exactly_one_of_code_and_hash(keys: Keys, tmp_path: Path, args: dict[str, Any]) -> None:
    with Rig(config(tmp_path / "d", keys), keys) as r:
        res = r.assign(1, **args)
        if args.get("pickup_code_hash", "absent") is None:  # null is "not given"
            assert res["ok"] is True
            return
        assert res["ok"] is False and res["error"]["code"] == "invalid_args"
        assert "exactly one of pickup_code and pickup_code_hash" in res["error"]["message"]


# --------------------------------------------------------------------------- upgrade


def test_codes_stored_by_the_old_version_still_open_their_lockers(
    keys: Keys, tmp_path: Path
) -> None:
    data = tmp_path / "d"
    site_salt = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    old = hashlib.scrypt(b"482913", salt=bytes.fromhex(site_salt), n=2**14, r=8, p=1, dklen=32)
    store = Store(data / "ansim-edge.db")
    rows = [
        {"id": 1, "occupancy": "occupied", "in_service": True, "parcel_id": "OLD-1",
         "code_hash": old.hex(), "deposited_at": "2026-11-25T10:00:00.000Z",
         "overdue_reported": False},
    ]  # fmt: skip
    store.put_state("pickup_salt", site_salt)
    store.put_state("lockers", json.dumps(rows))
    store.close()
    with Rig(config(data, keys), keys) as r:
        upgraded = r.stored_code(1)
        assert upgraded == {
            "alg": "scrypt",
            "n": 2**14,
            "r": 8,
            "p": 1,
            "salt": base64.b64encode(bytes.fromhex(site_salt)).decode(),
            "hash": base64.b64encode(old).decode(),
        }
        r.type_code("482913")
        wait_until(lambda: r.pulses() == ["coil-1"], message="the old code still opens")


# --------------------------------------------------------------------------- reader


def test_codes_typed_during_a_lockout_are_not_even_hashed(
    keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Rig(config(tmp_path / "d", keys), keys) as r:
        assert r.assign(1, pickup_code="482913")["ok"] is True
        bank = r.site.devices.get("lockers")
        assert bank is not None
        checked: list[int] = []
        real = bank.hasher.check

        def counting(code: str, stored: Any, done: Any) -> Any:
            checked.append(len(stored))
            return real(code, stored, done)

        monkeypatch.setattr(bank.hasher, "check", counting)
        for code in ("000001", "000002", "000003"):  # max_failures 3: locked out
            r.type_code(code)
        wait_until(lambda: r.events("pickup.locked_out"), message="locked out")
        r.type_code("482913")
        r.type_code("1234")  # too short: not a code, not hashed either
        assert [e["reason"] for e in rejections(r, 5)][-2:] == ["locked_out", "locked_out"]
        assert checked == [1, 1, 1]
        assert r.pulses() == []


def test_codes_typed_faster_than_they_are_checked_wait_then_overflow(
    keys: Keys, tmp_path: Path
) -> None:
    with Rig(config(tmp_path / "d", keys), keys) as r:
        assert r.assign(1, pickup_code="482913")["ok"] is True
        bank = r.site.devices.get("lockers")
        assert bank is not None
        held: list[Any] = []

        def hold(code: str, stored: Any, done: Any) -> None:
            held.append(done)  # the check never ends until the test says so

        bank.hasher.check = hold  # type: ignore[method-assign]
        for i in range(10):  # straight from the reader thread's side
            bank.desk.code_from_reader(f"00000{i}")
        r.sync()
        # one being checked, 8 waiting, the 10th refused unchecked
        assert rejections(r, 1) == [{"reason": "reader_busy", "locker": None}]
        assert len(held) == 1
        del bank.hasher.check  # the real one again
        held[0]([False])
        r.sync()
        wait_until(lambda: len(r.events("pickup.rejected")) >= 4, message="the next ones")
        reasons = [e["data"]["reason"] for e in r.events("pickup.rejected")]
        assert reasons[:4] == ["reader_busy", "unknown_code", "unknown_code", "unknown_code"]


# --------------------------------------------------------------------------- secrecy


def test_no_code_text_in_logs_results_events_or_the_store(keys: Keys, tmp_path: Path) -> None:
    # Every 4-character part holds a letter G-Z: it cannot occur in a UUID or a timestamp.
    secrets = ["QZ7XW93K", "KX7Q93ZP", "MW4TR8YN", "PV9SX2LQ"]
    cfg = config(tmp_path / "d", keys)
    with structlog.testing.capture_logs() as logs, Rig(cfg, keys) as r:
        assert r.assign(1, pickup_code=secrets[0])["ok"] is True
        assert r.assign(2, pickup_code_hash=centre_hash(secrets[1]))["ok"] is True
        assert r.assign(3, pickup_code=secrets[0])["error"]["code"] == "duplicate_code"
        short = r.assign(3, pickup_code=secrets[2][:5])
        assert short["error"]["code"] == "invalid_args"
        r.type_code(secrets[3])  # wrong
        r.type_code(secrets[1])  # right
        wait_until(lambda: r.pulses() == ["coil-2"], message="locker 2 opens")
        rejections(r, 1)
        outbox = json.dumps([e for _, e in r.pending()])
    db = b"".join(p.read_bytes() for p in (tmp_path / "d").glob("ansim-edge.db*"))
    events = [entry["event"] for entry in logs]
    assert "command_result" in events  # the logs were captured
    dump = repr(logs)
    for secret in secrets:
        for i in range(len(secret) - 3):
            part = secret[i : i + 4]
            assert part not in dump, f"part of a code ({part}) appears in the logs"
            assert part not in outbox, f"part of a code ({part}) in an event or result"
            assert part.encode() not in db, f"part of a code ({part}) in the store"
    assert b"code_hash" in db  # the locker rows were there to search
