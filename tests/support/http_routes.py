"""A throwaway HTTP server on 127.0.0.1 that answers fixed paths (e.g. AMD KDS's URL layout with
recorded answers), records every path asked for, and answers 404 to the rest."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def serving(routes: Mapping[str, bytes]) -> Iterator[tuple[str, list[str]]]:
    """``(base URL, paths asked for)`` while the server runs; stopped on exit."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            seen.append(self.path)
            body = routes.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
