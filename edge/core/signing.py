"""Ed25519 command signatures over canonical JSON. The device holds public keys only.

The daemon verifies with libsodium (PyNaCl): about 1.5 MB of memory, where ``cryptography``
(its Rust extension bundles OpenSSL) costs about 7.5 MB. Key pairs are made with libsodium
too (``keygen``, the simulator's development key), written as the PEM that ``cryptography``
writes for the same key, byte for byte (tests/test_signing.py compares them).
``cryptography`` is imported only to use a private key (``sign``, the console's commands) and
to read a public key file that is not in the PEM form ``keygen`` writes (its errors are the
ones reported for a file that is no Ed25519 public key at all).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from edge.core.errors import KeyFileError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# A public key to verify with: the device's own (``load_public_key``) or, from the centre's
# tools and tests, cryptography's.
PublicKey: TypeAlias = "VerifyKey | Ed25519PublicKey"

# DER of an Ed25519 SubjectPublicKeyInfo (RFC 8410) before its 32 raw key bytes.
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
# DER of an Ed25519 PKCS #8 PrivateKeyInfo (RFC 8410, version 0) before its 32-byte seed.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
# The PEM form `keygen` writes (and OpenSSL, and every library): one block, nothing around it.
_PEM = re.compile(
    rb"\s*-----BEGIN PUBLIC KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END PUBLIC KEY-----\s*"
)


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKeyError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses an object with a duplicate key (at any depth) with
    DuplicateKeyError: which of two values a signature covers must never be ambiguous."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def canonical_json(obj: Any) -> bytes:
    """Keys sorted, separators ',' and ':', no whitespace, UTF-8, non-ASCII kept as is."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signed_bytes(command: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the canonical JSON of the command without ``sig``."""
    return canonical_json({k: v for k, v in command.items() if k != "sig"})


def sign_command(command: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    out = {k: v for k, v in command.items() if k != "sig"}
    out["sig"] = private_key.sign(signed_bytes(out)).hex()
    return out


def raw_public_key(key: PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    if isinstance(key, VerifyKey):
        return bytes(key)
    return key.public_bytes_raw()


def verify_command(command: dict[str, Any], public_key: PublicKey) -> bool:
    sig = command.get("sig")
    if not isinstance(sig, str):
        return False
    key = public_key if isinstance(public_key, VerifyKey) else VerifyKey(raw_public_key(public_key))
    try:
        key.verify(signed_bytes(command), bytes.fromhex(sig))
    except (CryptoError, ValueError, RecursionError):  # BadSignatureError, a wrong length
        return False
    return True


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """Write an Ed25519 key pair as PEM (private key mode 0600). Refuses to overwrite.

    PKCS #8 and SubjectPublicKeyInfo, exactly what ``cryptography`` writes for the key."""
    for p in (private_path, public_path):
        if p.exists():
            raise KeyFileError(f"{p} already exists; choose another path or delete it first")
    key = SigningKey.generate()
    private_pem = _pem("PRIVATE KEY", _PKCS8_PREFIX + bytes(key))  # bytes(key): the seed
    public_pem = _pem("PUBLIC KEY", _SPKI_PREFIX + bytes(key.verify_key))
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)


def _pem(label: str, der: bytes) -> bytes:
    """One PEM block: base64 in lines of 64 characters (RFC 7468)."""
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the private key ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key; make one with `ansim-edge keygen`")
    return key


def load_public_key(path: Path) -> VerifyKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the public key ({exc.strerror})") from None
    raw = _keygen_pem_raw(data)
    if raw is None:
        raw = _other_pem_raw(path, data)
    return VerifyKey(raw)


def _keygen_pem_raw(data: bytes) -> bytes | None:
    """The raw key of an Ed25519 public key in the PEM form `keygen` writes; None for
    anything else."""
    m = _PEM.fullmatch(data)
    if m is None:
        return None
    try:
        der = binascii.a2b_base64(b"".join(m.group(1).split()), strict_mode=True)
    except binascii.Error:
        return None
    if len(der) != len(_SPKI_PREFIX) + 32 or not der.startswith(_SPKI_PREFIX):
        return None
    return der[len(_SPKI_PREFIX) :]


def _other_pem_raw(path: Path, data: bytes) -> bytes:
    """Any other file, read by cryptography: its raw Ed25519 key, else why it is none."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 key; make one with `ansim-edge keygen`")
    return key.public_bytes_raw()
