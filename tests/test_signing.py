"""Ed25519 command signatures over canonical JSON; keygen and the `sign` CLI."""

from __future__ import annotations

import base64
import io
import json
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_public_key,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge.cli import main as cli_main
from edge.core.clock import FakeClock
from edge.core.commands import CommandProcessor, LoadedKey
from edge.core.errors import KeyFileError
from edge.core.signing import (
    canonical_json,
    generate_keypair,
    load_private_key,
    load_public_key,
    sign_command,
    signed_bytes,
    verify_command,
)
from edge.core.store import Store
from edge.devices.panic.commands import AlarmAckArgs

PRIVATE = Ed25519PrivateKey.generate()
PUBLIC = PRIVATE.public_key()
OTHER = Ed25519PrivateKey.generate()
RSA_PUBLIC_PEM = (
    generate_private_key(65537, 1024)
    .public_key()
    .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
)
ED25519_L = 2**252 + 27742317777372353535851937790883648493  # the group order


def main(argv: list[str]) -> int:
    """edge.cli.main, then put structlog's configuration back: main() points it at this
    test's captured stderr (closed after the test) and turns on logger caching."""
    saved = structlog.get_config()
    try:
        return cli_main(argv)
    finally:
        structlog.configure(**saved)


# --------------------------------------------------------------------------- strategies

# Valid Unicode scalar values only: a lone surrogate is not representable in UTF-8.
TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
COMMANDS = st.fixed_dictionaries(
    {
        "command_id": TEXT,
        "name": TEXT,
        "args": st.dictionaries(TEXT, JSON, max_size=4),
        "expires_at": TEXT,
        "key_id": TEXT,
    },
    optional={"extra": JSON},
)


def reorder(obj: Any, rnd: Any) -> Any:
    """Same JSON value, dict keys in a random order (recursively)."""
    if isinstance(obj, dict):
        keys = list(obj)
        rnd.shuffle(keys)
        return {k: reorder(obj[k], rnd) for k in keys}
    if isinstance(obj, list):
        return [reorder(v, rnd) for v in obj]
    return obj


# --------------------------------------------------------------------------- canonical JSON


def test_canonical_json_sorts_keys_compact_separators_no_whitespace() -> None:
    obj = {"b": 1, "a": [1, 2.5, {"d": "x", "c": None}], "C": True, "aa": False}
    assert canonical_json(obj) == b'{"C":true,"a":[1,2.5,{"c":null,"d":"x"}],"aa":false,"b":1}'


def test_canonical_json_keeps_non_ascii_as_utf8() -> None:
    out = canonical_json({"by": "관제센터", "address": "서울특별시 강남구"})
    assert out == '{"address":"서울특별시 강남구","by":"관제센터"}'.encode()
    assert b"\\u" not in out
    assert "관제센터".encode() in out


def test_canonical_json_escapes_only_what_json_requires() -> None:
    assert canonical_json({"q": 'a"b\\c\n'}) == b'{"q":"a\\"b\\\\c\\n"}'


def test_canonical_json_refuses_nan_and_infinity() -> None:
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError):
            canonical_json({"x": bad})


def test_signed_bytes_cover_everything_but_sig() -> None:
    cmd = {"name": "alarm.ack", "sig": "ab" * 64, "args": {"by": "x"}}
    assert signed_bytes(cmd) == b'{"args":{"by":"x"},"name":"alarm.ack"}'


@given(JSON, st.randoms(use_true_random=False), st.integers(0, 4) | st.none(), st.booleans())
@settings(max_examples=200, deadline=None)
def test_canonical_json_is_independent_of_key_order_and_whitespace(
    obj: Any, rnd: Any, indent: int | None, ascii_only: bool
) -> None:
    canon = canonical_json(obj)
    received = json.loads(json.dumps(reorder(obj, rnd), indent=indent, ensure_ascii=ascii_only))
    assert canonical_json(received) == canon
    assert json.loads(canon.decode("utf-8")) == obj
    assert canon == json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


@given(st.dictionaries(st.text("abcxyz가나다", max_size=5), st.text("abc가나.-_", max_size=5)))
@settings(max_examples=100, deadline=None)
def test_canonical_json_has_no_whitespace_and_no_escapes(obj: dict[str, str]) -> None:
    out = canonical_json(obj)
    assert not any(c in out for c in b" \t\r\n")
    assert b"\\" not in out
    out.decode("utf-8")  # valid UTF-8


# --------------------------------------------------------------------------- sign / verify


@given(COMMANDS)
@settings(max_examples=200, deadline=None)
def test_sign_then_verify(cmd: dict[str, Any]) -> None:
    signed = sign_command(cmd, PRIVATE)
    assert set(signed) == set(cmd) | {"sig"}
    assert len(signed["sig"]) == 128 and signed["sig"] == signed["sig"].lower()
    assert verify_command(signed, PUBLIC)
    assert not verify_command(signed, OTHER.public_key())


@given(COMMANDS, st.randoms(use_true_random=False), st.integers(0, 4) | st.none(), st.booleans())
@settings(max_examples=200, deadline=None)
def test_received_key_order_and_whitespace_do_not_matter(
    cmd: dict[str, Any], rnd: Any, indent: int | None, ascii_only: bool
) -> None:
    signed = sign_command(cmd, PRIVATE)
    wire = json.dumps(reorder(signed, rnd), indent=indent, ensure_ascii=ascii_only)
    assert verify_command(json.loads(wire), PUBLIC)


@given(COMMANDS, st.data())
@settings(max_examples=200, deadline=None)
def test_any_mutation_of_any_field_breaks_the_signature(
    cmd: dict[str, Any], data: st.DataObject
) -> None:
    signed = sign_command(cmd, PRIVATE)
    mutated = dict(signed)
    kind = data.draw(st.sampled_from(["replace", "delete", "add", "nested"]))
    fields = sorted(k for k in signed if k != "sig")
    if kind == "replace":
        field = data.draw(st.sampled_from(fields))
        new = data.draw(JSON)
        assume(canonical_json(new) != canonical_json(signed[field]))
        mutated[field] = new
    elif kind == "delete":
        del mutated[data.draw(st.sampled_from(fields))]
    elif kind == "add":
        field = data.draw(TEXT.filter(lambda k: k not in signed))
        mutated[field] = data.draw(JSON)
    else:
        args = dict(signed["args"])
        key = data.draw(TEXT)
        value = data.draw(JSON)
        assume(key not in args or canonical_json(args[key]) != canonical_json(value))
        args[key] = value
        mutated["args"] = args
    assert not verify_command(mutated, PUBLIC)


@given(COMMANDS, st.data())
@settings(max_examples=200, deadline=None)
def test_any_change_of_the_signature_breaks_it(cmd: dict[str, Any], data: st.DataObject) -> None:
    signed = sign_command(cmd, PRIVATE)
    raw = bytearray(bytes.fromhex(signed["sig"]))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    assert not verify_command({**signed, "sig": raw.hex()}, PUBLIC)


@pytest.mark.parametrize("sig", [None, 5, "", "zz" * 64, "ab" * 63, "ab" * 65])
def test_malformed_signatures_do_not_verify(sig: object) -> None:
    signed = sign_command({"name": "alarm.ack"}, PRIVATE)
    bad = {**signed, "sig": sig}
    assert not verify_command(bad, PUBLIC)
    assert not verify_command({k: v for k, v in signed.items() if k != "sig"}, PUBLIC)


def test_sign_command_ignores_an_existing_sig_and_does_not_mutate_input() -> None:
    cmd = {"name": "alarm.ack", "args": {}, "sig": "00" * 64}
    signed = sign_command(cmd, PRIVATE)
    assert cmd["sig"] == "00" * 64
    assert signed["sig"] != "00" * 64
    assert verify_command(signed, PUBLIC)


# --------------------------------------------------------------------------- keygen


def test_generate_keypair_writes_pems_private_0600(tmp_path: Path) -> None:
    priv, pub = tmp_path / "k" / "centre.key", tmp_path / "p" / "centre.pub"
    generate_keypair(priv, pub)
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    signed = sign_command({"name": "x"}, load_private_key(priv))
    assert verify_command(signed, load_public_key(pub))
    assert not verify_command(signed, PUBLIC)


@given(seed=st.binary(min_size=32, max_size=32))
@settings(max_examples=25, deadline=None)
def test_generate_keypair_writes_what_cryptography_writes_for_the_key(seed: bytes) -> None:
    # keygen makes the key with libsodium (PyNaCl) and writes the PEM itself: byte for byte
    # the PKCS #8 / SubjectPublicKeyInfo PEM cryptography writes for the same key.
    import tempfile
    from unittest import mock

    from nacl.signing import SigningKey

    with tempfile.TemporaryDirectory() as d:
        priv, pub = Path(d) / "c.key", Path(d) / "c.pub"
        with mock.patch.object(
            SigningKey, "generate", autospec=True, return_value=SigningKey(seed)
        ):
            generate_keypair(priv, pub)
        key = Ed25519PrivateKey.from_private_bytes(seed)
        assert priv.read_bytes() == key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        assert pub.read_bytes() == key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )


@pytest.mark.parametrize("existing", ["private", "public"])
def test_generate_keypair_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    priv, pub = tmp_path / "c.key", tmp_path / "c.pub"
    target = priv if existing == "private" else pub
    target.write_bytes(b"precious")
    with pytest.raises(KeyFileError, match="already exists"):
        generate_keypair(priv, pub)
    assert target.read_bytes() == b"precious"
    other = pub if existing == "private" else priv
    assert not other.exists()


def test_load_keys_refuse_wrong_files(tmp_path: Path) -> None:
    priv, pub = tmp_path / "c.key", tmp_path / "c.pub"
    generate_keypair(priv, pub)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_public_key(tmp_path / "missing.pub")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(priv)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_private_key(pub)


def _pem(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))


_KEYGEN_PEM = _pem(PUBLIC)
_B64 = _KEYGEN_PEM.splitlines()[1]
PUBLIC_KEY_FILES = {
    "as keygen writes it": _KEYGEN_PEM,
    "CRLF": _KEYGEN_PEM.replace(b"\n", b"\r\n"),
    "base64 over two lines": _KEYGEN_PEM.replace(_B64, _B64[:30] + b"\n" + _B64[30:]),
    "blank lines around": b"\n\n" + _KEYGEN_PEM + b"\n\n",
    "a comment before": b"centre key, 2026\n" + _KEYGEN_PEM,
    "no final newline": _KEYGEN_PEM.rstrip(),
    "X25519 key": _pem(X25519PrivateKey.generate().public_key()),
    "RSA key": RSA_PUBLIC_PEM,
    "private key": PRIVATE.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
    "base64 cut short": _KEYGEN_PEM.replace(_B64, _B64[:-4]),
    "DER one byte longer": _KEYGEN_PEM.replace(
        _B64, base64.b64encode(base64.b64decode(_B64) + b"\0")
    ),
    "not base64": _KEYGEN_PEM.replace(_B64, b"!" * len(_B64)),
    "empty": b"",
}


@pytest.mark.parametrize("name", PUBLIC_KEY_FILES)
def test_public_key_files_load_as_cryptography_reads_them(tmp_path: Path, name: str) -> None:
    """The daemon reads public keys without cryptography (PyNaCl verifies): every file
    gives the key, or the refusal, that cryptography's PEM reader gives."""
    path = tmp_path / "k.pub"
    path.write_bytes(PUBLIC_KEY_FILES[name])
    try:
        want: Any = load_pem_public_key(PUBLIC_KEY_FILES[name])
    except (ValueError, TypeError):
        want = "not a PEM public key"
    else:
        if isinstance(want, Ed25519PublicKey):
            want = want.public_bytes(Encoding.Raw, PublicFormat.Raw)
        else:
            want = "not an Ed25519 key"
    try:
        got: Any = bytes(load_public_key(path))
    except KeyFileError as exc:
        got = str(exc).removeprefix(f"{path}: ").split(" (")[0].split(";")[0]
    assert got == want


def test_verify_agrees_with_cryptography_on_forged_signatures(tmp_path: Path) -> None:
    """libsodium (the daemon) and OpenSSL (cryptography) agree on signatures that are not
    the signer's: S + L (the same signature, non-canonical), R or S zeroed, bits flipped."""
    signed = sign_command({"name": "alarm.ack", "args": {}}, PRIVATE)
    sig = bytes.fromhex(signed["sig"])
    s = int.from_bytes(sig[32:], "little") + ED25519_L
    forged = {
        "valid": sig,
        "S + L": sig[:32] + s.to_bytes(32, "little"),
        "R zero": bytes(32) + sig[32:],
        "S zero": sig[:32] + bytes(32),
        "all zero": bytes(64),
        "first bit": bytes([sig[0] ^ 1]) + sig[1:],
        "last bit": sig[:-1] + bytes([sig[-1] ^ 0x80]),
    }
    (tmp_path / "k.pub").write_bytes(_KEYGEN_PEM)
    key = load_public_key(tmp_path / "k.pub")
    for name, raw in forged.items():
        try:
            PUBLIC.verify(raw, signed_bytes(signed))
            want = True
        except InvalidSignature:
            want = False
        assert verify_command({**signed, "sig": raw.hex()}, key) is want, name
        assert verify_command({**signed, "sig": raw.hex()}, PUBLIC) is want, name
    assert verify_command(signed, key)


def test_keygen_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = tmp_path / "keys" / "centre"
    assert main(["keygen", str(prefix)]) == 0
    priv, pub = tmp_path / "keys" / "centre.key", tmp_path / "keys" / "centre.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert str(pub) in capsys.readouterr().out
    before = priv.read_bytes()
    assert main(["keygen", str(prefix)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert priv.read_bytes() == before


# --------------------------------------------------------------------------- sign CLI


@pytest.fixture
def centre_key(tmp_path: Path) -> tuple[Path, Path]:
    priv, pub = tmp_path / "centre.key", tmp_path / "centre.pub"
    generate_keypair(priv, pub)
    return priv, pub


def run_sign(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key: Path,
    stdin: str,
    *extra: str,
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(["sign", "--key", str(key), "--key-id", "centre", "--site", "shelter-0001", *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_sign_cli_fills_defaults_and_output_verifies(
    tmp_path: Path,
    centre_key: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    priv, pub = centre_key
    before = datetime.now(UTC)
    rc, out, _ = run_sign(
        monkeypatch,
        capsys,
        priv,
        '{"name": "alarm.ack", "args": {"alarm_id": "a1", "by": "관제센터"}}',
        "--ttl",
        "120",
    )
    after = datetime.now(UTC)
    assert rc == 0
    assert "관제센터" in out  # printed as UTF-8, not \u escapes
    cmd = json.loads(out)
    assert verify_command(cmd, load_public_key(pub))
    assert cmd["key_id"] == "centre"
    assert cmd["site"] == "shelter-0001"
    assert cmd["args"] == {"alarm_id": "a1", "by": "관제센터"}
    uuid.UUID(cmd["command_id"])
    expires = datetime.fromisoformat(cmd["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=119) <= expires <= after + timedelta(seconds=121)

    # ... and the device accepts exactly that command.
    results: list[bytes] = []
    calls: list[AlarmAckArgs] = []
    with_store = Store(tmp_path / "store.db")
    proc = CommandProcessor(
        {"centre": LoadedKey("centre", load_public_key(pub), ("*",))},
        with_store,
        FakeClock(start=after),
        site_id="shelter-0001",
        max_payload_bytes=16384,
        send_result=results.append,
    )
    proc.register("alarm.ack", AlarmAckArgs, lambda a, ctx: calls.append(a) or {"done": True})
    proc.handle("alarm/ack", out.encode("utf-8"))
    [result] = results
    assert json.loads(result)["ok"] is True
    assert calls == [AlarmAckArgs(alarm_id="a1", by="관제센터")]
    with_store.close()


def test_sign_cli_keeps_given_fields_and_fills_missing_args(
    centre_key: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    priv, pub = centre_key
    rc, out, _ = run_sign(
        monkeypatch,
        capsys,
        priv,
        '{"name": "site.ping", "command_id": "cmd-1", "expires_at": "2030-01-01T00:00:00Z",'
        ' "key_id": "someone-else", "site": "elsewhere", "sig": "ff"}',
    )
    assert rc == 0
    cmd = json.loads(out)
    assert cmd["command_id"] == "cmd-1"
    assert cmd["expires_at"] == "2030-01-01T00:00:00Z"
    assert cmd["args"] == {}
    assert cmd["key_id"] == "centre"  # --key-id always wins
    assert cmd["site"] == "shelter-0001"  # and so does --site
    assert verify_command(cmd, load_public_key(pub))


@pytest.mark.parametrize(
    "stdin", ["not json", "[1, 2]", '{"args": {}}', '{"name": "alarm.ack", "name": "alarm.clear"}']
)
def test_sign_cli_refuses_bad_input(
    centre_key: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stdin: str,
) -> None:
    rc, out, err = run_sign(monkeypatch, capsys, centre_key[0], stdin)
    assert rc == 1
    assert out == ""
    assert "ansim-edge sign" in err


def test_sign_cli_refuses_a_public_key_as_private(
    centre_key: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = run_sign(monkeypatch, capsys, centre_key[1], '{"name": "x"}')
    assert rc == 1
    assert out == ""
    assert "not a PEM private key" in err
