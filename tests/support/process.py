"""Child processes the tests and benches start (brokers, the simulator): one place for
finding a binary, spawning with the output in a log file (or a pipe), signalling and
waiting, and SIGKILLing whatever still runs when the test process exits.

Public API::

    find_binary(name, env_var=None, fallbacks=()) -> str | None
    ChildProcess   base: ._spawn(cmd, ...) / .pid / .running / .kill() / .stop() / .wait()
    kill_all()     SIGKILL every child started here that still runs (also at exit)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["ChildProcess", "find_binary", "kill_all"]

_LIVE: weakref.WeakSet[ChildProcess] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def kill_all() -> None:
    """SIGKILL every child process started through :class:`ChildProcess` that still runs."""
    with _LIVE_LOCK:
        children = list(_LIVE)
    for child in children:
        with contextlib.suppress(Exception):
            child.kill()


atexit.register(kill_all)


def find_binary(name: str, env_var: str | None = None, fallbacks: Sequence[str] = ()) -> str | None:
    """Path of an executable: ``$env_var`` if set (None when that is not executable), then
    PATH, then ``fallbacks`` (for sbin dirs that are not on a user's PATH)."""
    explicit = os.environ.get(env_var) if env_var else None
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


class ChildProcess:
    """One child process: spawned with :meth:`_spawn`, stopped by signal and wait."""

    _proc: subprocess.Popen[bytes] | None = None

    def _spawn(
        self,
        command: Sequence[str],
        output: Path | None,
        *,
        append: bool = True,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        new_session: bool = True,
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` with stdout and stderr to ``output`` (appended, or truncated),
        or to a pipe the caller reads (``output=None``)."""
        if output is None:
            proc = self._popen(command, subprocess.PIPE, cwd, env, new_session)
        else:
            with open(output, "ab" if append else "wb") as out:
                proc = self._popen(command, out, cwd, env, new_session)
        self._proc = proc
        with _LIVE_LOCK:
            _LIVE.add(self)
        return proc

    @staticmethod
    def _popen(
        command: Sequence[str],
        out: Any,
        cwd: Path | None,
        env: dict[str, str] | None,
        new_session: bool,
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            # a Ctrl-C in the terminal must not race our cleanup
            start_new_session=new_session,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> int | None:
        """Send ``sig`` (if it still runs) and wait for the exit; SIGKILL after ``timeout``."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        return proc.returncode

    def kill(self, timeout: float = 10.0) -> int | None:
        """SIGKILL the process and wait until it has exited (its ports are closed then)."""
        return self._signal_and_wait(signal.SIGKILL, timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process (graceful shutdown) and wait until it has exited."""
        return self._signal_and_wait(signal.SIGTERM, timeout)

    def untrack(self) -> None:
        """No longer kill this one at exit (it is closed for good)."""
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.kill(timeout=2.0)
