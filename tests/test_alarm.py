"""The shelter alarm state machine (edge.machines.alarm.AlarmMachine): plain logic, no I/O."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.core.errors import CommandError
from edge.devices.panic.events import AlarmAcknowledged, AlarmCleared, AlarmRaised
from edge.machines.alarm import AlarmMachine, AlarmState

CAMERAS = ["cctv-1-counter", "cctv-1-door"]
ALL_OFF = {"sent_led": False, "ack_led": False, "buzzer": False}


def raised(m: AlarmMachine, button: str = "panic-a", mode: str = "silent") -> str:
    [e] = m.press(button, mode, False)  # type: ignore[arg-type]
    return str(e.data["alarm_id"])


def test_idle_at_start_with_outputs_off() -> None:
    m = AlarmMachine(CAMERAS)
    assert m.s.state == "idle"
    assert m.outputs() == ALL_OFF
    assert m.public_state()["mode"] is None


@pytest.mark.parametrize("mode", ["silent", "audible"])
@pytest.mark.parametrize("test", [False, True])
def test_press_raises_exactly_one_alarm(mode: str, test: bool) -> None:
    m = AlarmMachine(CAMERAS)
    [e] = m.press("panic-a", mode, test)  # type: ignore[arg-type]
    assert (e.device, e.type, e.alarm) == ("panic-a", "alarm.raised", True)
    AlarmRaised.model_validate(e.data)  # matches the payload contract
    assert e.data["button"] == "panic-a"
    assert e.data["mode"] == mode
    assert e.data["test"] is test
    assert e.data["cameras"] == CAMERAS
    uuid.UUID(e.data["alarm_id"])
    uuid.UUID(e.event_id)
    assert m.s.state == "active"
    assert m.s.alarm_id == e.data["alarm_id"]
    assert m.s.raised_event_id == e.event_id
    assert m.public_state()["state"] == "active"


def test_each_alarm_gets_a_new_id() -> None:
    m = AlarmMachine(CAMERAS)
    first = raised(m)
    m.clear("reset_key", held=[])
    second = raised(m)
    assert first != second


def test_second_press_while_active_or_acknowledged_adds_nothing() -> None:
    m = AlarmMachine(CAMERAS)
    alarm_id = raised(m)
    before = m.dump()
    assert m.press("panic-a", "silent", False) == []
    assert m.press("panic-b", "audible", False) == []
    assert m.dump() == before
    m.ack(alarm_id, "centre")
    before = m.dump()
    assert m.press("panic-b", "audible", False) == []
    assert m.dump() == before


def test_delivered_lights_sent_only_for_the_raised_event() -> None:
    m = AlarmMachine(CAMERAS)
    [e] = m.press("panic-a", "silent", False)
    assert m.delivered(str(uuid.uuid4())) is False
    assert m.outputs()["sent_led"] is False
    assert m.delivered(e.event_id) is True
    assert m.outputs() == {"sent_led": True, "ack_led": False, "buzzer": False}
    assert m.delivered(e.event_id) is False  # only once


def test_delivered_after_clear_does_nothing() -> None:
    m = AlarmMachine(CAMERAS)
    [e] = m.press("panic-a", "silent", False)
    m.clear("reset_key", held=[])
    assert m.delivered(e.event_id) is False
    assert m.outputs() == ALL_OFF


def test_delivered_of_a_previous_alarm_does_not_light_the_new_one() -> None:
    m = AlarmMachine(CAMERAS)
    [old] = m.press("panic-a", "silent", False)
    m.clear("reset_key", held=[])
    m.press("panic-a", "silent", False)
    assert m.delivered(old.event_id) is False
    assert m.outputs()["sent_led"] is False


def test_ack_lights_ack_and_emits_once() -> None:
    m = AlarmMachine(CAMERAS)
    alarm_id = raised(m)
    [e] = m.ack(alarm_id, "관제센터")
    # the whole alarm lifecycle shares the alarm priority, so it stays in order in the outbox
    assert (e.device, e.type, e.alarm) == ("panic-a", "alarm.acknowledged", True)
    assert AlarmAcknowledged.model_validate(e.data).model_dump() == {
        "alarm_id": alarm_id,
        "by": "관제센터",
    }
    assert m.s.state == "acknowledged"
    assert m.outputs()["ack_led"] is True
    assert m.ack(alarm_id, "someone else") == []  # idempotent
    assert m.s.acked_by == "관제센터"


def test_ack_with_no_alarm_is_wrong_state() -> None:
    m = AlarmMachine(CAMERAS)
    before = m.dump()
    with pytest.raises(CommandError) as info:
        m.ack("whatever", "centre")
    assert info.value.code == "wrong_state"
    assert m.dump() == before


def test_ack_with_wrong_id_is_unknown_alarm_and_changes_nothing() -> None:
    m = AlarmMachine(CAMERAS)
    alarm_id = raised(m)
    before = m.dump()
    with pytest.raises(CommandError) as info:
        m.ack("not-" + alarm_id, "centre")
    assert info.value.code == "unknown_alarm"
    assert alarm_id in info.value.message
    assert m.dump() == before
    assert m.s.state == "active"


def test_clear_goes_idle_outputs_off_and_emits_cleared() -> None:
    m = AlarmMachine(CAMERAS)
    [e] = m.press("panic-a", "audible", False)
    m.delivered(e.event_id)
    m.ack(e.data["alarm_id"], "centre")
    assert m.outputs() == {"sent_led": True, "ack_led": True, "buzzer": True}
    [c] = m.clear("reset_key", held=[])
    assert (c.device, c.type, c.alarm) == ("panic-a", "alarm.cleared", True)
    assert AlarmCleared.model_validate(c.data).model_dump() == {
        "alarm_id": e.data["alarm_id"],
        "by": "reset_key",
    }
    assert m.s == AlarmState()
    assert m.outputs() == ALL_OFF


def test_clear_with_wrong_id_or_no_alarm_is_refused() -> None:
    m = AlarmMachine(CAMERAS)
    with pytest.raises(CommandError) as info:
        m.clear("centre", held=[])
    assert info.value.code == "wrong_state"
    alarm_id = raised(m)
    before = m.dump()
    with pytest.raises(CommandError) as info:
        m.clear("centre", held=[], alarm_id="other")
    assert info.value.code == "unknown_alarm"
    assert m.dump() == before
    [c] = m.clear("centre", held=[], alarm_id=alarm_id)
    assert c.data["by"] == "centre"


def test_silent_mode_never_sounds_the_buzzer() -> None:
    m = AlarmMachine(CAMERAS)
    [e] = m.press("panic-a", "silent", False)
    seen = [m.outputs()["buzzer"]]
    m.delivered(e.event_id)
    seen.append(m.outputs()["buzzer"])
    m.ack(e.data["alarm_id"], "centre")
    seen.append(m.outputs()["buzzer"])
    m.clear("reset_key", held=[])
    seen.append(m.outputs()["buzzer"])
    assert seen == [False, False, False, False]


def test_audible_mode_sounds_until_cleared() -> None:
    m = AlarmMachine(CAMERAS)
    [e] = m.press("panic-a", "audible", False)
    assert m.outputs()["buzzer"] is True
    m.ack(e.data["alarm_id"], "centre")
    assert m.outputs()["buzzer"] is True
    m.clear("reset_key", held=[])
    assert m.outputs()["buzzer"] is False


def test_dump_load_round_trip_keeps_an_active_alarm() -> None:
    m = AlarmMachine(CAMERAS)
    [e] = m.press("panic-a", "audible", True)
    m.delivered(e.event_id)
    text = m.dump()
    json.loads(text)  # plain JSON

    restored = AlarmMachine.load(CAMERAS, text)
    assert restored.s == m.s
    assert restored.outputs() == {"sent_led": True, "ack_led": False, "buzzer": True}
    assert restored.press("panic-a", "audible", False) == []  # no second alarm after restart
    assert restored.delivered(e.event_id) is False  # already sent
    [c] = restored.ack(e.data["alarm_id"], "centre")
    assert c.type == "alarm.acknowledged"


def test_restored_unsent_alarm_lights_sent_when_its_event_is_delivered() -> None:
    m = AlarmMachine(CAMERAS)
    [e] = m.press("panic-a", "silent", False)
    restored = AlarmMachine.load(CAMERAS, m.dump())
    assert restored.outputs()["sent_led"] is False
    assert restored.delivered(e.event_id) is True
    assert restored.outputs()["sent_led"] is True


@pytest.mark.parametrize("text", [None, ""])
def test_load_without_state_is_idle(text: str | None) -> None:
    assert AlarmMachine.load(CAMERAS, text).s == AlarmState()


def test_await_release_after_clear_while_held() -> None:
    m = AlarmMachine(CAMERAS)
    raised(m, "panic-a")
    m.clear("reset_key", held=["panic-a", "panic-a"])
    assert m.s.await_release == ["panic-a"]
    # the still-held (latched) button cannot raise again...
    assert m.press("panic-a", "silent", False) == []
    assert m.s.state == "idle"
    # ...another button can...
    other = AlarmMachine.load(CAMERAS, m.dump())
    assert len(other.press("panic-b", "silent", False)) == 1
    assert other.s.await_release == ["panic-a"]  # still waiting for panic-a's release
    # ...and after a release the first one can again.
    assert m.release("panic-a") == []
    assert m.s.await_release == []
    assert len(m.press("panic-a", "silent", False)) == 1


def test_await_release_survives_a_restart() -> None:
    m = AlarmMachine(CAMERAS)
    raised(m, "panic-a")
    m.clear("reset_key", held=["panic-a"])
    restored = AlarmMachine.load(CAMERAS, m.dump())
    assert restored.press("panic-a", "silent", False) == []
    restored.release("panic-a")
    assert len(restored.press("panic-a", "silent", False)) == 1


def test_release_of_a_button_not_awaited_changes_nothing() -> None:
    m = AlarmMachine(CAMERAS)
    alarm_id = raised(m)
    before = m.dump()
    assert m.release("panic-a") == []
    assert m.dump() == before
    assert m.s.alarm_id == alarm_id


# --------------------------------------------------------------------------- property

ACTIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("press"), st.sampled_from(["a", "b"]), st.sampled_from(["silent", "audible"])
        ),
        st.tuples(st.just("release"), st.sampled_from(["a", "b"])),
        st.tuples(st.just("deliver"), st.booleans()),
        st.tuples(st.just("ack"), st.booleans()),
        st.tuples(st.just("clear"), st.lists(st.sampled_from(["a", "b"]), max_size=2)),
        st.tuples(st.just("restart")),
    ),
    max_size=30,
)


@given(ACTIONS)
@settings(max_examples=200, deadline=None)
def test_invariants_under_any_sequence(actions: list[tuple]) -> None:  # type: ignore[type-arg]
    m = AlarmMachine(CAMERAS)
    last_raised: str | None = None
    raised_count = cleared_count = 0
    for action in actions:
        kind = action[0]
        before = m.dump()
        if kind == "press":
            emits = m.press(action[1], action[2], False)
            if emits:
                assert before and json.loads(before)["state"] == "idle"
                assert action[1] not in json.loads(before)["await_release"]
                last_raised = emits[0].event_id
                raised_count += 1
        elif kind == "release":
            assert m.release(action[1]) == []
        elif kind == "deliver" and last_raised is not None:
            m.delivered(last_raised if action[1] else "other")
        elif kind == "ack":
            try:
                m.ack(m.s.alarm_id if action[1] and m.s.alarm_id else "nope", "centre")
            except CommandError as exc:
                assert exc.code in ("wrong_state", "unknown_alarm")
                assert m.dump() == before
        elif kind == "clear":
            try:
                m.clear("reset_key", action[1])
                cleared_count += 1
            except CommandError as exc:
                assert exc.code == "wrong_state"
                assert m.dump() == before
        elif kind == "restart":
            m = AlarmMachine.load(CAMERAS, m.dump())
            assert m.dump() == before
        # invariants
        out = m.outputs()
        assert (m.s.state == "idle") == (m.s.alarm_id is None)
        if m.s.state == "idle":
            assert out == ALL_OFF
        assert out["ack_led"] == (m.s.state == "acknowledged")
        assert not out["buzzer"] or m.s.mode == "audible"
        assert not out["sent_led"] or m.s.sent
        # at most one alarm open at a time
        assert raised_count - cleared_count == (0 if m.s.state == "idle" else 1)
