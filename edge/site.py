"""One site: its core loop, store, outbox, uplink, command intake and device
controllers, wired together. No global state: a process may hold many sites."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from drivers.base import Hardware
from edge import __version__
from edge.config import SiteConfig, parse_broker_url
from edge.core.clock import Clock, SystemClock, rfc3339
from edge.core.commands import CommandProcessor, LoadedKey, load_keys
from edge.core.dead_letters import DeadLetterCommands
from edge.core.loop import CoreLoop
from edge.core.outbox import Outbox, Publisher
from edge.core.ports import Ports
from edge.core.shed_report import ShedReport
from edge.core.state import StateBoard
from edge.core.store import PRIO_ALARM, DeadLetter, Store
from edge.core.store_watch import StoreWatch
from edge.core.topics import Topics
from edge.core.uplink import ConnectFailures, Uplink, UplinkListener
from edge.devices.kind import BuildContext, DeviceController, Output, build_order, section
from edge.devices.registry import EVENT_DATA, KINDS
from edge.health import FaultBoard, StatusFile, clock_synced, oldest_pending_age
from edge.models import (
    SiteStarted,
    Status,
    StoreReset,
)

if TYPE_CHECKING:
    from edge.homeassistant import Discovery

log = structlog.get_logger(__name__)

WATCHDOG_S = 5.0
PURGE_S = 3600.0
COMMANDS_TICK_S = 10.0
DELETE_FLUSH_S = 1.0
STATUS_REFRESH_S = 10.0  # the online status is re-published when outbox_depth changed
STATUS_FILE_S = 5.0  # the status file (ansim-edge status) is rewritten this often
# The longest the core thread sleeps in ``run()`` when nothing is posted and no timer is due
# (a post, a due timer or ``stop_soon`` wakes it at once; this only bounds how late a ``stop``
# Event passed to ``run`` is seen). A process holding many sites (bench/bench_fleet.py) sets
# it longer: each idle site then wakes for its timers only.
IDLE_WAIT_S = 0.2


class UplinkLike(Publisher):
    connected: bool
    address: str  # the broker address of the current (or last) connection attempt

    def start(self) -> None: ...

    def check(self) -> None: ...

    def stop(self, last: tuple[str, bytes] | None = None, timeout_s: float = 2.0) -> None: ...


UplinkFactory = Callable[..., UplinkLike]


def _host_port(url: str) -> str:
    _, host, port = parse_broker_url(url)
    return f"{host}:{port}"


StoreFactory = Callable[..., Store]


class Site(UplinkListener):
    def __init__(
        self,
        cfg: SiteConfig,
        hardware: Hardware,
        *,
        clock: Clock | None = None,
        keys: dict[str, LoadedKey] | None = None,
        uplink_factory: UplinkFactory = Uplink,  # type: ignore[assignment]
        rng: random.Random | None = None,
        store_factory: StoreFactory = Store,
        status_file: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.status_file_path = status_file
        self.clock = clock or SystemClock()
        self.hardware = hardware
        self.log = log.bind(site=cfg.site.id)
        # 1. Every output off before anything else happens: each kind claims its outputs.
        self.claimed: dict[str, dict[str, Output]] = {}
        try:
            for kind in KINDS:
                if kind.outputs is not None:
                    self.claimed[kind.name] = kind.outputs(
                        section(cfg.devices, kind.config), hardware
                    )
        except BaseException:
            self._outputs_off()
            raise
        try:
            self._build(keys, uplink_factory, rng, store_factory)
        except BaseException:
            self._outputs_off()
            raise

    def _build(
        self,
        keys: dict[str, LoadedKey] | None,
        uplink_factory: UplinkFactory,
        rng: random.Random | None,
        store_factory: StoreFactory,
    ) -> None:
        cfg = self.cfg
        self.loop = CoreLoop(self.clock, low_max=cfg.commands.max_queue)
        self.topics = Topics(cfg.topic_root, cfg.site.id)
        subscriptions = [self.topics.commands_filter]
        if cfg.homeassistant.enabled:
            subscriptions.append(cfg.homeassistant.birth_topic)
        # Never raises for a full, read-only or unusable data dir: it starts degraded.
        self.store = store_factory(
            cfg.data_dir / "ansim-edge.db",
            max_messages=cfg.outbox.max_events,
            durability=cfg.outbox.durability,
            max_dead_letters=cfg.outbox.dead_letters_max,
        )
        self.uplink: UplinkLike = uplink_factory(
            cfg.broker,
            client_id=cfg.broker.client_id or f"ansim-edge-{cfg.site.id}",
            post=self.loop.post,
            post_message=self.loop.post_low,  # commands wait behind inputs, bounded
            max_payload_bytes=cfg.commands.max_payload_bytes,
            listener=self,
            subscriptions=subscriptions,
            will=lambda: (self.topics.status, self._status("offline")),
            rng=rng,
            heartbeat=self.topics.heartbeat,
        )
        self.outbox = Outbox(
            self.store,
            self.topics,
            self.clock,
            self.uplink,
            events=EVENT_DATA,
            window=cfg.broker.max_inflight,
            reject_after_drops=cfg.outbox.reject_after_drops,
            reject_window_s=cfg.outbox.reject_window_s,
        )
        self.outbox.rejected_listeners.append(self._message_rejected)
        self.faults = FaultBoard()  # every active fault, from the events as they are recorded
        self.outbox.observers.append(self.faults.observe)
        self.states = StateBoard(self.topics, self.clock, self.uplink)
        self.discovery: Discovery | None = None
        if cfg.homeassistant.enabled:
            from edge.homeassistant import Discovery  # loaded only when enabled

            self.discovery = Discovery(cfg, self.topics, __version__, self.uplink, self.loop, rng)
        self.commands = CommandProcessor(
            keys if keys is not None else load_keys(cfg.keys),
            self.store,
            self.clock,
            site_id=cfg.site.id,
            max_payload_bytes=cfg.commands.max_payload_bytes,
            max_ttl_s=cfg.commands.max_ttl_s,
            send_result=self.outbox.put_result,
            post=self.loop.post,
            on_clock_change=self._publish_status,
            report=lambda data: self.outbox.emit("site", data),
        )
        self.ports = Ports(
            self.loop, self.clock, self.outbox, self.store, self.states, self.commands
        )
        DeadLetterCommands(self.store, self.outbox).register(self.commands)
        # 2. The device controllers, kind by kind (a kind after the kinds it needs).
        self.devices: dict[str, DeviceController] = {}
        for kind in build_order(KINDS):
            controller = kind.controller(
                BuildContext(
                    cfg,
                    self.hardware,
                    self.ports,
                    self.claimed.get(kind.name, {}),
                    self.devices,
                    # "The centre will hear of it": the link is up and it can be stored.
                    link_up=lambda: self.outbox.online and not self.store.degraded,
                    publish_status=self._publish_status,
                )
            )
            if controller is not None:
                self.devices[kind.name] = controller
        self.connect_failures = ConnectFailures()
        self.uplink_checked_at = self.clock.monotonic()  # last run of the uplink supervisor
        self.loop.after_batch.append(self._after_batch)
        self.loop.after_job = self._commit_if_large
        self.store_watch = StoreWatch(
            self.store,
            self.outbox,
            self.loop,
            self.clock,
            self.log,
            started=lambda: self._started,
            on_fault=self._store_fault,
            on_recovered=self._publish_status,
        )
        self.shed = ShedReport(self.loop, self.clock, self.outbox, cfg.commands.max_queue, self.log)
        self._status_depth = -1  # outbox_depth in the last online status published
        self._status_faults = -1  # FaultBoard.changes when the last one was published
        self.started_at: float | None = None
        self.status_file = StatusFile(self.status_file_path) if self.status_file_path else None
        self._thread: threading.Thread | None = None
        self._stop_flush_s: float | None = None  # stop_soon(flush_s=...)
        self._started = False
        self._stopping = False

    # ---- status ----
    def _status(self, state: str) -> bytes:
        extra: dict[str, Any] = {}
        for controller in self.devices.values():
            extra.update(controller.status(state == "online"))
        return (
            Status(
                state=state,  # type: ignore[arg-type]
                version=__version__,
                ts=rfc3339(self.clock.now()),
                site=self.cfg.site.id,
                clock_synced=clock_synced(),
                clock_trusted=self.commands.clock_trusted,
                store="degraded" if self.store.degraded else "ok",
                store_error=self.store.error if self.store.degraded else None,
                outbox_depth=len(self.store),
                **extra,
                **(self._health() if state == "online" else {}),
            )
            .model_dump_json()
            .encode("utf-8")
        )

    def _health(self) -> dict[str, object]:
        """The health fields of the online status (issue 11.5)."""
        now = self.clock.monotonic()
        return {
            "uptime_s": int(now - self.started_at) if self.started_at is not None else 0,
            "oldest_pending_s": oldest_pending_age(self.store, self.clock.now()),
            "broker": self.uplink.address,
            "faults": self.faults.active(),
        }

    def _publish_status(self) -> None:
        if self.outbox.online:
            self._status_depth = len(self.store)
            self._status_faults = self.faults.changes
            self.uplink.publish(self.topics.status, self._status("online"), qos=1, retain=True)

    def _status_tick(self) -> None:
        """The online status again when the outbox depth changed or a fault came or went
        (uptime and the oldest message's age are as of its ts)."""
        self.loop.call_later(STATUS_REFRESH_S, self._status_tick)
        if len(self.store) != self._status_depth or self.faults.changes != self._status_faults:
            self._publish_status()

    def _status_file_tick(self) -> None:
        self.loop.call_later(STATUS_FILE_S, self._status_file_tick)  # first: never lost
        self._write_status_file()

    def status_document(self) -> dict[str, object]:
        """What the status file holds (``ansim-edge status``): the status the site would
        publish now (``state`` online: the daemon runs) and the broker link."""
        return {
            "written_at": rfc3339(self.clock.now()),
            "link": {
                "connected": self.outbox.online,
                "broker": self.uplink.address,
                **self.connect_failures.snapshot(),
            },
            "status": json.loads(self._status("online")),
        }

    def _write_status_file(self) -> None:
        if self.status_file is not None:
            self.status_file.put(self.status_document())

    # ---- lifecycle ----
    def start(self) -> None:
        """Bring devices up, record the start, connect (call on the core thread)."""
        if self.store.quarantined is not None:
            self.outbox.emit("site", StoreReset(quarantined=str(self.store.quarantined)))
        for controller in self.devices.values():
            controller.start()
        self.store_watch.check()
        started: dict[str, Any] = {}
        for controller in self.devices.values():
            started.update(controller.site_started())
        self.outbox.emit("site", SiteStarted(version=__version__, **started))
        self.store.commit()
        self.uplink.start()
        self.loop.call_later(WATCHDOG_S, self._watchdog)
        self.loop.call_later(1.0, self._purge)
        self.loop.call_later(COMMANDS_TICK_S, self._commands_tick)
        self.loop.call_later(DELETE_FLUSH_S, self._flush_deletes)
        self.loop.call_later(STATUS_REFRESH_S, self._status_tick)
        self.started_at = self.clock.monotonic()
        if self.status_file is not None:
            self.loop.call_later(STATUS_FILE_S, self._status_file_tick)
        self._started = True
        self._write_status_file()
        self.log.info("site_started", version=__version__, pending=len(self.store))

    def _watchdog(self) -> None:
        self.loop.call_later(WATCHDOG_S, self._watchdog)  # first: a failure must not end it
        self.uplink.check()
        self.uplink_checked_at = self.clock.monotonic()  # edge.service: supervisor alive

    def _flush_deletes(self) -> None:
        """PUBACK deletes wait for the next real commit; at most this long."""
        self.store.flush()
        self.loop.call_later(DELETE_FLUSH_S, self._flush_deletes)

    def _purge(self) -> None:
        self.loop.call_later(PURGE_S, self._purge)  # first: a failure must not end the timer
        n = self.commands.purge()
        if n:
            self.log.info("commands_forgotten", count=n)

    def _commands_tick(self) -> None:
        self.loop.call_later(COMMANDS_TICK_S, self._commands_tick)
        self.commands.tick()

    def _commit_if_large(self) -> None:
        """Between two jobs of a batch: commit once the batch has recorded TXN_MAX_ROWS
        messages (published, as always, only after the batch). A job's own writes (a
        command's events, its result, its command id) stay in one transaction."""
        if self.store.uncommitted_rows >= self.store.TXN_MAX_ROWS:
            self.store.commit()

    def _after_batch(self) -> None:
        self.shed.report()
        self.outbox.report_rejected()
        self.store.commit()  # one fsync for everything this batch recorded
        self.store_watch.check()
        self.outbox.drain()
        self.states.flush()  # after the batch's events (edge.core.state)

    def _store_fault(self) -> None:
        """The store went degraded: alarms escalate as with the link down; the status says it."""
        self._link_lost()
        self._publish_status()

    def run(self, stop: threading.Event | None = None, flush_s: float = 3.0) -> None:
        """Run on the calling thread until ``stop_soon()``; then shut down safely."""
        try:
            self.start()
            while not self.loop.stopping and not (stop is not None and stop.is_set()):
                self.loop.run_once(IDLE_WAIT_S)
        finally:
            self.shutdown(flush_s if self._stop_flush_s is None else self._stop_flush_s)

    def start_thread(self) -> None:
        self._thread = threading.Thread(
            target=self.run, name=f"site-{self.cfg.site.id}", daemon=True
        )
        self._thread.start()

    def stop_soon(self, flush_s: float | None = None) -> None:
        """Any thread, or a signal handler: ask the core loop to stop. ``flush_s``: how long
        the shutdown may wait for the outbox to drain, instead of ``run()``'s (a reload
        does not wait: the next site sends what is left)."""
        if flush_s is not None:
            self._stop_flush_s = flush_s
        self.loop.stop()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def call(self, fn: Callable[[], object], timeout: float = 5.0) -> object:
        """Run fn on the core thread and return its result (for tests and the sim API)."""
        done = threading.Event()
        box: list[object] = []

        def job() -> None:
            try:
                box.append(fn())
            finally:
                done.set()

        self.loop.post(job)
        if not done.wait(timeout):
            raise TimeoutError("core loop did not answer")
        return box[0] if box else None

    def shutdown(self, flush_s: float = 3.0) -> None:
        """Stop input (hardware and commands), outputs into their safe state, flush what
        can be flushed, say offline, close the store. Every step runs even when an
        earlier one fails."""
        self._stopping = True  # commands arriving from now on are not executed
        parts = list(self.devices.items())[::-1]
        for name, part in parts:
            try:
                part.stop()
            except Exception:
                self.log.exception("shutdown_stop_failed", part=name)
        self._outputs_off()
        self.commands.close()
        for name, part in parts:
            try:
                part.close()
            except Exception:
                self.log.exception("shutdown_stop_failed", part=name)
        try:
            if self._started and self.outbox.online:
                deadline = time.monotonic() + flush_s  # real time: this waits on real I/O
                self.loop.run_pending()
                while len(self.store) > 0 and self.outbox.online and time.monotonic() < deadline:
                    self.loop.run_once(0.05)
            self.loop.run_pending()
        except Exception:
            self.log.exception("shutdown_flush_failed")
        finally:
            try:
                if self._started:
                    self.uplink.stop((self.topics.status, self._status("offline")))
            finally:
                try:
                    self.store.close()
                finally:
                    if self.status_file is not None:
                        self.status_file.close()  # no status left behind that looks current
                    self.log.info("site_stopped", pending=len(self.store))

    @property
    def outputs(self) -> dict[str, Output]:
        """Every output the kinds claimed, by name (lamps, buzzer, ``coil-<locker>``)."""
        return {name: out for claimed in self.claimed.values() for name, out in claimed.items()}

    def _outputs_off(self) -> None:
        for name, out in self.outputs.items():
            try:
                out.close()
            except Exception as exc:
                self.log.error("output_close_failed", output=name, error=str(exc))

    # ---- uplink events (core thread) ----
    def uplink_connected(self) -> None:
        failed = self.connect_failures.connected()
        self.log.info(
            "uplink_connected",
            broker=_host_port(self.uplink.address),
            pending=len(self.store),
            failed_attempts=failed,
        )
        self.outbox.on_connected()
        self._publish_status()
        self.states.on_connected()
        if self.discovery is not None:
            self.discovery.on_connected()

    def uplink_disconnected(self, reason: str, dead_link: bool = False) -> None:
        if self.outbox.online:
            self.log.warning("uplink_disconnected", reason=reason, pending=len(self.store))
        self.outbox.on_disconnected(dead_link)
        self.states.on_disconnected()
        if self.discovery is not None:
            self.discovery.on_disconnected()
        self._link_lost()

    def _link_lost(self) -> None:
        for controller in self.devices.values():
            controller.link_lost()

    def uplink_failed(self, reason: str, broker: str | None = None) -> None:
        line = self.connect_failures.failed(reason, self.clock.monotonic(), self.clock.now())
        if line is not None:
            where = _host_port(broker or self.cfg.broker.addresses[0])
            self.log.warning("uplink_connect_failed", broker=where, **line)

    def uplink_acked(self, mid: int, ok: bool, reason: str | None = None) -> None:
        self.outbox.on_acked(mid, ok, reason)

    # ---- refused messages (dead letters) ----
    def _message_rejected(self, dl: DeadLetter) -> None:
        """A message the broker refused: the centre will not hear of it. An alarm-priority
        one escalates over the modem as if the link were down."""
        if dl.priority == PRIO_ALARM:
            self._link_lost()

    def uplink_message(self, topic: str, payload: bytes) -> None:
        if self.discovery is not None and self.discovery.handle(topic, payload):
            return
        levels = self.topics.command_levels(topic)
        if levels is None:
            return
        if self._stopping:
            # No result: the centre retries with the same command_id after the restart,
            # which then runs it (a remembered "ok" for a command never carried out would
            # be a lie).
            self.log.warning("command_ignored_shutting_down", topic=topic)
            return
        self.commands.handle(levels, payload)

    # ---- introspection ----
    def snapshot(self) -> dict[str, object]:
        return {
            "site": self.cfg.site.id,
            "online": self.outbox.online,
            "outbox_pending": len(self.store),
            "last_seq": self.store.last_seq(),
            "store": "degraded" if self.store.degraded else "ok",
            "uplink": self.connect_failures.snapshot(),
            "states": self.states.all(),
        }
