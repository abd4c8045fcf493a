"""The HTML report: valid, self-contained, every plot a real PNG; the plots measure what they say."""

from __future__ import annotations

import base64
import html.parser
import struct

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cesped.evaluation.report import calibration_table, viewing_directions, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Collector(html.parser.HTMLParser):
    """Collects tags and checks that every opened non-void tag is closed in order."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.imgs, self.tags = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


def test_viewing_direction_is_third_column():
    # Identity pose projects along +z; a 90 deg tilt (rot=0) looks along +x (R = Ry(90) e_z).
    R = Rotation.from_euler("ZYZ", [[0, 0, 0], [0, 90, 0], [90, 90, 0]], degrees=True).as_matrix()
    d = viewing_directions(R)
    np.testing.assert_allclose(d, [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-12)
    # psi (in-plane) does not change the direction
    R2 = Rotation.from_euler("ZYZ", [[30, 50, 0], [30, 50, 123]], degrees=True).as_matrix()
    d2 = viewing_directions(R2)
    np.testing.assert_allclose(d2[0], d2[1], atol=1e-12)


def test_calibration_table_recovers_a_monotone_relation():
    rng = np.random.default_rng(1)
    c = rng.uniform(0, 1, 5000)
    e = 100 * (1 - c) + rng.normal(0, 1, 5000)
    t = calibration_table(c, e, n_bins=10)
    assert len(t["conf_mean"]) == 10 and t["count"].sum() == 5000
    assert np.all(np.diff(t["err_mean"]) < 0)
    np.testing.assert_allclose(t["err_mean"], 100 * (1 - t["conf_mean"]), atol=1.5)


def test_report_is_valid_self_contained_html(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    true = Rotation.random(n, random_state=1).as_matrix()
    pred = Rotation.random(n, random_state=2).as_matrix()
    metrics = {"MAnE": 12.5, "PCC(GT,V) masked": 0.91, "n_particles": n, "curve": [1, 2]}
    per_particle = {
        "true_rotmats": true,
        "pred_rotmats": pred,
        "errors_deg": rng.uniform(0, 180, n),
        "confidence": rng.uniform(0, 1, n),
    }
    out = write_report(
        tmp_path, metrics, per_particle, title="unit <test>", descriptions={"MAnE": "mean angular error"}
    )
    text = out.read_text()
    p = _Collector()
    p.feed(text)
    p.close()
    assert not p.errors and p.stack == [], (p.errors, p.stack)
    assert text.startswith("<!DOCTYPE html>")
    assert "unit &lt;test&gt;" in text  # titles are escaped
    assert "MAnE" in text and "12.5" in text and "mean angular error" in text
    assert "curve" not in text  # list values are not table rows
    assert len(p.imgs) == 2
    for img in p.imgs:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")  # embedded, no external file
        w, h = _png_size(base64.b64decode(src.split(",", 1)[1]))
        assert w >= 400 and h >= 200
    for name in ("orientation_coverage.png", "confidence_vs_error.png"):
        data = (tmp_path / name).read_bytes()
        assert _png_size(data)[0] >= 400


def test_report_refuses_missing_plot(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        write_report(tmp_path, {"a": 1.0}, plots=[("missing", tmp_path / "nope.png")])
    assert not (tmp_path / "report.html").exists()


def test_direction_density_is_an_equal_area_histogram():
    from cesped.evaluation.report import direction_density

    rng = np.random.default_rng(5)
    d = rng.normal(size=(200_000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    dens, lon_e, lat_e = direction_density(d, 6)
    assert dens.shape == (6, 12) and lon_e.shape == (13,) and lat_e.shape == (7,)
    # uniform directions: every equal-area cell near 1 (Poisson noise ~ 1/sqrt(2800))
    np.testing.assert_allclose(dens, 1.0, atol=0.1)
    assert dens.mean() == pytest.approx(1.0)
    # +x (lon 0, lat 0) lands in the cell east of lon 0 in the band just north of the equator
    # (z = 0 is the edge of bands 2 and 3); the north pole in the top band
    one = direction_density(np.array([[1.0, 0.0, 1e-9], [0.0, 0.0, 1.0]]), 6)[0]
    assert one[3, 6] == pytest.approx(72 / 2) and one[5].sum() == pytest.approx(72 / 2)
    with pytest.raises(ValueError):
        direction_density(d[:, :2], 6)


def test_particle_plots_render_in_memory(tmp_path):
    from cesped.evaluation.report import render_particle_plots

    n = 300
    pp = {
        "true_rotmats": Rotation.random(n, random_state=1).as_matrix(),
        "pred_rotmats": Rotation.random(n, random_state=2).as_matrix(),
        "errors_deg": np.linspace(0, 180, n),
        "confidence": None,
    }
    figs = render_particle_plots(pp)
    assert [name for _, name, _ in figs] == ["orientation_coverage.png"]  # no confidence plot
    assert _png_size(figs[0][2])[0] >= 400
    assert list(tmp_path.iterdir()) == []  # nothing written
    pp["confidence"] = np.linspace(0, 1, n)
    assert [name for _, name, _ in render_particle_plots(pp)][-1] == "confidence_vs_error.png"
