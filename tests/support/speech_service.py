"""A speech service for tests of the HTTP transcriber, on 127.0.0.1 at a free port.

It speaks the exchange :mod:`gateway.analysis.transcribe.remote` documents:
``POST`` of a WAVE body, answered with ``{"words": [...]}``. What it answers
is set on the object: the words, a number of 503s to send first, a status to
fail every request with, a raw body to send instead of JSON, a delay before
answering. Every request is kept (path, query, headers, body) for the tests
to look at. It runs :class:`http.server.ThreadingHTTPServer` on a thread, so a
synchronous client can call it from the test's own thread.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request the service got."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class SpeechService:
    """The service's behaviour, changed freely between requests."""

    words: list[dict[str, Any]] = field(default_factory=list)
    fail_times: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    always_status: int | None = None
    raw_body: bytes | None = None
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None, "the service is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1/transcribe"

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        """(status, headers, body) for one request, counting down ``fail_times``."""
        parts = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        with self._lock:
            self.received.append(Received(parts.path, query, headers, body))
            failing = self.fail_times > 0
            if failing:
                self.fail_times -= 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if failing:
            extra = {"Retry-After": self.retry_after} if self.retry_after else {}
            return self.fail_status, extra, b'{"error": "busy"}'
        if self.always_status is not None:
            return self.always_status, {}, b'{"error": "refused"}'
        if self.raw_body is not None:
            return 200, {}, self.raw_body
        return 200, {}, json.dumps({"words": self.words}).encode()

    def start(self) -> SpeechService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, extra, payload = service.answer(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
