"""JSON Schemas for docs/schemas/ and the field table in docs/config.md, generated from the
pydantic models so the documentation cannot drift from the code.

    python -m edge.schemas --write docs/schemas   # write them; delete stale *.json there
    python -m edge.schemas --check docs/schemas   # exit 1 listing every drifted file
    python -m edge.schemas --config-table         # print the Markdown table for docs/config.md

Files: ``event.json`` (envelope), ``event-<type>.json`` (the ``data`` of each event type),
``command.json``, ``command-<name>.args.json``, ``result.json``, ``status.json`` and
``config.json`` (the YAML config file). Output is deterministic: keys sorted, indent 2,
UTF-8, one trailing newline.

Schemas of messages the device *sends* (events, results, status) list every property as
required: the device always writes every field (``null`` where the type allows it). Schemas
of what the device *reads* (commands, their args, the config file) are the validation rules
as they are, optional fields included.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo

from edge.config import SiteConfig
from edge.core.topics import name_levels
from edge.devices.common import HEADER_MAX_GPIO, on_header
from edge.devices.registry import COMMAND_ARGS, EVENT_DATA, KINDS
from edge.models import Command, Event, Result, Status

DIALECT = "https://json-schema.org/draft/2020-12/schema"

EXIT_OK = 0
EXIT_DRIFT = 1


# --------------------------------------------------------------------------- JSON Schemas


def _require_all(node: Any) -> None:
    """Mark every property of every object schema in ``node`` as required (in place)."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            node["required"] = list(props)
        for value in node.values():
            _require_all(value)
    elif isinstance(node, list):
        for value in node:
            _require_all(value)


def model_schema(
    model: type[BaseModel],
    *,
    sent: bool,
    title: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The JSON Schema of one model. ``sent``: a message the device sends (all required)."""
    schema = model.model_json_schema(mode="serialization" if sent else "validation")
    if sent:
        _require_all(schema)
    schema["$schema"] = DIALECT
    if title is not None:
        schema["title"] = title
    if description is not None:
        schema["description"] = description
    return schema


def schemas() -> dict[str, dict[str, Any]]:
    """Every schema, by file name."""
    out: dict[str, dict[str, Any]] = {
        "event.json": model_schema(Event, sent=True),
        "result.json": model_schema(Result, sent=True),
        "status.json": model_schema(Status, sent=True),
        "command.json": model_schema(Command, sent=False),
        "config.json": model_schema(
            SiteConfig,
            sent=False,
            title="ansim-edge site configuration",
            description="The YAML site configuration file (docs/config.md).",
        ),
    }
    for type_, data_model in EVENT_DATA.items():
        out[f"event-{type_}.json"] = model_schema(
            data_model,
            sent=True,
            title=f"{type_} event data",
            description=(
                f"The data object of an event of type {type_} "
                f"(topic {{root}}/{{site}}/events/{name_levels(type_)}); "
                "the envelope is event.json."
            ),
        )
    for name, args_model in COMMAND_ARGS.items():
        out[f"command-{name}.args.json"] = model_schema(
            args_model,
            sent=False,
            title=f"{name} command args",
            description=(
                f"The args object of the {name} command "
                f"(topic {{root}}/{{site}}/commands/{name_levels(name)}); "
                "the envelope is command.json."
            ),
        )
    return dict(sorted(out.items()))


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> exact file text."""
    return {name: render(schema) for name, schema in schemas().items()}


@dataclass(frozen=True)
class Drift:
    name: str
    problem: Literal["changed", "missing", "stale"]

    @property
    def what(self) -> str:
        return {
            "changed": "differs from the models",
            "missing": "missing (the models generate it)",
            "stale": "stale (the models no longer generate it)",
        }[self.problem]


def check(directory: Path) -> list[Drift]:
    """Every difference between ``directory`` and what the models generate."""
    wanted = generate()
    drift: list[Drift] = []
    for name, text in wanted.items():
        path = directory / name
        if not path.is_file():
            drift.append(Drift(name, "missing"))
        elif path.read_text(encoding="utf-8") != text:
            drift.append(Drift(name, "changed"))
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            if path.name not in wanted:
                drift.append(Drift(path.name, "stale"))
    return drift


def write(directory: Path) -> list[Drift]:
    """Bring ``directory`` in line with the models; returns what was fixed."""
    drift = check(directory)
    directory.mkdir(parents=True, exist_ok=True)
    wanted = generate()
    for d in drift:
        path = directory / d.name
        if d.problem == "stale":
            path.unlink()
        else:
            path.write_text(wanted[d.name], encoding="utf-8", newline="\n")
    return drift


# --------------------------------------------------------------------------- config table


@dataclass(frozen=True)
class ConfigField:
    path: str
    type: str
    default: str
    constraints: str
    meaning: str


# Meanings for fields whose model has no description, or whose description needs more.
CONFIG_NOTES: dict[str, str] = {
    "site": "The site this controller runs.",
    "site.name": "Human-readable site name. Not sent anywhere yet.",
    "site.address": "Street address (may be Korean). Not sent in any message yet.",
    "site.cameras": "CCTV camera ids, copied into every alarm.raised event's cameras.",
    "broker": "The MQTT broker connection.",
    "broker.url": (
        "mqtt://host[:port] (default port 1883) or mqtts://host[:port] (TLS, default port "
        "8883). Nothing else: no path, query or user. Shorthand for urls: [url]; give url or "
        "urls, not both."
    ),
    "broker.urls": (
        "Several addresses of the same broker service (the nodes of a cluster, or a primary "
        "and a standby), each as broker.url: distinct, all mqtt:// or all mqtts://. After "
        "every failed attempt or lost connection the site tries the next one (after the same "
        "backoff); status.broker names the one in use. null: broker.url alone."
    ),
    "broker.client_id": "MQTT client id; null means ansim-edge-<site.id>.",
    "broker.keepalive_s": "MQTT keepalive, seconds.",
    "broker.protocol": 'MQTT protocol version. Quote "5" in YAML (a bare 5 is a number).',
    "broker.tls": (
        "TLS settings. Given with an mqtt:// url, TLS is used anyway (on that url's port). "
        "null with mqtts://: TLS with the system CA store and no client certificate."
    ),
    "broker.tls.key": "Client private key (PEM, unencrypted); cert and key come together.",
    "broker.username": "MQTT username; null: connect without credentials.",
    "broker.password_file": (
        "File holding the MQTT password (whitespace around it stripped); used only with username."
    ),
    "broker.reconnect": "Reconnect backoff (exponential, full jitter; docs/mqtt-api.md).",
    "broker.reconnect.min_s": (
        "Backoff base, seconds: retry n waits uniform [0, min(max_s, min_s*2^n)]."
    ),
    "broker.reconnect.max_s": "Backoff cap, seconds; must be >= min_s.",
    "broker.max_inflight": (
        "Events and results published but not yet acknowledged, at most (the outbox window)."
    ),
    "topic_root": "First topic levels: topics are <topic_root>/<site.id>/...",
    "data_dir": (
        "Directory for the durable store (ansim-edge.db); created if missing. Unusable (read-"
        "only, full, failing): the site runs in degraded mode. sim also keeps its development "
        "key pair in dev-keys/ here."
    ),
    "outbox": "The durable outbox (events and results waiting for the broker).",
    "outbox.max_events": (
        "Bound on stored undelivered messages (events and results). Over it the oldest "
        "results, then the oldest normal events, are dropped, down to 99 %; alarms are never "
        "dropped."
    ),
    "outbox.durability": (
        "group: one fsync per batch the core handles together; per_event: one fsync after "
        "every stored message."
    ),
    "commands": "Signed command intake.",
    "commands.max_payload_bytes": (
        "Bigger command payloads are refused unread (too_large). Under MQTT 5 the site also "
        "asks the broker for a Maximum Packet Size of this + 4096 bytes: bigger commands are "
        "never delivered."
    ),
    "commands.max_queue": (
        "Commands received and waiting for the core thread, at most; inputs always go "
        "first. Commands arriving while it is full are dropped unanswered and counted in a "
        "commands.shed event (at most one per 10 s)."
    ),
    "keys": "Trusted command keys. run refuses to start with none; sim then makes a dev key.",
    "keys[].key_id": "The key_id commands name; unique in the list.",
    "keys[].commands": (
        "Command names this key may issue, at least one: case-sensitive shell-style patterns "
        "(*, ?, [...]), e.g. *, alarm.*, alarm.ack; each must match a known command."
    ),
    "devices": "The site's devices. A device left out is simply not there.",
    "devices.allow_any_pin": (
        "false: every pin must be on the 40-pin header (BCM GPIO 0-27); true: accept BCM "
        "numbers up to 53 (boards with more GPIOs, such as a Compute Module)."
    ),
}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(get_args(tp)):
            return args[0], True
    return tp, False


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _type_name(tp: Any) -> str:
    inner, optional = _unwrap_optional(tp)
    if optional:
        return f"{_type_name(inner)} or null"
    origin = get_origin(tp)
    if origin is Annotated:
        return _type_name(get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in get_args(tp))
    if origin is list:
        (item,) = get_args(tp)
        return "list of mappings" if _is_model(item) else f"list of {_type_name(item)}s"
    if _is_model(tp):
        return "mapping"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    if tp in names:
        return names[tp]
    raise TypeError(f"no table name for config type {tp!r}")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value, ensure_ascii=False)


def _constraints(field: FieldInfo) -> str:
    out: list[str] = []
    for m in field.metadata:
        if isinstance(m, annotated_types.Gt):
            out.append(f"> {m.gt}")
        elif isinstance(m, annotated_types.Ge):
            out.append(f"≥ {m.ge}")
        elif isinstance(m, annotated_types.Lt):
            out.append(f"< {m.lt}")
        elif isinstance(m, annotated_types.Le):
            out.append(f"≤ {m.le}")
        elif isinstance(m, annotated_types.MinLen):
            out.append(f"length ≥ {m.min_length}")
        elif isinstance(m, annotated_types.MaxLen):
            out.append(f"length ≤ {m.max_length}")
        elif getattr(m, "pattern", None) is not None:
            out.append(f"matches `{m.pattern}`")
        elif isinstance(m, AfterValidator) and m.func is on_header:
            out[-1] = f"≤ {HEADER_MAX_GPIO} (≤ 53 with `devices.allow_any_pin`)"
        elif isinstance(m, AfterValidator):
            continue  # a check in code (e.g. known command names): the Meaning column says it
        else:
            raise TypeError(f"no table text for constraint {m!r}")
    return ", ".join(out)


def notes() -> dict[str, str]:
    """The table's notes: the core's and every registered kind's."""
    out = dict(CONFIG_NOTES)
    for kind in KINDS:
        out.update(kind.notes)
    return out


def config_fields(model: type[BaseModel] = SiteConfig, prefix: str = "") -> list[ConfigField]:
    """Every field of the config file, depth first, in model order."""
    rows: list[ConfigField] = []
    table_notes = notes()
    for name, field in model.model_fields.items():
        path = prefix + name
        meaning = table_notes.get(path) or (field.description or "")
        rows.append(
            ConfigField(
                path, _type_name(field.annotation), _default(field), _constraints(field), meaning
            )
        )
        inner, _ = _unwrap_optional(field.annotation)
        if _is_model(inner):
            rows += config_fields(inner, path + ".")
        elif get_origin(inner) is list and _is_model(get_args(inner)[0]):
            rows += config_fields(get_args(inner)[0], path + "[].")
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_table() -> str:
    """The Markdown field table of docs/config.md (between its config-table markers)."""
    lines = [
        "| Field | Type | Default | Constraints | Meaning |",
        "|---|---|---|---|---|",
    ]
    for f in config_fields():
        plain = f.default in ("required", "see below")
        cells = [f"`{f.path}`", f.type, f.default if plain else f"`{f.default}`"]
        cells += [f.constraints, f.meaning]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m edge.schemas",
        description="Generate the JSON Schemas (docs/schemas/) from the pydantic models.",
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", type=Path, metavar="DIR", help="write the schemas into DIR")
    g.add_argument("--check", type=Path, metavar="DIR", help="exit 1 if DIR has drifted")
    g.add_argument(
        "--config-table", action="store_true", help="print the docs/config.md field table"
    )
    args = p.parse_args(argv)
    if args.config_table:
        sys.stdout.write(config_table())
        return EXIT_OK
    if args.write is not None:
        for d in write(args.write):
            verb = "deleted" if d.problem == "stale" else "wrote"
            print(f"{verb} {args.write / d.name}")
        return EXIT_OK
    drift = check(args.check)
    for d in drift:
        print(f"{args.check / d.name}: {d.what}", file=sys.stderr)
    if drift:
        fix = f"python -m edge.schemas --write {args.check}"
        print(f"{len(drift)} schema file(s) drifted; run: {fix}", file=sys.stderr)
        return EXIT_DRIFT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
