"""Ed25519 command signatures over canonical JSON. The device holds public keys only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.core.errors import KeyFileError


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


def verify_command(command: dict[str, Any], public_key: Ed25519PublicKey) -> bool:
    sig = command.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        public_key.verify(bytes.fromhex(sig), signed_bytes(command))
    except (InvalidSignature, ValueError, RecursionError):
        return False
    return True


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """Write an Ed25519 key pair as PEM (private key mode 0600). Refuses to overwrite."""
    for p in (private_path, public_path):
        if p.exists():
            raise KeyFileError(f"{p} already exists; choose another path or delete it first")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the private key ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key; make one with `ansim-edge keygen`")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the public key ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 key; make one with `ansim-edge keygen`")
    return key
