"""A loopback HTTP server for image URLs."""
from __future__ import annotations

import functools
import http.server
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass
class HttpServer:
    root: Path
    port: int

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # no line on stderr per request
        pass


@contextmanager
def http_server(root: Path) -> Iterator[HttpServer]:
    """Serve the folder root on a free loopback port, in a thread of this
    process, until the end of the block."""
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HttpServer(root, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class StallingServer:
    """Serves one image: each GET gets the first `stall_at` bytes, then waits
    until `release` is set; `stalled` counts the GETs waiting. (one-iscsi
    GETs an image twice: once for its size, once for its data.)"""
    port: int
    stalled: list
    release: threading.Event

    def url(self, name: str = "image.raw") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@contextmanager
def stalling_http_server(data: bytes, stall_at: int) -> Iterator[StallingServer]:
    stalled, release = [], threading.Event()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data[:stall_at])
                self.wfile.flush()
                stalled.append(self.path)
                release.wait(timeout=120)
                self.wfile.write(data[stall_at:])
            except OSError:
                pass  # the client is gone

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StallingServer(server.server_address[1], stalled, release)
    finally:
        release.set()
        server.shutdown()
        server.server_close()

