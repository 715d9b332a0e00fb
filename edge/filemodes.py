"""`run` refuses secret files that other local users could read, and trusted keys that they
could replace.

- Secrets (``broker.password_file``, ``broker.tls.key``): no permission bit for group or
  others at all (as ssh treats a private key): ``chmod 600``.
- Trusted command keys (``keys[].public_key``) and the broker CA (``broker.tls.ca``) are
  public and may be world-readable, but a local user who can write one could trust their
  own key or broker: no write bit for group or others (``chmod go-w``).

Files that do not exist or cannot be read are left to the code that reads them (it names
the file in its own error).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edge.config import SiteConfig
from edge.core.errors import ConfigError

SECRET_BITS = 0o077
PUBLIC_BITS = 0o022


def _checked(source: Path, field: str, path: Path, bits: int, fix: str) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode & bits:
        what = "readable or writable" if bits == SECRET_BITS else "writable"
        raise ConfigError(
            f"{source}: {field}: {path} is {what} by group or others (mode {mode:04o}); "
            f"fix: chmod {fix} {path}"
        )


def check_file_modes(cfg: SiteConfig, source: Path) -> None:
    """Raise ConfigError (one line, naming the field path and the chmod fix) for the first
    secret file open to group/others or public key file writable by them."""
    broker = cfg.broker
    if broker.password_file is not None:
        _checked(source, "broker.password_file", broker.password_file, SECRET_BITS, "600")
    if broker.tls is not None:
        if broker.tls.key is not None:
            _checked(source, "broker.tls.key", broker.tls.key, SECRET_BITS, "600")
        _checked(source, "broker.tls.ca", broker.tls.ca, PUBLIC_BITS, "go-w")
    for i, key in enumerate(cfg.keys):
        _checked(source, f"keys.{i}.public_key", key.public_key, PUBLIC_BITS, "go-w")
