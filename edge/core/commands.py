"""Signed command intake: size -> JSON -> schema -> key -> signature -> site -> rights ->
clock -> expiry -> ttl -> seen before? -> known name -> args -> handler (the keys and the
clock's trust: :mod:`edge.core.trust`). Every command
gets exactly one result, except that under a flood the results (and log lines) of refused
and replayed commands are rate-limited and counted (``commands.refused``); a rejected
command changes nothing. Runs on the core thread."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from edge.core.clock import Clock, rfc3339
from edge.core.errors import CommandError
from edge.core.signing import DuplicateKeyError, loads_strict, verify_command
from edge.core.store import Store
from edge.core.topics import name_levels
from edge.core.trust import CLOCK_MARK_KEY as CLOCK_MARK_KEY
from edge.core.trust import CLOCK_TOLERANCE_S as CLOCK_TOLERANCE_S
from edge.core.trust import MARK_SAVE_S, PURGE_MARGIN_S, WallClockMark
from edge.core.trust import LoadedKey as LoadedKey
from edge.core.trust import load_keys as load_keys
from edge.models import Command, CommandsRefused, Result, make_result

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
    "wrong_site",
    "not_allowed",
    "clock_untrusted",
    "expired",
    "ttl_too_long",
    "unknown_command",
    "invalid_args",
    "failed",
)

# Results and log lines of commands refused before they are accepted, and of replays:
# at most REFUSED_BURST at once, refilled at REFUSED_PER_S; the rest are counted and
# reported once per REPORT_S in one commands.refused event.
REFUSED_PER_S = 10.0
REFUSED_BURST = 20
REPORT_S = 60.0


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot go back out in a result
        return False
    return True


class TokenBucket:
    """At most ``burst`` at once, refilled at ``rate`` per second of monotonic time."""

    def __init__(self, rate: float, burst: int, monotonic: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.monotonic = monotonic
        self.tokens = float(burst)
        self.last = monotonic()

    def take(self) -> bool:
        now = self.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class _Outcome:
    """What one message comes to. ``limited``: refused before it was accepted, or a
    replay: its result and log line share the rate limit."""

    result: Result | None = None
    cached: bytes | None = None  # a replay: the remembered result, sent again
    command_id: str | None = None  # of a replay
    deferred: tuple[str, Deferred] | None = None
    until: float | None = None  # remember the result until then (accepted commands)
    limited: bool = False
    running_replay: str | None = None  # a copy of this deferred command still running
    name: str | None = None  # the command's name, once known (for the log line)
    target: dict[str, Any] | None = None  # what it acts on (for the log line)


def command_target(args: Any) -> dict[str, Any]:
    """What a command acts on, for its log lines: its ``locker`` and/or ``alarm_id``
    argument (only plain values; the arguments may not have been validated)."""
    if not isinstance(args, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("locker", "alarm_id"):
        value = args.get(key)
        if isinstance(value, int | str) and not isinstance(value, bool):
            out[key] = value if isinstance(value, int) else value[:64]
    return out


@dataclass(frozen=True)
class _WorkFailed:
    exc: Exception


@dataclass(frozen=True)
class CommandContext:
    command_id: str
    key_id: str
    name: str


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
        site_id: str,
        max_payload_bytes: int,
        send_result: Callable[[bytes], None],
        max_ttl_s: float = 600.0,
        post: Callable[[Callable[[], None]], None] | None = None,
        on_clock_change: Callable[[], None] | None = None,
        report: Callable[[CommandsRefused], object] | None = None,
        refused_per_s: float = REFUSED_PER_S,
        refused_burst: int = REFUSED_BURST,
    ) -> None:
        self.post = post
        self._executor: ThreadPoolExecutor | None = None
        self._running: dict[str, int] = {}  # deferred command_id -> replays seen meanwhile
        self.keys = keys
        self.store = store
        self.clock = clock
        self.site_id = site_id
        self.max_payload_bytes = max_payload_bytes
        self.max_ttl_s = max_ttl_s
        self.send_result = send_result
        self.on_clock_change = on_clock_change
        self.report = report
        self._handlers: dict[str, _Registered] = {}
        self.clock_mark = WallClockMark(store, clock)
        if not self.clock_mark.trusted:
            self._log_clock()
        self._limiter = TokenBucket(refused_per_s, refused_burst, clock.monotonic)
        self._suppressed: Counter[str] = Counter()
        self._suppressed_since: tuple[float, str] | None = None  # (monotonic, RFC 3339)

    def register(self, name: str, args_model: type[BaseModel], fn: Handler) -> None:
        if name in self._handlers:
            raise ValueError(f"command {name} registered twice")
        self._handlers[name] = _Registered(args_model, fn)

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def clock_trusted(self) -> bool:
        return self.clock_mark.trusted

    def handle(self, topic_levels: str | None, payload: bytes) -> None:
        """Process one inbound command message and queue exactly one result (unless it
        is refused or a replay and over the rate limit: then it is counted).
        ``topic_levels``: the topic's levels after ``commands/`` (``alarm/ack``), which
        must be the command's name with each dot a level; None skips that check."""
        out = self._process(topic_levels, payload)
        if out.limited and not self._limiter.take():
            code = "replay"
            if out.result is not None and out.result.error is not None:
                code = out.result.error.code
            self._suppress(code)
            return
        where = {"command": out.name, **(out.target or {})}
        if out.cached is not None:
            log.info("command_replayed", command_id=out.command_id, **where)
            self.send_result(out.cached)
            return
        if out.running_replay is not None:  # answered when the running command ends
            self._running[out.running_replay] += 1
            log.info("command_replayed_while_running", command_id=out.running_replay, **where)
            return
        if out.deferred is not None:  # the result follows from _finish
            cid, deferred = out.deferred
            self._start_deferred(cid, deferred, out.until, where)
            return
        assert out.result is not None
        self._send(out.result, out.until, where=where)

    # ---- periodic work (core thread) ----
    def tick(self) -> None:
        """Call every few seconds: follow the wall clock (and tell when its trust
        changes), persist its high-water mark now and then, report suppressed results."""
        self._observe_clock()
        self.clock_mark.save(min_step_s=MARK_SAVE_S)
        if (
            self._suppressed_since is not None
            and self.clock.monotonic() - self._suppressed_since[0] >= REPORT_S
        ):
            self.report_suppressed()

    def purge(self) -> int:
        """Forget remembered command ids whose expires_at is PURGE_MARGIN_S behind the
        clock's high-water mark, and persist the mark in the same transaction: the clock
        set back after a jump forward finds itself untrusted, so nothing forgotten runs
        again. Returns how many were forgotten."""
        self._observe_clock()
        self.clock_mark.save()
        return self.store.forget_commands_before(self.clock_mark.mark - PURGE_MARGIN_S)

    def report_suppressed(self) -> None:
        """Report what the rate limit held back since the last report (if anything)."""
        if self._suppressed_since is None:
            return
        data = CommandsRefused(
            suppressed=sum(self._suppressed.values()),
            codes=dict(sorted(self._suppressed.items())),
            since=self._suppressed_since[1],
        )
        self._suppressed.clear()
        self._suppressed_since = None
        log.warning("commands_refused_suppressed", count=data.suppressed, codes=data.codes)
        if self.report is not None:
            self.report(data)

    def _suppress(self, code: str) -> None:
        if self._suppressed_since is None:
            self._suppressed_since = (self.clock.monotonic(), rfc3339(self.clock.now()))
        self._suppressed[code] += 1

    def _observe_clock(self) -> bool:
        was = self.clock_mark.trusted
        now = self.clock_mark.observe()
        if now != was:
            self._log_clock()
            if self.on_clock_change is not None:
                self.on_clock_change()
        return now

    def _log_clock(self) -> None:
        mark = rfc3339(datetime.fromtimestamp(self.clock_mark.mark, UTC))
        if self.clock_mark.trusted:
            log.info("clock_trusted_again", high_water=mark)
        else:
            log.warning("clock_behind_high_water", now=rfc3339(self.clock.now()), high_water=mark)

    def _send(
        self,
        result: Result,
        remember_until: float | None,
        copies: int = 1,
        where: dict[str, Any] | None = None,
    ) -> None:
        body = result.model_dump_json().encode("utf-8")
        if remember_until is not None and result.command_id is not None:
            self.store.remember_command(result.command_id, remember_until, body)
        code = result.error.code if result.error else None
        # The command's name and what it acted on: its arguments', else its result's
        # locker / alarm id (alarm.clear may name no alarm; its result does).
        where = {"command": None, **(where or {})}
        for key, value in command_target(result.data).items():
            where.setdefault(key, value)
        log.info("command_result", command_id=result.command_id, ok=result.ok, code=code, **where)
        for _ in range(copies):
            self.send_result(body)

    def _start_deferred(
        self, cid: str, d: Deferred, until: float | None, where: dict[str, Any]
    ) -> None:
        if self.post is None:  # no core loop to come back to: run it here
            self._finish(cid, d, until, self._work(d), where)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ansim-cmd")
        self._running[cid] = 0
        post = self.post

        def run() -> None:
            value = self._work(d)
            post(lambda: self._finish(cid, d, until, value, where))

        self._executor.submit(run)

    @staticmethod
    def _work(d: Deferred) -> Any:
        try:
            return d.work()
        except Exception as exc:
            return _WorkFailed(exc)

    def _finish(
        self, cid: str, d: Deferred, until: float | None, value: Any, where: dict[str, Any]
    ) -> None:
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
                log.exception("command_handler_failed", command_id=cid, **where)
                result = make_result(cid, now, error=("failed", f"{type(exc).__name__}: {exc}"))
        self._send(result, until, copies=1 + replays, where=where)

    def close(self) -> None:
        if self._suppressed_since is not None:  # no event now: the site is stopping
            count = sum(self._suppressed.values())
            log.warning("commands_refused_suppressed", count=count, codes=dict(self._suppressed))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _process(self, topic_levels: str | None, payload: bytes) -> _Outcome:
        named: list[tuple[str, dict[str, Any]]] = []
        out = self._examine(topic_levels, payload, named)
        if named:
            out.name, out.target = named[0]
        elif topic_levels:
            out.name = topic_levels.replace("/", ".")[:64]
        return out

    def _examine(
        self, topic_levels: str | None, payload: bytes, named: list[tuple[str, dict[str, Any]]]
    ) -> _Outcome:
        now = self.clock.now()

        def fail(cid: str | None, code: str, msg: str) -> _Outcome:
            return _Outcome(result=make_result(cid, now, error=(code, msg)), limited=True)

        def answer(result: Result, until: float) -> _Outcome:
            return _Outcome(result=result, until=until)

        if len(payload) > self.max_payload_bytes:
            return fail(None, "too_large", f"payload over {self.max_payload_bytes} bytes; not read")
        try:
            raw = loads_strict(payload.decode("utf-8"))
        except RecursionError:
            return fail(None, "bad_json", "JSON nested too deeply")
        except DuplicateKeyError as exc:
            return fail(None, "bad_json", f"{exc} (a command names each key once)")
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
        named.append((cmd.name, command_target(cmd.args)))
        if topic_levels is not None and topic_levels != name_levels(cmd.name):
            return fail(
                cid,
                "bad_schema",
                f"name {cmd.name!r} does not match topic commands/{topic_levels}: "
                f"send it on commands/{name_levels(cmd.name)}",
            )
        key = self.keys.get(cmd.key_id)
        if key is None:
            return fail(cid, "unknown_key", f"key_id {cmd.key_id!r} is not trusted by this site")
        if not verify_command(raw, key.public_key):
            return fail(cid, "bad_signature", "signature does not match the command and key")
        if cmd.site != self.site_id:
            return fail(cid, "wrong_site", f"for site {cmd.site!r}; this is {self.site_id!r}")
        if not key.allows(cmd.name):
            return fail(cid, "not_allowed", f"key {cmd.key_id!r} may not issue {cmd.name!r}")
        if not self._observe_clock():
            mark = datetime.fromtimestamp(self.clock_mark.mark, UTC)
            return fail(
                cid,
                "clock_untrusted",
                f"the site's clock ({rfc3339(now)}) is behind its high-water mark "
                f"({rfc3339(mark)}): it was set back; commands wait until it is right again",
            )
        if cmd.expires_at <= now:
            return fail(cid, "expired", f"expired at {cmd.expires_at.isoformat()}")
        ahead = (cmd.expires_at - now).total_seconds()
        if ahead > self.max_ttl_s:
            return fail(
                cid,
                "ttl_too_long",
                f"expires_at is {ahead:.0f} s ahead; at most {self.max_ttl_s:g} s is accepted",
            )
        if cmd.command_id in self._running:
            return _Outcome(running_replay=cmd.command_id, limited=True)
        seen = self.store.command_result(cmd.command_id)
        if seen is not None:
            return _Outcome(cached=seen, command_id=cmd.command_id, limited=True)
        # Accepted: it runs, and is remembered until it expires. The mark goes with it.
        self.clock_mark.save()
        until = cmd.expires_at.timestamp()
        reg = self._handlers.get(cmd.name)
        if reg is None:
            error = ("unknown_command", f"no command {cmd.name!r}")
            return answer(make_result(cid, now, error=error), until)
        try:
            args = reg.args_model.model_validate(cmd.args)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(args)"
            error = ("invalid_args", f"{where}: {first['msg']}")
            return answer(make_result(cid, now, error=error), until)
        ctx = CommandContext(cmd.command_id, cmd.key_id, cmd.name)
        try:
            data = reg.fn(args, ctx)
        except CommandError as exc:
            return answer(make_result(cid, now, error=(exc.code, exc.message)), until)
        except Exception as exc:
            log.exception("command_handler_failed", command=cmd.name, command_id=cid)
            error = ("failed", f"{type(exc).__name__}: {exc}")
            return answer(make_result(cid, now, error=error), until)
        if isinstance(data, Deferred):
            return _Outcome(deferred=(cmd.command_id, data), until=until)
        return answer(make_result(cid, now, data=data or {}), until)
