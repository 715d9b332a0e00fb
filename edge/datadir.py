"""The data dir before anything uses it: is it usable, and was it last used by `run` (a
real site) or by `sim` (simulated hardware)? A simulator must never send a real site's
unsent events, nor a real site the simulator's made-up ones (docs/cli.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from edge.core.errors import ConfigError

Mode = Literal["run", "sim"]
MODE_FILE = "ansim-edge.mode"  # holds "run" or "sim": the command that last used the dir


def data_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used (created if missing, then written) by this user, or None."""
    if path.exists():
        if not path.is_dir():
            return f"{path} exists and is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable by this user"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{path} cannot be created: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path} cannot be created: {parent} is not writable by this user"
    return None


def last_mode(path: Path) -> str | None:
    """The mode recorded in the data dir ("run" / "sim"), None if none was recorded."""
    try:
        text = (path / MODE_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text in ("run", "sim") else None


def check_mode(path: Path, mode: Mode, *, force: bool) -> None:
    """Refuse (ConfigError) a data dir last used by the other command, unless forced."""
    last = last_mode(path)
    if force or last is None or last == mode:
        return
    if mode == "sim":
        why = (
            "`sim` would send its simulated events as that site and take over the site's "
            "unsent events and remembered commands"
        )
    else:
        why = "`run` would send the simulator's unsent made-up events to the centre as real ones"
    raise ConfigError(
        f"data_dir {path} was last used by `ansim-edge {last}`: {why}; "
        "use another --data-dir, or pass --force to use this one anyway"
    )


def record_mode(path: Path, mode: Mode) -> str | None:
    """Remember that ``mode`` uses the data dir (atomically: a crash leaves old or new).

    Returns why it could not (the data dir is unusable: the site then runs degraded), or
    None."""
    tmp = path / f".{MODE_FILE}.tmp"
    try:
        path.mkdir(parents=True, exist_ok=True)
        tmp.write_text(mode + "\n", encoding="utf-8")
        os.replace(tmp, path / MODE_FILE)
    except OSError as exc:
        return f"{exc.strerror or exc}"
    return None
