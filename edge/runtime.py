"""Interpreter settings for the daemon process (``run`` and ``sim``).

The daemon moves every message across threads (paho's network thread -> core loop -> back),
and a thread that wants the GIL waits up to ``sys.getswitchinterval()`` (5 ms by default)
while another holds it. A shorter interval lets those hand-offs happen sooner: measured
with bench/bench_spine.py, group-commit outbox throughput rose from about 11k to 13k
events/s (bare paho in the same process gains too, so the ratio stays near 60%), at no idle
cost (idle threads do not contend for the GIL).
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL_S = 0.0005

# Imported by structlog at import time whenever installed (``rich`` comes with the dev and
# sim extras, through amqtt's typer), only to pretty-print tracebacks on a terminal; no
# structlog setting avoids the import. The daemon logs plain tracebacks, so a daemon process
# keeps them out (about 4 MB of RSS, measured with bench/bench_spine.py).
PRETTY_PRINTERS = ("rich", "better_exceptions")


def tune_interpreter() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def without_pretty_printers() -> None:
    """Make ``import rich`` (and better_exceptions) fail in this process, so that structlog
    imported afterwards falls back to plain tracebacks. Call it first thing in a daemon
    process (``run``, ``sim``), before anything imports structlog; a module already imported
    stays."""
    for name in PRETTY_PRINTERS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
