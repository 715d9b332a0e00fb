"""`ansim-edge sim`: the production Site on simulated hardware, plus the control API
and (without --broker) an embedded broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from edge.config import SiteConfig, TrustedKey
from edge.errors import AnsimError, ConfigError
from edge.signing import generate_keypair
from edge.site import Site
from simulator.broker import EmbeddedBroker, port_free
from simulator.control import ApiError, ControlApi, require_bool
from simulator.hardware import SimHardware

log = structlog.get_logger(__name__)

DEV_KEY_ID = "dev"


def ensure_dev_key(cfg: SiteConfig) -> SiteConfig:
    """A config without trusted keys gets a development key pair in its data dir (sim only)."""
    if cfg.keys:
        return cfg
    keydir = cfg.data_dir / "dev-keys"
    priv, pub = keydir / f"{DEV_KEY_ID}.key", keydir / f"{DEV_KEY_ID}.pub"
    if not pub.exists():
        if priv.exists():
            priv.unlink()
        generate_keypair(priv, pub)
    log.warning(
        "dev_key_trusted",
        key_id=DEV_KEY_ID,
        private_key=str(priv),
        hint=f"sign with: ansim-edge sign --key {priv} --key-id {DEV_KEY_ID}",
    )
    key = TrustedKey(key_id=DEV_KEY_ID, public_key=pub, commands=["*"])
    return cfg.model_copy(update={"keys": [key]})


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--control must be HOST:PORT, got {text!r}")
    return host, int(port)


class SimRunner:
    def __init__(
        self,
        cfg: SiteConfig,
        *,
        broker_url: str | None,
        control: str = "127.0.0.1:8765",
        embedded_port: int | None = None,
    ) -> None:
        host, port = parse_hostport(control)
        try:
            self.api = ControlApi(host, port)  # first: a taken port fails before anything else
        except OSError as exc:
            raise AnsimError(
                f"control API cannot listen on {host}:{port} ({exc.strerror}); "
                "pass --control HOST:PORT with a free port"
            ) from None
        self.broker: EmbeddedBroker | None = None
        if broker_url is None:
            if embedded_port is None:
                # 1883 when free; otherwise (say a system mosquitto holds it) any free port.
                embedded_port = 1883 if port_free("127.0.0.1", 1883) else 0
            self.broker = EmbeddedBroker("127.0.0.1", embedded_port)
            self.broker.start()
            cfg = cfg.model_copy(
                update={
                    "broker": cfg.broker.model_copy(update={"url": self.broker.url, "tls": None})
                }
            )
        self.cfg = ensure_dev_key(cfg)
        self.hardware = SimHardware()
        self.site = Site(self.cfg, self.hardware)
        add_site_routes(self.api, self.site, self.hardware)

    def run(self) -> None:
        self.api.start()
        host, port = self.api.address
        log.info(
            "sim_ready",
            control=f"http://{host}:{port}",
            broker=self.cfg.broker.url,
            site=self.cfg.site.id,
        )
        try:
            self.site.run()
        finally:
            self.api.close()
            self.hardware.close()
            if self.broker is not None:
                self.broker.stop()

    def stop_soon(self) -> None:
        self.site.stop_soon()


def add_site_routes(api: ControlApi, site: Site, hardware: SimHardware) -> None:
    def get_state(params: dict[str, str], body: Any) -> tuple[int, Any]:
        core = site.call(site.snapshot)
        return 200, {**hardware.snapshot(), "site": core}

    def post_input(params: dict[str, str], body: Any) -> tuple[int, Any]:
        name = params["name"]
        active = require_bool(body, "active")
        if name not in hardware.input_names():
            raise ApiError(404, f"no input {name!r}; inputs: {hardware.input_names()}")
        hardware.set_input(name, active)
        return 200, {"input": name, "active": active}

    api.route("GET", "/state", get_state)
    api.route("POST", "/inputs/{name}", post_input)


def data_dir_for(cfg: SiteConfig) -> Path:
    return cfg.data_dir
