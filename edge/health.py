"""The site's health for the retained status and for a technician on site (issue 11.5).

- :class:`FaultBoard` follows the fault events as the outbox records them (the core's input
  and store faults, and the faults each device kind declares: board, wiring, modem) and
  their recoveries, and lists every active one.
  Every fault is reported again after a restart (boards and inputs are re-read, wiring
  faults re-reported, the store and modem re-checked), so the list needs no persistence.
- :func:`oldest_pending_age` is the age of the oldest message the broker has not
  acknowledged yet.
- :class:`StatusFile` writes the status atomically (temporary file + rename) from its
  own thread, so the core thread never waits on a disk. ``ansim-edge status`` reads it.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from edge.core.store import PRIORITIES, Store
from edge.devices.kind import FaultEvents
from edge.devices.registry import KINDS
from edge.models import EventData, Fault, InputFault, InputRestored, StoreFault, StoreRecovered

log = structlog.get_logger(__name__)

STATUS_FILE = "status.json"
RUNTIME_DIR_ENV = "RUNTIME_DIRECTORY"  # set by systemd for RuntimeDirectory=
_NOT_THIS = 2**62  # an id beyond every row: skips a priority in Store.pending()


# The core's own faults (the kinds declare theirs: ``DeviceKind.faults``).
CORE_FAULTS = (
    FaultEvents("input", InputFault, InputRestored),
    FaultEvents("store", StoreFault, StoreRecovered, reason="error"),
)


def fault_events() -> dict[str, tuple[FaultEvents, bool]]:
    """Every fault and recovery event type (the core's and every kind's), with its pair and
    whether it is the fault (True) or its end."""
    out: dict[str, tuple[FaultEvents, bool]] = {}
    for pair in (*CORE_FAULTS, *(f for k in KINDS for f in k.faults)):
        for model, is_fault in ((pair.fault, True), (pair.recovered, False)):
            if model.TYPE in out:
                raise ValueError(f"{model.TYPE} is in two fault pairs")
            out[model.TYPE] = (pair, is_fault)
    return out


class FaultBoard:
    """Active faults keyed by (kind, device, detail). Core thread only."""

    def __init__(self) -> None:
        self._active: dict[tuple[str, str, str], Fault] = {}
        self._events = fault_events()
        self.changes = 0  # bumped on every change (the status is re-published)

    def observe(self, device: str, data: EventData, ts: str) -> None:
        """Outbox observer: one recorded event."""
        found = self._events.get(data.TYPE)
        if found is None:
            return
        pair, is_fault = found
        reason = getattr(data, pair.reason, None)
        if is_fault:
            detail = str(reason) if pair.per_reason else ""
            self._set(pair.kind, device, detail, str(reason), ts)
        else:
            self._clear(pair.kind, device, reason if pair.per_reason else None)

    def _set(self, kind: str, device: str, detail: str, reason: str, ts: str) -> None:
        key = (kind, device, detail)
        old = self._active.get(key)
        if old is not None and old.reason == reason:
            return
        since = old.since if old is not None else ts
        self._active[key] = Fault(kind=kind, device=device, reason=reason, since=since)  # type: ignore[arg-type]
        self.changes += 1

    def _clear(self, kind: str, device: str, detail: str | None = None) -> None:
        gone = [
            k
            for k in self._active
            if k[0] == kind and k[1] == device and (detail is None or k[2] == detail)
        ]
        for k in gone:
            del self._active[k]
        if gone:
            self.changes += 1

    def active(self) -> list[Fault]:
        """Every active fault, oldest first."""
        return sorted(self._active.values(), key=lambda f: (f.since, f.kind, f.device))


def oldest_pending_age(store: Store, now: datetime) -> float | None:
    """Seconds since the oldest unacknowledged message (event or result) was made, from its
    ``ts``; None when nothing is pending. The oldest row is the lowest id over the first
    row of each priority."""
    first = []
    for prio in PRIORITIES:
        skip = {p: _NOT_THIS for p in PRIORITIES if p != prio}
        first += store.pending(1, skip)
    if not first:
        return None
    oldest = min(first, key=lambda row: row.id)
    try:
        ts = json.loads(oldest.payload)["ts"]
        made = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return round(max(0.0, (now - made).total_seconds()), 1)


def status_file_path(data_dir: Path, environ: dict[str, str] | None = None) -> Path:
    """Where the daemon writes its status file: systemd's runtime directory (a tmpfs:
    no SD card wear) when it gives one, else the data dir."""
    env = os.environ if environ is None else environ
    runtime = env.get(RUNTIME_DIR_ENV, "").split(":")[0]
    return (Path(runtime) if runtime else data_dir) / STATUS_FILE


class StatusFile:
    """The latest status, written atomically by a writer thread (latest wins)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._pending: bytes | None = None
        self._last_error: str | None = None
        self.writes = 0
        self._thread = threading.Thread(target=self._run, name="status-file", daemon=True)
        self._thread.start()

    def put(self, doc: dict[str, Any]) -> None:
        """Any thread, never blocks: replace what the writer writes next."""
        data = (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        with self._lock:
            self._pending = data
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                data, self._pending, stop = self._pending, None, self._stop
            if data is not None:
                self._write(data)
            if stop:
                return

    def _write(self, data: bytes) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, self.path)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc.strerror or exc}"
            if error != self._last_error:
                log.warning("status_file_failed", path=str(self.path), error=error)
                self._last_error = error
            return
        self._last_error = None
        self.writes += 1

    def close(self, remove: bool = True, timeout: float = 2.0) -> None:
        """Write what is pending, stop the writer; ``remove``: delete the file (a clean
        stop: no status left behind that could look current)."""
        with self._lock:
            self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        if remove:
            try:
                self.path.unlink()
            except OSError:
                pass


# ---- `ansim-edge status`: the status file for a technician on site ----

STALE_S = 3 * 5.0  # three missed rewrites (the daemon rewrites it every 5 s)


def status_candidates(data_dir: Path, runtime_dir: Path) -> list[Path]:
    """Where a daemon may have written its status: the unit's runtime dir, the data dir."""
    return [runtime_dir / STATUS_FILE, data_dir / STATUS_FILE]


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    if d or h:
        parts.append(f"{h}h")
    if d or h or m:
        parts.append(f"{m}m")
    parts.append(f"{s}s")
    return " ".join(parts)


def _yes_no(value: object) -> str:
    if value is None:
        return "unknown"
    return "yes" if value else "NO"


def render_status(doc: dict[str, Any], path: Path, age_s: float) -> list[str]:
    """The status file as lines for a person (``ansim-edge status``)."""
    st: dict[str, Any] = doc.get("status", {})
    link: dict[str, Any] = doc.get("link", {})
    lines = [
        f"site      {st.get('site')} (ansim-edge {st.get('version')}), "
        f"status written {age_s:.0f} s ago to {path}"
    ]
    if link.get("connected"):
        lines.append(f"broker    {link.get('broker')}: connected")
    else:
        why = link.get("last_failure")
        lines.append(
            f"broker    {link.get('broker')}: NOT connected"
            + (
                f" ({link.get('failures_in_a_row')} failed attempts in a row, last: {why})"
                if why
                else ""
            )
        )
    lines.append(f"uptime    {_duration(st.get('uptime_s') or 0)}")
    oldest = st.get("oldest_pending_s")
    lines.append(
        f"outbox    {st.get('outbox_depth', 0)} not yet acknowledged"
        + (f", the oldest {_duration(oldest)} old" if oldest is not None else "")
    )
    lines.append(
        f"clock     synchronised: {_yes_no(st.get('clock_synced'))}, "
        f"trusted: {_yes_no(st.get('clock_trusted'))}"
    )
    store = st.get("store", "ok")
    lines.append(f"store     {store}" + (f": {st.get('store_error')}" if store != "ok" else ""))
    modem = st.get("modem")
    if modem:
        signal = modem.get("signal_dbm")
        lines.append(
            f"modem     {'ok' if modem.get('ok') else 'NOT answering'}, "
            f"{'registered' if modem.get('registered') else 'NOT registered'}"
            + (f", {signal} dBm" if signal is not None else "")
        )
    faults = st.get("faults") or []
    lines.append(f"faults    {len(faults) if faults else 'none'}")
    for f in faults:
        lines.append(f"  {f['kind']:<7} {f['device']}: {f['reason']} (since {f['since']})")
    return lines


TIMESYNC = Path("/run/systemd/timesync")


def clock_synced() -> bool | None:
    """True/False when systemd-timesyncd tells; None when nothing tells (no RTC on a Pi)."""
    if not TIMESYNC.is_dir():
        return None
    return (TIMESYNC / "synchronized").exists()
