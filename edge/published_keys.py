"""Public keys whose private half is published (examples in the docs): a site never trusts
them. This is the one list; ``tests/test_published_keys.py`` fails when a key published in
the docs is missing from it.

A fingerprint is the SHA-256 of the raw 32-byte Ed25519 public key, in lowercase hex
(``ansim-edge check-config`` names it when it refuses a key).
"""

from __future__ import annotations

import hashlib

from edge.core.signing import PublicKey, raw_public_key

# fingerprint -> where its private key is published
PUBLISHED_KEYS: dict[str, str] = {
    "340837c8656489d3793138c8d29e4832028623c7215fdf4d6d28117b2ce9dfec": (
        "the worked signing example of docs/mqtt-api.md before commands named their site"
    ),
    "57eeb4c47f3cefdd05b776f9583c8f3a47ab3a10f97782eac4b60e47aa53ec4c": (
        "the worked signing example of docs/mqtt-api.md"
    ),
}


def fingerprint(key: PublicKey) -> str:
    return hashlib.sha256(raw_public_key(key)).hexdigest()


def published_where(key: PublicKey) -> str | None:
    """Where the private half of ``key`` is published, or None for a key of one's own."""
    return PUBLISHED_KEYS.get(fingerprint(key))
