"""The kubelet's container-log endpoint, served by the test pod executor.

kube-apiserver answers `pods/log` by fetching
`https://<node InternalIP>:<kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<container>`
from the node's kubelet, authenticating with `--kubelet-client-certificate`
and, without `--kubelet-certificate-authority`, not verifying the kubelet's
certificate. Serving that path here makes `read_namespaced_pod_log` (and
`kubectl logs`) work against the fake nodes. Supported query parameters:
`tailLines`, `limitBytes`, `previous`, `follow`; `timestamps`, `sinceSeconds`
and `sinceTime` are accepted and ignored (no per-line timestamps are kept).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)


class LogSourceError(Exception):
    """A log request that cannot be answered; `status` is the HTTP code to return."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# (namespace, pod, container, previous) -> (log file, is the container still running?)
LogLocator = Callable[[str, str, str, bool], tuple[Path, Callable[[], bool]]]


def tail_lines(data: bytes, lines: int) -> bytes:
    """The last `lines` lines of `data` (a trailing newline does not count as an extra line)."""
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


class _Handler(BaseHTTPRequestHandler):
    server: _LogServer

    def setup(self) -> None:
        self.request.settimeout(30)
        self.request.do_handshake()  # see KubeletLogServer: not done in the accept loop
        super().setup()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        logger.debug("kubelet log request: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if parts in (["healthz"], ["readyz"]):
            self._reply(200, b"ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._reply(404, b"not found")
            return
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        _, namespace, pod, container = parts
        try:
            path, running = self.server.locate(namespace, pod, container, query.get("previous") == "true")
        except LogSourceError as err:
            self._reply(err.status, str(err).encode())
            return
        if query.get("follow") == "true":
            self._follow(path, running, query)
            return
        data = path.read_bytes() if path.exists() else b""
        if "tailLines" in query:
            data = tail_lines(data, int(query["tailLines"]))
        if "limitBytes" in query:
            data = data[: int(query["limitBytes"])]
        self._reply(200, data)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _follow(self, path: Path, running: Callable[[], bool], query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.close_connection = True  # the body ends when the connection does
        data = path.read_bytes() if path.exists() else b""
        if "tailLines" in query:
            data = tail_lines(data, int(query["tailLines"]))
        limit = int(query["limitBytes"]) if "limitBytes" in query else None
        sent, offset = 0, path.stat().st_size if path.exists() else 0
        while True:
            if limit is not None:
                data = data[: max(0, limit - sent)]
            if data:
                self.wfile.write(data)
                self.wfile.flush()
                sent += len(data)
            if (limit is not None and sent >= limit) or self.server.stopping.is_set():
                return
            alive = running()
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            offset += len(data)
            if not data and not alive:
                return
            if not data:
                time.sleep(0.1)


class _LogServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, locate: LogLocator) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.locate = locate
        self.stopping = threading.Event()


class KubeletLogServer:
    """A threaded HTTPS server for `/containerLogs/...` on 127.0.0.1 and a free port."""

    def __init__(self, locate: LogLocator, cert_file: Path, key_file: Path) -> None:
        self._server = _LogServer(locate)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_file), str(key_file))
        # Handshake in the per-request thread, not in the accept loop.
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self._server.serve_forever, name="kubelet-logs", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
