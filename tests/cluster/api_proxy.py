"""A reverse proxy in front of the test kube-apiserver that can fail on command, as an overloaded API server does.

The operator under test talks to the proxy (plain HTTP on loopback; its bearer token is passed through) and the
proxy to the real API server (HTTPS, verified against the plane's CA). `fail(status, seconds)` makes the proxy
answer every request with `status` (429 Too Many Requests with Retry-After, or 500) for that long, and cuts the
watch streams it is relaying, as an API server restarting or shedding load does. It counts what it answered, by
time, so a test can tell backing off from hammering.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
               "proxy-connection", "host", "content-length"}  # fmt: skip
_REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


class FaultyApiProxy:
    """`url` relays to `host:port`; `fail` turns it into an API server that answers only errors for a while."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.upstream = (host, port)
        self.context = context
        self._lock = threading.Lock()
        self._failing: tuple[int, float] | None = None  # (status, until monotonic)
        self._streams: set[http.client.HTTPSConnection] = set()
        self.refused: list[tuple[float, str, str]] = []  # (monotonic time, method, path) answered with an error
        self.relayed = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="api proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._cut_streams()

    def fail(self, status: int, seconds: float) -> None:
        """Answer every request with `status` from now for `seconds`; open watches are cut."""
        with self._lock:
            self._failing = (status, time.monotonic() + seconds)
        self._cut_streams()

    def failing(self) -> int | None:
        with self._lock:
            if self._failing is None or time.monotonic() >= self._failing[1]:
                return None
            return self._failing[0]

    def _cut_streams(self) -> None:
        with self._lock:
            streams, self._streams = list(self._streams), set()
        for conn in streams:
            if conn.sock is not None:
                conn.sock.shutdown(socket.SHUT_RDWR)

    def _track(self, conn: http.client.HTTPSConnection, on: bool) -> None:
        with self._lock:
            (self._streams.add if on else self._streams.discard)(conn)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._relay()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _relay(self) -> None:
        proxy: FaultyApiProxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        status = proxy.failing()
        if status is not None:
            with proxy._lock:
                proxy.refused.append((time.monotonic(), self.command, self.path))
            self._error(status)
            return
        conn = http.client.HTTPSConnection(*proxy.upstream, context=proxy.context, timeout=600)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        proxy._track(conn, True)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            with proxy._lock:
                proxy.relayed += 1
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := response.read1(65536):  # a watch streams until the server (or a fault) ends it
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ValueError, http.client.HTTPException):  # a cut stream, or the client went away
            self.close_connection = True
        finally:
            proxy._track(conn, False)
            conn.close()

    def _error(self, status: int) -> None:
        reason = _REASONS.get(status, "InternalError")
        payload = json.dumps({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": status,
            "reason": reason, "message": f"the test proxy answers {status} for now",
        }).encode()  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if status == 429:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(payload)
