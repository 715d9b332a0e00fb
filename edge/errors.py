"""One exception hierarchy for ansim-edge. Every message says what to do about it."""

from __future__ import annotations


class AnsimError(Exception):
    """Base of every error ansim-edge raises on purpose."""


class ConfigError(AnsimError):
    """The configuration file is missing or invalid; the message lists every field path."""


class HardwareError(AnsimError):
    """A device could not be opened, read or driven."""


class GpioUnavailableError(HardwareError):
    """This machine has no usable GPIO (not a Raspberry Pi, or lgpio missing)."""


class InputFaultError(HardwareError):
    """An input could not be read; callers must report a fault, never assume 'quiet'."""


class CoilSafetyError(HardwareError):
    """A coil pulse was refused because it would break a safety limit."""


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
