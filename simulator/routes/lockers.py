"""The locker bank's simulated controls (docs/simulator-api.md, "Parcel lockers"): doors,
item sensors, jams, boards, the pickup-code reader and the coil log, when the site has
lockers; the boards' part of ``GET /state``."""

from __future__ import annotations

from typing import Any

from edge.devices.lockers.controller import LockerBank
from edge.site import Site
from simulator.control import ApiError, ControlApi, require_bool
from simulator.factories import lockers
from simulator.hardware import SimHardware
from simulator.modbus_device import SimulatedModbusBus


def state(hardware: SimHardware) -> dict[str, Any]:
    buses = lockers.of(hardware).buses
    if not buses:
        return {}
    return {"boards": {name: sim.snapshot() for name, sim in buses.items()}}


def add_routes(api: ControlApi, site: Site, hardware: SimHardware) -> None:
    if "lockers" not in site.devices:
        return
    bank = site.devices["lockers"]
    assert isinstance(bank, LockerBank)
    sims = lockers.of(hardware)

    def locker_id(params: dict[str, str]) -> int:
        try:
            n = int(params["id"])
        except ValueError:
            raise ApiError(400, f"locker id must be a number, got {params['id']!r}") from None
        if n not in bank.machine.lockers:
            raise ApiError(
                404,
                f"no locker {n}; lockers: {min(bank.machine.lockers)}-{max(bank.machine.lockers)}",
            )
        return n

    def where(n: int) -> tuple[Any, int, int] | None:
        b = bank.bus_locks.get(n)
        return None if b is None else (sims.buses[b.bus], b.board, b.lock)

    def target(
        params: dict[str, str], body: Any, key: str
    ) -> tuple[int, bool, tuple[Any, int, int] | None]:
        """The locker (checked first), the body's flag ``key``, and where the locker is."""
        n = locker_id(params)
        value = require_bool(body, key)
        return n, value, where(n)

    def door(params: dict[str, str], body: Any) -> tuple[int, Any]:
        n, is_open, w = target(params, body, "open")
        if w is None:
            hardware.set_gpio_door(n, is_open)
        elif is_open:
            w[0].open_door(w[1], w[2])
        else:
            w[0].close_door(w[1], w[2])
        return 200, {"locker": n, "open": is_open}

    def item(params: dict[str, str], body: Any) -> tuple[int, Any]:
        n, present, w = target(params, body, "present")
        if w is None:
            raise ApiError(409, f"locker {n} is a GPIO locker without an item sensor")
        if isinstance(w[0], SimulatedModbusBus):
            raise ApiError(409, f"locker {n} is on a Modbus relay board without item sensors")
        w[0].set_item(w[1], w[2], present)
        return 200, {"locker": n, "present": present}

    def jam(params: dict[str, str], body: Any) -> tuple[int, Any]:
        n, jammed, w = target(params, body, "jammed")
        if w is None:
            hardware.jam_gpio(n, jammed)
        else:
            w[0].jam(w[1], w[2], jammed)
        return 200, {"locker": n, "jammed": jammed}

    def board(params: dict[str, str], body: Any) -> tuple[int, Any]:
        sim = sims.buses.get(params["bus"])
        if sim is None:
            raise ApiError(404, f"no bus {params['bus']!r}; buses: {sorted(sims.buses)}")
        try:
            board_id = int(params["board"])
        except ValueError:
            raise ApiError(400, "board must be a number") from None
        if (params["bus"], board_id) not in bank.boards:
            raise ApiError(404, f"no board {board_id} on bus {params['bus']}")
        mode = body.get("mode") if isinstance(body, dict) else None
        if mode not in ("ok", "silent", "corrupt"):
            raise ApiError(400, 'body must be {"mode": "ok" | "silent" | "corrupt"}')
        sim.set_silent(board_id, mode == "silent")
        sim.set_corrupt(board_id, mode == "corrupt")
        return 200, {"bus": params["bus"], "board": board_id, "mode": mode}

    def code(params: dict[str, str], body: Any) -> tuple[int, Any]:
        if not sims.code_readers:
            raise ApiError(404, "this site has no code reader")
        text = body.get("code") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text or "\r" in text or "\n" in text:
            raise ApiError(400, 'body must be {"code": "<text typed on the reader>"}')
        sims.code_readers[0].type_code(text)
        return 200, {"typed": len(text)}

    def coils(params: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, {"coils": hardware.coil_intervals()}

    api.route("POST", "/lockers/{id}/door", door)
    api.route("POST", "/lockers/{id}/item", item)
    api.route("POST", "/lockers/{id}/jam", jam)
    api.route("POST", "/boards/{bus}/{board}", board)
    api.route("POST", "/code-reader", code)
    api.route("GET", "/coils", coils)
