"""Every key whose private half is in this repository (the docs' worked examples, any key
file committed) is on the published list, so `run`, `sim` and `check-config` refuse it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.published_keys import PUBLISHED_KEYS, fingerprint, published_where

REPO = Path(__file__).resolve().parents[1]
PEM_RE = re.compile(
    r"-----BEGIN (PUBLIC|PRIVATE) KEY-----\n[A-Za-z0-9+/=\n]+?-----END \1 KEY-----", re.S
)


def committed_pems() -> list[tuple[str, str]]:
    """(file, PEM block) for every key block in a file tracked by git."""
    try:
        names = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30
        ).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    out = []
    for raw in names:
        if not raw:
            continue
        path = REPO / raw.decode()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out += [(raw.decode(), m.group(0)) for m in PEM_RE.finditer(text)]
    return out


def public_of(pem: str) -> Ed25519PublicKey | None:
    data = pem.encode("ascii")
    if "PRIVATE" in pem.splitlines()[0]:
        private = serialization.load_pem_private_key(data, password=None)
        return private.public_key() if isinstance(private, Ed25519PrivateKey) else None
    public = serialization.load_pem_public_key(data)
    return public if isinstance(public, Ed25519PublicKey) else None


def test_the_docs_publish_at_least_the_worked_example_key() -> None:
    files = {f for f, _ in committed_pems()}
    assert "docs/mqtt-api.md" in files


def test_every_committed_key_is_on_the_published_list() -> None:
    missing = []
    for where, pem in committed_pems():
        key = public_of(pem)
        if key is not None and published_where(key) is None:
            missing.append(f"{where}: {fingerprint(key)}")
    assert not missing, (
        "keys published in the repository but not refused by sites; add their fingerprints "
        "to edge/published_keys.py:\n" + "\n".join(missing)
    )


def test_fingerprints_are_sha256_hex_of_the_raw_key() -> None:
    assert all(re.fullmatch(r"[0-9a-f]{64}", fp) for fp in PUBLISHED_KEYS)
    key = Ed25519PrivateKey.generate().public_key()
    assert published_where(key) is None
    assert len(fingerprint(key)) == 64
