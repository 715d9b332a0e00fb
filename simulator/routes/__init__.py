"""The simulator's control routes (docs/simulator-api.md): the site's own (``GET /state``,
``POST /inputs/{name}``) and each device kind's, from ``simulator/routes/<kind>.py`` for
every kind in the registry (``edge/devices/registry.py``) that has simulated controls.

A kind's module has two functions: ``add_routes(api, site, hardware)`` adds its routes when
the site has its devices (otherwise they answer 404 "no such endpoint"), and
``state(hardware)`` gives its part of ``GET /state`` (empty when it has none).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Protocol, cast

from edge.devices.registry import KINDS
from edge.site import Site
from simulator.control import ApiError, ControlApi, require_bool
from simulator.hardware import SimHardware


class KindRoutes(Protocol):
    """What ``simulator/routes/<kind>.py`` provides."""

    def add_routes(self, api: ControlApi, site: Site, hardware: SimHardware) -> None: ...

    def state(self, hardware: SimHardware) -> dict[str, Any]: ...


def kind_routes() -> list[KindRoutes]:
    """The route modules of the registry's kinds, in the registry's order (a kind without
    simulated controls, like the panic buttons, whose inputs are the site's, has none)."""
    out = []
    for kind in KINDS:
        name = f"{__name__}.{kind.name}"
        if importlib.util.find_spec(name) is not None:
            out.append(cast(KindRoutes, importlib.import_module(name)))
    return out


def site_state(site: Site, hardware: SimHardware) -> dict[str, Any]:
    """GET /state: the simulated hardware and the site's own view."""
    core = site.call(site.snapshot)
    out = {**hardware.snapshot(), "site": core}
    for routes in kind_routes():
        out.update(routes.state(hardware))
    return out


def add_site_routes(api: ControlApi, site: Site, hardware: SimHardware) -> None:
    def get_state(params: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, site_state(site, hardware)

    def post_input(params: dict[str, str], body: Any) -> tuple[int, Any]:
        name = params["name"]
        active = require_bool(body, "active")
        if name not in hardware.input_names():
            raise ApiError(404, f"no input {name!r}; inputs: {hardware.input_names()}")
        hardware.set_input(name, active)
        return 200, {"input": name, "active": active}

    api.route("GET", "/state", get_state)
    api.route("POST", "/inputs/{name}", post_input)
    for routes in kind_routes():
        routes.add_routes(api, site, hardware)
