"""Interpreter settings for the daemon process (``run`` and ``sim``).

The daemon moves every message across threads (paho's network thread -> core loop -> back),
and a thread that wants the GIL waits up to ``sys.getswitchinterval()`` (5 ms by default)
while another holds it. A shorter interval lets those hand-offs happen sooner: measured
with bench/bench_spine.py, group-commit outbox throughput rose from about 11k to 13k
events/s (bare paho in the same process gains too, so the ratio stays near 60%), at no idle
cost (idle threads do not contend for the GIL).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

SWITCH_INTERVAL_S = 0.0005

# Imported by structlog at import time whenever installed (``rich`` comes with the dev and
# sim extras, through amqtt's typer), only to pretty-print tracebacks on a terminal; no
# structlog setting avoids the import. The daemon logs plain tracebacks, so a daemon process
# keeps them out (about 4 MB of RSS, measured with bench/bench_spine.py).
PRETTY_PRINTERS = ("rich", "better_exceptions")


# Imported at import time and never used by `run`: asyncio by structlog (for its async
# loggers), subprocess by gpiozero (for devices that run commands). `run` defers them (about
# 1.5 MB of RSS with what they import, measured with bench/bench_spine.py); the first use of
# one imports it for real, so nothing else changes.
DEFERRED = ("asyncio", "subprocess")

_deferred_lock = threading.RLock()


class _Deferred(types.ModuleType):
    """Stands in ``sys.modules`` for a module nothing has used yet. ``import`` finds it
    there; the first attribute looked up on it (a function, ``__path__`` for a submodule, ...)
    imports the real module, which takes its place in ``sys.modules``, and answers from it
    (and so does every later lookup through a reference to the stand-in)."""

    def __getattr__(self, attr: str) -> Any:
        with _deferred_lock:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
        return getattr(real, attr)


def defer_unused_imports(names: tuple[str, ...] = DEFERRED) -> None:
    """Put a stand-in for each of ``names`` (``DEFERRED``) not imported yet into
    ``sys.modules``, so that importing it costs nothing until it is used. Call it first
    thing in ``run``, before structlog is imported (edge.logs); a module already imported
    stays."""
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue  # not installed: `import` fails as it would have
        stand_in = _Deferred(name)
        stand_in.__spec__ = spec  # what `import` looks at
        stand_in.__loader__ = spec.loader
        stand_in.__package__ = spec.parent
        sys.modules[name] = stand_in


def is_deferred(module: object) -> bool:
    """Whether ``module`` (a value of ``sys.modules``) is a stand-in nothing has used yet."""
    return isinstance(module, _Deferred)


def tune_interpreter() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def without_pretty_printers() -> None:
    """Make ``import rich`` (and better_exceptions) fail in this process, so that structlog
    imported afterwards falls back to plain tracebacks. Call it first thing in a daemon
    process (``run``, ``sim``), before anything imports structlog; a module already imported
    stays."""
    for name in PRETTY_PRINTERS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
