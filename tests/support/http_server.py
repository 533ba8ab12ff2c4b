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
