"""structlog setup: one event per line, as JSON objects or human-readable lines."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "json", "console"]


def wants_json(fmt: LogFormat, *, command: str | None = None) -> bool:
    """``json`` / ``console`` as asked. ``auto``: JSON only for ``run`` (the daemon, under
    systemd/journald) when stderr is not a terminal; every other command, ``sim``
    included, logs human-readable lines (docs/cli.md)."""
    if fmt != "auto":
        return fmt == "json"
    return command == "run" and not sys.stderr.isatty()


def configure(level: str = "info", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Third-party stdlib logging (amqtt, paho) stays quiet unless it is a warning.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("amqtt", "transitions", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
