"""The control centre's side of the MQTT API, for tools: a client that subscribes to a
site (or every site) and records what it receives, signs and publishes commands, and
waits for their results. Used by `ansim-edge watch`, `ansim-edge send` and the simulator's
scenarios (docs/cli.md, docs/scenarios.md). Not used by the site itself.

paho callbacks only record and notify (never block, never raise)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from edge.config import BrokerConfig, SiteConfig
from edge.core.clock import rfc3339
from edge.core.errors import AnsimError, ConfigError
from edge.core.mqtt_client import paho_client
from edge.core.signing import sign_command
from edge.core.topics import Topics

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KINDS = ("status", "events", "state", "commands", "results")


@dataclass(frozen=True)
class Message:
    """One message as the centre received it. ``kind``: ``status``, ``event``, ``state``,
    ``command``, ``result`` or ``other``; ``name``: the event type or command name (dotted,
    as in payloads: ``events/alarm/raised`` is ``alarm.raised``) or the state's device
    (``""`` for status and results); ``body``: the payload parsed as JSON, or None."""

    topic: str
    payload: bytes
    retained: bool
    received: float  # time.time()
    site: str
    kind: str
    name: str
    body: Any

    @property
    def data(self) -> dict[str, Any]:
        """An event's ``data`` (``{}`` when there is none)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("data"), dict):
            return dict(self.body["data"])
        return {}


def parse_message(
    root: str, topic: str, payload: bytes, retained: bool = False, received: float | None = None
) -> Message:
    """Split ``{root}/{site}/{kind}[/{levels}]``; anything else is kind ``other``. The
    levels of an event type or command name are joined with dots again."""
    try:
        body: Any = json.loads(payload) if payload else None
    except ValueError:
        body = None
    site, kind, name = "", "other", ""
    if topic.startswith(root + "/"):
        parts = topic[len(root) + 1 :].split("/", 2)
        if len(parts) >= 2 and parts[1] in KINDS:
            site = parts[0]
            kind = {"events": "event", "commands": "command", "results": "result"}.get(
                parts[1], parts[1]
            )
            name = parts[2] if len(parts) == 3 else ""
            if kind in ("event", "command"):
                name = name.replace("/", ".")
    return Message(
        topic=topic,
        payload=payload,
        retained=retained,
        received=time.time() if received is None else received,
        site=site,
        kind=kind,
        name=name,
        body=body,
    )


def broker_config(cfg: SiteConfig | None, url: str | None) -> BrokerConfig:
    """The connection settings of the config's ``broker`` (TLS, username, password file,
    protocol) with its URL replaced by ``url`` when given (a plain ``mqtt://`` URL drops the
    TLS settings: e.g. the simulator's embedded broker); without a config, ``url``."""
    if cfg is None:
        data: dict[str, Any] = {"url": url or "mqtt://127.0.0.1:1883"}
    elif url is None:
        return cfg.broker  # with several `urls`, the tools connect to the first
    else:
        data = {**cfg.broker.model_dump(), "url": url, "urls": None}
        if url.startswith("mqtt://"):
            data["tls"] = None
    try:
        return BrokerConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--broker: {first['msg']}") from None


class CentreClient:
    """Connects (clean session) and subscribes to ``{root}/{site}/#`` (``site`` ``+``: all
    sites), records every message (``messages``), calls ``on_message`` for each, and lets
    a caller wait for one. Reconnects by itself (paho) and subscribes again."""

    def __init__(
        self,
        broker: BrokerConfig,
        root: str = "ansim/v1",
        site: str = "+",
        *,
        on_message: Callable[[Message], None] | None = None,
        on_link: Callable[[str], None] | None = None,
        client_id: str | None = None,
        record: bool = True,
    ) -> None:
        self.broker = broker
        self.root = root
        self.site = site
        self.on_message = on_message
        self.on_link = on_link
        self.record = record
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._connected = False
        self._ever_connected = False
        self._subscribed = 0
        self._refused: str | None = None
        self._closed = False
        self.client = paho_client(
            broker, client_id or f"ansim-centre-{uuid.uuid4().hex[:10]}", clean_session=True
        )
        self.client.reconnect_delay_set(1, 5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def filter(self) -> str:
        return f"{self.root}/{self.site}/#"

    @property
    def where(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    # ---- lifecycle ----
    def connect(self, timeout: float = 10.0) -> CentreClient:
        """Connect and subscribe; AnsimError with the reason when that fails."""
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as exc:
            raise AnsimError(
                f"cannot connect to the MQTT broker at {self.where}: "
                f"{exc.strerror or exc} (is the simulator running? right --broker?)"
            ) from None
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._subscribed and self._refused is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            refused, subscribed = self._refused, self._subscribed
        if not subscribed:
            self.close()
            why = refused or f"no answer within {timeout:g} s"
            raise AnsimError(f"the MQTT broker at {self.where} did not accept us: {why}")
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def __enter__(self) -> CentreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    # ---- publishing ----
    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        """QoS 1, not retained; returns once the broker has it (PUBACK)."""
        info = self.client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise AnsimError(f"could not publish to {self.where}: {exc}") from None
        if not info.is_published():
            raise AnsimError(
                f"the broker at {self.where} did not take the message within {timeout:g} s"
            )

    # ---- waiting ----
    def snapshot(self) -> list[Message]:
        with self._cond:
            return list(self.messages)

    def wait_for(
        self, match: Callable[[Message], bool], timeout: float, start: int = 0
    ) -> Message | None:
        """The first recorded message from index ``start`` on that matches, waiting up to
        ``timeout`` seconds for it; None if none came."""
        i = self.wait_index(lambda i, m: match(m), timeout, start)
        return None if i is None else self.messages[i]

    def wait_index(
        self, match: Callable[[int, Message], bool], timeout: float, start: int = 0
    ) -> int | None:
        """As ``wait_for``, but ``match`` gets the index too, and the index is returned."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.messages):
                    if match(i, self.messages[i]):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def wait_change(self, seen: int, timeout: float) -> int:
        """Wait until more than ``seen`` messages are recorded (or the timeout); returns
        how many there are."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) <= seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return len(self.messages)

    def latest(self, kind: str, name: str = "", site: str | None = None) -> Message | None:
        """The last message of this kind and name (a retained state, the status)."""
        with self._cond:
            for m in reversed(self.messages):
                if m.kind == kind and m.name == name and (site is None or m.site == site):
                    return m
        return None

    # ---- paho callbacks (network thread): record and notify only ----
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            if rc.is_failure:
                with self._cond:
                    self._refused = f"CONNACK refused: {rc}"
                    self._cond.notify_all()
                return
            client.subscribe(self.filter, qos=1)
            with self._cond:
                again, self._connected = self._ever_connected, True
                self._ever_connected = True
            if again and self.on_link is not None:
                self.on_link("connected again")
        except Exception:
            pass

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            with self._cond:
                was, self._connected = self._connected, False
                self._cond.notify_all()
            if was and not self._closed and self.on_link is not None:
                self.on_link(f"disconnected ({rc}); reconnecting")
        except Exception:
            pass

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        try:
            with self._cond:
                if all(not c.is_failure for c in codes):
                    self._subscribed += 1
                else:
                    self._refused = f"subscription to {self.filter} refused"
                self._cond.notify_all()
        except Exception:
            pass

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            m = parse_message(self.root, msg.topic, bytes(msg.payload), bool(msg.retain))
            if self.record:
                with self._cond:
                    self.messages.append(m)
                    self._cond.notify_all()
            if self.on_message is not None:
                self.on_message(m)
        except Exception:
            pass


def build_command(
    name: str,
    args: dict[str, Any],
    key: Ed25519PrivateKey,
    *,
    key_id: str,
    site: str,
    ttl_s: float = 300.0,
    now: datetime | None = None,
    command_id: str | None = None,
) -> dict[str, Any]:
    """A signed command for ``site`` (as `ansim-edge sign` makes it). ``now``: the site's
    wall clock, when it differs from ours (a simulator whose clock was moved forward)."""
    start = now or datetime.now(UTC)
    cmd = {
        "command_id": command_id or str(uuid.uuid4()),
        "site": site,
        "name": name,
        "args": args,
        "expires_at": rfc3339(start + timedelta(seconds=ttl_s)),
        "key_id": key_id,
    }
    return sign_command(cmd, key)


def default_key_id(key_path: Path) -> str:
    """``keys/centre.key`` -> ``centre`` (keygen's PREFIX; the simulator's ``dev.key`` ->
    ``dev``)."""
    name = key_path.name
    return name[: -len(".key")] if name.endswith(".key") and len(name) > 4 else name


@dataclass(frozen=True)
class SendOutcome:
    command: dict[str, Any]
    result: Message | None  # None: no result within the timeout
    status: Message | None  # the site's last status seen (for the timeout message)

    @property
    def ok(self) -> bool:
        return self.result is not None and bool(
            isinstance(self.result.body, dict) and self.result.body.get("ok") is True
        )


def send_and_wait(
    client: CentreClient, site: str, command: dict[str, Any], timeout: float
) -> SendOutcome:
    """Publish ``command`` on its topic (``{root}/{site}/commands/alarm/ack``) and wait for
    its result (by ``command_id``) on the results topic. ``client`` must subscribe to that
    site."""
    start = len(client.snapshot())
    topic = Topics(client.root, site).command(str(command["name"]))
    payload = json.dumps(command, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    t0 = time.monotonic()
    client.publish(topic, payload, timeout=timeout)
    cid = command["command_id"]

    def mine(m: Message) -> bool:
        return (
            m.kind == "result"
            and m.site == site
            and isinstance(m.body, dict)
            and m.body.get("command_id") == cid
        )

    left = max(0.0, timeout - (time.monotonic() - t0))
    result = client.wait_for(mine, left, start=start)
    return SendOutcome(command, result, client.latest("status", site=site))
