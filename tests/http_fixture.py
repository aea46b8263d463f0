"""A local HTTP server on 127.0.0.1 serving fixture bytes, with the behaviours downloads meet:
``Range`` requests (206 / 416), servers that ignore ``Range``, connections that drop mid-body,
and 404s. Used by the download tests; nothing leaves the machine."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FixtureServer:
    files: dict[str, bytes] = field(default_factory=dict)
    #: path -> bytes of the body sent before the connection is dropped (once per entry)
    drop_after: dict[str, int] = field(default_factory=dict)
    #: paths answered with the whole file (200) even when a Range is asked
    ignore_range: set[str] = field(default_factory=set)
    #: (path, Range header or None) of every request, in order
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def start(self) -> FixtureServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                path = self.path
                asked = self.headers.get("Range")
                server.requests.append((path, asked))
                if path not in server.files:
                    self.send_error(404, "Not Found")
                    return
                data = server.files[path]
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", asked or "")
                if match and path not in server.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416, "Range Not Satisfiable")
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206, "Partial Content")
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200, "OK")
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                cut = server.drop_after.pop(path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
