"""Configuration loading: every error names its full field path, the CLI exit codes, path
resolution and the YAML quirks the loader promises to handle."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import structlog

from edge.cli import main as cli_main
from edge.config import load_config, parse_config
from edge.core.errors import ConfigError
from edge.core.signing import generate_keypair

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "examples" / "shelter.yaml"


def main(argv: list[str]) -> int:
    """edge.cli.main, then put structlog's configuration back: main() points it at this
    test's captured stderr (closed after the test) and turns on logger caching."""
    saved = structlog.get_config()
    try:
        return cli_main(argv)
    finally:
        structlog.configure(**saved)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path / "site.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def error_lines(message: str) -> dict[str, str]:
    """'  path: msg' lines of a ConfigError -> {path: msg}."""
    out: dict[str, str] = {}
    for line in message.splitlines()[1:]:
        path, _, msg = line.strip().partition(": ")
        out[path] = msg
    return out


MINIMAL = """\
site:
  id: shelter-0001
"""


# --------------------------------------------------------------------------- valid files


def test_minimal_file_gets_defaults_and_data_dir_default(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "site.yaml", MINIMAL))
    assert cfg.site.id == "shelter-0001"
    assert cfg.broker.url == "mqtt://127.0.0.1:1883"
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.uses_tls) == ("127.0.0.1", 1883, False)
    assert cfg.outbox.max_events == 100_000
    assert cfg.outbox.durability == "group"
    assert cfg.devices.panic_buttons == []
    assert cfg.data_dir == Path("/var/lib/ansim-edge")


def test_shipped_shelter_example_is_valid() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.site.id == "shelter-gangnam-0001"
    assert cfg.site.address == "서울특별시 강남구 테헤란로 123"
    assert cfg.site.cameras == ["cctv-gangnam-0001-counter", "cctv-gangnam-0001-door"]
    [button] = cfg.devices.panic_buttons
    assert (button.name, button.pin, button.contact, button.mode) == (
        "panic-counter",
        17,
        "nc",
        "silent",
    )
    assert cfg.devices.reset_key is not None and cfg.devices.reset_key.contact == "no"
    # data_dir is relative in the file: resolved against the file's directory.
    assert cfg.data_dir == (REPO / "data" / "shelter-gangnam-0001").resolve()


def test_check_config_cli_accepts_shipped_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "shelter-gangnam-0001" in out


def test_unquoted_yaml_no_is_accepted_as_contact_no(tmp_path: Path) -> None:
    # YAML 1.1 reads `contact: no` as the boolean false.
    cfg = load_config(
        write(
            tmp_path / "site.yaml",
            """\
            site: {id: s1}
            devices:
              panic_buttons:
                - {name: panic-a, pin: 17, contact: no}
                - {name: panic-b, pin: 18, contact: nc}
              reset_key: {pin: 27, contact: no}
            """,
        )
    )
    assert [b.contact for b in cfg.devices.panic_buttons] == ["no", "nc"]
    assert cfg.devices.reset_key is not None and cfg.devices.reset_key.contact == "no"


def test_yaml_true_is_not_a_contact_type(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path,
        """\
        site: {id: s1}
        devices:
          panic_buttons: [{name: panic-a, pin: 17, contact: yes}]
        """,
    )
    assert "devices.panic_buttons.0.contact" in error_lines(msg)


def test_relative_paths_resolve_against_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf_dir = tmp_path / "etc" / "ansim"
    generate_keypair(conf_dir / "keys" / "centre.key", conf_dir / "keys" / "centre.pub")
    path = write(
        conf_dir / "site.yaml",
        """\
        site: {id: s1}
        data_dir: ../../var/data
        broker:
          url: mqtts://broker.example:8883
          username: s1
          password_file: secrets/pw
          tls: {ca: tls/ca.pem, cert: tls/c.pem, key: /abs/c.key}
        keys:
          - {key_id: centre, public_key: keys/centre.pub, commands: ["*"]}
        """,
    )
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # the cwd must not matter

    cfg = load_config(path)
    assert cfg.data_dir == (tmp_path / "var" / "data").resolve()
    assert cfg.keys[0].public_key == (conf_dir / "keys" / "centre.pub").resolve()
    assert cfg.broker.password_file == (conf_dir / "secrets" / "pw").resolve()
    assert cfg.broker.tls is not None
    assert cfg.broker.tls.ca == (conf_dir / "tls" / "ca.pem").resolve()
    assert cfg.broker.tls.cert == (conf_dir / "tls" / "c.pem").resolve()
    assert cfg.broker.tls.key == Path("/abs/c.key")  # absolute paths are kept
    assert cfg.broker.uses_tls and cfg.broker.port == 8883

    # check-config loads the files from that other cwd too: the key is found; the password
    # and TLS files (not made here) are named by their resolved paths
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "keys.0" not in err
    assert f"broker.password_file: cannot read {conf_dir / 'secrets' / 'pw'}" in err
    assert f"broker.tls.ca: cannot read {conf_dir / 'tls' / 'ca.pem'}" in err


# --------------------------------------------------------------------------- error paths


@pytest.mark.parametrize(
    ("snippet", "path", "fragment"),
    [
        ("site: {id: Shelter 1}", "site.id", "pattern"),
        ("site: {id: s1}\nbroker: {url: 'http://x:1883'}", "broker.url", "mqtt://"),
        ("site: {id: s1}\nbroker: {url: 'mqtt://h:99999'}", "broker.url", "port"),
        ("site: {id: s1}\nbroker: {url: 'mqtt://h/path'}", "broker.url", "scheme://host:port"),
        ("site: {id: s1}\nbroker: {keepalive_s: 1}", "broker.keepalive_s", "greater than"),
        ("site: {id: s1}\nbroker: {reconnect: {min_s: 5, max_s: 1}}", "broker.reconnect", ">="),
        ("site: {id: s1}\nbroker: {tls: {ca: a, cert: c}}", "broker.tls", "together"),
        ("site: {id: s1}\noutbox: {max_events: 10}", "outbox.max_events", "greater than"),
        ("site: {id: s1}\noutbox: {durability: never}", "outbox.durability", "group"),
        (
            "site: {id: s1}\ndevices: {panic_buttons: [{name: p, pin: 54}]}",
            "devices.panic_buttons.0.pin",
            "less than or equal to 53",
        ),
        (
            "site: {id: s1}\ndevices: {panic_buttons: [{name: p, pin: 1}, {name: Q!, pin: 2}]}",
            "devices.panic_buttons.1.name",
            "pattern",
        ),
        (
            "site: {id: s1}\ndevices: {panic_buttons: [{name: p, pin: 1, mode: loud}]}",
            "devices.panic_buttons.0.mode",
            "silent",
        ),
        ("site: {id: s1}\ndevices: {buzzer: {pin: -1}}", "devices.buzzer.pin", "greater than"),
        ("site: {id: s1}\nkeys: [{key_id: 'a b', public_key: k.pub}]", "keys.0.key_id", "pattern"),
        ("broker: {}", "site", "required"),
    ],
)
def test_error_names_the_full_field_path(
    tmp_path: Path, snippet: str, path: str, fragment: str
) -> None:
    msg = config_error(tmp_path, snippet + "\n")
    lines = error_lines(msg)
    assert path in lines, msg
    assert fragment in lines[path], msg
    assert str(tmp_path / "site.yaml") in msg.splitlines()[0]


def test_several_errors_are_reported_at_once(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path,
        """\
        site: {id: NOT VALID}
        broker: {url: 'ftp://x'}
        devices:
          panic_buttons:
            - {name: panic-a, pin: 99}
        """,
    )
    assert "3 error(s)" in msg.splitlines()[0]
    assert set(error_lines(msg)) == {"site.id", "broker.url", "devices.panic_buttons.0.pin"}


@pytest.mark.parametrize(
    ("snippet", "path"),
    [
        ("site: {id: s1}\nbrokr: {}", "brokr"),
        ("site: {id: s1, colour: red}", "site.colour"),
        ("site: {id: s1}\nbroker: {reconnect: {min: 1}}", "broker.reconnect.min"),
        (
            "site: {id: s1}\ndevices: {panic_buttons: [{name: p, pin: 1, debounce: 5}]}",
            "devices.panic_buttons.0.debounce",
        ),
        ("site: {id: s1}\ndevices: {reset_key: {pin: 3, hold_ms: 5}}", "devices.reset_key.hold_ms"),
    ],
)
def test_unknown_fields_are_rejected_with_their_path(
    tmp_path: Path, snippet: str, path: str
) -> None:
    msg = config_error(tmp_path, snippet + "\n")
    lines = error_lines(msg)
    assert path in lines, msg
    assert "unknown field" in lines[path]


@pytest.mark.parametrize(
    "devices",
    [
        "{panic_buttons: [{name: a, pin: 17}, {name: b, pin: 17}]}",
        "{panic_buttons: [{name: a, pin: 17}], sent_led: {pin: 17}}",
        "{panic_buttons: [{name: a, pin: 5}], buzzer: {pin: 24}, reset_key: {pin: 24}}",
    ],
)
def test_duplicate_pins_are_refused(tmp_path: Path, devices: str) -> None:
    msg = config_error(tmp_path, f"site: {{id: s1}}\ndevices: {devices}\n")
    lines = error_lines(msg)
    assert "devices" in lines, msg
    assert "used by both" in lines["devices"]


def test_duplicate_button_names_and_reserved_names_are_refused(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path, "site: {id: s1}\ndevices: {panic_buttons: [{name: a, pin: 1}, {name: a, pin: 2}]}"
    )
    assert "duplicate device names" in error_lines(msg)["devices"]
    msg = config_error(
        tmp_path, "site: {id: s1}\ndevices: {panic_buttons: [{name: buzzer, pin: 1}]}"
    )
    assert "reserved" in error_lines(msg)["devices"]


@pytest.mark.parametrize("text", ["- just\n- a list\n", "just a string\n", "42\n", ""])
def test_non_mapping_file_is_refused(tmp_path: Path, text: str) -> None:
    msg = config_error(tmp_path, text)
    assert "must be a YAML mapping" in msg
    assert str(tmp_path / "site.yaml") in msg


def test_bad_yaml_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    msg = config_error(tmp_path, "site: {id: s1\nbroker: [\n")
    assert "not valid YAML" in msg
    assert str(tmp_path / "site.yaml") in msg


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.yaml")


def test_parse_config_refuses_non_mapping_data() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        parse_config(["site"])


# --------------------------------------------------------------------------- check-config CLI


def test_check_config_cli_exit_1_lists_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "bad.yaml",
        """\
        site: {id: s1}
        broker: {url: 'tcp://x'}
        devices:
          panic_buttons: [{name: p, pin: 17, colour: red}]
        """,
    )
    assert main(["check-config", str(path)]) == 1
    captured = capsys.readouterr()
    assert "broker.url" in captured.err
    assert "devices.panic_buttons.0.colour" in captured.err
    assert "ok" not in captured.out


def test_check_config_cli_exit_1_for_missing_file_and_bad_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err
    bad = write(tmp_path / "bad.yaml", "site: [\n")
    assert main(["check-config", str(bad)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_check_config_cli_exit_1_when_a_trusted_key_file_is_missing_or_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "site.yaml",
        "site: {id: s1}\nkeys: [{key_id: centre, public_key: keys/centre.pub, commands: ['*']}]\n",
    )
    assert main(["check-config", str(path)]) == 1
    assert str(tmp_path / "keys" / "centre.pub") in capsys.readouterr().err

    write(tmp_path / "keys" / "centre.pub", "not a pem\n")
    assert main(["check-config", str(path)]) == 1
    assert "not a PEM public key" in capsys.readouterr().err

    (tmp_path / "keys" / "centre.pub").unlink()
    generate_keypair(tmp_path / "keys" / "centre.key", tmp_path / "keys" / "centre.pub")
    assert main(["check-config", str(path)]) == 0
    assert "1 trusted key(s)" in capsys.readouterr().out


def test_check_config_cli_rejects_duplicate_key_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "site.yaml",
        "site: {id: s1}\nkeys:\n"
        "  - {key_id: a, public_key: a.pub, commands: ['*']}\n"
        "  - {key_id: a, public_key: b.pub, commands: ['*']}\n",
    )
    assert main(["check-config", str(path)]) == 1
    assert "key_id values must be unique" in capsys.readouterr().err
