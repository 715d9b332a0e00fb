"""The console tests' toolkit: `ansim-edge sim` (SimRunner) on a thread against a real
broker, the control API over HTTP, and a small Server-Sent Events reader."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import parse_config
from simulator.runner import SimRunner
from tests.support.wait import wait_until


@dataclass
class Answer:
    status: int
    body: Any
    content_type: str
    raw: bytes


class Sim:
    """A SimRunner serving on a free control port, its site running on a thread."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.runner = SimRunner(
            parse_config(cfg), broker_url=cfg["broker"]["url"], control="127.0.0.1:0"
        )
        self.host, self.port = self.runner.api.address
        self.base = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self.runner.run, name="test-sim", daemon=True)
        self._thread.start()
        wait_until(lambda: self.get("/state").status == 200, timeout=20, message="sim up")
        # Connected (and so subscribed to its commands) and the console's centre too.
        wait_until(
            lambda: self.state()["site"]["online"] and self.runner.console.centre.connected,
            timeout=20,
            message="site and console connected to the broker",
        )

    @property
    def site(self) -> Any:
        return self.runner.site

    @property
    def hardware(self) -> Any:
        return self.runner.hardware

    def request(self, method: str, path: str, body: Any = None, timeout: float = 35) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status, ctype = r.read(), r.status, r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        try:
            parsed = json.loads(raw) if ctype.startswith("application/json") else None
        except ValueError:
            parsed = None
        return Answer(status, parsed, ctype, raw)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Answer:
        return self.request("POST", path, body)

    def state(self) -> Any:
        return self.get("/state").body

    def stop(self) -> None:
        self.runner.stop_soon()
        self._thread.join(20)
        assert not self._thread.is_alive(), "sim did not stop"


@contextmanager
def running_sim(cfg: dict[str, Any]) -> Iterator[Sim]:
    sim = Sim(cfg)
    try:
        yield sim
    finally:
        sim.stop()


class SseReader:
    """Reads GET /events on a thread and keeps every event as (name, data, id)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(b"GET /events HTTP/1.0\r\nHost: test\r\n\r\n")
        self.events: list[tuple[str, Any, str | None]] = []
        self.raw = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        try:
            while chunk := self.sock.recv(65536):
                with self._lock:
                    self.raw += chunk
                buf += chunk
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    self._block(block.decode())
        except OSError:
            return

    def _block(self, block: str) -> None:
        name, data, ident = "message", None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line.startswith("id: "):
                ident = line[4:]
        if data is not None:
            with self._lock:
                self.events.append((name, data, ident))

    def of(self, name: str) -> list[Any]:
        with self._lock:
            return [d for n, d, _ in self.events if n == name]

    def text(self) -> str:
        with self._lock:
            return self.raw.decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)


def shelter_cfg(
    broker_url: str, data_dir: Path, keys: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """A shelter store with a modem, fast reconnects and a short escalation."""
    cfg: dict[str, Any] = {
        "site": {"id": "shelter-console-01", "address": "서울특별시 중구 세종대로 110"},
        "broker": {
            "url": broker_url,
            "keepalive_s": 5,
            "reconnect": {"min_s": 0.05, "max_s": 0.3},
        },
        "data_dir": str(data_dir),
        "keys": keys,
        "devices": {
            "panic_buttons": [
                {"name": "panic-counter", "pin": 17, "contact": "nc", "debounce_ms": 20}
            ],
            "sent_led": {"pin": 22},
            "ack_led": {"pin": 23},
            "buzzer": {"pin": 24},
            "reset_key": {"pin": 27, "contact": "no", "debounce_ms": 20},
            "modem": {"url": "/dev/ttyUSB2", "check_interval_s": 30},
        },
        "escalation": {"escalate_after_s": 60, "sms_numbers": ["+821012345678"]},
    }
    cfg.update(extra)
    return cfg


def locker_cfg(broker_url: str, data_dir: Path, keys: list[dict[str, Any]]) -> dict[str, Any]:
    """Two CU16 boards (lockers 1-32), two GPIO lockers (33, 34) and a code reader."""
    return {
        "site": {"id": "locker-console-01"},
        "broker": {"url": broker_url, "keepalive_s": 5, "reconnect": {"min_s": 0.05, "max_s": 0.3}},
        "data_dir": str(data_dir),
        "keys": keys,
        "devices": {
            "lockers": {
                "pulse_ms": 300,
                "cooldown_ms": 500,
                "open_timeout_s": 2,
                "buses": [
                    {
                        "name": "rs485-0",
                        "url": "/dev/ttyUSB0",
                        "poll_hz": 10,
                        "boards": [
                            {"id": 0, "first_locker": 1, "locks": 16},
                            {"id": 1, "first_locker": 17, "locks": 16},
                        ],
                    }
                ],
                "gpio": [
                    {"locker": 33, "solenoid_pin": 22, "door_pin": 5, "door_contact": "no"},
                    {"locker": 34, "solenoid_pin": 23, "door_pin": 6, "door_contact": "no"},
                ],
                "code_reader": {"url": "/dev/ttyACM0"},
            }
        },
    }
