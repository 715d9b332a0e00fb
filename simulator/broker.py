"""An embedded MQTT 3.1.1 broker (amqtt) so `ansim-edge sim` needs nothing installed.
For a newcomer's laptop only; tests and production use a real broker."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from edge.core.errors import AnsimError


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


DEFAULT_PORT = 1883


def port_free(host: str, port: int) -> bool:
    """Could a listening server bind ``host:port`` now? SO_REUSEADDR, as the broker's own
    listener has: connections of a broker stopped a moment ago linger in TIME_WAIT on the
    port, and without it the port would look taken after every quick restart."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(host: str, preferred: int = DEFAULT_PORT) -> int:
    """``preferred`` (1883) when it is free, else 0 (any free port)."""
    return preferred if port_free(host, preferred) else 0


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        if self.port == 0:
            self.port = _free_port(self.host)
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise AnsimError("the embedded MQTT broker did not start; pass --broker URL instead")
        if self._error is not None:
            raise AnsimError(
                f"the embedded MQTT broker could not start on {self.host}:{self.port} "
                f"({self._error}); is the port taken? pass --broker URL to use another broker"
            )

    def _run(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            self._error = exc
            self._ready.set()
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

        async def main() -> None:
            self._broker = Broker(config, loop=loop)
            await self._broker.start()

        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        # Stopped: end what amqtt left running (its shutdown may not have finished), so no
        # task is destroyed pending, then close the loop and its sockets.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()

        async def ended() -> None:
            await asyncio.gather(*pending, return_exceptions=True)

        try:
            loop.run_until_complete(ended())
        finally:
            loop.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._broker is None:
            return
        # The listening socket first, so the port is free whatever happens next: amqtt's
        # shutdown can hang on a connected client's handler (then the loop is just stopped).
        closed = asyncio.run_coroutine_threadsafe(self._close_listeners(), loop)
        try:
            closed.result(2)
        except Exception:
            pass
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
        try:
            fut.result(2)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    async def _close_listeners(self) -> None:
        for server in getattr(self._broker, "_servers", {}).values():
            instance = getattr(server, "instance", None)
            if instance is not None:
                instance.close()
