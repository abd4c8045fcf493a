"""A fake Zenodo on 127.0.0.1 that answers in the shapes of the real records API.

The shapes (seen from zenodo.org and read in the original package's downloader):

``"rdm"``      ``{"files": [{"id", "key", "size", "checksum": "md5:<hex>",
               "links": {"self": ".../api/records/<id>/files/<key>/content"}}]}``
``"legacy"``   ``{"files": [{"id", "filename", "filesize", "checksum": "<bare hex>",
               "links": {"self": ".../files/<key>/content"}}]}``
``"entries"``  ``{"files": {"enabled": true, "count", "entries": {<key>: {"key", "size", "checksum",
               "links"}}}}``, the InvenioRDM dictionary keyed by file name.

It is :class:`FakeZenodo` (same switches, same ``log``) with the record metadata in one of these
shapes; its ``links.self`` is the documented ``.../files/<key>/content`` route, which
:class:`FakeZenodo` serves with ``Range`` support. Tests may replace :meth:`record_json`.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
import uuid

from ._helpers import FakeZenodo

STYLES = ("rdm", "legacy", "entries")


class RealShapeZenodo(FakeZenodo):
    """Serve ``{record_id: {key: bytes}}`` with metadata in one of :data:`STYLES`."""

    def __init__(self, records: dict[str, dict[str, bytes]], style: str = "rdm"):
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        super().__init__(records)
        self.style = style
        fake = self

        class Handler(self.server.RequestHandlerClass):
            def _record(self, rec):
                if rec not in fake.records:
                    return self.send_error(404)
                body = json.dumps(fake.record_json(rec)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server.RequestHandlerClass = Handler

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
            entries = {f["key"]: f for f in files}
            return {"id": int(rec), "files": {"enabled": True, "count": len(files), "entries": entries}}
        return {"id": int(rec), "files": files}

    def file_requests(self, key: str) -> list[str | None]:
        """Range headers of the requests for the content of file ``key``."""
        tail = f"/files/{urllib.parse.quote(key)}/content"
        return [r for p, r in self.log if p.endswith(tail)]
