"""Helpers of the data tests: a fake Zenodo records API on 127.0.0.1, tiny local entries."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeZenodo:
    """Serve records ``{record_id: {key: bytes}}`` at ``<url>/api/records/<id>``.

    Behaviour switches (per file key):
    ``drop_once[key] = n``      send the full Content-Length but only ``n`` bytes, then close, once;
    ``fail_status[key] = [503, ...]``  answer these statuses first (also for record ids);
    ``ignore_range``            set of keys for which Range headers are ignored (200 + full body);
    ``bad_md5``                 set of keys whose advertised md5 is wrong;
    ``extra_files[rec]``        raw file entries appended to the record JSON.
    ``log`` lists ``(path, range_header)`` of every request.
    """

    def __init__(self, records: dict[str, dict[str, bytes]]):
        self.records = records
        self.drop_once: dict[str, int] = {}
        self.fail_status: dict[str, list[int]] = {}
        self.ignore_range: set[str] = set()
        self.bad_md5: set[str] = set()
        self.extra_files: dict[str, list[dict]] = {}
        self.broken_self_links = False
        self.log: list[tuple[str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                fake.log.append((self.path, self.headers.get("Range")))
                parts = self.path.strip("/").split("/")
                if parts[:2] == ["api", "records"] and len(parts) == 3:
                    return self._record(parts[2])
                if (
                    parts[:2] == ["api", "records"]
                    and len(parts) >= 6
                    and parts[3] == "files"
                    and parts[-1] == "content"
                ):  # the documented route .../files/<key>/content
                    return self._file(parts[2], "/".join(parts[4:-1]))
                if parts[0] == "files" and len(parts) >= 3:
                    return self._file(parts[1], "/".join(parts[2:]))
                self.send_error(404)

            def _maybe_fail(self, key):
                pending = fake.fail_status.get(key)
                if pending:
                    self.send_error(pending.pop(0))
                    return True
                return False

            def _record(self, rec):
                if self._maybe_fail(rec):
                    return
                if rec not in fake.records:
                    return self.send_error(404)
                base = f"http://127.0.0.1:{fake.port}"
                files = []
                for key, data in fake.records[rec].items():
                    md5 = hashlib.md5(data).hexdigest()
                    if key in fake.bad_md5:
                        md5 = hashlib.md5(data + b"x").hexdigest()
                    if fake.broken_self_links:  # like Zenodo's file-id links (zenodo#2486)
                        links = {"self": f"{base}/api/records/{rec}/files/0c3f-uuid"}
                    else:
                        links = {"content": f"{base}/files/{rec}/{key}"}
                    files.append({"key": key, "size": len(data), "checksum": f"md5:{md5}", "links": links})
                files += fake.extra_files.get(rec, [])
                body = json.dumps({"id": rec, "files": files}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _file(self, rec, key):
                if self._maybe_fail(key):
                    return
                data = fake.records.get(rec, {}).get(key)
                if data is None:
                    return self.send_error(404)
                rng = self.headers.get("Range")
                start = 0
                if rng and key not in fake.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                n = fake.drop_once.pop(key, None)
                if n is not None:
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api/records/"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def file_requests(self, key: str) -> list[str | None]:
        """Range headers of the requests for file ``key``."""
        return [r for p, r in self.log if p.startswith("/files/") and p.endswith("/" + key)]


# ------------------------------------------------------------------------------------------------
# tiny local entries
# ------------------------------------------------------------------------------------------------
def write_entry(root, name, halfset, images, particles, optics, symmetry="C1"):
    """Write ``<root>/<name>/particles_<h>.star/.mrcs`` and ``info_<h>.json``
    (:func:`cesped.simulation.fixtures.write_entry_half`)."""
    from cesped.simulation.fixtures import write_entry_half

    return write_entry_half(root, name, halfset, images, particles, optics, symmetry)


def tiny_tables(n, box, seed=0, pixel_size=1.5):
    """Random particle/optics tables: two optics groups, astigmatism, phase shifts, poses, confidences."""
    import numpy as np
    import pandas as pd
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1, 2],
            "rlnOpticsGroupName": ["opticsGroup1", "opticsGroup2"],
            "rlnVoltage": [300.0, 200.0],
            "rlnSphericalAberration": [2.7, 1.4],
            "rlnAmplitudeContrast": [0.1, 0.07],
            "rlnImagePixelSize": [pixel_size] * 2,
            "rlnImageSize": [box] * 2,
            "rlnImageDimensionality": [2, 2],
        }
    )
    eul = Rotation.random(n, random_state=seed).as_euler("ZYZ", degrees=True)
    du = rng.uniform(8000, 20000, n)
    particles = pd.DataFrame(
        {
            "rlnAngleRot": eul[:, 0],
            "rlnAngleTilt": eul[:, 1],
            "rlnAnglePsi": eul[:, 2],
            "rlnOriginXAngst": rng.uniform(-3, 3, n),
            "rlnOriginYAngst": rng.uniform(-3, 3, n),
            "rlnDefocusU": du,
            "rlnDefocusV": du - rng.uniform(0, 2000, n),
            "rlnDefocusAngle": rng.uniform(-90, 90, n),
            "rlnCtfPhaseShift": rng.uniform(0, 60, n),
            "rlnOpticsGroup": rng.integers(1, 3, n),
            "rlnMaxValueProbDistribution": rng.uniform(0.1, 1.0, n),
            "rlnRandomSubset": np.ones(n, dtype=np.int64),
        }
    )
    return particles, optics
