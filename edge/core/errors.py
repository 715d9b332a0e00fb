"""One exception hierarchy for ansim-edge. Every message says what to do about it."""

from __future__ import annotations

# The root and the driver-level errors live in drivers.errors (drivers import nothing from
# edge/); they are re-exported here so `from edge.core.errors import X` works for every error.
from drivers.errors import (
    AnsimError,
    CoilSafetyError,
    GpioUnavailableError,
    HardwareError,
    InputFaultError,
)

__all__ = [
    "AnsimError",
    "CoilSafetyError",
    "CommandError",
    "ConfigError",
    "GpioUnavailableError",
    "HardwareError",
    "InputFaultError",
    "KeyFileError",
    "StoreError",
]


class ConfigError(AnsimError):
    """The configuration file is missing or invalid; the message lists every field path."""


class StoreError(AnsimError):
    """The durable store (SQLite in the data dir) cannot be opened or written."""


class KeyFileError(AnsimError):
    """A signing key file is missing or not an Ed25519 key in PEM format."""


class CommandError(AnsimError):
    """A command handler refuses a command; `code` goes into the result's error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
