"""Helpers for end-to-end tests: configs, keys, signed commands, running sites."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.config import SiteConfig, parse_config
from edge.core.clock import rfc3339
from edge.core.signing import generate_keypair, load_private_key, sign_command
from edge.site import Site
from simulator.hardware import SimHardware
from tests.support.mqtt import Mosquitto, Subscriber, free_port
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Keys:
    dir: Path
    centre: Ed25519PrivateKey
    tech: Ed25519PrivateKey
    stranger: Ed25519PrivateKey

    def trusted(self) -> list[dict[str, Any]]:
        return [
            {"key_id": "centre", "public_key": str(self.dir / "centre.pub"), "commands": ["*"]},
            {
                "key_id": "tech",
                "public_key": str(self.dir / "tech.pub"),
                "commands": ["site.test_mode", "locker.open"],
            },
        ]


def make_keys(d: Path) -> Keys:
    for name in ("centre", "tech", "stranger"):
        generate_keypair(d / f"{name}.key", d / f"{name}.pub")
    return Keys(
        d,
        load_private_key(d / "centre.key"),
        load_private_key(d / "tech.key"),
        load_private_key(d / "stranger.key"),
    )


def site_dict(
    site_id: str,
    broker_url: str,
    data_dir: Path,
    keys: Keys,
    *,
    protocol: str = "3.1.1",
    debounce_ms: int = 20,
    mode: str = "silent",
    chatter_max: int = 1000,  # the bursts in these tests are deliberate, not chatter
    **broker_extra: Any,
) -> dict[str, Any]:
    return {
        "site": {"id": site_id, "address": "서울특별시 중구 세종대로 110", "cameras": ["cam-1"]},
        "broker": {
            "url": broker_url,
            "protocol": protocol,
            "keepalive_s": 5,
            "reconnect": {"min_s": 0.05, "max_s": 0.5},
            **broker_extra,
        },
        "data_dir": str(data_dir),
        "keys": keys.trusted(),
        "devices": {
            "panic_buttons": [
                {
                    "name": "panic-1",
                    "pin": 17,
                    "contact": "nc",
                    "debounce_ms": debounce_ms,
                    "mode": mode,
                    "chatter_max": chatter_max,
                }
            ],
            "sent_led": {"pin": 22},
            "ack_led": {"pin": 23},
            "buzzer": {"pin": 24},
            "reset_key": {"pin": 27, "contact": "no", "debounce_ms": debounce_ms},
        },
    }


def command(
    name: str,
    args: dict[str, Any],
    key: Ed25519PrivateKey | None,
    key_id: str = "centre",
    *,
    site: str,
    ttl_s: float = 60.0,
    command_id: str | None = None,
) -> dict[str, Any]:
    """A command for ``site`` (its site.id), signed with ``key`` (None: unsigned)."""
    cmd = {
        "command_id": command_id or str(uuid.uuid4()),
        "site": site,
        "name": name,
        "args": args,
        "expires_at": rfc3339(datetime.now(UTC) + timedelta(seconds=ttl_s)),
        "key_id": key_id,
    }
    return sign_command(cmd, key) if key is not None else cmd


class RunningSite:
    def __init__(self, cfg: SiteConfig) -> None:
        self.cfg = cfg
        self.hw = SimHardware()
        self.site = Site(cfg, self.hw)
        self.site.start_thread()

    def alarm(self) -> dict[str, Any]:
        return dict(self.site.call(lambda: self.site.shelter.machine.public_state()))  # type: ignore[union-attr,arg-type]

    def output(self, name: str) -> bool:
        return bool(self.hw.snapshot()["outputs"][name]["on"])

    def press(self, active: bool = True) -> None:
        self.hw.set_input("panic-1", active)

    def stop(self) -> None:
        self.site.stop_soon()
        self.site.join(10)
        self.hw.close()


@contextmanager
def running_site(cfg_dict: dict[str, Any]) -> Iterator[RunningSite]:
    rs = RunningSite(parse_config(cfg_dict))
    try:
        yield rs
    finally:
        rs.stop()


class SimProcess:
    """`ansim-edge sim` as a real child process (for SIGKILL tests)."""

    def __init__(self, cfg_dict: dict[str, Any], workdir: Path, broker_url: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.cfg_path = workdir / "site.yaml"
        self.cfg_path.write_text(json.dumps(cfg_dict), encoding="utf-8")  # JSON is YAML
        self.port = free_port()
        self.log_path = workdir / f"sim-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge.cli",
                "sim",
                "--config",
                str(self.cfg_path),
                "--broker",
                broker_url,
                "--control",
                f"127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
        wait_until(self._api_up, timeout=20, message=f"sim control API up ({self.log_path})")

    def _api_up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"sim exited {self.proc.returncode}: {self.log_path.read_text()}")
        try:
            self.get("/state")
            return True
        except OSError:
            return False

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def post(self, path: str, body: Any) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(15)
        self._log.close()
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()


def persistent_broker(tmp_path: Path) -> Mosquitto:
    store = tmp_path / "broker-store"
    store.mkdir()
    return Mosquitto(
        tmp_path / "broker",
        extra_config=f"persistence true\npersistence_location {store}/\nautosave_interval 1",
    ).start()


class SessionSubscriber(Subscriber):
    """A subscriber with a persistent session, so a broker restart queues for it."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        super().__init__(
            broker.host,
            broker.port,
            [topic],
            client_id="centre-" + uuid.uuid4().hex[:6],
            clean_session=False,
        )
