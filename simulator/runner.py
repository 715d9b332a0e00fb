"""`ansim-edge sim`: the production Site on simulated hardware, plus the control API
and (without --broker) an embedded broker."""

from __future__ import annotations

import tempfile
from pathlib import Path

import structlog

from edge.config import BrokerConfig, SiteConfig, TrustedKey
from edge.core.errors import AnsimError, ConfigError
from edge.core.signing import generate_keypair
from edge.health import status_file_path
from edge.site import Site
from simulator.broker import DEFAULT_PORT, EmbeddedBroker, choose_port
from simulator.clock import SimClock, add_clock_routes
from simulator.control import ControlApi
from simulator.hardware import SimHardware
from simulator.link import LinkProxy
from simulator.routes import add_site_routes, site_state

log = structlog.get_logger(__name__)

DEV_KEY_ID = "dev"


def ensure_dev_key(cfg: SiteConfig) -> SiteConfig:
    """A config without trusted keys gets a development key pair in its data dir (sim only)."""
    if cfg.keys:
        return cfg
    try:
        priv, pub = _dev_keypair(cfg.data_dir / "dev-keys")
    except OSError as exc:
        # An unusable data dir must not stop the site (it runs with a degraded store).
        keydir = Path(tempfile.mkdtemp(prefix="ansim-dev-keys-"))
        log.warning("dev_key_dir_unusable", data_dir=str(cfg.data_dir), error=str(exc))
        priv, pub = _dev_keypair(keydir)
    log.warning(
        "dev_key_trusted",
        key_id=DEV_KEY_ID,
        private_key=str(priv),
        hint=f"sign with: ansim-edge sign --key {priv} --key-id {DEV_KEY_ID} --site {cfg.site.id}",
    )
    key = TrustedKey(key_id=DEV_KEY_ID, public_key=pub, commands=["*"])
    return cfg.model_copy(update={"keys": [key]})


def _dev_keypair(keydir: Path) -> tuple[Path, Path]:
    priv, pub = keydir / f"{DEV_KEY_ID}.key", keydir / f"{DEV_KEY_ID}.pub"
    if not pub.exists():
        if priv.exists():
            priv.unlink()
        generate_keypair(priv, pub)
    return priv, pub


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
        config_path: Path | None = None,
        prog: str = "ansim-edge",
        announce: bool = True,
        config_broker_url: str | None = None,
    ) -> None:
        self.config_path = config_path
        self.prog = prog
        self.announce = announce
        # The config file's broker URL (before --broker): `watch --config` connects there.
        self.config_broker_url = config_broker_url or cfg.broker.url
        host, port = parse_hostport(control)
        try:
            self.api = ControlApi(host, port)  # first: a taken port fails before anything else
        except OSError as exc:
            raise AnsimError(
                f"control API cannot listen on {host}:{port} ({exc.strerror}); "
                "pass --control HOST:PORT with a free port"
            ) from None
        self.broker: EmbeddedBroker | None = None
        self.port_moved = False  # the default 1883 was taken: the embedded broker is elsewhere
        if broker_url is None:
            if embedded_port is None:
                # 1883 when free; otherwise (say a system mosquitto holds it) any free port.
                embedded_port = choose_port("127.0.0.1")
                self.port_moved = embedded_port != DEFAULT_PORT
            self.broker = EmbeddedBroker("127.0.0.1", embedded_port)
            self.broker.start()
            cfg = cfg.model_copy(
                update={
                    "broker": cfg.broker.model_copy(
                        update={"url": self.broker.url, "urls": None, "tls": None}
                    )
                }
            )
        made_dev_key = not cfg.keys
        self.cfg = ensure_dev_key(cfg)
        # The site reaches its broker through the link relay, so the console can cut it.
        self.broker_cfg = self.cfg.broker
        self.link = link_for(self.broker_cfg)
        site_cfg = self.cfg
        if self.link is not None:
            relayed = self.broker_cfg.model_copy(update={"url": self.link.url})
            site_cfg = self.cfg.model_copy(update={"broker": relayed})
        self.dev_key: Path | None = None
        if made_dev_key:
            self.dev_key = self.cfg.keys[0].public_key.with_suffix(".key")
        self.clock = SimClock(self.cfg.data_dir)
        self.hardware = SimHardware()
        self.site = Site(
            site_cfg,
            self.hardware,
            clock=self.clock,
            status_file=status_file_path(self.cfg.data_dir),
        )
        add_site_routes(self.api, self.site, self.hardware)
        add_clock_routes(self.api, self.clock)
        from simulator.console import Console

        dev = next((k for k in self.cfg.keys if k.key_id == DEV_KEY_ID), None)
        self.console = Console(
            self.api,
            self.site,
            self.hardware,
            state=lambda: site_state(self.site, self.hardware),
            broker=self.broker_cfg,
            link=self.link,
            dev_key=(
                (DEV_KEY_ID, dev.public_key.with_name(f"{DEV_KEY_ID}.key"))
                if made_dev_key and dev is not None
                else None
            ),
        )
        from simulator.scenario_routes import ScenarioService

        self.scenarios = ScenarioService(self)
        self.scenarios.routes(self.api)

    def run(self) -> None:
        if self.link is not None:
            self.link.start()
        self.console.start()
        self.api.start()
        host, port = self.api.address
        log.info(
            "sim_ready",
            control=f"http://{host}:{port}",
            console=f"http://{host}:{port}/",
            broker=self.broker_cfg.url,
            site=self.cfg.site.id,
        )
        if self.announce:
            print(self.banner(), flush=True)
        try:
            self.site.run()
        finally:
            self.scenarios.close()
            self.api.close()
            self.console.close()
            self.hardware.close()
            if self.link is not None:
                self.link.close()
            if self.broker is not None:
                self.broker.stop()

    def stop_soon(self) -> None:
        self.site.stop_soon()

    @property
    def console_url(self) -> str:
        host, port = self.api.address
        return f"http://{host}:{port}/"

    def banner(self) -> str:
        """A few lines for the person who started the simulator (stdout, docs/cli.md)."""
        cfg = self.cfg
        where = f" ({self.config_path})" if self.config_path is not None else ""
        broker = cfg.broker.url
        if self.broker is not None:
            broker += (
                f"  (embedded; {DEFAULT_PORT} was taken)" if self.port_moved else "  (embedded)"
            )
        watch = f"{self.prog} watch --config {self.config_path or 'FILE'}"
        if cfg.broker.url != self.config_broker_url:
            watch += f" --broker {cfg.broker.url}"
        lines = [
            f"ansim-edge sim: site {cfg.site.id}{where}",
            f"  console     {self.console_url}  (control API: docs/simulator-api.md)",
            f"  broker      {broker}",
            f"  data dir    {cfg.data_dir}",
        ]
        if self.dev_key is not None:
            lines.append(f"  dev key     {self.dev_key}  (key id {DEV_KEY_ID})")
        if self.clock.offset_s:
            lines.append(f"  site clock  {self.clock.offset_s / 3600:+.1f} h (POST /clock)")
        lines += [f"  watch it    {watch}", "  stop        Ctrl-C"]
        return "\n".join(lines)


def link_for(broker: BrokerConfig) -> LinkProxy | None:
    """A relay to a plain mqtt:// broker; None for mqtts:// (TLS checks the host name)."""
    if broker.uses_tls or broker.tls is not None:
        return None
    return LinkProxy(broker.host, broker.port)
