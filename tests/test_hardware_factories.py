"""Each device kind brings its own hardware factories (``DeviceKind.hardware``): the real one
in ``drivers/factories/<kind>.py``, the simulated one in ``simulator/factories/<kind>.py``,
chosen by the platform the site runs on (``Hardware.for_kind``) and nowhere else."""

from __future__ import annotations

import inspect
import pkgutil
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.base import HardwareFactory
from drivers.gpio import GpioHardware
from edge.devices.registry import KINDS
from simulator.hardware import SimHardware

WITH_HARDWARE = [k for k in KINDS if k.hardware is not None]


class Made:
    def __init__(self, platform: Any) -> None:
        self.platform = platform


class RealMade(Made):
    pass


class SimMade(Made):
    pass


SPEC = HardwareFactory(real=f"{__name__}:RealMade", sim=f"{__name__}:SimMade")


def methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize("kind", WITH_HARDWARE, ids=lambda k: k.name)
def test_a_kinds_real_and_simulated_hardware_offer_the_same_methods(kind: Any) -> None:
    """The simulated one implements the kind's protocol (mypy checks it); the real one must
    offer the same (it cannot name the protocol: drivers/ import nothing from edge/)."""
    real = pkgutil.resolve_name(kind.hardware.real)
    sim = pkgutil.resolve_name(kind.hardware.sim)
    assert kind.hardware.real.startswith(f"drivers.factories.{kind.name}:")
    assert kind.hardware.sim.startswith(f"simulator.factories.{kind.name}:")
    own = {n: s for n, s in methods(sim).items() if n != "coil_intervals"}
    assert own and {n: s for n, s in methods(real).items() if n in own} == own


def test_the_platform_chooses_real_or_simulated_and_makes_each_kind_once() -> None:
    real = GpioHardware(MockFactory())
    try:
        made = real.for_kind("x", SPEC)
        assert type(made) is RealMade and made.platform is real
        assert real.for_kind("x", SPEC) is made
    finally:
        real.close()
    sim = SimHardware()
    try:
        made = sim.for_kind("x", SPEC)
        assert type(made) is SimMade and made.platform is sim
        assert sim.for_kind("x", SPEC) is made and sim.kinds == {"x": made}
    finally:
        sim.close()


def test_a_simulated_kinds_hardware_can_be_replaced() -> None:
    sim = SimHardware(factories={"x": lambda hw: ("mine", hw)})
    try:
        assert sim.for_kind("x", SPEC) == ("mine", sim)
    finally:
        sim.close()
