"""The documentation cannot drift from the code.

- docs/schemas/*.json must be exactly what ``python -m edge.schemas`` generates (no file
  changed, missing or stale);
- every example payload in docs/mqtt-api.md marked ``<!-- example: Model -->`` must
  validate with that model (and its data/args with the per-type model);
- the signing worked example in docs/mqtt-api.md must verify with our code;
- the field table in docs/config.md must match the config models;
- every CLI option and command error code must be documented.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel

from edge import schemas
from edge.cli import _parser
from edge.config import parse_config
from edge.core.commands import ERROR_CODES
from edge.core.signing import signed_bytes, verify_command
from edge.devices.registry import COMMAND_ARGS, EVENT_DATA
from edge.models import Command, Event, Result, Status

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCHEMA_DIR = DOCS / "schemas"
MQTT_DOC = DOCS / "mqtt-api.md"
CONFIG_DOC = DOCS / "config.md"
CLI_DOC = DOCS / "cli.md"
SIM_DOC = DOCS / "simulator-api.md"
OWN_DOCS = (MQTT_DOC, CONFIG_DOC, CLI_DOC, SIM_DOC)

MODELS: dict[str, type[BaseModel]] = {
    "Event": Event,
    "Result": Result,
    "Command": Command,
    "Status": Status,
}
HANDLER_CODES = {
    "wrong_state",
    "unknown_alarm",
    "unknown_locker",
    "out_of_service",
    "fault",
    "busy",
    "cooldown",
    "duplicate_code",
}

MARKER = re.compile(r"^<!--\s*(?P<kind>[\w-]+):\s*(?P<name>[\w.-]+)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")


# --------------------------------------------------------------------------- doc parsing


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    markers: tuple[tuple[str, str], ...]  # (kind, name) of the marker comments right above

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced code block, with the marker comments directly above it (blank lines
    and other markers may sit between a marker and its fence)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    pending: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        f = FENCE.match(line)
        if m:
            pending.append((m["kind"], m["name"]))
        elif f:
            end = i + 1
            while end < len(lines) and lines[end].rstrip() != "```":
                end += 1
            if end == len(lines):
                raise AssertionError(f"{path.name}:{i + 1}: unclosed code fence")
            text = "\n".join(lines[i + 1 : end])
            out.append(Block(path.name, i + 1, f["lang"], text, tuple(pending)))
            pending = []
            i = end
        elif line.strip():
            pending = []
        i += 1
    return out


def marked(path: Path, kind: str) -> list[tuple[str, Block]]:
    return [(name, b) for b in blocks(path) for k, name in b.markers if k == kind]


def one(path: Path, kind: str, name: str) -> Block:
    found = [b for n, b in marked(path, kind) if n == name]
    assert len(found) == 1, f"{path.name}: expected one <!-- {kind}: {name} --> block"
    return found[0]


def _examples() -> list[tuple[str, Block]]:
    return marked(MQTT_DOC, "example") if MQTT_DOC.exists() else []


# --------------------------------------------------------------------------- schema drift


def test_committed_schemas_match_the_models() -> None:
    drift = schemas.check(SCHEMA_DIR)
    assert not drift, (
        "docs/schemas/ has drifted from the models:\n"
        + "\n".join(f"  {d.name}: {d.what}" for d in drift)
        + "\nrun: python -m edge.schemas --write docs/schemas"
    )


def test_every_model_has_its_schema_file() -> None:
    names = set(schemas.generate())
    expected = {"event.json", "result.json", "command.json", "status.json", "config.json"}
    expected |= {f"event-{t}.json" for t in EVENT_DATA}
    expected |= {f"command-{n}.args.json" for n in COMMAND_ARGS}
    assert names == expected


def test_generated_text_is_deterministic_and_canonical() -> None:
    first, second = schemas.generate(), schemas.generate()
    assert first == second
    for name, text in first.items():
        assert text.endswith("}\n") and not text.endswith("\n\n"), name
        doc = json.loads(text)
        assert text == json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        assert doc["$schema"] == schemas.DIALECT


def test_sent_payload_schemas_require_every_field() -> None:
    # The site always writes every field; consumers may rely on their presence.
    result = json.loads(schemas.generate()["result.json"])
    assert result["required"] == ["command_id", "ok", "error", "data", "ts"]
    status = json.loads(schemas.generate()["status.json"])
    assert "clock_synced" in status["required"]
    # ...while inputs keep their optional fields optional.
    clear = json.loads(schemas.generate()["command-alarm.clear.args.json"])
    assert "required" not in clear


def test_check_and_write_detect_and_fix_every_kind_of_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert schemas.main(["--write", str(tmp_path)]) == 0
    assert schemas.check(tmp_path) == []
    (tmp_path / "event.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "status.json").unlink()
    (tmp_path / "event-old.type.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a schema\n", encoding="utf-8")

    drift = {(d.name, d.problem) for d in schemas.check(tmp_path)}
    assert drift == {
        ("event.json", "changed"),
        ("status.json", "missing"),
        ("event-old.type.json", "stale"),
    }
    capsys.readouterr()
    assert schemas.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for name in ("event.json", "status.json", "event-old.type.json"):
        assert name in err

    assert schemas.main(["--write", str(tmp_path)]) == 0
    assert schemas.check(tmp_path) == []
    assert not (tmp_path / "event-old.type.json").exists()
    assert (tmp_path / "notes.txt").exists()  # only *.json is ours
    assert schemas.main(["--check", str(tmp_path)]) == 0


def test_check_of_a_missing_directory_lists_every_file(tmp_path: Path) -> None:
    drift = schemas.check(tmp_path / "nowhere")
    assert {d.name for d in drift} == set(schemas.generate())
    assert {d.problem for d in drift} == {"missing"}


# --------------------------------------------------------------------------- doc examples


def test_docs_have_examples() -> None:
    names = [n for n, _ in _examples()]
    for model in MODELS:
        assert model in names, f"docs/mqtt-api.md has no <!-- example: {model} --> block"
    for name, b in _examples():
        assert name in MODELS, f"{b.where}: unknown example model {name!r}"
        assert b.lang == "json", f"{b.where}: an example must be a ```json block"


def test_every_event_type_and_command_has_an_example() -> None:
    events = {json.loads(b.text)["type"] for n, b in _examples() if n == "Event"}
    missing = set(EVENT_DATA) - events
    assert not missing, f"docs/mqtt-api.md has no Event example for {sorted(missing)}"
    commands = {json.loads(b.text)["name"] for n, b in _examples() if n == "Command"}
    missing = set(COMMAND_ARGS) - commands
    assert not missing, f"docs/mqtt-api.md has no Command example for {sorted(missing)}"


@pytest.mark.parametrize(
    ("model_name", "block"),
    [pytest.param(n, b, id=f"{n}@{b.where}") for n, b in _examples()],
)
def test_doc_example_validates(model_name: str, block: Block) -> None:
    payload: Any = json.loads(block.text)
    obj = MODELS[model_name].model_validate(payload)
    if isinstance(obj, Event):
        data_model = EVENT_DATA.get(obj.type)
        if data_model is not None:
            data_model.model_validate(obj.data)
        else:
            assert obj.type == "store.reset", f"{block.where}: undocumented type {obj.type}"
    elif isinstance(obj, Command):
        COMMAND_ARGS[obj.name].model_validate(obj.args)
    elif isinstance(obj, Result) and obj.error is not None:
        assert obj.error.code in set(ERROR_CODES) | HANDLER_CODES, block.where
        assert obj.data is None, block.where


@pytest.mark.parametrize("doc", OWN_DOCS, ids=lambda p: p.name)
def test_every_json_block_parses(doc: Path) -> None:
    for b in blocks(doc):
        if b.lang == "json":
            json.loads(b.text)


def test_config_doc_example_is_a_valid_config() -> None:
    examples = [b for n, b in marked(CONFIG_DOC, "example") if n == "config"]
    assert examples, "docs/config.md has no <!-- example: config --> block"
    for b in examples:
        assert b.lang == "yaml", b.where
        parse_config(yaml.safe_load(b.text), CONFIG_DOC)


# --------------------------------------------------------------------------- signing example


def _pem_public(block: Block) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(block.text.encode("ascii"))
    assert isinstance(key, Ed25519PublicKey)
    return key


def _pem_private(block: Block) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(block.text.encode("ascii"), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def test_signing_worked_example_verifies() -> None:
    public = _pem_public(one(MQTT_DOC, "signing", "public-key"))
    private = _pem_private(one(MQTT_DOC, "signing", "private-key"))
    command = json.loads(one(MQTT_DOC, "signing", "command").text)
    canonical = one(MQTT_DOC, "signing", "canonical").text

    Command.model_validate(command)
    assert verify_command(command, public) is True
    assert signed_bytes(command) == canonical.encode("utf-8")
    # Ed25519 is deterministic: the doc's private key gives exactly the doc's sig.
    assert private.sign(canonical.encode("utf-8")).hex() == command["sig"]
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert private.public_key().public_bytes(*raw) == public.public_bytes(*raw)

    text = MQTT_DOC.read_text(encoding="utf-8")
    size = len(canonical.encode("utf-8"))
    assert f"no trailing newline, {size} bytes" in text
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert f"SHA-256 of the canonical bytes: `{digest}`" in text


def test_signing_worked_example_rejects_a_tampered_copy() -> None:
    public = _pem_public(one(MQTT_DOC, "signing", "public-key"))
    command = json.loads(one(MQTT_DOC, "signing", "command").text)
    command["args"]["by"] = "someone else"
    assert verify_command(command, public) is False


# --------------------------------------------------------------------------- other docs


def test_config_table_matches_the_models() -> None:
    text = CONFIG_DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- config-table:begin -->\n(.*?)<!-- config-table:end -->", text, re.S)
    assert m, "docs/config.md lacks the config-table markers"
    assert m.group(1) == schemas.config_table(), (
        "docs/config.md's field table differs from the models; regenerate it with "
        "python -m edge.schemas --config-table"
    )


def test_every_config_field_has_a_meaning() -> None:
    blank = [f.path for f in schemas.config_fields() if not f.meaning]
    assert not blank, f"give these config fields a description= (or a CONFIG_NOTES entry): {blank}"


def test_every_error_code_is_documented_in_check_order() -> None:
    text = MQTT_DOC.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"^\| \d+ \| ", line)]
    codes = [c for row in rows for c in re.findall(r"`([a-z_]+)`", row.split("|")[3])]
    documented = [c for c in codes if c in ERROR_CODES]
    assert documented == list(ERROR_CODES)
    for code in HANDLER_CODES:
        assert f"`{code}`" in text


def test_every_cli_option_is_documented() -> None:
    text = CLI_DOC.read_text(encoding="utf-8")
    parser = _parser()
    for action in parser._actions:
        for opt in action.option_strings:
            assert f"`{opt}" in text or f" {opt}" in text, f"docs/cli.md lacks {opt}"
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):  # the subcommands
            for name, sub in choices.items():
                assert f"### {name}" in text, f"docs/cli.md lacks a section for {name}"
                for sub_action in sub._actions:
                    for opt in sub_action.option_strings:
                        if opt not in ("-h", "--help"):
                            assert f"`{opt}" in text, f"docs/cli.md lacks {name} {opt}"
