"""The MQTT uplink: one paho-mqtt 2.x client, its own supervised network thread,
reconnect with exponential backoff and full jitter, last will, TLS, and a dead-link
detector (LinkMonitor): a link that has stopped answering is left within keepalive_s, not
after paho's two keepalive periods.

Rules: paho callbacks never block and never raise; they only ``post`` into the core
loop. ``publish`` may be called from the core thread at any time.
"""

from __future__ import annotations

import functools
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import BrokerConfig, parse_broker_url
from edge.core.clock import rfc3339
from edge.core.mqtt_client import paho_client

log = structlog.get_logger(__name__)

Job = Callable[[], None]
SESSION_EXPIRY_S = 24 * 3600
# MQTT 5: the Maximum Packet Size the site asks for is commands.max_payload_bytes plus this
# (fixed header, topic, packet id, properties), so a compliant broker never forwards a
# command bigger than the site would read.
PACKET_HEADROOM = 4096
# The dead-link detector, in keepalive_s: a heartbeat is published when nothing came from the
# broker for HEARTBEAT_AFTER and nothing awaits a PUBACK; the link is dead when something
# has awaited its PUBACK for DEAD_AFTER with nothing from the broker meanwhile. A link that
# goes silent is therefore left at most HEARTBEAT_AFTER + DEAD_AFTER after the silence
# began (plus one network-loop turn, LOOP_S): within 1.5 x keepalive_s, which is also when
# the broker gives up on the site and publishes its last will.
HEARTBEAT_AFTER = 0.5
DEAD_AFTER = 0.75
LOOP_S = 0.2
HEARTBEAT_PAYLOAD = b"{}"


class UplinkListener(Protocol):
    """Called on the core thread (the uplink posts these, never calls them directly)."""

    def uplink_connected(self) -> None: ...

    def uplink_disconnected(self, reason: str, dead_link: bool = False) -> None:
        """``dead_link``: the site left a link that had stopped answering."""
        ...

    def uplink_failed(self, reason: str, broker: str | None = None) -> None:
        """A connection attempt (to the address ``broker``) failed before the broker
        accepted it."""
        ...

    def uplink_acked(self, mid: int, ok: bool, reason: str | None = None) -> None:
        """A PUBACK; ``ok`` False with the MQTT 5 reason (e.g. "Not authorized (0x87)")."""
        ...

    def uplink_message(self, topic: str, payload: bytes) -> None: ...


def _no_op(*args: Any) -> None:
    return None


class _LastError(logging.Handler):
    """Keeps paho's last error line. paho reports why a connection broke (a TLS alert such
    as an unknown client-certificate CA, a reset) only in its log, not in a return code."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.text = record.getMessage()
        except Exception:
            self.text = str(record.msg)


class _ErrorsOnly(logging.Logger):
    """paho's logger: errors only, turned away before ``Logger.log``'s checks (paho calls
    it on every packet it sends or reads)."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR:
            super().log(level, msg, *args, **kwargs)


class LinkMonitor:
    """When is the link dead, when is a heartbeat due? Plain bookkeeping with the time
    passed in (monotonic seconds); thread-safe (the core thread publishes, the network
    thread sees PUBACKs and asks)."""

    def __init__(self, keepalive_s: float) -> None:
        self.heartbeat_after = keepalive_s * HEARTBEAT_AFTER
        self.dead_after = keepalive_s * DEAD_AFTER
        self._lock = threading.Lock()
        self._outstanding = 0  # publishes awaiting their PUBACK
        self._last_inbound = 0.0
        self._waiting_since: float | None = None  # the first send not answered yet

    def connected(self, now: float) -> None:
        with self._lock:
            self._outstanding = 0
            self._last_inbound = now
            self._waiting_since = None

    def sent(self, now: float) -> None:
        """A QoS 1 publish went out (its PUBACK is awaited)."""
        with self._lock:
            self._outstanding += 1
            if self._waiting_since is None:
                self._waiting_since = now

    def unsent(self) -> None:
        """A ``sent`` whose publish failed after all."""
        with self._lock:
            self._outstanding = max(0, self._outstanding - 1)
            if not self._outstanding:
                self._waiting_since = None

    def acked(self, now: float, count: int = 1) -> None:
        """``count`` PUBACKs (those read in one network-loop turn)."""
        with self._lock:
            self._outstanding = max(0, self._outstanding - count)
            self._inbound(now)

    def inbound(self, now: float) -> None:
        """Any other packet from the broker (a message)."""
        with self._lock:
            self._inbound(now)

    def _inbound(self, now: float) -> None:
        self._last_inbound = now
        self._waiting_since = now if self._outstanding else None

    def silent_for(self, now: float) -> float:
        with self._lock:
            return now - self._last_inbound

    def due(self, now: float) -> str | None:
        """ "dead", "heartbeat" or None."""
        with self._lock:
            if self._waiting_since is not None and now - self._waiting_since >= self.dead_after:
                return "dead"
            if not self._outstanding and now - self._last_inbound >= self.heartbeat_after:
                return "heartbeat"
            return None


def backoff_delay(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max_s, min_s * 2**attempt)]."""
    return rng.uniform(0.0, min(max_s, min_s * (2 ** min(attempt, 30))))


class Uplink:
    def __init__(
        self,
        cfg: BrokerConfig,
        *,
        client_id: str,
        post: Callable[[Job], None],
        listener: UplinkListener,
        subscriptions: list[str],
        will: Callable[[], tuple[str, bytes]],
        rng: random.Random | None = None,
        post_message: Callable[[Job], object] | None = None,
        max_payload_bytes: int | None = None,
        heartbeat: str | None = None,
    ) -> None:
        """``post`` hands connection events and PUBACKs to the core; ``post_message`` (by
        default ``post``) hands it inbound messages. A message longer than
        ``max_payload_bytes`` is cut to that + 1 byte before it is handed over (it is
        refused unread anyway), and under MQTT 5 the broker is asked not to send packets
        much bigger (``PACKET_HEADROOM``). ``heartbeat``: the topic of the dead-link
        detector's heartbeat (None: no heartbeats; a silent idle link is then found by
        paho's keepalive only)."""
        self.cfg = cfg
        self._post = post
        self._post_message = post_message or post
        self._max_payload = max_payload_bytes
        self._listener = listener
        self._subscriptions = subscriptions
        self._will = will
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._attempt = 0
        self._acks: list[tuple[int, bool, str | None]] = []
        self._heartbeat = heartbeat
        self.monitor = LinkMonitor(cfg.keepalive_s)
        self._dead: str | None = None  # why the network thread left a dead link
        self._acks_lock = threading.Lock()
        self._acks_posted = False
        self._turn_acks = 0  # PUBACKs read in this network-loop turn (network thread only)
        # broker.urls: every failure (a refused attempt, a lost connection) moves on to the
        # next address; ``address`` is the one of the current (or last) attempt.
        self._addresses = cfg.addresses
        self._index = 0
        self.address = self._addresses[0]
        self._client_id = client_id
        self.log = log.bind(broker=f"{cfg.host}:{cfg.port}", client_id=client_id)
        self.client = paho_client(cfg, client_id, clean_session=False)
        # The outbox keeps its own window (broker.max_inflight); paho's own bound would only
        # rescan every message in flight on each PUBACK looking for one to send (0: no bound).
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        # Only the network thread writes the socket: without this, publish() from the core
        # thread writes directly while loop() may write too (paho's writer has no lock).
        # paho's wake-up socket pair makes loop() send at once instead.
        self.client.on_socket_register_write = _no_op
        self.client.suppress_exceptions = True
        # A private logger (not in logging's registry): errors only, so paho formats nothing
        # on its per-packet debug path.
        self._paho_error = _LastError()
        paho_log = _ErrorsOnly(f"ansim.uplink.paho.{client_id}", logging.ERROR)
        paho_log.propagate = False
        paho_log.addHandler(self._paho_error)
        self.client.enable_logger(paho_log)
        self._refused: str | None = None

    # ---------------- core thread API ----------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ansim-uplink", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Queue a publish; returns its mid, or None when not connected (nothing queued)."""
        if not self._connected.is_set():
            return None
        if qos:  # before the publish: its PUBACK may be handled before publish() returns
            self.monitor.sent(time.monotonic())
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            if qos:
                self.monitor.unsent()
            return None
        return int(info.mid)

    def check(self) -> None:
        """Watchdog, called periodically by the core: restart a dead network thread."""
        if not self._stop.is_set() and (self._thread is None or not self._thread.is_alive()):
            self.log.error("uplink_thread_dead_restarting")
            self.start()

    def stop(self, last: tuple[str, bytes] | None = None, timeout_s: float = 2.0) -> None:
        """Publish ``last`` (e.g. offline status) if connected, then disconnect cleanly."""
        if last is not None and self._connected.is_set():
            try:
                info = self.client.publish(last[0], last[1], qos=1, retain=True)
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                self.log.warning("uplink_last_publish_failed", error=str(exc))
        self._stop.set()
        try:
            self.client.disconnect()
        except Exception as exc:
            self.log.warning("uplink_disconnect_failed", error=str(exc))
        if self._thread is not None:
            self._thread.join(timeout_s)

    # ---------------- network thread ----------------
    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            reason: str | None = None
            try:
                if not first:
                    delay = backoff_delay(
                        self._attempt, self.cfg.reconnect.min_s, self.cfg.reconnect.max_s, self._rng
                    )
                    self._attempt += 1
                    if self._stop.wait(delay):
                        break
                    self._next_address()
                first = False
                self._paho_error.text = self._refused = self._dead = None
                self._connect_once()
                while not self._stop.is_set():
                    try:
                        rc = self.client.loop(timeout=LOOP_S)
                    finally:
                        self._hand_over_acks()
                    if rc != mqtt.MQTT_ERR_SUCCESS:
                        reason = self._refused or self._paho_error.text or mqtt.error_string(rc)
                        break
                    if self._connected.is_set() and self._watch_link():
                        reason = self._dead
                        break
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if self._connected.is_set():
                self._connected.clear()
                lost = reason or "connection lost"
                dead = self._dead is not None
                self._post(functools.partial(self._listener.uplink_disconnected, lost, dead))
            elif not self._stop.is_set():
                # Never connected: refused (CONNACK), TLS alert, TCP error, timeout. The core
                # counts, keeps and logs it (rate-limited).
                failed = reason or self._refused or "connection closed before CONNACK"
                self._post(functools.partial(self._listener.uplink_failed, failed, self.address))
            try:
                self.client._sock_close()  # make the next connect start from a clean socket
            except Exception:
                pass

    def _watch_link(self) -> bool:
        """Network thread, between loop turns: publish a heartbeat when one is due; True
        when the link is dead (the caller drops the connection)."""
        now = time.monotonic()
        verdict = self.monitor.due(now)
        if verdict == "dead":
            silent = self.monitor.silent_for(now)
            self._dead = (
                f"dead link: no PUBACK from the broker for {self.monitor.dead_after:g} s "
                f"(nothing received for {silent:.1f} s; keepalive_s {self.cfg.keepalive_s})"
            )
            self.log.warning("uplink_dead_link", silent_s=round(silent, 3))
            return True
        if verdict == "heartbeat" and self._heartbeat is not None:
            self.monitor.sent(now)
            info = self.client.publish(self._heartbeat, HEARTBEAT_PAYLOAD, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self.monitor.unsent()
        return False

    def _next_address(self) -> None:
        if len(self._addresses) > 1:
            self._index = (self._index + 1) % len(self._addresses)
            self.address = self._addresses[self._index]
            _, host, port = parse_broker_url(self.address)
            self.log = log.bind(broker=f"{host}:{port}", client_id=self._client_id)

    def _connect_once(self) -> None:
        _, host, port = parse_broker_url(self.address)
        topic, payload = self._will()
        self.client.will_set(topic, payload, qos=1, retain=True)
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            if self._max_payload is not None:
                props.MaximumPacketSize = self._max_payload + PACKET_HEADROOM
            self.client.connect(
                host, port, self.cfg.keepalive_s, clean_start=False, properties=props
            )
        else:
            self.client.connect(host, port, self.cfg.keepalive_s)

    # ---------------- paho callbacks: never block, never raise ----------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            if rc.is_failure:
                self._refused = f"CONNACK refused: {rc}"  # reported by _run
                client.disconnect()
                return
            sock = client.socket()
            if sock is not None:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
                except OSError:
                    pass
            # Our durable outbox resends everything unacknowledged; drop paho's copies so
            # a reconnect does not send each in-flight message twice.
            client.drop_out_messages()
            self.monitor.connected(time.monotonic())
            for sub in self._subscriptions:
                client.subscribe(sub, qos=1)
            self._attempt = 0
            self._connected.set()
            self._post(self._listener.uplink_connected)
        except Exception as exc:
            self.log.error("uplink_on_connect_failed", error=str(exc))

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            if self._connected.is_set():
                self._connected.clear()
                # A broken socket only says "Unspecified error": paho logged the cause.
                text = self._paho_error.text
                reason = str(rc) if flags.is_disconnect_packet_from_server or not text else text
                self._post(lambda: self._listener.uplink_disconnected(reason))
        except Exception as exc:
            self.log.error("uplink_on_disconnect_failed", error=str(exc))

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        try:
            self._turn_acks += 1  # the link monitor hears of them at the end of the turn
            ok = not rc.is_failure
            why = None if ok else f"{rc} (0x{int(rc.value):02x})"
            with self._acks_lock:
                self._acks.append((mid, ok, why))
            # Handed to the core at the end of this network-loop turn (_hand_over_acks):
            # every PUBACK read in one turn reaches the core in one job.
        except Exception as exc:
            self.log.error("uplink_on_publish_failed", error=str(exc))

    def _hand_over_acks(self) -> None:
        """Network thread, after each loop turn: one core job for the PUBACKs read in it
        (none while the last one is still waiting to run). Never raises."""
        try:
            if self._turn_acks:
                self.monitor.acked(time.monotonic(), self._turn_acks)
                self._turn_acks = 0
            with self._acks_lock:
                if not self._acks or self._acks_posted:
                    return
                self._acks_posted = True
            try:
                self._post(self._flush_acks)
            except BaseException:
                with self._acks_lock:
                    self._acks_posted = False  # the next turn tries again
                raise
        except Exception as exc:
            self.log.error("uplink_hand_over_acks_failed", error=str(exc))

    def _flush_acks(self) -> None:
        """Core thread: hand every PUBACK collected so far to the listener."""
        with self._acks_lock:
            acks, self._acks = self._acks, []
            self._acks_posted = False
        for mid, ok, why in acks:
            if ok:
                self._listener.uplink_acked(mid, ok)
            else:
                self._listener.uplink_acked(mid, ok, why)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.monitor.inbound(time.monotonic())
            topic, payload = msg.topic, bytes(msg.payload)
            if self._max_payload is not None and len(payload) > self._max_payload:
                payload = payload[: self._max_payload + 1]  # do not hold the rest in a queue
            self._post_message(lambda: self._listener.uplink_message(topic, payload))
        except Exception as exc:
            self.log.error("uplink_on_message_failed", error=str(exc))


@dataclass
class ConnectFailures:
    """Failed connection attempts: counted, the last one kept (for local views such as the
    simulator's ``/state``: while they happen the site is offline, so no status carries
    them), and logged rate-limited: the first of a run of failures at once, then at most
    one line per ``every_s`` with the number of failures not logged since. Core thread
    only; ``now`` is monotonic seconds."""

    every_s: float = 60.0
    total: int = 0  # since the site started
    in_a_row: int = 0  # since the last successful connection
    last_reason: str | None = None
    last_at: datetime | None = None
    _logged_at: float | None = None
    _suppressed: int = 0

    def failed(self, reason: str, now: float, wall: datetime) -> dict[str, object] | None:
        """Record one; returns the fields to log, or None when rate-limited."""
        self.total += 1
        self.in_a_row += 1
        self.last_reason, self.last_at = reason, wall
        if self._logged_at is not None and now - self._logged_at < self.every_s:
            self._suppressed += 1
            return None
        line: dict[str, object] = {
            "reason": reason,
            "failures": self.in_a_row,
            "suppressed": self._suppressed,
        }
        self._logged_at, self._suppressed = now, 0
        return line

    def connected(self) -> int:
        """A connection succeeded: the next failure is logged at once. Returns how many
        attempts had failed in a row before it."""
        n, self.in_a_row = self.in_a_row, 0
        self._logged_at, self._suppressed = None, 0
        return n

    def snapshot(self) -> dict[str, object]:
        return {
            "connect_failures": self.total,
            "failures_in_a_row": self.in_a_row,
            "last_failure": self.last_reason,
            "last_failure_at": rfc3339(self.last_at) if self.last_at is not None else None,
        }
