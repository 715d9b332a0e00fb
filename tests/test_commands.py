"""Signed command intake (edge.core.commands.CommandProcessor) with a real Store and a FakeClock:
every error code, handler isolation, persistent replay protection, one result per message."""

from __future__ import annotations

import inspect
import json
import sys
import tempfile
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from edge.config import TrustedKey
from edge.core.clock import FakeClock, rfc3339
from edge.core.commands import (
    CLOCK_TOLERANCE_S,
    ERROR_CODES,
    REFUSED_BURST,
    REFUSED_PER_S,
    REPORT_S,
    CommandContext,
    CommandProcessor,
    LoadedKey,
    load_keys,
)
from edge.core.errors import CommandError
from edge.core.signing import canonical_json, generate_keypair, load_private_key, sign_command
from edge.core.store import Store
from edge.devices.panic.commands import AlarmAckArgs
from edge.models import CommandsRefused, Result

CLOCK_START = FakeClock().now()
EXPIRES = rfc3339(CLOCK_START + timedelta(minutes=5))
MAX_PAYLOAD = 4096
SITE = "shelter-0001"


class ModeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on: bool


class Recorder:
    """A handler that records its calls and returns (or raises) what it is told to."""

    def __init__(self, result: dict[str, Any] | None = None, exc: BaseException | None = None):
        self.calls: list[tuple[Any, CommandContext]] = []
        self.result = result
        self.exc = exc

    def __call__(self, args: Any, ctx: CommandContext) -> dict[str, Any] | None:
        self.calls.append((args, ctx))
        if self.exc is not None:
            raise self.exc
        return self.result


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        key_dir = tmp_path / "keys"
        generate_keypair(key_dir / "centre.key", key_dir / "centre.pub")
        generate_keypair(key_dir / "tech.key", key_dir / "tech.pub")
        generate_keypair(key_dir / "rogue.key", key_dir / "rogue.pub")
        self.centre = load_private_key(key_dir / "centre.key")
        self.tech = load_private_key(key_dir / "tech.key")
        self.rogue = load_private_key(key_dir / "rogue.key")
        self.keys = load_keys(
            [
                TrustedKey(key_id="centre", public_key=key_dir / "centre.pub", commands=["*"]),
                TrustedKey(
                    key_id="tech",
                    public_key=key_dir / "tech.pub",
                    commands=["site.test_mode"],
                ),
            ]
        )
        self.db = tmp_path / "store.db"
        self.clock = FakeClock()
        self.results: list[bytes] = []
        self.reports: list[CommandsRefused] = []
        self.ack = Recorder({"acked": True})
        self.test_mode = Recorder(None)
        self.boom = Recorder(exc=RuntimeError("relay stuck"))
        self.refuse = Recorder(exc=CommandError("wrong_state", "no alarm is active"))
        self.open()

    def open(self) -> None:
        self.store = Store(self.db)
        self.proc = CommandProcessor(
            self.keys,
            self.store,
            self.clock,
            site_id=SITE,
            max_payload_bytes=MAX_PAYLOAD,
            send_result=self.results.append,
            report=self.reports.append,
        )
        self.proc.register("alarm.ack", AlarmAckArgs, self.ack)
        self.proc.register("site.test_mode", ModeArgs, self.test_mode)
        self.proc.register("site.boom", ModeArgs, self.boom)
        self.proc.register("site.refuse", ModeArgs, self.refuse)

    def reopen(self) -> None:
        self.store.close()
        self.open()

    @property
    def handler_calls(self) -> int:
        return sum(len(h.calls) for h in (self.ack, self.test_mode, self.boom, self.refuse))

    def send(self, payload: bytes | dict[str, Any], topic: str | None = "<name>") -> dict[str, Any]:
        """Handle one message; assert exactly one result; return it parsed."""
        if isinstance(payload, dict):
            name = payload.get("name")
            payload = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        else:
            name = None
        if topic == "<name>":  # the topic levels the centre publishes on: commands/alarm/ack
            topic = name.replace(".", "/") if isinstance(name, str) else None
        before = len(self.results)
        self.proc.handle(topic, payload)
        assert len(self.results) == before + 1, "exactly one result per message"
        body = self.results[-1]
        Result.model_validate_json(body)  # every result follows the contract
        parsed: dict[str, Any] = json.loads(body)
        return parsed


def command(
    key: Ed25519PrivateKey | None,
    name: str = "alarm.ack",
    args: dict[str, Any] | None = None,
    *,
    command_id: str = "cmd-1",
    key_id: str = "centre",
    expires_at: str = EXPIRES,
    site: str = SITE,
) -> dict[str, Any]:
    cmd: dict[str, Any] = {
        "command_id": command_id,
        "site": site,
        "name": name,
        "args": {"alarm_id": "a-1", "by": "관제센터"} if args is None else args,
        "expires_at": expires_at,
        "key_id": key_id,
    }
    return sign_command(cmd, key) if key is not None else {**cmd, "sig": "0" * 128}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.store.close()


def assert_rejected(rig: Rig, result: dict[str, Any], code: str, command_id: str | None) -> None:
    assert result["ok"] is False
    assert result["error"]["code"] == code, result
    assert result["error"]["message"]
    assert result["command_id"] == command_id
    assert result["data"] is None
    assert rig.handler_calls == 0, "a rejected command must never reach a handler"


# --------------------------------------------------------------------------- the happy path


def test_valid_command_runs_handler_once_with_parsed_args(rig: Rig) -> None:
    result = rig.send(command(rig.centre))
    assert result == {
        "command_id": "cmd-1",
        "ok": True,
        "error": None,
        "data": {"acked": True},
        "ts": rfc3339(CLOCK_START),
    }
    [(args, ctx)] = rig.ack.calls
    assert args == AlarmAckArgs(alarm_id="a-1", by="관제센터")
    assert ctx == CommandContext(command_id="cmd-1", key_id="centre", name="alarm.ack")


def test_handler_returning_none_gives_empty_data(rig: Rig) -> None:
    result = rig.send(command(rig.tech, "site.test_mode", {"on": True}, key_id="tech"))
    assert result["ok"] is True and result["data"] == {}
    assert len(rig.test_mode.calls) == 1


def test_topic_none_skips_the_name_check(rig: Rig) -> None:
    assert rig.send(command(rig.centre), topic=None)["ok"] is True


def test_received_whitespace_and_key_order_do_not_matter(rig: Rig) -> None:
    cmd = command(rig.centre)
    wire = json.dumps(dict(reversed(list(cmd.items()))), indent=3).encode()
    rig.proc.handle("alarm/ack", wire)
    assert json.loads(rig.results[-1])["ok"] is True


# --------------------------------------------------------------------------- every error code


def test_too_large_is_refused_unread(rig: Rig) -> None:
    cmd = json.dumps(command(rig.centre)).encode()
    oversized = cmd + b" " * (MAX_PAYLOAD + 1 - len(cmd))
    assert len(oversized) == MAX_PAYLOAD + 1
    # Unread: a perfectly valid command, but even its command_id is not taken from it.
    assert_rejected(rig, rig.send(oversized, topic="alarm/ack"), "too_large", None)


def test_payload_of_exactly_the_limit_is_read(rig: Rig) -> None:
    cmd = json.dumps(command(rig.centre)).encode()
    exact = cmd + b" " * (MAX_PAYLOAD - len(cmd))
    assert len(exact) == MAX_PAYLOAD
    assert rig.send(exact, topic="alarm/ack")["ok"] is True


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"not json", b'{"command_id": "x",}', b"\xff\xfe{}", b'{"a": "\xed\xa0\x80"}'],
    ids=["empty", "truncated", "text", "trailing-comma", "not-utf8", "utf8-surrogate"],
)
def test_bad_json(rig: Rig, payload: bytes) -> None:
    assert_rejected(rig, rig.send(payload, topic="alarm/ack"), "bad_json", None)


@pytest.mark.parametrize("payload", [b"[]", b'"alarm.ack"', b"42", b"null", b"true"])
def test_bad_schema_non_object(rig: Rig, payload: bytes) -> None:
    assert_rejected(rig, rig.send(payload, topic="alarm/ack"), "bad_schema", None)


@pytest.mark.parametrize(
    "field", ["command_id", "site", "name", "args", "expires_at", "key_id", "sig"]
)
def test_bad_schema_missing_field(rig: Rig, field: str) -> None:
    cmd = command(rig.centre)
    del cmd[field]
    result = rig.send(cmd, topic="alarm/ack")
    assert_rejected(rig, result, "bad_schema", None if field == "command_id" else "cmd-1")
    assert field in result["error"]["message"]


def test_bad_schema_extra_field_even_if_signed(rig: Rig) -> None:
    cmd = command(rig.centre)
    cmd = sign_command({**cmd, "priority": "high"}, rig.centre)
    result = rig.send(cmd)
    assert_rejected(rig, result, "bad_schema", "cmd-1")
    assert "priority" in result["error"]["message"]


@pytest.mark.parametrize("sig", ["AB" * 64, "ab" * 63, "ab" * 65, "zz" * 64, 12, None], ids=str)
def test_bad_schema_bad_sig_format(rig: Rig, sig: object) -> None:
    cmd = {**command(rig.centre), "sig": sig}
    result = rig.send(cmd)
    assert_rejected(rig, result, "bad_schema", "cmd-1")
    assert "sig" in result["error"]["message"]


def test_uppercase_hex_of_a_valid_signature_is_still_refused(rig: Rig) -> None:
    cmd = command(rig.centre)
    assert_rejected(rig, rig.send({**cmd, "sig": cmd["sig"].upper()}), "bad_schema", "cmd-1")


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"name": "Alarm.Ack"}, "name"),
        ({"name": ""}, "name"),
        ({"command_id": ""}, "command_id"),
        ({"command_id": "x" * 65}, "command_id"),
        ({"args": []}, "args"),
        ({"expires_at": "2026-01-01T00:05:00"}, "expires_at"),  # no zone
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"key_id": ""}, "key_id"),
        ({"site": ""}, "site"),
        ({"site": "Shelter-0001"}, "site"),
    ],
)
def test_bad_schema_bad_field_values(rig: Rig, changes: dict[str, Any], where: str) -> None:
    raw = {**command(None), **changes}
    cmd = sign_command({k: v for k, v in raw.items() if k != "sig"}, rig.centre)
    result = rig.send(cmd, topic=None)
    cid = cmd["command_id"] if 0 < len(cmd["command_id"]) <= 64 else None
    assert_rejected(rig, result, "bad_schema", cid)
    assert where in result["error"]["message"]


def test_bad_schema_name_topic_mismatch(rig: Rig) -> None:
    # Properly signed alarm.ack, but it arrived on the alarm/clear topic.
    result = rig.send(command(rig.centre), topic="alarm/clear")
    assert_rejected(rig, result, "bad_schema", "cmd-1")
    assert "does not match topic" in result["error"]["message"]


@pytest.mark.parametrize("levels", ["alarm.ack", "alarm/ack/x", "alarm", "alarm//ack", ""])
def test_a_command_on_any_other_topic_levels_is_refused(rig: Rig, levels: str) -> None:
    # The dotted topic of earlier versions (commands/alarm.ack) included: no topic level has
    # a dot, and the message names the topic to use.
    result = rig.send(command(rig.centre), topic=levels)
    assert_rejected(rig, result, "bad_schema", "cmd-1")
    assert result["error"]["message"] == (
        f"name 'alarm.ack' does not match topic commands/{levels}: send it on commands/alarm/ack"
    )


def test_unknown_key(rig: Rig) -> None:
    result = rig.send(command(rig.rogue, key_id="rogue"))
    assert_rejected(rig, result, "unknown_key", "cmd-1")


def test_bad_signature_wrong_key(rig: Rig) -> None:
    # Signed by a different key than the one it names.
    assert_rejected(rig, rig.send(command(rig.rogue, key_id="centre")), "bad_signature", "cmd-1")


def test_bad_signature_tampered_args(rig: Rig) -> None:
    cmd = command(rig.centre)
    cmd["args"] = {**cmd["args"], "by": "attacker"}
    assert_rejected(rig, rig.send(cmd), "bad_signature", "cmd-1")


def test_bad_signature_tampered_expiry(rig: Rig) -> None:
    cmd = command(rig.centre)
    cmd["expires_at"] = rfc3339(CLOCK_START + timedelta(days=365))
    assert_rejected(rig, rig.send(cmd), "bad_signature", "cmd-1")


def test_not_allowed(rig: Rig) -> None:
    # "tech" may only issue site.test_mode.
    result = rig.send(command(rig.tech, key_id="tech"))
    assert_rejected(rig, result, "not_allowed", "cmd-1")
    assert rig.send(
        command(rig.tech, "site.test_mode", {"on": True}, key_id="tech", command_id="c2")
    )["ok"]


def test_key_patterns_are_shell_style() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    lk = LoadedKey("k", key, ("locker.*", "site.test_mode"))
    assert lk.allows("locker.open") and lk.allows("locker.bay.open")
    assert lk.allows("site.test_mode")
    assert not lk.allows("alarm.ack")
    assert not lk.allows("site.test_mode2")
    assert not lk.allows("lockers.open")


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(seconds=-1), timedelta(days=-3)])
def test_expired(rig: Rig, offset: timedelta) -> None:
    cmd = command(rig.centre, expires_at=rfc3339(CLOCK_START + offset))
    assert_rejected(rig, rig.send(cmd), "expired", "cmd-1")


def test_expiry_uses_the_injected_clock(rig: Rig) -> None:
    cmd = command(rig.centre, expires_at=rfc3339(CLOCK_START + timedelta(seconds=10)))
    rig.clock.advance(10.001)
    assert_rejected(rig, rig.send(cmd), "expired", "cmd-1")


def test_expiry_in_another_zone(rig: Rig) -> None:
    # 09:00:01+09:00 is 00:00:01Z: still valid at 00:00:00Z.
    cmd = command(rig.centre, expires_at="2026-01-01T09:00:01+09:00")
    assert rig.send(cmd)["ok"] is True


def test_unknown_command(rig: Rig) -> None:
    result = rig.send(command(rig.centre, "locker.open", {"bay": 3}))
    assert_rejected(rig, result, "unknown_command", "cmd-1")


@pytest.mark.parametrize(
    "args",
    [{}, {"alarm_id": "a-1"}, {"alarm_id": "a-1", "by": ""}, {"alarm_id": "a", "by": "x", "z": 1}],
)
def test_invalid_args(rig: Rig, args: dict[str, Any]) -> None:
    result = rig.send(command(rig.centre, args=args))
    assert_rejected(rig, result, "invalid_args", "cmd-1")
    assert result["error"]["message"].startswith(("by", "alarm_id", "z"))


def test_handler_exception_is_failed(rig: Rig) -> None:
    result = rig.send(command(rig.centre, "site.boom", {"on": True}))
    assert result["ok"] is False
    assert result["error"] == {"code": "failed", "message": "RuntimeError: relay stuck"}
    assert len(rig.boom.calls) == 1


def test_handler_command_error_code_is_passed_through(rig: Rig) -> None:
    result = rig.send(command(rig.centre, "site.refuse", {"on": False}))
    assert result["ok"] is False
    assert result["error"] == {"code": "wrong_state", "message": "no alarm is active"}
    assert len(rig.refuse.calls) == 1


def test_error_code_list_is_what_the_processor_emits() -> None:
    assert set(ERROR_CODES) == {
        "too_large",
        "bad_json",
        "bad_schema",
        "unknown_key",
        "bad_signature",
        "wrong_site",
        "not_allowed",
        "clock_untrusted",
        "expired",
        "ttl_too_long",
        "unknown_command",
        "invalid_args",
        "failed",
    }


def test_registering_twice_is_refused(rig: Rig) -> None:
    with pytest.raises(ValueError, match="twice"):
        rig.proc.register("alarm.ack", AlarmAckArgs, rig.ack)
    assert rig.proc.names == ["alarm.ack", "site.boom", "site.refuse", "site.test_mode"]


# --------------------------------------------------------------------------- replay


def test_replay_runs_handler_once_and_repeats_identical_bytes(rig: Rig) -> None:
    cmd = command(rig.centre)
    rig.send(cmd)
    rig.clock.advance(30)  # a later ts would show if the result were rebuilt
    rig.send(cmd)
    assert len(rig.ack.calls) == 1
    assert rig.results[0] == rig.results[1]


def test_replay_is_remembered_across_store_reopen(rig: Rig) -> None:
    cmd = command(rig.centre)
    rig.send(cmd)
    rig.reopen()
    rig.clock.advance(5)
    rig.send(cmd)
    assert len(rig.ack.calls) == 1
    assert rig.results[0] == rig.results[1]


@pytest.mark.parametrize(
    ("name", "args", "code"),
    [
        ("site.boom", {"on": True}, "failed"),
        ("site.refuse", {"on": True}, "wrong_state"),
        ("locker.open", {}, "unknown_command"),
        ("alarm.ack", {}, "invalid_args"),
    ],
)
def test_replay_of_a_failed_command_repeats_the_failure(
    rig: Rig, name: str, args: dict[str, Any], code: str
) -> None:
    cmd = command(rig.centre, name, args)
    first = rig.send(cmd)
    calls = rig.handler_calls
    rig.reopen()
    rig.send(cmd)
    assert first["error"]["code"] == code
    assert rig.results[0] == rig.results[1]
    assert rig.handler_calls == calls


def test_rejected_commands_are_not_remembered(rig: Rig) -> None:
    good = command(rig.centre)
    tampered = {**good, "args": {"alarm_id": "a-1", "by": "someone"}}
    assert rig.send(tampered)["error"]["code"] == "bad_signature"
    assert rig.store.command_result("cmd-1") is None
    # the genuine command with that id still runs afterwards
    assert rig.send(good)["ok"] is True
    assert len(rig.ack.calls) == 1


def test_different_command_ids_each_run(rig: Rig) -> None:
    for i in range(3):
        assert rig.send(command(rig.centre, command_id=f"c{i}"))["ok"]
    assert len(rig.ack.calls) == 3


def test_a_replay_after_expiry_is_expired_not_rerun(rig: Rig) -> None:
    cmd = command(rig.centre)
    rig.send(cmd)
    rig.clock.advance(301)
    assert rig.send(cmd)["error"]["code"] == "expired"
    assert len(rig.ack.calls) == 1


# --------------------------------------------------------------------------- known bugs


def test_deeply_nested_json_still_gets_one_result(rig: Rig) -> None:
    # 16384 bytes is the default commands.max_payload_bytes.
    proc = CommandProcessor(
        rig.keys,
        rig.store,
        rig.clock,
        site_id=SITE,
        max_payload_bytes=16384,
        send_result=rig.results.append,
    )
    proc.handle("alarm/ack", b"[" * 16384)
    [body] = rig.results
    assert_rejected(rig, json.loads(body), "bad_json", None)


def test_args_nested_near_the_recursion_limit_still_get_one_result(rig: Rig) -> None:
    # Sweep nesting depths around the interpreter's recursion limit (relative to this
    # frame's depth), to hit the window where json.loads still succeeds but signature
    # verification's json.dumps runs out of stack. Escapes from json.loads itself are the
    # other bug (test_deeply_nested_json_still_gets_one_result) and are not counted here.
    top = sys.getrecursionlimit() - len(inspect.stack(0))
    escaped: list[int] = []
    for depth in range(top - 60, top + 5):
        rig.clock.advance(1)  # each gets its result (refusals are rate-limited)
        cmd = {**command(None), "args": {"deep": None}}
        payload = json.dumps(cmd).replace("null", "[" * depth + "]" * depth).encode()
        assert len(payload) < MAX_PAYLOAD
        before = len(rig.results)
        try:
            rig.proc.handle("alarm/ack", payload)
        except RecursionError as exc:
            frames = {f.name for f in traceback.extract_tb(exc.__traceback__)}
            if "verify_command" in frames:
                escaped.append(depth)
        else:
            assert len(rig.results) == before + 1
            assert json.loads(rig.results[-1])["error"]["code"] in ("bad_json", "bad_signature")
    assert rig.handler_calls == 0
    assert escaped == []


def test_lone_surrogate_command_id_still_gets_one_result(rig: Rig) -> None:
    result = rig.send(b'{"command_id": "\\ud800"}', topic="alarm/ack")
    assert result["ok"] is False
    assert result["error"]["code"] == "bad_schema"
    assert rig.handler_calls == 0


# --------------------------------------------------------------------------- properties


def fresh_processor(
    store_dir: str, keys: dict[str, LoadedKey], calls: list[Any], results: list[bytes]
) -> tuple[Store, CommandProcessor]:
    store = Store(Path(store_dir) / "store.db")
    proc = CommandProcessor(
        keys,
        store,
        FakeClock(),
        site_id=SITE,
        max_payload_bytes=MAX_PAYLOAD,
        send_result=results.append,
    )
    proc.register("alarm.ack", AlarmAckArgs, lambda a, c: calls.append(a) or {})
    return store, proc


PROP_KEY = Ed25519PrivateKey.generate()
PROP_KEYS = {"centre": LoadedKey("centre", PROP_KEY.public_key(), ("*",))}

# Valid scalar values only (lone surrogates have their own test above).
TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
FIELD_VALUES = {
    "command_id": st.sampled_from(["cmd-1", "", "x" * 70]) | TEXT | JSON_VALUES,
    "site": st.sampled_from([SITE, "other-site", "Bad Site"]) | JSON_VALUES,
    "name": st.sampled_from(["alarm.ack", "alarm.clear", "Bad Name"]) | JSON_VALUES,
    "args": st.fixed_dictionaries({"alarm_id": TEXT, "by": TEXT}) | JSON_VALUES,
    "expires_at": st.sampled_from([EXPIRES, rfc3339(CLOCK_START), "2026-01-01"]) | JSON_VALUES,
    "key_id": st.sampled_from(["centre", "other"]) | JSON_VALUES,
    "sig": st.sampled_from(["0" * 128, "f" * 128]) | JSON_VALUES,
}
COMMANDISH = st.fixed_dictionaries(
    {},
    optional={**FIELD_VALUES, "extra": JSON_VALUES},
)
PAYLOADS = (
    st.binary(max_size=600)
    | JSON_VALUES.map(lambda v: json.dumps(v).encode())
    | COMMANDISH.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8"))
)


@given(PAYLOADS, st.sampled_from([None, "alarm/ack", "alarm/clear", "alarm.ack"]))
@settings(max_examples=250, deadline=None)
def test_arbitrary_payloads_never_raise_and_yield_one_failed_result(
    payload: bytes, topic: str | None
) -> None:
    calls: list[Any] = []
    results: list[bytes] = []
    with tempfile.TemporaryDirectory() as d:
        store, proc = fresh_processor(d, PROP_KEYS, calls, results)
        try:
            proc.handle(topic, payload)
        finally:
            store.close()
    assert len(results) == 1
    result = Result.model_validate_json(results[0])
    assert result.ok is False  # nothing here is signed by a trusted key
    assert result.error is not None and result.error.code in ERROR_CODES
    assert calls == []


@given(
    st.fixed_dictionaries(
        {
            "command_id": st.sampled_from(["cmd-1", "cmd-2"]),
            "site": st.sampled_from([SITE, "shelter-0002"]),
            "name": st.sampled_from(["alarm.ack", "alarm.clear"]),
            "args": st.fixed_dictionaries({"alarm_id": TEXT, "by": TEXT}),
            "expires_at": st.sampled_from([EXPIRES, rfc3339(CLOCK_START)]),
            "key_id": st.just("centre"),
        }
    ),
    st.booleans(),
    st.sampled_from([None, "alarm/ack", "alarm/clear", "alarm.ack"]),
    st.one_of(st.none(), st.sampled_from(sorted(FIELD_VALUES))),
    st.data(),
)
@settings(max_examples=250, deadline=None)
def test_ok_only_when_signed_unaltered_unexpired_known_and_valid(
    cmd: dict[str, Any],
    signed: bool,
    topic: str | None,
    tamper: str | None,
    data: st.DataObject,
) -> None:
    msg = sign_command(cmd, PROP_KEY) if signed else {**cmd, "sig": "0" * 128}
    if tamper is not None:
        new = data.draw(FIELD_VALUES[tamper], label="tampered value")
        if canonical_json(new) == canonical_json(msg[tamper]):
            tamper = None
        else:
            msg[tamper] = new
    calls: list[Any] = []
    results: list[bytes] = []
    with tempfile.TemporaryDirectory() as d:
        store, proc = fresh_processor(d, PROP_KEYS, calls, results)
        try:
            proc.handle(topic, json.dumps(msg, ensure_ascii=False).encode("utf-8"))
        finally:
            store.close()
    assert len(results) == 1
    result = Result.model_validate_json(results[0])
    should_run = (
        signed
        and tamper is None
        and cmd["site"] == SITE
        and cmd["expires_at"] == EXPIRES
        and cmd["name"] == "alarm.ack"
        and topic in (None, "alarm/ack")
        and 1 <= len(cmd["args"]["by"]) <= 128
    )
    assert result.ok is should_run, result
    assert len(calls) == (1 if should_run else 0)


# --------------------------------------------------------------------------- one site only


def test_a_command_for_another_site_is_refused_and_not_remembered(rig: Rig) -> None:
    other = command(rig.centre, site="shelter-0002")
    assert_rejected(rig, rig.send(other), "wrong_site", "cmd-1")
    assert rig.store.command_result("cmd-1") is None
    # A later correct command with the same id still runs (the refusal was not remembered).
    assert rig.send(command(rig.centre))["ok"] is True
    assert len(rig.ack.calls) == 1


def test_the_site_is_covered_by_the_signature(rig: Rig) -> None:
    # Captured at shelter-0002 and re-addressed to this site: the signature breaks.
    cmd = {**command(rig.centre, site="shelter-0002"), "site": SITE}
    assert_rejected(rig, rig.send(cmd), "bad_signature", "cmd-1")


def test_wrong_site_comes_after_the_signature_and_before_the_rights(rig: Rig) -> None:
    # An unsigned copy says nothing about any site: bad_signature, not wrong_site.
    unsigned = {**command(None, site="shelter-0002")}
    assert_rejected(rig, rig.send(unsigned), "bad_signature", "cmd-1")
    # The tech key may not issue alarm.ack at all, but the site is checked first.
    cmd = command(rig.tech, key_id="tech", site="shelter-0002")
    assert_rejected(rig, rig.send(cmd), "wrong_site", "cmd-1")


# --------------------------------------------------------------------------- the clock


def test_clock_set_back_refuses_commands_until_it_catches_up(rig: Rig) -> None:
    assert rig.send(command(rig.centre, command_id="c0"))["ok"] is True
    rig.clock.jump(-(CLOCK_TOLERANCE_S + 1))
    result = rig.send(command(rig.centre, command_id="c1"))
    assert result["error"]["code"] == "clock_untrusted" and result["command_id"] == "c1"
    assert "behind its high-water mark" in result["error"]["message"]
    assert len(rig.ack.calls) == 1
    assert rig.proc.clock_trusted is False
    assert rig.store.command_result("c1") is None  # not remembered
    rig.clock.jump(2)  # within the tolerance again
    assert rig.send(command(rig.centre, command_id="c1"))["ok"] is True
    assert rig.proc.clock_trusted is True


def test_a_clock_a_little_behind_its_mark_is_still_trusted(rig: Rig) -> None:
    rig.clock.jump(-CLOCK_TOLERANCE_S)
    assert rig.send(command(rig.centre))["ok"] is True


def test_the_high_water_mark_survives_a_restart(rig: Rig) -> None:
    rig.clock.advance(3600)
    rig.proc.tick()  # persists the mark (it moved more than a minute)
    rig.store.commit()
    rig.clock.jump(-3600)  # e.g. the Pi rebooted and restored an old time
    rig.reopen()
    assert rig.proc.clock_trusted is False
    cmd = command(rig.centre, expires_at=rfc3339(rig.clock.now() + timedelta(minutes=5)))
    assert_rejected(rig, rig.send(cmd), "clock_untrusted", "cmd-1")


def test_a_forward_jump_then_back_never_runs_a_command_twice(rig: Rig) -> None:
    # The reproduction: run it, clock forward an hour, purge, clock back.
    cmd = command(rig.centre)  # expires in 5 minutes
    assert rig.send(cmd)["ok"] is True
    rig.clock.jump(3600)
    assert rig.proc.purge() == 1  # forgotten: expired long ago by this clock
    rig.store.commit()
    rig.clock.jump(-3600)
    rig.reopen()  # a restart too: the mark that went with the purge is on disk
    result = rig.send(cmd)
    assert result["error"]["code"] == "clock_untrusted", result
    assert len(rig.ack.calls) == 1
    # Once the clock is right again the copy has long expired.
    rig.clock.jump(3600)
    assert rig.send(cmd)["error"]["code"] == "expired"
    assert len(rig.ack.calls) == 1


def test_purge_keeps_what_the_high_water_mark_has_not_passed(rig: Rig) -> None:
    cmd = command(rig.centre)  # expires at CLOCK_START + 5 min
    assert rig.send(cmd)["ok"] is True
    rig.clock.jump(300 + 59)
    assert rig.proc.purge() == 0  # within the 60 s margin
    rig.clock.jump(2)
    assert rig.proc.purge() == 1


@pytest.mark.parametrize(("ahead_s", "ok"), [(600, True), (601, False), (86_400 * 365, False)])
def test_expires_at_more_than_max_ttl_ahead_is_refused(rig: Rig, ahead_s: int, ok: bool) -> None:
    cmd = command(rig.centre, expires_at=rfc3339(CLOCK_START + timedelta(seconds=ahead_s)))
    result = rig.send(cmd)
    if ok:
        assert result["ok"] is True
    else:
        assert_rejected(rig, result, "ttl_too_long", "cmd-1")
        assert rig.store.command_result("cmd-1") is None


def test_max_ttl_is_configurable(rig: Rig) -> None:
    proc = CommandProcessor(
        rig.keys,
        rig.store,
        rig.clock,
        site_id=SITE,
        max_payload_bytes=MAX_PAYLOAD,
        max_ttl_s=60,
        send_result=rig.results.append,
    )
    proc.register("alarm.ack", AlarmAckArgs, rig.ack)
    proc.handle("alarm/ack", json.dumps(command(rig.centre)).encode())  # 5 minutes ahead
    assert json.loads(rig.results[-1])["error"]["code"] == "ttl_too_long"


def test_the_clock_change_is_told_once_each_way(tmp_path: Path) -> None:
    clock = FakeClock()
    store = Store(tmp_path / "s.db")
    told: list[bool] = []
    proc = CommandProcessor(
        {},
        store,
        clock,
        site_id=SITE,
        max_payload_bytes=MAX_PAYLOAD,
        send_result=lambda b: None,
        on_clock_change=lambda: told.append(proc.clock_trusted),
    )
    proc.tick()
    clock.jump(-60)
    proc.tick()
    proc.tick()
    clock.jump(60)
    proc.tick()
    assert told == [False, True]
    store.close()


# --------------------------------------------------------------------------- duplicate keys


@pytest.mark.parametrize(
    "dup",
    [
        ', "name": "alarm.ack"',  # top level, same value
        ', "key_id": "rogue"',  # top level, another value
        ', "args": {"alarm_id": "a-1", "by": "x", "by": "y"}',  # nested
    ],
)
def test_duplicate_keys_are_bad_json(rig: Rig, dup: str) -> None:
    wire = json.dumps(command(rig.centre), ensure_ascii=False)
    payload = (wire[:-1] + dup + "}").encode("utf-8")
    result = rig.send(payload, topic="alarm/ack")
    assert_rejected(rig, result, "bad_json", None)
    assert "duplicate key" in result["error"]["message"]


# --------------------------------------------------------------------------- floods


def flood(rig: Rig, n: int, payload: bytes = b"junk") -> int:
    before = len(rig.results)
    for _ in range(n):
        rig.proc.handle("alarm/ack", payload)
    return len(rig.results) - before


def test_refusals_beyond_the_rate_get_no_result_and_no_log_line(rig: Rig) -> None:
    with structlog.testing.capture_logs() as logs:
        answered = flood(rig, 1000)
    assert answered == REFUSED_BURST
    assert len([e for e in logs if e["event"] == "command_result"]) == REFUSED_BURST
    rig.clock.advance(1)
    assert flood(rig, 1000) == int(REFUSED_PER_S)  # refilled at the rate
    assert rig.reports == []
    rig.clock.advance(REPORT_S)
    with structlog.testing.capture_logs() as logs:
        rig.proc.tick()
    [report] = rig.reports
    assert report.suppressed == 2000 - REFUSED_BURST - int(REFUSED_PER_S)
    assert report.codes == {"bad_json": report.suppressed}
    assert report.since == rfc3339(CLOCK_START)
    [line] = [e for e in logs if e["event"] == "commands_refused_suppressed"]
    assert line["count"] == report.suppressed
    rig.clock.advance(REPORT_S)
    rig.proc.tick()
    assert len(rig.reports) == 1  # nothing new to report


def test_the_limit_counts_each_code_and_replays(rig: Rig) -> None:
    good = command(rig.centre)
    assert rig.send(good)["ok"] is True
    flood(rig, REFUSED_BURST)  # the bucket is empty now
    flood(rig, 3, json.dumps(good).encode())  # replays
    flood(rig, 2, json.dumps(command(rig.centre, site="elsewhere")).encode())
    flood(rig, 1, b"x" * (MAX_PAYLOAD + 1))
    rig.proc.report_suppressed()
    [report] = rig.reports
    assert report.codes == {"replay": 3, "wrong_site": 2, "too_large": 1}
    assert len(rig.ack.calls) == 1


def test_a_command_that_runs_is_never_held_back_by_a_flood(rig: Rig) -> None:
    flood(rig, 500)
    assert rig.send(command(rig.centre, command_id="real"))["ok"] is True
    assert len(rig.ack.calls) == 1


# --------------------------------------------------------------------------- log lines


def _result_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "command_result"]


def test_command_result_log_line_names_the_command_and_its_target(rig: Rig) -> None:
    # A technician reading the log sees which command and which alarm / locker (issue 10.5).
    with structlog.testing.capture_logs() as logs:
        rig.send(command(rig.centre))
        rig.send(command(rig.rogue, command_id="cmd-2"))  # refused: still named
        rig.send(b"junk", topic="alarm/ack")  # unreadable: the name from its topic
    ok, refused, junk = _result_lines(logs)
    assert ok["command"] == "alarm.ack" and ok["alarm_id"] == "a-1" and ok["ok"] is True
    assert refused["command"] == "alarm.ack" and refused["alarm_id"] == "a-1"
    assert refused["code"] == "bad_signature"
    assert junk["command"] == "alarm.ack" and "alarm_id" not in junk
    assert "by" not in ok  # only the target, not every argument


def test_command_result_log_line_takes_the_target_from_the_result(rig: Rig) -> None:
    # alarm.clear may name no alarm: its result does; a locker command names its locker.
    rig.proc.register(
        "alarm.clear", ModeArgs, lambda args, ctx: {"alarm_id": "a-9", "state": "idle"}
    )
    rig.proc.register("locker.open", ModeArgs, lambda args, ctx: {"queued": 0})
    with structlog.testing.capture_logs() as logs:
        rig.send(command(rig.centre, "alarm.clear", {"on": True}, command_id="c-1"))
        rig.send(command(rig.centre, "locker.open", {"on": True, "locker": 7}, command_id="c-2"))
    clear, locker = _result_lines(logs)
    assert clear["command"] == "alarm.clear" and clear["alarm_id"] == "a-9"
    # locker.open's args are invalid here (ModeArgs forbids 'locker'): still its locker.
    assert locker["command"] == "locker.open" and locker["locker"] == 7
    assert locker["code"] == "invalid_args"
