"""SIGHUP: re-read the config and apply it without a visit (docs/cli.md, Signals).

``Reloader`` is what ``cli._serve`` runs for ``run``: the current site, and on ``reload()``
(the signal helper thread, never the handler) the config file read again and checked
exactly as at start. A valid config is applied by restarting the site inside the process:
the old site stops (inputs and commands stop, every output off, its status ``offline``,
its store closed, unsent messages kept in it), then a new site is built from the new config
on the same hardware and starts (outputs off at construction, state restored from the store,
a new connection with the new broker settings). An invalid config is refused: the running
site reports ``config.rejected`` and goes on with the old config, untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from edge.config import SiteConfig
from edge.core.errors import AnsimError
from edge.models import ConfigRejected
from edge.site import Site

log = structlog.get_logger(__name__)

# The old site does not wait for its outbox to drain: what is unsent stays in the store and
# the new site sends it. Keeps the time without a watched input short.
RELOAD_FLUSH_S = 0.0
MAX_ERROR_CHARS = 4000  # a config.rejected event stays small whatever the file holds

# -> (the site, what to run: the site or a wrapper, the hardware it runs on). Each site gets
# hardware of its own: closing the old one releases every pin and port the old site held.
Build = Callable[[SiteConfig], tuple[Site, Any, Any]]


class Reloader:
    def __init__(
        self, cfg: SiteConfig, path: Path, *, load: Callable[[], SiteConfig], build: Build
    ) -> None:
        self.cfg = cfg
        self.path = path
        self._load = load
        self._build = build
        self.site, self._target, self._hardware = build(cfg)
        self._pending: SiteConfig | None = None
        self._stopping = False
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            while True:
                self._target.run()
                with self._lock:
                    new, self._pending = self._pending, None
                    if self._stopping or new is None:
                        return
                self._close_hardware()
                self._replace(new)
        finally:
            self._close_hardware()

    def _close_hardware(self) -> None:
        hardware, self._hardware = self._hardware, None
        if hardware is not None:
            hardware.close()

    def close(self) -> None:
        """Close the current site's hardware (idempotent; ``run()`` does it too)."""
        self._close_hardware()

    def _replace(self, new: SiteConfig) -> None:
        old = self.cfg
        try:
            self.site, self._target, self._hardware = self._build(new)
        except Exception as exc:  # e.g. a serial port or pin that cannot be had: go back
            log.error("config_apply_failed", error=f"{type(exc).__name__}: {exc}")
            self.site, self._target, self._hardware = self._build(old)
            self._report(f"applying it failed ({type(exc).__name__}: {exc}); old config kept")
            return
        self.cfg = new
        log.info("config_reloaded", config=str(self.path), site=new.site.id)
        with self._lock:
            if self._pending is not None:  # another SIGHUP while this one was applied
                self.site.stop_soon(flush_s=RELOAD_FLUSH_S)

    def stop_soon(self) -> None:
        with self._lock:
            self._stopping = True
        self._target.stop_soon()

    def reload(self) -> None:
        """Any thread but the signal handler: read the config again; apply or refuse it."""
        try:
            new = self._load()
        except AnsimError as exc:
            log.error("config_rejected", config=str(self.path), error=str(exc))
            self._report(str(exc))
            return
        with self._lock:
            if self._stopping:
                return
            self._pending = new
            site = self.site
        log.info("config_reload", config=str(self.path))
        site.stop_soon(flush_s=RELOAD_FLUSH_S)

    def _report(self, error: str) -> None:
        site = self.site
        data = ConfigRejected(config=str(self.path), error=error[:MAX_ERROR_CHARS])

        def emit() -> None:
            site.outbox.emit("site", data)

        site.loop.post(emit)
