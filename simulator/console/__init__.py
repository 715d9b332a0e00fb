"""The technician's console: a web page served by ``ansim-edge sim`` on its control port
(``GET /``), with the live event stream it draws from (``GET /events``), a little control
centre (``POST /centre/commands``) and the site's network link (``GET/POST /link``).
docs/simulator-api.md#the-console describes all of it.

The page is plain HTML, CSS and JavaScript modules shipped in ``static/`` (package data):
no build step, nothing fetched from the network. Everything a simulated device does is
driven through the control API's own routes; the page only adds what the API had not.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import structlog

from edge.config import BrokerConfig
from edge.core.clock import rfc3339
from edge.devices.kind import section
from edge.devices.lockers.config import LockersDevices
from edge.devices.lockers.controller import LockerBank
from edge.devices.panic.config import PanicDevices
from edge.site import Site
from simulator.console.centre import BadKey, Centre, masked, private_key_from_pem
from simulator.control import ApiError, ControlApi
from simulator.events_stream import EventHub, serve_sse
from simulator.factories import lockers as locker_hw
from simulator.factories import modem as modem_hw
from simulator.hardware import SimHardware
from simulator.link import MAX_CUT_S, LinkProxy

log = structlog.get_logger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
FILE_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)+$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
KEY_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SAMPLE_S = 0.1  # how often the stream looks for changes while a client is connected
HISTORY = 20  # entries of each history list in the stream's state
MAX_WAIT_S = 30.0
HISTORY_LOG = 300  # log events a page gets when it connects


def trim_histories(state: dict[str, Any]) -> dict[str, Any]:
    """The stream's copy of /state keeps the last HISTORY entries of each ever-growing
    history (output transitions, GPIO coil switchings, board unlocks and pulses)."""
    for out in state.get("outputs", {}).values():
        out["transitions"] = out.get("transitions", [])[-HISTORY:]
    if "coils" in state:
        state["coils"] = state["coils"][-HISTORY:]
    for bus in state.get("boards", {}).values():
        for key in ("unlocks", "pulses"):
            if key in bus:
                bus[key] = bus[key][-HISTORY:]
    return state


class Console:
    def __init__(
        self,
        api: ControlApi,
        site: Site,
        hardware: SimHardware,
        *,
        state: Callable[[], dict[str, Any]],
        broker: BrokerConfig,
        link: LinkProxy | None,
        dev_key: tuple[str, Path] | None,
        sample_s: float = SAMPLE_S,
        hub: EventHub | None = None,
    ) -> None:
        """``state()`` builds GET /state; ``broker`` is the broker the centre uses (the
        real one, not the site's relay); ``dev_key`` (key_id, private key path) is the
        simulator's development key, when it made one."""
        self.site = site
        self.hardware = hardware
        self.state = state
        self.broker = broker
        self.link = link
        self.dev_key = dev_key
        self.sample_s = sample_s
        self.hub = hub or EventHub(history=HISTORY_LOG, history_events=("mqtt", "action", "link"))
        self.centre = Centre(
            broker,
            site.topics,
            self.hub,
            now=site.clock.now,
            max_payload_bytes=site.cfg.commands.max_payload_bytes,
        )
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        if link is not None:
            link.on_change = self._link_changed
        api.raw_route("GET", "/", lambda h, p: self._static(h, "index.html"))
        api.raw_route("GET", "/console/{file}", lambda h, p: self._static(h, p["file"]))
        api.raw_route("GET", "/events", self._events)
        api.route("GET", "/site", lambda p, b: (200, self.describe()))
        api.route("POST", "/centre/commands", self._send)
        api.route("GET", "/link", self._get_link)
        api.route("POST", "/link", self._post_link)
        api.observers.append(self._action)

    def _link_changed(self, snap: dict[str, Any]) -> None:
        self.hub.publish("link", snap)

    # ---- lifecycle ----
    def start(self) -> None:
        self.centre.start()
        self._sampler = threading.Thread(target=self._sample_loop, name="sim-console", daemon=True)
        self._sampler.start()

    def close(self) -> None:
        self._stop.set()
        self.hub.close()
        self.centre.close()
        if self._sampler is not None:
            self._sampler.join(5)

    def _bank(self) -> LockerBank | None:
        bank = self.site.devices.get("lockers")
        assert bank is None or isinstance(bank, LockerBank)
        return bank

    # ---- what the page draws ----
    def describe(self) -> dict[str, Any]:
        """The site as configured: what to draw (GET /site)."""
        cfg = self.site.cfg
        d = cfg.devices
        panic = section(d, PanicDevices)
        inputs = self.hardware.input_names()
        out: dict[str, Any] = {
            "site": cfg.site.id,
            "name": cfg.site.name,
            "address": cfg.site.address,
            "topic_root": cfg.topic_root,
            "broker": self.broker.url,
            "link": self.link is not None,
            "inputs": inputs,
            "panic_buttons": [
                {
                    "name": b.name,
                    "contact": b.contact,
                    "mode": b.mode,
                    "debounce_ms": b.debounce_ms,
                    "hold_ms": b.hold_ms,
                    "supervision": (
                        f"{b.name}-supervision" if f"{b.name}-supervision" in inputs else None
                    ),
                    "chatter_max": b.chatter_max,
                    "chatter_window_s": b.chatter_window_s,
                }
                for b in panic.panic_buttons
            ],
            "reset_key": (
                {"debounce_ms": panic.reset_key.debounce_ms}
                if panic.reset_key is not None
                else None
            ),
            "outputs": [n for n in ("sent_led", "ack_led", "buzzer") if getattr(d, n) is not None],
            "lockers": [],
            "boards": [],
            "code_reader": bool(locker_hw.of(self.hardware).code_readers),
            "modem": modem_hw.sim_of(self.hardware) is not None,
            "keys": [{"key_id": k.key_id, "commands": list(k.commands)} for k in cfg.keys],
            "dev_key": (
                {"key_id": self.dev_key[0], "path": str(self.dev_key[1])} if self.dev_key else None
            ),
            "commands": self.site.commands.names,
        }
        bank = self._bank()
        if bank is not None:
            boards: dict[tuple[str, int], list[int]] = {}
            for n, where in sorted(bank.bus_locks.items()):
                sim = locker_hw.of(self.hardware).buses.get(where.bus)
                protocol = _protocol(sim)
                out["lockers"].append(
                    {
                        "locker": n,
                        "kind": protocol,
                        "bus": where.bus,
                        "board": where.board,
                        "lock": where.lock,
                    }
                )
                boards.setdefault((where.bus, where.board), []).append(n)
            for (bus, board), numbers in boards.items():
                out["boards"].append(
                    {
                        "bus": bus,
                        "board": board,
                        "protocol": _protocol(locker_hw.of(self.hardware).buses.get(bus)),
                        "first_locker": min(numbers),
                        "last_locker": max(numbers),
                    }
                )
            lockers = section(d, LockersDevices).lockers
            for g in lockers.gpio if lockers is not None else []:
                out["lockers"].append({"locker": g.locker, "kind": "gpio"})
            out["lockers"].sort(key=lambda x: x["locker"])
        return out

    def view(self) -> dict[str, Any]:
        """GET /state, its histories trimmed, plus ``lockers_hw``, ``link``, ``centre``."""
        state = self.state()
        if self._bank() is not None:
            state["lockers_hw"] = self._lockers_hw(state)
        trim_histories(state)
        state["link"] = self._link_snapshot()
        state["centre"] = self.centre.snapshot()
        return state

    def _lockers_hw(self, state: dict[str, Any]) -> dict[str, Any]:
        """Each locker's simulated hardware, one shape for CU16, Modbus and GPIO."""
        bank = self._bank()
        assert bank is not None
        out: dict[str, Any] = {}
        boards = state.get("boards", {})
        for n, where in bank.bus_locks.items():
            b = boards.get(where.bus, {}).get("boards", {}).get(str(where.board))
            if b is None:
                continue
            i = where.lock - 1

            def bit(key: str, b: dict[str, Any] = b, i: int = i) -> bool | None:
                values = b.get(key)
                return bool(values[i]) if isinstance(values, list) and i < len(values) else None

            coil = bit("coil_energised")
            out[str(n)] = {
                "door_open": bit("door_open"),
                "forced": bit("forced"),
                "jammed": bit("jammed"),
                "coil": coil if coil is not None else bit("relay_on"),
                "item": bit("items"),
            }
        coils_on: dict[str, bool] = {}
        for c in state.get("coils", []):
            coils_on[c["name"]] = bool(c["on"])
        inputs = state.get("inputs", {})
        lockers = section(self.site.cfg.devices, LockersDevices).lockers
        gpio = lockers.gpio if lockers is not None else []
        for n in (g.locker for g in gpio):
            door = inputs.get(f"door-{n}")
            out[str(n)] = {
                "door_open": None if door is None else not door["active"],
                "forced": None,
                "jammed": self.hardware.gpio_jammed(n),
                "coil": coils_on.get(f"coil-{n}", False),
                "item": None,
            }
        return out

    def _link_snapshot(self) -> dict[str, Any]:
        if self.link is None:
            return {"available": False, "cut": False}
        return {"available": True, **self.link.snapshot()}

    def _sample_loop(self) -> None:
        """While a client is connected: every ``sample_s`` build the view and publish the
        members that changed (a ``state`` event)."""
        last: dict[str, str] = {}
        failing = False
        while not self._stop.is_set():
            if not self.hub.wait_for_clients(1.0):
                last = {}  # a new client gets the whole state in its greeting anyway
                continue
            if self.site.loop.stopping:
                self._stop.wait(self.sample_s)  # the site is shutting down: its core is busy
                continue
            try:
                view = self.view()
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("console_state_failed", error=f"{type(exc).__name__}: {exc}")
                failing = True
                self._stop.wait(1.0)
                continue
            changed: dict[str, Any] = {}
            for key, value in view.items():
                text = json.dumps(value, sort_keys=True, default=str)
                if last.get(key) != text:
                    last[key] = text
                    changed[key] = value
            if changed:
                self.hub.publish("state", changed)
            self._stop.wait(self.sample_s)

    # ---- routes ----
    def _static(self, handler: BaseHTTPRequestHandler, name: str) -> None:
        path = STATIC / name
        ctype = CONTENT_TYPES.get(path.suffix)
        if not FILE_RE.match(name) or ctype is None or not path.is_file():
            body = json.dumps({"error": f"no such file: {name}"}).encode()
            handler.send_response(404)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
        else:
            body = path.read_bytes()
            handler.send_response(200)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _events(self, handler: BaseHTTPRequestHandler, params: dict[str, str]) -> None:
        serve_sse(handler, self.hub, self._greeting)

    def _greeting(self) -> list[tuple[str, Any]]:
        stream = {"instance": self.hub.instance, "history": HISTORY_LOG}
        return [("hello", {**self.describe(), "stream": stream}), ("state", self.view())]

    def _send(self, params: dict[str, str], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, 'body must be {"name": ..., "args": {...}, "key": "dev"}')
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 64:
            raise ApiError(400, "name must be a command name such as alarm.ack")
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise ApiError(400, "args must be an object")
        ttl_s = _number(body, "ttl_s", 300.0, 1.0, 3600.0)
        wait_s = _number(body, "wait_s", 5.0, 0.0, MAX_WAIT_S)
        if body.get("key") == "dev" and "key_pem" not in body:
            if self.dev_key is None:
                raise ApiError(
                    409,
                    "this simulator has no development key (the config has trusted keys): "
                    "sign with a private key file (key_pem and key_id)",
                )
            key_id, path = self.dev_key
            try:
                key = private_key_from_pem(path.read_text(encoding="utf-8"))
            except (OSError, BadKey) as exc:
                raise ApiError(500, f"the development key {path} is unusable: {exc}") from None
        else:
            pem, given_id = body.get("key_pem"), body.get("key_id")
            if not isinstance(pem, str) or not pem.strip():
                raise ApiError(400, 'give "key": "dev" or a private key file as "key_pem"')
            if not isinstance(given_id, str) or not KEY_ID_RE.match(given_id):
                raise ApiError(400, "key_id must be 1-64 of A-Z a-z 0-9 . _ -")
            key_id = given_id
            try:
                key = private_key_from_pem(pem)
            except BadKey as exc:
                raise ApiError(400, f"key_pem: {exc}") from None
        if not self.centre.connected:
            raise ApiError(503, f"the console is not connected to the broker {self.broker.url}")
        try:
            sent = self.centre.send(name, args, key, key_id, ttl_s=ttl_s, wait_s=wait_s)
        except ConnectionError as exc:
            raise ApiError(503, str(exc)) from None
        return 200, sent

    def _get_link(self, params: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, self._link_snapshot()

    def _post_link(self, params: dict[str, str], body: Any) -> tuple[int, Any]:
        if self.link is None:
            raise ApiError(
                409,
                "the link cannot be cut with this broker: the relay carries plain mqtt:// "
                "only (a TLS connection is checked against the broker's host name)",
            )
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= MAX_CUT_S
        ):
            raise ApiError(400, f'body must be {{"seconds": <0-{MAX_CUT_S:g}>}} (0 restores)')
        self.link.cut(float(seconds))
        return 200, self._link_snapshot()

    def _action(self, path: str, body: Any, status: int, response: Any) -> None:
        """Every answered POST of the control API, for the page's log (secrets masked)."""
        if path.startswith("/centre/"):
            return  # the centre's commands and results come from the broker
        if path == "/code-reader" and isinstance(body, dict) and "code" in body:
            body = {**body, "code": "******"}
        self.hub.publish(
            "action",
            {
                "path": path,
                "body": body,
                "status": status,
                "response": response,
                "at": rfc3339(datetime.now(UTC)),
            },
        )


def _protocol(sim: Any) -> str:
    if sim is None:
        return "cu16"
    try:
        return "modbus" if sim.snapshot().get("protocol") == "modbus-rtu" else "cu16"
    except Exception:
        return "cu16"


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ApiError(400, f"{key} must be a number from {lo:g} to {hi:g}")
    return float(value)


__all__ = ["Console", "masked"]
