"""Real brokers besides mosquitto, a broker matrix handle, and a TCP proxy that freezes links.

Like ``tests.support.mqtt`` everything here waits on conditions (ports, the NATS monitoring
endpoint, MQTT round trips) with timeouts, never on bare sleeps, and keeps every broker's
log for failure messages.

Public API::

    find_nats_server() -> str | None
    NatsCluster(workdir, size=3, *, binary=None, start_timeout=60)
        .start() / .close() / .log_tail(); .nodes[i] -> NatsNode
    NatsNode  .kill() / .stop() / .restart() / .meta_leader() / .monitor(path) / .log_text()
              .url (mqtt://127.0.0.1:MQTT_PORT) / .host / .port (MQTT) / .name / .http_port
    AmqttBroker(workdir, *, port=None)     the embedded broker of simulator/broker.py
        .start() / .kill() / .stop() / .restart() / .close() / .url / .host / .port / .log_text()
    TcpProxy(upstream_host, upstream_port)
        .start() / .close() / .url / .host / .port
        .freeze(new_connections=True) / .unfreeze() / .cut() / .frozen
        .connections / .accepted / .pending_bytes() / .wait_connections(n)
    BrokerHandle   what the ``broker_matrix`` fixture yields (see its docstring)
    (tests.support.process.kill_all() SIGKILLs every broker process still running)

Node roles in a NATS cluster: the site connects to node 1 (``nodes[0]``), the centre to
node 2 (``nodes[1]``), node 3 (``nodes[2]``) is the spare that only stores replicas.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import shutil
import socket
import struct
import sys
import termios
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests.support.mqtt import DEFAULT_HOST, Mosquitto, Subscriber, free_port, port_accepts
from tests.support.process import ChildProcess, find_binary
from tests.support.wait import wait_until

__all__ = [
    "AmqttBroker",
    "BrokerError",
    "BrokerHandle",
    "NatsCluster",
    "NatsNode",
    "Role",
    "TcpProxy",
    "find_nats_server",
]

REPO = Path(__file__).resolve().parent.parent
_NATS_FALLBACKS = ("/usr/sbin/nats-server", "/usr/local/bin/nats-server", "/usr/bin/nats-server")

Role = Literal["site", "centre", "spare"]


class BrokerError(RuntimeError):
    """A broker could not be started or did not become ready (the message carries its log)."""


# --------------------------------------------------------------------------- processes


class _Process(ChildProcess):
    """One broker process with its log file; ``ready()`` decides when a start is complete."""

    name = "broker"
    poll_interval = 0.01  # seconds between ready() checks while starting
    tls = False  # Subscriber.for_broker reads it

    def __init__(self, workdir: Path, *, start_timeout: float) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "broker.log"
        self.start_timeout = start_timeout
        self._log_offset = 0

    # subclasses ---------------------------------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def ready(self) -> bool:
        """True once the freshly started process serves clients."""
        raise NotImplementedError

    # common -------------------------------------------------------------------------------
    def log_text(self, since_start: bool = False) -> str:
        """The process's output (all of it, or only since the latest start)."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        if since_start:
            data = data[self._log_offset :]
        return data.decode("utf-8", "replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def spawn(self) -> None:
        """Start the process (appending to its log) without waiting for it."""
        if self.running:
            return
        try:
            self._log_offset = self.log_path.stat().st_size
        except FileNotFoundError:
            self._log_offset = 0
        self._spawn(self._command(), self.log_path, cwd=self.workdir, env=self._env())

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until ``ready()``; raise :class:`BrokerError` with the log if it exits first."""
        timeout = self.start_timeout if timeout is None else timeout

        def ready_or_dead() -> bool:
            return not self.running or self.ready()

        try:
            wait_until(
                ready_or_dead,
                timeout=timeout,
                interval=self.poll_interval,
                message=f"{self.name} to become ready",
            )
        except AssertionError as exc:
            raise BrokerError(f"{exc}\n--- {self.name} log ---\n{self.log_tail()}") from None
        if not self.running:
            code = self._proc.returncode if self._proc is not None else None
            raise BrokerError(
                f"{self.name} exited with code {code} while starting\n"
                f"--- {self.name} log ---\n{self.log_text(since_start=True)}"
            )


# --------------------------------------------------------------------------- NATS


def find_nats_server() -> str | None:
    """Path of the nats-server binary (``$ANSIM_NATS_SERVER``, PATH, then sbin/bin dirs)."""
    return find_binary("nats-server", "ANSIM_NATS_SERVER", _NATS_FALLBACKS)


class NatsNode(_Process):
    """One nats-server of a :class:`NatsCluster`: JetStream, an MQTT listener, cluster routes.

    Ports stay the same across :meth:`restart` (clients and the other nodes remember them).
    """

    poll_interval = 0.05

    def __init__(
        self, cluster: NatsCluster, index: int, workdir: Path, *, start_timeout: float
    ) -> None:
        super().__init__(workdir, start_timeout=start_timeout)
        self.cluster = cluster
        self.index = index
        self.name = f"n{index + 1}"
        self.host = cluster.host
        self.config_path = workdir / "nats.conf"
        self.store_dir = workdir / "jetstream"
        self.allocate_ports()

    def allocate_ports(self) -> None:
        self.client_port = free_port(self.host)
        self.port = free_port(self.host)  # the MQTT listener (what Subscriber.for_broker uses)
        self.cluster_port = free_port(self.host)
        self.http_port = free_port(self.host)

    @property
    def mqtt_port(self) -> int:
        return self.port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<NatsNode {self.name} {self.url} {state}>"

    def config_text(self) -> str:
        routes = ", ".join(
            f"nats-route://{self.host}:{node.cluster_port}" for node in self.cluster.nodes
        )
        return "\n".join(
            [
                "# generated by tests/support/brokers.py",
                f"server_name: {self.name}",
                f"listen: {self.host}:{self.client_port}",
                f"http: {self.host}:{self.http_port}",
                "jetstream {",
                f'  store_dir: "{self.store_dir}"',
                "  max_memory_store: 64MB",
                "  max_file_store: 1GB",
                "}",
                "mqtt {",
                f"  listen: {self.host}:{self.port}",
                *(f"  {key}: {value}" for key, value in self.cluster.mqtt_options.items()),
                "}",
                "cluster {",
                f"  name: {self.cluster.name}",
                f"  listen: {self.host}:{self.cluster_port}",
                f"  routes: [{routes}]",
                "}",
                "",
            ]
        )

    def _command(self) -> list[str]:
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        return [self.cluster.binary, "-c", str(self.config_path)]

    def ready(self) -> bool:
        # "Server is ready" is ours (a foreign listener on a reused port never says it); the
        # meta leader is known once this node has joined the cluster's JetStream. (/healthz
        # is no readiness test: it flaps to "not current" whenever MQTT creates consumers,
        # and logs a warning per failed call.) NatsCluster then checks MQTT end to end.
        return "Server is ready" in self.log_text(since_start=True) and bool(self.meta_leader())

    def monitor(self, path: str) -> Any:
        """GET ``path`` on the node's monitoring port, decoded JSON (``/jsz``, ``/varz``)."""
        url = f"http://{self.host}:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            return json.load(resp)

    def meta_leader(self) -> str | None:
        """Name of the JetStream meta leader as this node sees it (None: none known yet)."""
        try:
            leader = self.monitor("/jsz").get("meta_cluster", {}).get("leader")
        except (OSError, ValueError):
            return None
        return str(leader) if leader else None

    def healthy(self) -> bool:
        """``GET /healthz`` answers 200 (JetStream current here; flaps while consumers are
        created, so poll it rather than assert it once)."""
        try:
            with urllib.request.urlopen(
                f"http://{self.host}:{self.http_port}/healthz", timeout=1.0
            ) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def bind_conflict(self) -> bool:
        return "address already in use" in self.log_text(since_start=True).lower()

    def start(self, timeout: float | None = None) -> NatsNode:
        """Start this node and wait until it is healthy and takes an MQTT session."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        self.spawn()
        self.wait_ready(max(0.1, deadline - time.monotonic()))
        self.cluster.wait_mqtt_sessions(deadline)
        return self

    def restart(self, timeout: float | None = None) -> NatsNode:
        """Kill the node if it still runs and start it again on the SAME ports and store."""
        self.kill()
        return self.start(timeout)


class NatsCluster:
    """A 3-node (by default) NATS JetStream cluster with MQTT enabled on every node.

    :meth:`start` returns once every node knows the JetStream meta leader and a QoS 1 message
    published over MQTT on each node reached a QoS 1 MQTT subscriber on every node: the
    cluster carries MQTT traffic end to end.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        size: int = 3,
        *,
        binary: str | None = None,
        host: str = DEFAULT_HOST,
        name: str = "ansim",
        start_timeout: float = 60.0,
        mqtt_options: dict[str, str] | None = None,
    ) -> None:
        """``mqtt_options``: more settings of every node's ``mqtt {}`` block, written as
        ``key: value`` (e.g. ``{"consumer_replicas": "1"}``; NATS checks them at start)."""
        found = binary or find_nats_server()
        if found is None:
            raise BrokerError("nats-server binary not found (PATH, /usr/sbin, /usr/local/bin)")
        self.binary = found
        self.host = host
        self.name = name
        self.workdir = Path(workdir)
        self.start_timeout = start_timeout
        self.mqtt_options = dict(mqtt_options or {})
        self.nodes: list[NatsNode] = []
        for i in range(size):
            self.nodes.append(
                NatsNode(self, i, self.workdir / f"n{i + 1}", start_timeout=start_timeout)
            )

    def __repr__(self) -> str:
        return f"<NatsCluster {self.name} {self.nodes}>"

    def node(self, role: Role) -> NatsNode:
        """The node a role connects to: site -> node 1, centre -> node 2, spare -> node 3."""
        index = {"site": 0, "centre": 1, "spare": 2}[role]
        return self.nodes[min(index, len(self.nodes) - 1)]

    def start(self) -> NatsCluster:
        deadline = time.monotonic() + self.start_timeout
        for attempt in range(1, 4):
            for node in self.nodes:
                node.spawn()
            try:
                for node in self.nodes:
                    node.wait_ready(max(0.1, deadline - time.monotonic()))
            except BrokerError:
                # Lost a race for a "free" port: every node needs the others' cluster
                # ports in its config, so start the whole cluster again on new ports.
                if attempt < 3 and any(n.bind_conflict() for n in self.nodes):
                    for node in self.nodes:
                        node.kill()
                        shutil.rmtree(node.store_dir, ignore_errors=True)
                        node.allocate_ports()
                    continue
                raise
            break
        self.wait_mqtt_sessions(deadline)
        return self

    def wait_mqtt_sessions(self, deadline: float) -> None:
        """Wait until every running node carries QoS 1 MQTT messages to and from the others.

        A node that just (re)joined knows the meta leader before its MQTT account streams are
        reachable: its first MQTT CONNECTs then time out inside the server (4 s each). Retry
        the round trip until it works or ``deadline`` passes.
        """
        last_error: BaseException | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"the cluster did not carry an MQTT round trip in time "
                    f"(last error: {last_error})\n{self.log_tail()}"
                )
            try:
                self._roundtrip(timeout=min(remaining, 10.0))
                return
            except (OSError, AssertionError) as exc:
                last_error = exc
                dead = [n.name for n in self.nodes if n._proc is not None and not n.running]
                if dead:
                    raise BrokerError(f"{dead} exited while starting\n{self.log_tail()}") from exc

    def _roundtrip(self, timeout: float) -> None:
        """One MQTT client per running node subscribes (QoS 1) and publishes (QoS 1) to one
        probe topic; every client must receive every node's message."""
        topic = f"ansim-probe/{uuid.uuid4().hex[:8]}"
        clients: list[Subscriber] = []
        try:
            for node in self.nodes:
                if node.running:
                    clients.append(Subscriber(node.host, node.port, topic, timeout=timeout))
            for client in clients:
                client.publish(topic, client.client_id, qos=1, timeout=timeout)
            for client in clients:
                client.wait_count(topic, len(clients), timeout=timeout)
        finally:
            for client in clients:
                client.close()

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(
            f"--- {node!r} log (last {lines} lines) ---\n{node.log_tail(lines)}"
            for node in self.nodes
        )

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def close(self) -> None:
        self.kill()
        for node in self.nodes:
            node.untrack()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- amqtt

_AMQTT_MAIN = """
import sys, threading
from simulator.broker import EmbeddedBroker
broker = EmbeddedBroker(sys.argv[1], int(sys.argv[2]))
broker.start()
print("ansim: embedded broker ready", flush=True)
threading.Event().wait()
"""


class AmqttBroker(_Process):
    """The embedded amqtt broker of ``ansim-edge sim`` (simulator/broker.py) in a subprocess,
    so it can be SIGKILLed and restarted like the other brokers. MQTT 3.1.1 only."""

    name = "amqtt"

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        super().__init__(Path(workdir), start_timeout=start_timeout)
        self.host = host
        self._explicit_port = port is not None
        self.port = port if port is not None else free_port(host)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<AmqttBroker {self.url} {state}>"

    def _command(self) -> list[str]:
        return [sys.executable, "-c", _AMQTT_MAIN, self.host, str(self.port)]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        return env

    def ready(self) -> bool:
        return "embedded broker ready" in self.log_text(since_start=True) and port_accepts(
            self.host, self.port
        )

    def start(self) -> AmqttBroker:
        for attempt in range(1, 6):
            self.spawn()
            try:
                self.wait_ready()
                return self
            except BrokerError:
                taken = "address already in use" in self.log_text(since_start=True).lower()
                if not taken or self._explicit_port or attempt == 5:
                    raise
                self.port = free_port(self.host)  # lost a race for a random port
        raise AssertionError("unreachable")

    def restart(self) -> AmqttBroker:
        """Kill the broker if it still runs and start it again on the SAME port (sessions and
        retained messages are lost: amqtt keeps them in memory)."""
        self.kill()
        self._explicit_port = True
        deadline = time.monotonic() + self.start_timeout
        while True:
            self.spawn()
            try:
                self.wait_ready()
                return self
            except BrokerError:
                # The old socket may linger for a moment after SIGKILL.
                if "address already in use" not in self.log_text(since_start=True).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise

    def close(self) -> None:
        self.kill()
        self.untrack()


# --------------------------------------------------------------------------- TCP proxy


@dataclass(eq=False)
class _Link:
    """One proxied connection: ``client`` (accepted here) <-> ``upstream`` (the broker)."""

    client: socket.socket
    upstream: socket.socket
    frozen: bool = False
    to_upstream: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    eof: set[str] = field(default_factory=set)  # "client" / "upstream": that side sent FIN
    shut: set[str] = field(default_factory=set)  # sides we already shut down for writing

    def sockets(self) -> tuple[socket.socket, socket.socket]:
        return self.client, self.upstream


class TcpProxy:
    """A threaded TCP proxy (one selector thread) in front of ``upstream_host:upstream_port``.

    :meth:`freeze` stops forwarding in both directions while keeping every socket open: what
    a stalled NAT or a cable cut beyond the switch looks like to both ends. Bytes sent
    meanwhile wait in the kernel buffers and flow on after :meth:`unfreeze`. :meth:`cut`
    closes every current connection on both sides. Control calls return once the proxy
    thread has applied them.
    """

    BUFFER_LIMIT = 1 << 20  # per direction: stop reading from a side while this much is queued

    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = DEFAULT_HOST) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.port = 0
        self.tls = False  # Subscriber.for_broker reads it
        self._listener: socket.socket | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._commands: list[tuple[Callable[[], None], threading.Event]] = []
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._accepted = 0
        self._frozen_new = False
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- public ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections currently open through the proxy."""
        with self._lock:
            return len(self._links)

    @property
    def accepted(self) -> int:
        """Connections accepted (and forwarded upstream) since the start."""
        with self._lock:
            return self._accepted

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._frozen_new or any(link.frozen for link in self._links)

    def __repr__(self) -> str:
        return (
            f"<TcpProxy {self.host}:{self.port} -> {self.upstream_host}:{self.upstream_port} "
            f"connections={self.connections} frozen={self.frozen}>"
        )

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._wake_r.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(
            target=self._run, name=f"tcp-proxy-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def freeze(self, *, new_connections: bool = True) -> None:
        """Stop forwarding on every open connection, keeping the sockets open.

        With ``new_connections`` (the default: a cut cable) connections made while frozen are
        left unaccepted in the listen backlog (the client's TCP connect succeeds, then
        silence) until :meth:`unfreeze`; without it (a stalled NAT mapping) new ones pass.
        """

        def apply() -> None:
            for link in self._links:
                link.frozen = True
                self._update(link)
            self._frozen_new = new_connections
            self._update_listener()

        self._call(apply)

    def unfreeze(self) -> None:
        """Forward again (what was sent meanwhile flows on) and accept waiting connections."""

        def apply() -> None:
            self._frozen_new = False
            self._update_listener()
            for link in list(self._links):
                link.frozen = False
                self._pump(link)

        self._call(apply)

    def cut(self, *, reset: bool = False) -> int:
        """Close every open connection on both sides (FIN, or RST with ``reset``); return
        how many were closed. New connections are still accepted."""
        closed: list[int] = []

        def apply() -> None:
            closed.append(len(self._links))
            for link in list(self._links):
                self._close(link, reset=reset)

        self._call(apply)
        return closed[0]

    def pending_bytes(self) -> int:
        """Bytes received by the proxy's sockets but not read (by a frozen proxy: held back)."""
        total = 0
        buf = bytearray(4)
        with self._lock:
            socks = [s for link in self._links for s in link.sockets()]
        for sock in socks:
            with contextlib.suppress(OSError, ValueError):
                fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
                total += int.from_bytes(buf, sys.byteorder)
        return total

    def wait_connections(self, n: int, timeout: float = 10.0) -> None:
        """Block until exactly ``n`` connections are open through the proxy."""
        wait_until(
            lambda: self.connections == n,
            timeout=timeout,
            message=f"{n} connection(s) through {self!r}",
        )

    def close(self) -> None:
        """Close every connection and the listener, and stop the thread (idempotent)."""
        if self._thread is None or self._stopping:
            return

        def apply() -> None:
            self._stopping = True
            for link in list(self._links):
                self._close(link)

        with contextlib.suppress(RuntimeError):
            self._call(apply)
        self._thread.join(5.0)
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._selector.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- proxy thread --------------------------------------------------------------------------
    def _call(self, fn: Callable[[], None], timeout: float = 5.0) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError(f"{self!r} is not running")
        done = threading.Event()
        with self._lock:
            self._commands.append((fn, done))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if not done.wait(timeout):
            raise AssertionError(f"{self!r} did not apply a control call within {timeout}s")

    def _run(self) -> None:
        while not self._stopping:
            for key, mask in self._selector.select():
                if key.data == "wake":
                    self._run_commands()
                elif key.data == "accept":
                    self._accept()
                else:
                    link: _Link = key.data
                    if link in self._links:
                        self._on_ready(link, key.fileobj, mask)  # type: ignore[arg-type]

    def _run_commands(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        with self._lock:
            commands, self._commands = self._commands, []
        for fn, done in commands:
            try:
                with self._lock:
                    fn()
            finally:
                done.set()

    def _update_listener(self) -> None:
        assert self._listener is not None
        if self._frozen_new:
            with contextlib.suppress(KeyError):
                self._selector.unregister(self._listener)
        else:
            with contextlib.suppress(KeyError):
                self._selector.register(self._listener, selectors.EVENT_READ, "accept")

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._frozen_new:
            try:
                client, _addr = self._listener.accept()
            except BlockingIOError:
                return
            try:
                upstream = socket.create_connection(
                    (self.upstream_host, self.upstream_port), timeout=2.0
                )
            except OSError:
                client.close()  # upstream down: the client sees its connection closed
                with self._lock:
                    self._accepted += 1
                continue
            for sock in (client, upstream):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, upstream)
            with self._lock:
                self._accepted += 1
                self._links.append(link)
                self._update(link)

    def _on_ready(self, link: _Link, sock: socket.socket, mask: int) -> None:
        side = "client" if sock is link.client else "upstream"
        try:
            if mask & selectors.EVENT_READ:
                data = sock.recv(65536)
                if data:
                    (link.to_upstream if side == "client" else link.to_client).extend(data)
                else:
                    link.eof.add(side)
            with self._lock:
                self._pump(link)
        except BlockingIOError:
            pass
        except OSError:
            with self._lock:
                self._close(link)

    def _pump(self, link: _Link) -> None:
        """Send what is queued, propagate half-closes, then recompute interest (lock held)."""
        if link.frozen:
            self._update(link)
            return
        try:
            for buf, dst, src_name, dst_name in (
                (link.to_upstream, link.upstream, "client", "upstream"),
                (link.to_client, link.client, "upstream", "client"),
            ):
                if buf:
                    with contextlib.suppress(BlockingIOError):
                        sent = dst.send(buf)
                        del buf[:sent]
                if not buf and src_name in link.eof and dst_name not in link.shut:
                    dst.shutdown(socket.SHUT_WR)
                    link.shut.add(dst_name)
        except OSError:
            self._close(link)
            return
        if link.shut == {"client", "upstream"}:
            self._close(link)
            return
        self._update(link)

    def _update(self, link: _Link) -> None:
        """(Re)register the link's sockets for what they may do now (lock held)."""
        for sock, side, outgoing, incoming in (
            (link.client, "client", link.to_client, link.to_upstream),
            (link.upstream, "upstream", link.to_upstream, link.to_client),
        ):
            events = 0
            if not link.frozen:
                if side not in link.eof and len(incoming) < self.BUFFER_LIMIT:
                    events |= selectors.EVENT_READ
                if outgoing:
                    events |= selectors.EVENT_WRITE
            try:
                current = self._selector.get_key(sock).events
            except KeyError:
                current = 0
            if events == current:
                continue
            if events == 0:
                self._selector.unregister(sock)
            elif current == 0:
                self._selector.register(sock, events, link)
            else:
                self._selector.modify(sock, events, link)

    def _close(self, link: _Link, *, reset: bool = False) -> None:
        """Close both sockets of a link (lock held)."""
        if link in self._links:
            self._links.remove(link)
        for sock in link.sockets():
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            with contextlib.suppress(OSError):
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()


# --------------------------------------------------------------------------- matrix handle

BrokerKind = Literal["mosquitto", "nats", "amqtt"]


@dataclass
class BrokerHandle:
    """One broker set-up of the matrix, as the site and the centre see it.

    ``url_for_site`` / ``url_for_centre``: where each connects (different NATS nodes; the
    same broker otherwise). ``urls``: every address, the site's first (for ``broker.urls``).
    ``protocol``: the MQTT version to speak ("3.1.1" or "5"). ``kill(role)`` /
    ``restart(role)``: SIGKILL / restart the broker a role is connected to (for NATS that one
    node; ``"spare"`` is node 3). ``subscriber(topics, role="centre")``: a recording client.
    """

    name: str
    kind: BrokerKind
    protocol: str
    _target: Mosquitto | NatsCluster | AmqttBroker

    def endpoint(self, role: Role = "site") -> Any:
        """The object with ``.host`` / ``.port`` / ``.url`` a role connects to."""
        if isinstance(self._target, NatsCluster):
            return self._target.node(role)
        return self._target

    @property
    def url_for_site(self) -> str:
        url: str = self.endpoint("site").url
        return url

    @property
    def url_for_centre(self) -> str:
        url: str = self.endpoint("centre").url
        return url

    @property
    def urls(self) -> list[str]:
        if isinstance(self._target, NatsCluster):
            return [node.url for node in self._target.nodes]
        return [self._target.url]

    @property
    def cluster(self) -> NatsCluster:
        if not isinstance(self._target, NatsCluster):
            raise AttributeError(f"{self.name} is not a cluster")
        return self._target

    def kill(self, role: Role = "site") -> None:
        self.endpoint(role).kill()

    def restart(self, role: Role = "site") -> None:
        """Restart (after a kill, or kill first) and return once it carries traffic again."""
        self.endpoint(role).restart()

    def subscriber(
        self, topics: str | list[str] = "#", *, role: Role = "centre", **kwargs: Any
    ) -> Subscriber:
        kwargs.setdefault("protocol", self.protocol)
        endpoint = self.endpoint(role)
        return Subscriber(endpoint.host, endpoint.port, topics, **kwargs)

    def log_tail(self, lines: int = 40) -> str:
        if isinstance(self._target, NatsCluster):
            return self._target.log_tail(lines)
        if isinstance(self._target, Mosquitto):
            return "\n".join(self._target.log_text().splitlines()[-lines:])
        return self._target.log_tail(lines)

    def __repr__(self) -> str:
        return f"<BrokerHandle {self.name} site={self.url_for_site} centre={self.url_for_centre}>"
