"""The lifecycle the stub servers share: an HTTP server on 127.0.0.1 in a daemon thread (start, base_url,
stop), or in the current thread when run by hand; and the request handler's quiet, JSON-speaking base."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a handler sleeping in a "slow" mode


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no access log, a client hanging up is not an error; ``_json`` / ``_raw`` replies."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass

    def _raw(self, status: int, data: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, body, headers: dict | None = None) -> None:
        self._raw(status, json.dumps(body).encode(), "application/json", headers)


class LoopbackServer:
    """A server on 127.0.0.1 (a free port when ``port`` is 0) whose handler class ``_handler_class`` builds.

    ``_stopping`` is set by ``stop()``: handlers that wait (a "slow" mode) wait on it, so stopping never hangs.
    """

    thread_name = "stub-server"

    def __init__(self, *, port: int = 0):
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    def _bind(self) -> _Server:
        self._server = _Server(("127.0.0.1", self.port), self._handler_class())
        self.port = self._server.server_address[1]
        return self._server

    def start(self) -> Self:
        """Bind the port and serve in a daemon thread."""
        self._stopping.clear()
        server = self._bind()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=self.thread_name)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake waiting handlers, stop serving and close the socket."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_forever(self) -> None:
        """Serve in the current thread until Ctrl-C (the stubs' command lines)."""
        server = self._bind()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
