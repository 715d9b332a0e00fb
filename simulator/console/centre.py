"""The console's little control centre: an MQTT client inside the simulator that sees the
site as the real centre does (from the broker: status, events, state, results and the
commands sent to it) and sends signed commands (``POST /centre/commands``).

The private key of a command comes with the request (the simulator's development key is
read from its data dir); it is used once, for that signature, and neither kept nor logged.
Pickup codes are masked in everything this module passes on to the event stream.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import BrokerConfig
from edge.core.clock import rfc3339
from edge.core.mqtt_client import paho_client
from edge.core.signing import sign_command
from edge.core.topics import Topics
from edge.core.uplink import PACKET_HEADROOM
from simulator.events_stream import EventHub

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = structlog.get_logger(__name__)

MASK = "******"
SECRET_ARGS = ("pickup_code",)
REMEMBERED = 500  # commands seen whose result the centre still names


class BadKey(ValueError):
    """A private key that cannot sign (not PEM, not Ed25519)."""


def private_key_from_pem(pem: str) -> Ed25519PrivateKey:
    # cryptography (OpenSSL, ~7.5 MB) only once a command is signed: an idle simulator
    # never loads it.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        raise BadKey(f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadKey("not an Ed25519 key; make one with `ansim-edge keygen`")
    return key


def masked(command: dict[str, Any]) -> dict[str, Any]:
    """The command with its secret args (pickup codes) masked."""
    args = command.get("args")
    if not isinstance(args, dict) or not any(k in args for k in SECRET_ARGS):
        return command
    return {**command, "args": {k: MASK if k in SECRET_ARGS else v for k, v in args.items()}}


def classify(topics: Topics, topic: str) -> tuple[str, str | None]:
    """(kind, name) of a topic under the site: status / event type / state device /
    result / command name (event types and command names dotted again: their dots are
    topic levels, ``events/alarm/raised`` is ``alarm.raised``)."""
    rest = topic[len(topics.base) + 1 :] if topic.startswith(topics.base + "/") else topic
    head, _, tail = rest.partition("/")
    if rest == "status":
        return "status", None
    if rest == "results":
        return "result", None
    if rest == "heartbeat":
        return "heartbeat", None
    if head == "state":
        return "state", tail or None
    if head in ("events", "commands"):
        return ("event" if head == "events" else "command"), tail.replace("/", ".") or None
    return "other", None


class Centre:
    def __init__(
        self,
        broker: BrokerConfig,
        topics: Topics,
        hub: EventHub,
        now: Callable[[], datetime] | None = None,
        max_payload_bytes: int | None = None,
    ) -> None:
        """``now``: the site's wall clock, which commands are signed with (the simulator's
        clock may have been moved forward, POST /clock). ``max_payload_bytes``: the site's
        ``commands.max_payload_bytes``; under MQTT 5 the console asks the broker for the same
        Maximum Packet Size as the site, so an oversized command is not delivered to the
        simulator process through the console either."""
        self.broker = broker
        self.max_payload_bytes = max_payload_bytes
        self.now = now or (lambda: datetime.now(UTC))
        self.topics = topics
        self.hub = hub
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._waiting: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        # command_id -> (name, args) of commands sent here, to say what a result is for.
        self._sent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.received = 0
        self.sent = 0
        self.client = paho_client(
            broker, f"ansim-console-{uuid.uuid4().hex[:12]}", clean_session=True
        )
        self.client.reconnect_delay_set(1, 5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        props = None
        if self.broker.protocol == "5" and self.max_payload_bytes is not None:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.MaximumPacketSize = self.max_payload_bytes + PACKET_HEADROOM
        self.client.connect_async(
            self.broker.host, self.broker.port, keepalive=30, properties=props
        )
        self.client.loop_start()

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
        with self._lock:
            for done, _ in self._waiting.values():
                done.set()

    def snapshot(self) -> dict[str, Any]:
        return {"connected": self.connected, "sent": self.sent, "received": self.received}

    # ---- sending ----
    def send(
        self,
        name: str,
        args: dict[str, Any],
        key: Ed25519PrivateKey,
        key_id: str,
        *,
        ttl_s: float = 300.0,
        wait_s: float = 5.0,
    ) -> dict[str, Any]:
        """Sign and publish one command; wait up to ``wait_s`` for its result.
        Returns {"command" (masked), "topic", "result" (None when none came in time)}."""
        command = {
            "command_id": str(uuid.uuid4()),
            "site": self.topics.site,
            "name": name,
            "args": args,
            "expires_at": rfc3339(self.now() + timedelta(seconds=ttl_s)),
            "key_id": key_id,
        }
        signed = sign_command(command, key)
        cid = signed["command_id"]
        done, box = threading.Event(), list[dict[str, Any]]()
        with self._lock:
            self._waiting[cid] = (done, box)
        self._remember(cid, {"name": name, "locker": args.get("locker")})
        topic = self.topics.command(name)
        try:
            payload = json.dumps(signed, ensure_ascii=False).encode("utf-8")
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
            self.sent += 1
            done.wait(wait_s)
        finally:
            with self._lock:
                self._waiting.pop(cid, None)
        return {"command": masked(signed), "topic": topic, "result": box[0] if box else None}

    def _remember(self, command_id: str, about: dict[str, Any]) -> None:
        with self._lock:
            self._sent[command_id] = about
            self._sent.move_to_end(command_id)
            while len(self._sent) > REMEMBERED:
                self._sent.popitem(last=False)

    # ---- paho callbacks: never block, never raise ----
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            if rc.is_failure:
                log.warning("console_centre_refused", reason=str(rc))
                return
            client.subscribe(f"{self.topics.base}/#", qos=1)
            self._connected.set()
        except Exception as exc:
            log.error("console_centre_on_connect_failed", error=str(exc))

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._received(msg.topic, bytes(msg.payload), bool(msg.retain))
        except Exception as exc:
            log.error("console_centre_on_message_failed", error=str(exc))

    def _received(self, topic: str, raw: bytes, retained: bool) -> None:
        self.received += 1
        kind, name = classify(self.topics, topic)
        if kind == "heartbeat":  # the site's link probe (every keepalive_s / 2 when idle)
            return
        try:
            payload: Any = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        entry: dict[str, Any] = {
            "topic": topic,
            "kind": kind,
            "name": name,
            "device": None,
            "retained": retained,
            "at": rfc3339(datetime.now(UTC)),
            "payload": payload,
        }
        if isinstance(payload, dict):
            if kind == "command":
                entry["payload"] = masked(payload)
                args = payload.get("args")
                locker = args.get("locker") if isinstance(args, dict) else None
                about = {"name": payload.get("name"), "locker": locker}
                entry["command"] = about
                if isinstance(locker, int):
                    entry["device"] = f"locker-{locker}"
                cid = payload.get("command_id")
                if isinstance(cid, str):
                    self._remember(cid, about)
            elif kind == "event":
                entry["device"] = payload.get("device")
            elif kind == "state":
                entry["device"] = name
            elif kind == "result":
                cid = payload.get("command_id")
                with self._lock:
                    sent = self._sent.get(cid) if isinstance(cid, str) else None
                    waiter = self._waiting.get(cid) if isinstance(cid, str) else None
                if sent is not None:
                    entry["command"] = sent
                    if sent.get("locker") is not None:
                        entry["device"] = f"locker-{sent['locker']}"
                if waiter is not None and not waiter[1]:
                    waiter[1].append(payload)
                    waiter[0].set()
            elif kind == "status":
                entry["device"] = "site"
        self.hub.publish("mqtt", entry)
