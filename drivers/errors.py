"""The root of ansim-edge's exception hierarchy and the errors drivers raise.

It lives here, below both ``drivers/`` and ``edge/``, because drivers import nothing from
``edge/`` (tests/test_driver_imports.py enforces it). ``edge.core.errors`` re-exports every name
below and adds the core's own errors, so ``from edge.core.errors import X`` works for all of them.
Every message says what to do about it.
"""

from __future__ import annotations


class AnsimError(Exception):
    """Base of every error ansim-edge raises on purpose."""


class HardwareError(AnsimError):
    """A device could not be opened, read or driven."""


class GpioUnavailableError(HardwareError):
    """This machine has no usable GPIO (not a Raspberry Pi, or lgpio missing)."""


class InputFaultError(HardwareError):
    """An input could not be read; callers must report a fault, never assume 'quiet'."""


class CoilSafetyError(HardwareError):
    """A coil pulse was refused because it would break a safety limit."""
