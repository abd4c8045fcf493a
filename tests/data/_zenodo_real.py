"""A fake Zenodo on 127.0.0.1 that answers in the shapes of the real records API.

The shapes (seen from zenodo.org and read in the original package's downloader):

``"rdm"``      ``{"files": [{"id", "key", "size", "checksum": "md5:<hex>",
               "links": {"self": ".../api/records/<id>/files/<key>/content"}}]}``
``"legacy"``   ``{"files": [{"id", "filename", "filesize", "checksum": "<bare hex>",
               "links": {"self": ".../files/<key>/content"}}]}``
``"entries"``  ``{"files": {"enabled": true, "count", "entries": {<key>: {"key", "size", "checksum",
               "links"}}}}``, the InvenioRDM dictionary keyed by file name.

Files are served only at ``/api/records/<id>/files/<key>/content``, with ``Range`` support;
``log`` lists ``(path, range_header)`` of every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STYLES = ("rdm", "legacy", "entries")


class RealShapeZenodo:
    """Serve ``{record_id: {key: bytes}}`` in one of :data:`STYLES`; use as a context manager."""

    def __init__(self, records: dict[str, dict[str, bytes]], style: str = "rdm"):
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.records, self.style = records, style
        self.log: list[tuple[str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                fake.log.append((self.path, self.headers.get("Range")))
                parts = [urllib.parse.unquote(p) for p in self.path.strip("/").split("/")]
                if parts[:2] != ["api", "records"] or len(parts) < 3:
                    return self.send_error(404)
                if len(parts) == 3:
                    return self._send(
                        200, json.dumps(fake.record_json(parts[2])).encode(), "application/json"
                    )
                if len(parts) >= 6 and parts[3] == "files" and parts[-1] == "content":
                    return self._file(parts[2], "/".join(parts[4:-1]))
                self.send_error(404)

            def _send(self, status, body, ctype="application/octet-stream", extra=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _file(self, rec, key):
                data = fake.records.get(rec, {}).get(key)
                if data is None:
                    return self.send_error(404)
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    extra = [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")]
                    return self._send(206, data[start:], extra=extra)
                self._send(200, data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api/records/"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def record_json(self, rec: str) -> dict:
        """The record's metadata in this server's style."""
        files = []
        for key, data in self.records.get(rec, {}).items():
            md5 = hashlib.md5(data).hexdigest()
            link = {"self": f"{self.url}{rec}/files/{urllib.parse.quote(key)}/content"}
            if self.style == "legacy":
                f = {"id": str(uuid.uuid4()), "filename": key, "filesize": len(data), "checksum": md5}
            else:
                f = {"id": str(uuid.uuid4()), "key": key, "size": len(data), "checksum": f"md5:{md5}"}
            files.append({**f, "links": link})
        if self.style == "entries":
            return {
                "id": int(rec),
                "files": {"enabled": True, "count": len(files), "entries": {f["key"]: f for f in files}},
            }
        return {"id": int(rec), "files": files}

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def file_requests(self, key: str) -> list[str | None]:
        """Range headers of the requests for the content of file ``key``."""
        tail = f"/files/{urllib.parse.quote(key)}/content"
        return [r for p, r in self.log if p.endswith(tail)]
