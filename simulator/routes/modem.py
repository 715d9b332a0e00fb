"""The modem's simulated controls: ``GET /modem`` and ``POST /modem`` (docs/simulator-api.md,
"GET /modem and POST /modem"), when the site has a modem."""

from __future__ import annotations

from typing import Any

from edge.site import Site
from simulator.control import ApiError, ControlApi
from simulator.factories import modem
from simulator.hardware import SimHardware
from simulator.modem_device import CalleeBehaviour


def state(hardware: SimHardware) -> dict[str, Any]:
    sim = modem.sim_of(hardware)
    if sim is None:
        return {}
    return {"modem": sim.snapshot()}


def add_routes(api: ControlApi, site: Site, hardware: SimHardware) -> None:
    sim = modem.sim_of(hardware)
    if sim is None:
        return

    def get_modem(params: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, sim.snapshot()

    def post_modem(params: dict[str, str], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body:
            raise ApiError(
                400,
                "body must be an object with any of: registered, signal, callee, sms_fail, silent",
            )
        unknown = set(body) - {"registered", "signal", "callee", "sms_fail", "silent"}
        if unknown:
            raise ApiError(400, f"unknown fields: {sorted(unknown)}")
        if "callee" in body:
            try:
                behaviour = CalleeBehaviour(body["callee"])
            except ValueError:
                raise ApiError(
                    400, f"callee must be one of {[b.value for b in CalleeBehaviour]}"
                ) from None
        if "signal" in body and (
            not isinstance(body["signal"], int) or not 0 <= body["signal"] <= 99
        ):
            raise ApiError(400, "signal is the modem's rssi, 0-31 or 99 (unknown)")
        for key in ("registered", "sms_fail", "silent"):
            if key in body and not isinstance(body[key], bool):
                raise ApiError(400, f"{key} must be true or false")
        if "registered" in body:
            sim.set_registered(body["registered"])
        if "signal" in body:
            sim.set_signal(body["signal"])
        if "callee" in body:
            sim.set_callee(behaviour)
        if "sms_fail" in body:
            sim.set_sms_fail(body["sms_fail"])
        if "silent" in body:
            sim.set_silent(body["silent"])
        return 200, sim.snapshot()

    api.route("GET", "/modem", get_modem)
    api.route("POST", "/modem", post_modem)
