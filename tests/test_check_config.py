"""check-config catches what would go wrong later: command patterns that match nothing,
physical pin numbers typed as BCM numbers, files the config names (keys, password, TLS,
data dir) with their field paths and all at once, published example keys, and a panic
button whose cut wire would be silent."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import structlog

from edge.cli import main as cli_main
from edge.config import load_config
from edge.core.errors import ConfigError
from edge.core.signing import generate_keypair
from edge.devices.registry import COMMAND_ARGS

REPO = Path(__file__).resolve().parents[1]
MQTT_DOC = REPO / "docs" / "mqtt-api.md"


def main(argv: list[str]) -> int:
    """edge.cli.main, then put structlog's configuration back (see test_config.py)."""
    saved = structlog.get_config()
    try:
        return cli_main(argv)
    finally:
        structlog.configure(**saved)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_lines(message: str) -> dict[str, str]:
    """'  path: msg' lines of a config error -> {path: msg}."""
    out: dict[str, str] = {}
    for line in message.splitlines()[1:]:
        path, _, msg = line.strip().partition(": ")
        out[path] = msg
    return out


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = write(tmp_path / "site.yaml", text)
    code = main(["check-config", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def doc_example_public_key() -> str:
    """The PEM of the worked signing example's public key in docs/mqtt-api.md."""
    text = MQTT_DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- signing: public-key -->\n```text\n(.*?)```", text, re.S)
    assert m, "docs/mqtt-api.md has no <!-- signing: public-key --> block"
    return m.group(1)


# --------------------------------------------------------------------------- keys[].commands


def test_key_without_commands_is_refused_not_silently_all(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "c.key", tmp_path / "c.pub")
    path = write(tmp_path / "site.yaml", "site: {id: s1}\nkeys: [{key_id: c, public_key: c.pub}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = error_lines(str(info.value))
    assert "keys.0.commands" in lines, info.value
    assert "Field required" in lines["keys.0.commands"]
    assert '["*"]' in lines["keys.0.commands"]  # says how to allow everything on purpose


@pytest.mark.parametrize(
    ("patterns", "bad_index"),
    [
        (["alarm.ack", "alarm.clea"], 1),  # typo: matches nothing
        (["lockers.*"], 0),
        (["Alarm.*"], 0),  # case-sensitive
        ([""], 0),
    ],
)
def test_command_patterns_that_match_no_command_are_refused(
    tmp_path: Path, patterns: list[str], bad_index: int
) -> None:
    path = write(
        tmp_path / "site.yaml",
        f"site: {{id: s1}}\nkeys: [{{key_id: c, public_key: c.pub, commands: {patterns!r}}}]\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = error_lines(str(info.value))
    where = f"keys.0.commands.{bad_index}"
    assert where in lines, info.value
    assert "matches no command" in lines[where]
    assert "alarm.ack" in lines[where]  # the message lists the commands there are
    assert len(lines) == 1, info.value


def test_empty_command_list_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path / "site.yaml",
        "site: {id: s1}\nkeys: [{key_id: c, public_key: c.pub, commands: []}]",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "keys.0.commands" in error_lines(str(info.value))


def test_patterns_that_match_a_command_are_accepted(tmp_path: Path) -> None:
    patterns = ["*", "alarm.*", "locker.open", "site.test_mode", "locker.[os]*", "alarm.ac?"]
    generate_keypair(tmp_path / "c.key", tmp_path / "c.pub")
    path = write(
        tmp_path / "site.yaml",
        f"site: {{id: s1}}\nkeys: [{{key_id: c, public_key: c.pub, commands: {patterns!r}}}]\n",
    )
    assert load_config(path).keys[0].commands == patterns
    # every registered command name is a pattern that matches itself
    for name in COMMAND_ARGS:
        d = tmp_path / name
        p = write(
            d / "s.yaml",
            f"site: {{id: s1}}\nkeys: [{{key_id: c, public_key: c.pub, commands: [{name}]}}]",
        )
        assert load_config(p).keys[0].commands == [name]


# --------------------------------------------------------------------------- BCM pins


@pytest.mark.parametrize(
    ("devices", "where", "physical_hint"),
    [
        ("{panic_buttons: [{name: p, pin: 40}]}", "devices.panic_buttons.0.pin", "GPIO 21"),
        ("{buzzer: {pin: 29}}", "devices.buzzer.pin", "GPIO 5"),
        ("{reset_key: {pin: 30}}", "devices.reset_key.pin", None),  # pin 30 is GND
        (
            "{panic_buttons: [{name: p, pin: 17, supervision: {pin: 36}}]}",
            "devices.panic_buttons.0.supervision.pin",
            "GPIO 16",
        ),
        (
            "{lockers: {gpio: [{locker: 1, solenoid_pin: 5, door_pin: 31}]}}",
            "devices.lockers.gpio.0.door_pin",
            "GPIO 6",
        ),
    ],
)
def test_gpio_numbers_off_the_header_are_refused_and_the_error_says_bcm(
    tmp_path: Path, devices: str, where: str, physical_hint: str | None
) -> None:
    path = write(tmp_path / "site.yaml", f"site: {{id: s1}}\ndevices: {devices}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = error_lines(str(info.value))
    assert where in lines, info.value
    assert "BCM" in lines[where] and "40-pin header" in lines[where]
    assert "devices.allow_any_pin" in lines[where]
    if physical_hint is not None:
        assert f"is {physical_hint}" in lines[where]


def test_allow_any_pin_accepts_bcm_numbers_above_27(tmp_path: Path) -> None:
    path = write(
        tmp_path / "site.yaml",
        "site: {id: s1}\ndevices: {allow_any_pin: true, panic_buttons: [{name: p, pin: 40}]}\n",
    )
    assert load_config(path).devices.panic_buttons[0].pin == 40
    # the hard bound stays, and says that pins are BCM numbers
    path = write(
        tmp_path / "site.yaml",
        "site: {id: s1}\ndevices: {allow_any_pin: true, panic_buttons: [{name: p, pin: 54}]}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = error_lines(str(info.value))["devices.panic_buttons.0.pin"]
    assert "53" in msg and "BCM" in msg


def test_header_pins_0_to_27_are_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path / "site.yaml",
        "site: {id: s1}\ndevices: {panic_buttons: [{name: a, pin: 0}, {name: b, pin: 27}]}\n",
    )
    assert [b.pin for b in load_config(path).devices.panic_buttons] == [0, 27]


# --------------------------------------------------------------------------- YAML errors


def test_yaml_syntax_error_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = check(tmp_path, "site: {id: s1}\ndevices:\n  buzzer: {pin: 24\n", capsys)
    assert code == 1
    assert "<unicode string>" not in err
    path = tmp_path / "site.yaml"
    assert err.startswith(f"{path}: not valid YAML:")
    assert f'in "{path}", line 4' in err  # the parser's mark names the file


# --------------------------------------------------------------------------- files


def test_every_bad_key_file_is_named_by_field_path_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_keypair(tmp_path / "good.key", tmp_path / "good.pub")
    write(tmp_path / "garbage.pub", "not a pem\n")
    (tmp_path / "adir.pub").mkdir()
    code, out, err = check(
        tmp_path,
        """\
        site: {id: s1}
        keys:
          - {key_id: missing, public_key: missing.pub, commands: ["*"]}
          - {key_id: good, public_key: good.pub, commands: ["*"]}
          - {key_id: garbage, public_key: garbage.pub, commands: ["*"]}
          - {key_id: private, public_key: good.key, commands: ["*"]}
          - {key_id: adir, public_key: adir.pub, commands: ["*"]}
        """,
        capsys,
    )
    assert code == 1 and out == ""
    assert err.splitlines()[0] == f"{tmp_path / 'site.yaml'}: 4 error(s) in the configuration:"
    lines = error_lines(err)
    assert set(lines) == {
        "keys.0.public_key",
        "keys.2.public_key",
        "keys.3.public_key",
        "keys.4.public_key",
    }
    assert "cannot read the public key (No such file or directory)" in lines["keys.0.public_key"]
    assert str(tmp_path / "missing.pub") in lines["keys.0.public_key"]
    assert "not a PEM public key" in lines["keys.2.public_key"]
    assert "not a PEM public key" in lines["keys.3.public_key"]  # a private key
    assert "cannot read the public key" in lines["keys.4.public_key"]


def test_the_published_example_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "example.pub", doc_example_public_key())
    generate_keypair(tmp_path / "own.key", tmp_path / "own.pub")
    code, out, err = check(
        tmp_path,
        """\
        site: {id: s1}
        keys:
          - {key_id: own, public_key: own.pub, commands: ["*"]}
          - {key_id: centre-example, public_key: example.pub, commands: ["alarm.*"]}
        """,
        capsys,
    )
    assert code == 1 and out == ""
    lines = error_lines(err)
    assert set(lines) == {"keys.1.public_key"}, err
    msg = lines["keys.1.public_key"]
    assert "example key" in msg and "docs/mqtt-api.md" in msg and "ansim-edge keygen" in msg


def test_password_tls_and_data_dir_problems_are_caught_with_field_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "not-a-dir", "a file\n")
    write(tmp_path / "tls" / "ca.pem", "not a certificate\n")
    code, out, err = check(
        tmp_path,
        """\
        site: {id: s1}
        data_dir: not-a-dir
        broker:
          url: mqtts://broker.example:8883
          username: s1
          password_file: secrets/missing
          tls: {ca: tls/ca.pem}
        """,
        capsys,
    )
    assert code == 1 and out == ""
    lines = error_lines(err)
    assert set(lines) == {"broker.password_file", "broker.tls.ca", "data_dir"}, err
    assert lines["broker.password_file"] == (
        f"cannot read {tmp_path / 'secrets' / 'missing'} (No such file or directory)"
    )
    assert "is not a PEM CA certificate bundle" in lines["broker.tls.ca"]
    assert lines["data_dir"] == f"{tmp_path / 'not-a-dir'} exists and is not a directory"


def test_data_dir_under_a_file_cannot_be_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "f", "x")
    code, _, err = check(tmp_path, "site: {id: s1}\ndata_dir: f/sub/data\n", capsys)
    assert code == 1
    assert error_lines(err)["data_dir"] == (
        f"{tmp_path / 'f' / 'sub' / 'data'} cannot be created: {tmp_path / 'f'} is not a directory"
    )


def test_missing_tls_client_files_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.mqtt import generate_tls_files

    files = generate_tls_files(tmp_path / "pki")
    code, _, err = check(
        tmp_path,
        f"""\
        site: {{id: s1}}
        data_dir: data
        broker:
          url: mqtts://broker.example:8883
          tls: {{ca: {files.ca_path}, cert: {files.client_cert_path}, key: pki/nope.key}}
        """,
        capsys,
    )
    assert code == 1
    assert error_lines(err) == {
        "broker.tls.key": f"cannot read {tmp_path / 'pki' / 'nope.key'} (No such file or directory)"
    }
    # the real files pass
    code, out, _ = check(
        tmp_path,
        f"""\
        site: {{id: s1}}
        data_dir: data
        broker:
          url: mqtts://broker.example:8883
          tls: {{ca: {files.ca_path}, cert: {files.client_cert_path}, key: {files.client_key_path}}}
        """,
        capsys,
    )
    assert code == 0, out


# --------------------------------------------------------------------------- warnings


def test_panic_button_contact_no_without_supervision_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check(
        tmp_path,
        """\
        site: {id: s1}
        data_dir: data
        devices:
          panic_buttons:
            - {name: safe, pin: 17}
            - {name: bare, pin: 18, contact: no}
            - {name: watched, pin: 19, contact: no, supervision: {pin: 20}}
        """,
        capsys,
    )
    assert code == 0  # valid, but risky
    assert "ok" in out
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1, err
    assert warnings[0].startswith('warning: devices.panic_buttons.1: bare: contact "no"')
    assert "cut" in warnings[0] and "supervision" in warnings[0]


def test_shipped_examples_pass_without_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    for name in sorted(p.name for p in (REPO / "config" / "examples").glob("*.yaml")):
        assert main(["check-config", str(REPO / "config" / "examples" / name)]) == 0
        captured = capsys.readouterr()
        assert "warning" not in captured.err, captured.err
