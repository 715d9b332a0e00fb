"""A SIGTERM that arrives while the main thread is writing a log line must still stop the
site. The handler used to log itself: structlog's writer lock is not re-entrant, so the
process hung (found by a sim stopped right after `sim_ready`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading
    import structlog
    from edge import cli

    class SignalMidWrite:
        # stderr stand-in: the first log line written sends this process SIGTERM while
        # structlog holds its lock for the write
        sent = False

        def write(self, text):
            if not SignalMidWrite.sent:
                SignalMidWrite.sent = True
                os.kill(os.getpid(), signal.SIGTERM)
            sys.__stderr__.write(text)

        def flush(self):
            sys.__stderr__.flush()

    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=SignalMidWrite()),
    )
    log = structlog.get_logger("ansim-edge")

    class Target:
        def __init__(self):
            self.stop = threading.Event()

        def run(self):
            log.info("running")  # the signal arrives inside this call
            if not self.stop.wait(10):
                print("not stopped", flush=True)
                sys.exit(3)

        def stop_soon(self):
            self.stop.set()

    sys.exit(cli._serve(Target(), None, log))
    """
)


def test_sigterm_while_logging_stops_the_site_and_is_logged() -> None:
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert '"event": "running"' in p.stderr
    assert '"event": "signal"' in p.stderr and '"signal": "SIGTERM"' in p.stderr
