"""Real mosquitto brokers and recording MQTT subscribers for tests and benches.

Everything here waits on conditions (sockets, ``threading.Condition``, ``Event.wait``)
instead of sleeping, so tests are as fast as the broker and fail with a readable
summary when something does not arrive.

Public API::

    find_mosquitto() -> str | None
    free_port(host="127.0.0.1") -> int
    Mosquitto(workdir=None, *, tls=False, port=None, binary=None, start_timeout=10,
              password_file=None, acl_file=None)
        .start() / .stop() / .kill() / .restart() / .close(), .url / .host / .port,
        .ca_path / .client_cert_path / .client_key_path (TLS mode), .log_text()
    write_password_file(path, {user: password}) -> Path   (with mosquitto_passwd)
    Subscriber(host, port, topics=("#",), *, protocol="3.1.1", tls=None, username=None, ...)
        .wait_for(match, timeout) / .wait_count(match, n, timeout) / .messages(filter)
        .clear() / .publish(topic, payload, qos=1, retain=False) / .close()
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.support.process import ChildProcess, find_binary

__all__ = [
    "Mosquitto",
    "MosquittoError",
    "ReceivedMessage",
    "SessionSubscriber",
    "Subscriber",
    "SubscriberFactory",
    "TlsFiles",
    "dead_broker_url",
    "find_mosquitto",
    "find_mosquitto_passwd",
    "free_port",
    "live_subscribers",
    "mqtt_protocol_version",
    "persistent_broker",
    "port_accepts",
    "write_password_file",
]

DEFAULT_HOST = "127.0.0.1"
_MOSQUITTO_FALLBACKS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


# --------------------------------------------------------------------------- generic helpers


def free_port(host: str = DEFAULT_HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def dead_broker_url(host: str = DEFAULT_HOST) -> str:
    """A broker URL nothing listens on: a site's link stays down."""
    return f"mqtt://{host}:{free_port(host)}"


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a TCP connection to ``host:port`` can be opened right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_mosquitto() -> str | None:
    """Path of the mosquitto broker binary (``$ANSIM_MOSQUITTO``, PATH, then sbin dirs)."""
    return find_binary("mosquitto", "ANSIM_MOSQUITTO", _MOSQUITTO_FALLBACKS)


def find_mosquitto_passwd() -> str | None:
    """Path of ``mosquitto_passwd`` (Debian ships it in the mosquitto package)."""
    return find_binary(
        "mosquitto_passwd",
        fallbacks=("/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd"),
    )


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file for ``users`` ({username: password}), hashed by
    mosquitto_passwd (as an operator would make one)."""
    binary = find_mosquitto_passwd()
    if binary is None:
        raise MosquittoError("mosquitto_passwd not found (it comes with the mosquitto package)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")
    for user, password in users.items():
        subprocess.run(
            [binary, "-b", str(path), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return path


def mqtt_protocol_version(protocol: str | int | MQTTProtocolVersion) -> MQTTProtocolVersion:
    """Map ``"3.1.1"`` / ``"311"`` / ``"5"`` / ``"5.0"`` (or paho constants) to paho's enum."""
    if isinstance(protocol, MQTTProtocolVersion):
        return protocol
    text = str(protocol).strip().lower().removeprefix("mqttv").removeprefix("v")
    if text in {"3.1.1", "311", "4"}:
        return MQTTProtocolVersion.MQTTv311
    if text in {"5", "5.0"}:
        return MQTTProtocolVersion.MQTTv5
    raise ValueError(f"unsupported MQTT protocol {protocol!r}; use '3.1.1' or '5'")


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a test PKI: one CA, a server cert (127.0.0.1/localhost), a client cert."""

    ca_path: Path
    server_cert_path: Path
    server_key_path: Path
    client_cert_path: Path
    client_key_path: Path
    client_common_name: str


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def generate_tls_files(directory: Path, client_common_name: str = "ansim-test-client") -> TlsFiles:
    """Create a throw-away CA plus server and client certificates in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(days=1)
    not_after = now + dt.timedelta(days=30)

    ca_key = _new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ansim-edge test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        common_name: str,
        usage: x509.ObjectIdentifier,
        san: x509.SubjectAlternativeName | None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server_cert, server_key = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(
            [
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.DNSName("localhost"),
            ]
        ),
    )
    client_cert, client_key = leaf(client_common_name, ExtendedKeyUsageOID.CLIENT_AUTH, None)

    files = TlsFiles(
        ca_path=directory / "ca.crt",
        server_cert_path=directory / "server.crt",
        server_key_path=directory / "server.key",
        client_cert_path=directory / "client.crt",
        client_key_path=directory / "client.key",
        client_common_name=client_common_name,
    )
    _write_cert(files.ca_path, ca_cert)
    _write_cert(files.server_cert_path, server_cert)
    _write_key(files.server_key_path, server_key)
    _write_cert(files.client_cert_path, client_cert)
    _write_key(files.client_key_path, client_key)
    return files


# --------------------------------------------------------------------------- the broker


class MosquittoError(RuntimeError):
    """The broker could not be started (the message carries its log)."""


class Mosquitto(ChildProcess):
    """A real mosquitto process on a private 127.0.0.1 port, configured from a temp dir.

    ``tls=True`` generates a CA, a server and a client certificate and requires
    clients to present a certificate (TLS >= 1.2, certificate CN used as username).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        tls: bool = False,
        port: int | None = None,
        binary: str | None = None,
        host: str = DEFAULT_HOST,
        start_timeout: float = 10.0,
        extra_config: str = "",
        password_file: Path | None = None,
        acl_file: Path | None = None,
    ) -> None:
        """``password_file`` turns anonymous access off; ``acl_file`` applies an ACL."""
        found = binary or find_mosquitto()
        if found is None:
            raise MosquittoError("mosquitto binary not found (PATH, /usr/sbin)")
        self.binary = found
        self.host = host
        self.tls = tls
        self.start_timeout = start_timeout
        self.extra_config = extra_config
        self.password_file = password_file
        self.acl_file = acl_file
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp("-mqtt"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._explicit_port = port is not None
        self._port = port if port is not None else free_port(host)
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.stderr_path = self.workdir / "mosquitto.stderr"
        self._tls_files = generate_tls_files(self.workdir / "pki") if tls else None
        self._log_offset = 0
        self._closed = False

    # -- addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self._port}"

    @property
    def tls_files(self) -> TlsFiles:
        if self._tls_files is None:
            raise AttributeError("this broker was not started with tls=True")
        return self._tls_files

    @property
    def ca_path(self) -> Path:
        return self.tls_files.ca_path

    @property
    def client_cert_path(self) -> Path:
        return self.tls_files.client_cert_path

    @property
    def client_key_path(self) -> Path:
        return self.tls_files.client_key_path

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<Mosquitto {self.url} {state}>"

    # -- config / logs ---------------------------------------------------------------------
    def _config_text(self) -> str:
        lines = [
            "# generated by tests/support/mqtt.py",
            "per_listener_settings false",
            f"allow_anonymous {'false' if self.password_file is not None else 'true'}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp true",
            f"listener {self._port} {self.host}",
        ]
        if os.geteuid() == 0:
            # Stay as the invoking user so the temp-dir files stay readable.
            lines.insert(1, f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        if self._tls_files is not None:
            lines += [
                f"cafile {self._tls_files.ca_path}",
                f"certfile {self._tls_files.server_cert_path}",
                f"keyfile {self._tls_files.server_key_path}",
                "require_certificate true",
                "use_identity_as_username true",
                # mosquitto 2.0 reads this as the MINIMUM version: clients may still
                # negotiate TLS 1.3 (then a missing client cert fails after the handshake).
                "tls_version tlsv1.2",
            ]
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def log_text(self, since_start: bool = False) -> str:
        """The broker log (all of it, or only since the latest start)."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        if since_start:
            data = data[self._log_offset :]
        return data.decode("utf-8", "replace")

    def _startup_output(self) -> str:
        stderr = ""
        with contextlib.suppress(FileNotFoundError):
            stderr = self.stderr_path.read_text("utf-8", "replace")
        return f"--- log ---\n{self.log_text(since_start=True)}--- stderr ---\n{stderr}"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Mosquitto:
        """Start the broker and return once its port accepts TCP connections."""
        if self._closed:
            raise MosquittoError("broker was closed")
        if self.running:
            return self
        deadline = time.monotonic() + self.start_timeout
        pause = threading.Event()
        attempt = 0
        while True:
            attempt += 1
            outcome = self._spawn_and_wait(deadline)
            if outcome == "ready":
                return self
            bind_conflict = "address already in use" in self._startup_output().lower()
            if not bind_conflict or time.monotonic() >= deadline:
                raise MosquittoError(
                    f"mosquitto failed to start on {self.host}:{self._port} "
                    f"(attempt {attempt}, {outcome})\n{self._startup_output()}"
                )
            if not self._explicit_port and attempt < 5:
                self._port = free_port(self.host)  # lost a race for a random port
            else:
                pause.wait(0.05)  # same port: wait for the old socket to go away

    def _spawn_and_wait(self, deadline: float) -> str:
        self.config_path.write_text(self._config_text(), encoding="utf-8")
        try:
            self._log_offset = self.log_path.stat().st_size
        except FileNotFoundError:
            self._log_offset = 0
        proc = self._spawn(
            [self.binary, "-c", str(self.config_path)],
            self.stderr_path,
            append=False,
            cwd=self.workdir,
        )
        pause = threading.Event()
        while True:
            code = proc.poll()
            if code is not None:
                return f"exited with code {code}"
            # Only trust the port once mosquitto says its listeners are up, so a
            # foreign listener on the same port is never mistaken for ours.
            if "running" in self.log_text(since_start=True) and port_accepts(self.host, self._port):
                if proc.poll() is None:
                    return "ready"
                continue
            if time.monotonic() >= deadline:
                self._signal_and_wait(signal.SIGKILL, 5.0)
                return "timed out waiting for the port"
            pause.wait(0.01)

    def restart(self, timeout: float | None = None) -> Mosquitto:
        """Kill the broker if it still runs, then start it again on the SAME port."""
        self.kill()
        self._explicit_port = True  # clients remember the port: never move it
        if timeout is not None:
            self.start_timeout = timeout
        return self.start()

    def close(self) -> None:
        """Kill the broker and remove the temp dir if this object created it."""
        self.kill()
        self.untrack()
        self._closed = True
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- the subscriber


@dataclass(frozen=True)
class ReceivedMessage:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    received_at: float  # time.monotonic()
    json: Any = None  # decoded JSON payload, when ``is_json``
    is_json: bool = False
    properties: Any = field(default=None, repr=False)  # paho Properties (MQTT 5) or None

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")

    def matches(self, topic_filter: str) -> bool:
        return mqtt.topic_matches_sub(topic_filter, self.topic)


Match = str | Callable[[ReceivedMessage], bool]

_LIVE_SUBSCRIBERS: weakref.WeakSet[Subscriber] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def live_subscribers() -> list[Subscriber]:
    """Subscribers that are still open (conftest closes leftovers after each test)."""
    with _LIVE_LOCK:
        return list(_LIVE_SUBSCRIBERS)


def _as_predicate(match: Match | None) -> Callable[[ReceivedMessage], bool]:
    if match is None:
        return lambda _m: True
    if isinstance(match, str):
        topic_filter = match
        return lambda m: mqtt.topic_matches_sub(topic_filter, m.topic)
    return match


def _describe(match: Match | None) -> str:
    if match is None:
        return "any message"
    if isinstance(match, str):
        return f"topic filter {match!r}"
    return getattr(match, "__name__", repr(match))


def _encode_payload(payload: bytes | bytearray | str | dict[str, Any] | list[Any] | None) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


class Subscriber:
    """An independent paho-mqtt 2.x client that records everything it receives.

    It re-subscribes on every (re)connect, so it survives a broker restart
    (paho reconnects after ~1 s).
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: str | Sequence[str] = ("#",),
        *,
        protocol: str | int | MQTTProtocolVersion = "3.1.1",
        client_id: str | None = None,
        qos: int = 1,
        tls: TlsFiles | None = None,
        ca_path: str | os.PathLike[str] | None = None,
        client_cert_path: str | os.PathLike[str] | None = None,
        client_key_path: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        keepalive: int = 30,
        clean_session: bool | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.topics: list[str] = [topics] if isinstance(topics, str) else list(topics)
        self.qos = qos
        self.protocol = mqtt_protocol_version(protocol)
        self.client_id = client_id or f"test-sub-{uuid.uuid4().hex[:10]}"
        self.timeout = timeout

        self._cond = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._connected = False
        self._connect_count = 0
        self._subscribed_count = 0  # connections whose SUBACK arrived
        self._pending_sub_mid: int | None = None
        self._last_error: str | None = None
        self._closed = False

        # clean_session=False (MQTT 3.1.1): the broker queues QoS 1 messages while we are away.
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self.protocol,
            clean_session=clean_session,
        )
        # paho types the delays as int but sleeps on floats: reconnect fast after a restart.
        self.client.reconnect_delay_set(min_delay=cast(int, 0.1), max_delay=1)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            ca_path = ca_path or tls.ca_path
            client_cert_path = client_cert_path or tls.client_cert_path
            client_key_path = client_key_path or tls.client_key_path
        if ca_path is not None:
            self.client.tls_set(
                ca_certs=str(ca_path),
                certfile=str(client_cert_path) if client_cert_path else None,
                keyfile=str(client_key_path) if client_key_path else None,
            )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

        try:
            # Synchronous TCP + TLS handshake: "connection refused" raises here. A rejected
            # client certificate raises here under TLS 1.2, but under TLS 1.3 only after the
            # handshake, as ConnectionError from wait_subscribed(); both are OSError.
            self.client.connect(host, port, keepalive=keepalive)
        except OSError:
            self._closed = True
            raise
        self.client.loop_start()
        with _LIVE_LOCK:
            _LIVE_SUBSCRIBERS.add(self)
        try:
            self.wait_subscribed(timeout)
        except BaseException:
            self.close()
            raise

    @classmethod
    def for_broker(
        cls,
        broker: Mosquitto,
        topics: str | Sequence[str] = ("#",),
        *,
        client_cert: bool = True,
        **kwargs: Any,
    ) -> Subscriber:
        """A subscriber for ``broker``; with TLS, presents the client cert unless told not to."""
        if broker.tls:
            files = broker.tls_files
            kwargs.setdefault("ca_path", files.ca_path)
            if client_cert:
                kwargs.setdefault("client_cert_path", files.client_cert_path)
                kwargs.setdefault("client_key_path", files.client_key_path)
        return cls(broker.host, broker.port, topics, **kwargs)

    # -- paho callbacks (network thread) -----------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        with self._cond:
            if reason_code.is_failure:
                self._last_error = f"CONNACK refused: {reason_code}"
                self._cond.notify_all()
                return
            self._connected = True
            self._connect_count += 1
            self._last_error = None
            if self.topics:
                _rc, mid = client.subscribe([(t, self.qos) for t in self.topics])
                self._pending_sub_mid = mid
            else:
                self._subscribed_count = self._connect_count
            self._cond.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        with self._cond:
            self._connected = False
            if not self._closed:
                self._last_error = f"disconnected: {reason_code}"
            self._cond.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[Any],
        properties: Any,
    ) -> None:
        with self._cond:
            if mid != self._pending_sub_mid:
                return
            failed = [str(rc) for rc in reason_codes if rc.is_failure]
            if failed:
                self._last_error = f"SUBACK refused {self.topics}: {failed}"
            else:
                self._subscribed_count = self._connect_count
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        decoded: Any = None
        is_json = False
        try:
            decoded = json.loads(payload)
            is_json = True
        except (ValueError, UnicodeDecodeError):
            pass
        received = ReceivedMessage(
            topic=msg.topic,
            payload=payload,
            retain=bool(msg.retain),
            qos=msg.qos,
            received_at=time.monotonic(),
            json=decoded,
            is_json=is_json,
            properties=getattr(msg, "properties", None),
        )
        with self._cond:
            self._messages.append(received)
            self._cond.notify_all()

    # -- state -------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    def connect_count(self) -> int:
        """How many successful CONNACKs this client has had (1 + reconnects)."""
        with self._cond:
            return self._connect_count

    def wait_subscribed(self, timeout: float | None = None, *, connect_count: int = 1) -> None:
        """Block until the subscription of connection number ``connect_count`` is acked.

        After a broker restart use ``wait_subscribed(connect_count=sub.connect_count + 1)``
        (read ``connect_count`` before the restart) to wait for the re-subscription.
        """
        timeout = self.timeout if timeout is None else timeout

        def connect_failed() -> bool:
            # Before the first CONNACK any disconnect is fatal (refused, TLS alert,
            # wrong protocol); afterwards disconnects are expected while a broker restarts.
            err = self._last_error
            if err is None or self._connected:
                return False
            return err.startswith("CONNACK") or self._connect_count == 0

        def sub_failed() -> bool:
            return self._last_error is not None and self._last_error.startswith("SUBACK")

        def done() -> bool:
            return self._connected and self._subscribed_count >= connect_count

        with self._cond:
            self._cond.wait_for(lambda: done() or connect_failed() or sub_failed(), timeout)
            if done():
                return
            state = (
                f"subscriber {self.client_id} to {self.host}:{self.port} topics={self.topics} "
                f"(connection #{connect_count}): connected={self._connected} "
                f"connects={self._connect_count} last_error={self._last_error}"
            )
            if connect_failed():
                raise ConnectionError(f"MQTT connection failed: {state}")
            if sub_failed():
                raise AssertionError(f"subscription refused: {state}")
            raise AssertionError(f"not subscribed within {timeout:.1f}s: {state}")

    # -- reading -------------------------------------------------------------------------------
    def messages(self, topic_filter: Match | None = None) -> list[ReceivedMessage]:
        """Copy of the recorded messages, optionally only those matching a filter/predicate."""
        pred = _as_predicate(topic_filter)
        with self._cond:
            return [m for m in self._messages if pred(m)]

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def _summary(self, limit: int = 25) -> str:
        msgs = self._messages
        lines = [
            f"subscriber {self.client_id} on {self.host}:{self.port} topics={self.topics} "
            f"connected={self._connected} connects={self._connect_count} "
            f"last_error={self._last_error}; received {len(msgs)} message(s)"
        ]
        if len(msgs) > limit:
            lines.append(f"  ... {len(msgs) - limit} earlier message(s) omitted")
        for m in msgs[-limit:]:
            payload = m.payload[:200].decode("utf-8", "replace")
            more = "..." if len(m.payload) > 200 else ""
            flag = " retain" if m.retain else ""
            lines.append(f"  {m.topic} qos={m.qos}{flag}: {payload}{more}")
        return "\n".join(lines)

    def wait_for(self, match: Match, timeout: float | None = None) -> ReceivedMessage:
        """First recorded message (already received or arriving) matching ``match``.

        ``match`` is a topic filter string or a predicate on :class:`ReceivedMessage`.
        """
        timeout = self.timeout if timeout is None else timeout
        pred = _as_predicate(match)
        found: list[ReceivedMessage] = []

        def check() -> bool:
            for m in self._messages:
                with contextlib.suppress(Exception):
                    if pred(m):
                        found.append(m)
                        return True
            return False

        with self._cond:
            if self._cond.wait_for(check, timeout):
                return found[0]
            raise AssertionError(
                f"no message matching {_describe(match)} within {timeout:.1f}s\n{self._summary()}"
            )

    def wait_count(
        self, match: Match | None, n: int, timeout: float | None = None
    ) -> list[ReceivedMessage]:
        """Block until at least ``n`` recorded messages match; return all that match."""
        timeout = self.timeout if timeout is None else timeout
        pred = _as_predicate(match)

        def matching() -> list[ReceivedMessage]:
            out = []
            for m in self._messages:
                with contextlib.suppress(Exception):
                    if pred(m):
                        out.append(m)
            return out

        with self._cond:
            if self._cond.wait_for(lambda: len(matching()) >= n, timeout):
                return matching()
            got = len(matching())
            raise AssertionError(
                f"expected >= {n} message(s) matching {_describe(match)} within {timeout:.1f}s, "
                f"got {got}\n{self._summary()}"
            )

    # -- writing -------------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: bytes | bytearray | str | dict[str, Any] | list[Any] | None = b"",
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Publish and, for QoS > 0, wait for the broker's acknowledgement.

        ``dict``/``list`` payloads are sent as compact JSON.
        """
        timeout = self.timeout if timeout is None else timeout
        info = self.client.publish(topic, _encode_payload(payload), qos=qos, retain=retain)
        if qos == 0:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise AssertionError(f"publish to {topic!r} failed: {mqtt.error_string(info.rc)}")
            return
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise AssertionError(f"publish to {topic!r} failed: {exc}") from exc
        if not info.is_published():
            raise AssertionError(
                f"publish to {topic!r} (qos={qos}) not acknowledged within {timeout:.1f}s; "
                f"connected={self.connected}"
            )

    def close(self) -> None:
        """Disconnect and stop the network thread (idempotent, never blocks for long)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            was_connected = self._connected
        with _LIVE_LOCK:
            _LIVE_SUBSCRIBERS.discard(self)
        with contextlib.suppress(Exception):
            self.client.disconnect()
        if was_connected:
            with contextlib.suppress(Exception):
                self.client.loop_stop()
        else:
            # paho's thread may sit in its reconnect back-off (up to 1 s) and only then
            # see the disconnect; let it finish in the background instead of joining here.
            threading.Thread(
                target=self.client.loop_stop, name=f"{self.client_id}-stop", daemon=True
            ).start()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Type of the ``subscriber_factory`` fixture:
#: ``factory(topics="#", *, broker=None, protocol=None, client_cert=True, **kwargs)``.
SubscriberFactory = Callable[..., Subscriber]


def close_all(items: Iterable[Subscriber | Mosquitto]) -> None:
    """Close subscribers/brokers, ignoring errors (for teardown)."""
    for item in items:
        with contextlib.suppress(Exception):
            item.close()


# --------------------------------------------------------------------------- persistent sessions


def persistent_broker(tmp_path: Path) -> Mosquitto:
    store = tmp_path / "broker-store"
    store.mkdir()
    return Mosquitto(
        tmp_path / "broker",
        extra_config=f"persistence true\npersistence_location {store}/\nautosave_interval 1",
    ).start()


class SessionSubscriber(Subscriber):
    """A subscriber with a persistent session, so a broker restart queues for it."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        super().__init__(
            broker.host,
            broker.port,
            [topic],
            client_id="centre-" + uuid.uuid4().hex[:6],
            clean_session=False,
        )
