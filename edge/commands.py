"""Signed command intake: size -> JSON -> schema -> key -> signature -> rights -> expiry
-> seen before? -> known name -> args -> handler. Every command gets exactly one result;
a rejected command changes nothing. Runs on the core thread."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


@dataclass(frozen=True)
class Deferred:
    """What a handler returns when part of its work is slow (e.g. a deliberately slow
    hash): ``work`` runs on the processor's worker thread, then ``finish(value)`` runs on
    the core thread and returns the result data (or raises CommandError). The core loop
    never waits for ``work``."""

    work: Callable[[], Any]
    finish: Callable[[Any], dict[str, Any] | None]


Handler = Callable[[Any, "CommandContext"], "dict[str, Any] | Deferred | None"]

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
class _WorkFailed:
    exc: Exception


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
        post: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.post = post
        self._executor: ThreadPoolExecutor | None = None
        self._running: dict[str, int] = {}  # deferred command_id -> replays seen meanwhile
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
        if isinstance(result, tuple):  # deferred: the result follows from _finish
            cid, deferred = result
            self._start_deferred(cid, deferred, remember_until)
            return
        if result is None:  # a replay of a command still running: answered when it ends
            return
        self._send(result, remember_until)

    def _send(self, result: Result, remember_until: float | None, copies: int = 1) -> None:
        body = result.model_dump_json().encode("utf-8")
        if remember_until is not None and result.command_id is not None:
            self.store.remember_command(result.command_id, remember_until, body)
        code = result.error.code if result.error else None
        log.info("command_result", command_id=result.command_id, ok=result.ok, code=code)
        for _ in range(copies):
            self.send_result(body)

    def _start_deferred(self, cid: str, d: Deferred, until: float | None) -> None:
        if self.post is None:  # no core loop to come back to: run it here
            self._finish(cid, d, until, self._work(d))
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ansim-cmd")
        self._running[cid] = 0
        post = self.post

        def run() -> None:
            value = self._work(d)
            post(lambda: self._finish(cid, d, until, value))

        self._executor.submit(run)

    @staticmethod
    def _work(d: Deferred) -> Any:
        try:
            return d.work()
        except Exception as exc:
            return _WorkFailed(exc)

    def _finish(self, cid: str, d: Deferred, until: float | None, value: Any) -> None:
        replays = self._running.pop(cid, 0)
        now = self.clock.now()
        if isinstance(value, _WorkFailed):
            exc = value.exc
            result = make_result(cid, now, error=("failed", f"{type(exc).__name__}: {exc}"))
        else:
            try:
                result = make_result(cid, now, data=d.finish(value) or {})
            except CommandError as exc:
                result = make_result(cid, now, error=(exc.code, exc.message))
            except Exception as exc:
                log.exception("command_handler_failed", command_id=cid)
                result = make_result(cid, now, error=("failed", f"{type(exc).__name__}: {exc}"))
        self._send(result, until, copies=1 + replays)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _process(
        self, topic_name: str | None, payload: bytes
    ) -> tuple[bytes | None, Result | tuple[str, Deferred] | None, float | None]:
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
        if cmd.command_id in self._running:
            self._running[cmd.command_id] += 1
            log.info("command_replayed_while_running", command_id=cmd.command_id)
            return None, None, None
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
        if isinstance(data, Deferred):
            return None, (cmd.command_id, data), until
        return None, make_result(cid, now, data=data or {}), until
