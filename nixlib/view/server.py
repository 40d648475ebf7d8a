"""`nw view`: a small read-only HTTP server on 127.0.0.1 for the viewer page and its JSON API.

Standard library only. The page and its vendored graph library are served from a fixed table of
names (no request path ever becomes a file path); the API answers from nixlib.view.data, which
validates every key and walks object paths without following symlinks. Only GET and HEAD exist,
and a Host header other than this address is refused (no DNS-rebinding access from a web page).
"""

from __future__ import annotations

import json
import sys
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nixlib.errors import NixWorkflowError
from nixlib.store import Store
from nixlib.view.data import Refused, ViewData

HERE = Path(__file__).parent
ASSETS = {  # URL path -> (file beside this module, content type); nothing else is ever read from disk
    "/": ("static/index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("static/app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("static/style.css", "text/css; charset=utf-8"),
    "/vendor/cytoscape.min.js": ("vendor/cytoscape.min.js", "text/javascript; charset=utf-8"),
    "/vendor/cytoscape-dagre.min.js": ("vendor/cytoscape-dagre.min.js", "text/javascript; charset=utf-8"),
    "/vendor/LICENSE": ("vendor/LICENSE", "text/plain; charset=utf-8"),
}
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class Handler(BaseHTTPRequestHandler):
    """Serves the page, the vendored assets and the JSON API; nothing else."""

    data: ViewData
    server_version = "nw-view"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass  # quiet: the terminal shows the URL, not every poll

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        if not self._host_ok():
            return self._send(HTTPStatus.FORBIDDEN, b"forbidden host\n", "text/plain")
        url = urlsplit(self.path)
        # surrogateescape: a percent-encoded byte that is not UTF-8 (a file name in Latin-1 inside an object) reaches
        # the file system as that byte (os.fsencode), not as U+FFFD naming no file
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True, errors="surrogateescape").items()}
        try:
            if url.path in ASSETS:
                name, ctype = ASSETS[url.path]
                return self._send(HTTPStatus.OK, (HERE / name).read_bytes(), ctype)
            if url.path == "/api/raw":
                body, ctype = self.data.raw(query.get("object", ""), query.get("path", ""))
                return self._send(HTTPStatus.OK, body, ctype, raw=True)
            answer = self._api(url.path, query)
        except Refused as e:
            return self._json(e.status, {"error": str(e)})
        except NixWorkflowError as e:
            return self._json(500, {"error": str(e)})
        except OSError as e:
            return self._json(500, {"error": f"{e.strerror or e}"})
        except Exception as e:  # noqa: BLE001 - an answer, not a dropped connection and a traceback in the terminal
            return self._json(500, {"error": f"nw view could not answer {url.path}: {type(e).__name__}: {e}"})
        if answer is None:
            return self._json(404, {"error": f"no such page: {url.path}"})
        return self._json(200, answer)

    def _api(self, path: str, q: dict[str, str]) -> Any:
        if path == "/api/runs":
            return self.data.runs()
        if path == "/api/run":
            return self.data.run(q.get("id", ""))
        if path == "/api/step":
            return self.data.step(q.get("key", ""))
        if path == "/api/log":
            return self.data.log(q.get("key", ""))
        if path == "/api/files":
            return self.data.files(q.get("object", ""), q.get("path", ""))
        return None

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        return host in ("127.0.0.1", "localhost", "")

    def do_POST(self) -> None:  # noqa: N802 - read-only: no method changes anything
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", "text/plain")

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send(self, status: int, body: bytes, ctype: str, raw: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        # a file from an object is data: even an SVG opened on its own may not run script here
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox"
                         if raw else PAGE_POLICY)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def make_server(store: Store, out_dir: Path, port: int = 0) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:`port` (0: any free port) answering from `store` and `out_dir`'s runs."""
    handler = type("BoundHandler", (Handler,), {"data": ViewData(store, out_dir)})
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except (OSError, OverflowError) as e:
        reason = str(getattr(e, "strerror", None) or e).rstrip(".")
        raise NixWorkflowError(f"nw view cannot listen on 127.0.0.1:{port}: {reason}. Choose another port with "
                               "--port N (0 picks a free one).") from None
    server.daemon_threads = True
    return server


def serve(store: Store, out_dir: Path, port: int, open_browser: bool) -> int:
    """Serve until interrupted; prints the URL (first line of stdout) so scripts and tests can read it."""
    server = make_server(store, out_dir, port)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    print(f"nw view: serving {url} (read-only; Ctrl-C stops)", flush=True)
    if open_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("nw view: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
