"""Signed command intake: size -> JSON -> schema -> key -> signature -> rights -> expiry
-> seen before? -> known name -> args -> handler. Every command gets exactly one result;
a rejected command changes nothing. Runs on the core thread."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ValidationError

from edge.clock import Clock
from edge.config import TrustedKey
from edge.errors import CommandError
from edge.models import Command, Result, make_result
from edge.signing import load_public_key, verify_command
from edge.store import Store

log = structlog.get_logger(__name__)

Handler = Callable[[Any, "CommandContext"], dict[str, Any] | None]

ERROR_CODES = (
    "too_large",
    "bad_json",
    "bad_schema",
    "unknown_key",
    "bad_signature",
    "not_allowed",
    "expired",
    "unknown_command",
    "invalid_args",
    "failed",
)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot go back out in a result
        return False
    return True


@dataclass(frozen=True)
class CommandContext:
    command_id: str
    key_id: str
    name: str


@dataclass(frozen=True)
class LoadedKey:
    key_id: str
    public_key: Ed25519PublicKey
    patterns: tuple[str, ...]

    def allows(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


def load_keys(keys: list[TrustedKey]) -> dict[str, LoadedKey]:
    """Load every trusted public key now, so a bad key file fails at start."""
    return {
        k.key_id: LoadedKey(k.key_id, load_public_key(k.public_key), tuple(k.commands))
        for k in keys
    }


@dataclass(frozen=True)
class _Registered:
    args_model: type[BaseModel]
    fn: Handler


class CommandProcessor:
    def __init__(
        self,
        keys: dict[str, LoadedKey],
        store: Store,
        clock: Clock,
        *,
        max_payload_bytes: int,
        send_result: Callable[[bytes], None],
    ) -> None:
        self.keys = keys
        self.store = store
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.send_result = send_result
        self._handlers: dict[str, _Registered] = {}

    def register(self, name: str, args_model: type[BaseModel], fn: Handler) -> None:
        if name in self._handlers:
            raise ValueError(f"command {name} registered twice")
        self._handlers[name] = _Registered(args_model, fn)

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    def handle(self, topic_name: str | None, payload: bytes) -> None:
        """Process one inbound command message and queue exactly one result."""
        cached, result, remember_until = self._process(topic_name, payload)
        if cached is not None:
            self.send_result(cached)
            return
        assert result is not None
        body = result.model_dump_json().encode("utf-8")
        if remember_until is not None and result.command_id is not None:
            self.store.remember_command(result.command_id, remember_until, body)
        code = result.error.code if result.error else None
        log.info("command_result", command_id=result.command_id, ok=result.ok, code=code)
        self.send_result(body)

    def _process(
        self, topic_name: str | None, payload: bytes
    ) -> tuple[bytes | None, Result | None, float | None]:
        now = self.clock.now()

        def fail(cid: str | None, code: str, msg: str) -> tuple[None, Result, None]:
            return None, make_result(cid, now, error=(code, msg)), None

        if len(payload) > self.max_payload_bytes:
            return fail(None, "too_large", f"payload over {self.max_payload_bytes} bytes; not read")
        try:
            raw = json.loads(payload.decode("utf-8"))
        except RecursionError:
            return fail(None, "bad_json", "JSON nested too deeply")
        except (UnicodeDecodeError, ValueError) as exc:
            return fail(None, "bad_json", f"not UTF-8 JSON: {exc}")
        cid = raw.get("command_id") if isinstance(raw, dict) else None
        cid = cid if isinstance(cid, str) and 0 < len(cid) <= 64 and _encodable(cid) else None
        if not isinstance(raw, dict):
            return fail(None, "bad_schema", "a command is a JSON object")
        try:
            cmd = Command.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(object)"
            return fail(cid, "bad_schema", f"{where}: {first['msg']}")
        if topic_name is not None and topic_name != cmd.name:
            return fail(cid, "bad_schema", f"name {cmd.name!r} does not match topic {topic_name!r}")
        key = self.keys.get(cmd.key_id)
        if key is None:
            return fail(cid, "unknown_key", f"key_id {cmd.key_id!r} is not trusted by this site")
        if not verify_command(raw, key.public_key):
            return fail(cid, "bad_signature", "signature does not match the command and key")
        if not key.allows(cmd.name):
            return fail(cid, "not_allowed", f"key {cmd.key_id!r} may not issue {cmd.name!r}")
        if cmd.expires_at <= now:
            return fail(cid, "expired", f"expired at {cmd.expires_at.isoformat()}")
        seen = self.store.command_result(cmd.command_id)
        if seen is not None:
            log.info("command_replayed", command_id=cmd.command_id)
            return seen, None, None
        until = cmd.expires_at.timestamp()
        reg = self._handlers.get(cmd.name)
        if reg is None:
            return (
                None,
                make_result(cid, now, error=("unknown_command", f"no command {cmd.name!r}")),
                until,
            )
        try:
            args = reg.args_model.model_validate(cmd.args)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(args)"
            return (
                None,
                make_result(cid, now, error=("invalid_args", f"{where}: {first['msg']}")),
                until,
            )
        ctx = CommandContext(cmd.command_id, cmd.key_id, cmd.name)
        try:
            data = reg.fn(args, ctx)
        except CommandError as exc:
            return None, make_result(cid, now, error=(exc.code, exc.message)), until
        except Exception as exc:
            log.exception("command_handler_failed", command=cmd.name, command_id=cid)
            return (
                None,
                make_result(cid, now, error=("failed", f"{type(exc).__name__}: {exc}")),
                until,
            )
        return None, make_result(cid, now, data=data or {}), until
