"""One readable line per MQTT message, as `ansim-edge watch` prints them (docs/cli.md):

    TIME  SITE  KIND  NAME  FIELDS

TIME is when the message arrived (local time); KIND is status, event, state, command,
result or other; NAME the status's state, the event type, the state's device or the
command's name (a result takes the name of its command when the command was seen);
FIELDS are ``key=value`` pairs (null members left out)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from edge.tools.centre import Message

LATE_S = 2.0  # an event that happened this long before it arrived shows when it happened


def value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        plain = v and not any(c.isspace() or c in "\"'=" for c in v)
        return v if plain else json.dumps(v, ensure_ascii=False)
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def fields_text(obj: Any, skip: tuple[str, ...] = ()) -> str:
    if not isinstance(obj, dict):
        return value_text(obj)
    return " ".join(
        f"{k}={value_text(v)}" for k, v in obj.items() if v is not None and k not in skip
    )


def clock_text(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]


def _ts(body: Any) -> float | None:
    ts = body.get("ts") if isinstance(body, dict) else None
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_heartbeat(m: Message) -> bool:
    """The site's link probe (``{root}/{site}/heartbeat``, docs/mqtt-api.md): not shown."""
    return m.kind == "other" and m.topic.endswith("/heartbeat")


def render(m: Message, command_names: dict[str, str] | None = None) -> str:
    """The line for ``m``. ``command_names`` (command_id -> name) is filled from the
    commands seen, so their results can be named."""
    names = command_names if command_names is not None else {}
    body = m.body
    name, text = m.name, ""
    notes: list[str] = []
    if m.kind == "other" or not isinstance(body, dict):
        name = m.topic if m.kind == "other" else m.name
        text = m.payload.decode("utf-8", "replace")
    elif m.kind == "status":
        name = str(body.get("state", "?"))
        text = fields_text(body, skip=("state", "site", "ts"))
    elif m.kind == "event":
        head = f"#{body.get('seq', '?')} {body.get('device', '?')}"
        text = f"{head}  {fields_text(body.get('data', {}))}".rstrip()
        happened = _ts(body)
        if happened is not None and m.received - happened > LATE_S:
            notes.append(f"happened {clock_text(happened)}")
    elif m.kind == "state":
        text = fields_text(body, skip=("device", "ts"))
    elif m.kind == "command":
        command_id = str(body.get("command_id", "?"))
        names[command_id] = m.name
        args = fields_text(body.get("args", {}))
        text = f"command_id={command_id} key_id={value_text(body.get('key_id'))}  {args}".rstrip()
    elif m.kind == "result":
        cid = body.get("command_id")
        name = names.get(str(cid), "?") if isinstance(cid, str) else "?"
        if body.get("ok") is True:
            text = f"ok  {fields_text(body.get('data') or {})}".rstrip()
        else:
            err = body.get("error") or {}
            text = f"FAILED {err.get('code', '?')}: {err.get('message', '')}"
        text += f"  command_id={value_text(cid)}"
    if m.retained:
        notes.append("retained")
    note = f"  ({', '.join(notes)})" if notes else ""
    site = m.site or "-"
    return f"{clock_text(m.received)}  {site}  {m.kind:<7}  {name:<20}  {text}{note}".rstrip()
