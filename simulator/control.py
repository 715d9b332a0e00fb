"""The simulator's control API: small JSON over HTTP on 127.0.0.1 (docs/simulator-api.md).

Handlers run on the HTTP server's threads; they only drive simulated hardware (whose
driver callbacks post into the site's core loop) or ask the core via ``Site.call``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DEFAULT_PORT = 8765
MAX_BODY = 64 * 1024

RouteFn = Callable[[dict[str, str], Any], tuple[int, Any]]
# A raw route writes its own response (static files, the event stream): fn(handler, params).
RawFn = Callable[[BaseHTTPRequestHandler, dict[str, str]], None]
# Told about every POST after it was answered: fn(path, body, status, response).
Observer = Callable[[str, Any, int, Any], None]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ControlApi:
    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self._routes: list[tuple[str, re.Pattern[str], RouteFn]] = []
        self._raw: list[tuple[str, re.Pattern[str], RawFn]] = []
        self.observers: list[Observer] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "ansim-sim"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self, method: str) -> None:
                raw = api.raw_handler(method, self.path)
                if raw is not None:
                    raw[0](self, raw[1])
                    return
                request = self._body()
                status, body = api.dispatch(method, self.path, request)
                data = json.dumps(body, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if method == "POST":
                    api.notify(self.path, request, status, body)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(min(n, MAX_BODY)) if n else b""

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def route(self, method: str, pattern: str, fn: RouteFn) -> None:
        """pattern like '/inputs/{name}'; fn(params, json_body) -> (status, json)."""
        self._routes.append((method, _compile(pattern), fn))

    def raw_route(self, method: str, pattern: str, fn: RawFn) -> None:
        """A route that writes its own response with the request handler (not JSON)."""
        self._raw.append((method, _compile(pattern), fn))

    def raw_handler(self, method: str, path: str) -> tuple[RawFn, dict[str, str]] | None:
        path = path.split("?", 1)[0]
        for m, rx, fn in self._raw:
            match = rx.match(path)
            if match and m == method:
                return fn, match.groupdict()
        return None

    def notify(self, path: str, raw: bytes, status: int, response: Any) -> None:
        """Tell the observers about an answered POST; an observer failing is logged."""
        if not self.observers:
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = path.split("?", 1)[0]
        for fn in list(self.observers):
            try:
                fn(path, body, status, response)
            except Exception:
                log.exception("control_api_observer_failed", path=path)

    def dispatch(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        path = path.split("?", 1)[0]
        allowed = False
        for m, rx, fn in self._routes:
            match = rx.match(path)
            if not match:
                continue
            allowed = True
            if m != method:
                continue
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return 400, {"error": "body is not JSON"}
            try:
                return fn(match.groupdict(), body)
            except ApiError as exc:
                return exc.status, {"error": exc.message}
            except Exception as exc:
                log.exception("control_api_failed", path=path)
                return 500, {"error": f"{type(exc).__name__}: {exc}"}
        allowed = allowed or any(rx.match(path) for _, rx, _ in self._raw)
        if allowed:
            return 405, {"error": f"{method} not allowed on {path}"}
        return 404, {"error": f"no such endpoint: {path}"}

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="sim-control", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")


def require_bool(body: Any, key: str) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get(key), bool):
        raise ApiError(400, f'body must be {{"{key}": true|false}}')
    return bool(body[key])
