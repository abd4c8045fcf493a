"""The HTML report: valid, self-contained, every plot a real PNG; the plots measure what they say."""

from __future__ import annotations

import base64
import html
import html.parser
import os
import struct
from pathlib import Path

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
    from cesped.evaluation.style import CSS

    assert CSS in text  # the style shared with the leaderboard page
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


# --------------------------------------------------------------------- the report of a real run
@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """evaluate() on a tiny C1 entry with jittered predictions: (outdir, metrics, per_particle)."""
    from cesped.evaluateEntry import evaluate
    from cesped.io.star import read_star, write_star

    from ._entries import make_entry

    root = tmp_path_factory.mktemp("report_run")
    entry = make_entry(root, "tinyR", "C1", n_per_half=300, seed=4)
    preds, true_rot, pred_rot = [], [], []
    cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    for h in (0, 1):
        st = read_star(entry / f"particles_{h}.star")
        rot = Rotation.from_euler("ZYZ", st.particles[cols].to_numpy(), degrees=True)
        jit = Rotation.from_rotvec(np.random.default_rng(h).normal(0, 0.15, (len(st.particles), 3)))
        st.particles[cols] = (jit * rot).as_euler("ZYZ", degrees=True)
        st.particles["rlnParticleFigureOfMerit"] = np.random.default_rng(h).uniform(0.1, 1, len(st.particles))
        write_star(root / f"pred_{h}.star", st)
        preds.append(root / f"pred_{h}.star")
        true_rot.append(rot.as_matrix())
        pred_rot.append((jit * rot).as_matrix())
    out = root / "out"
    metrics = evaluate(str(entry), *preds, predictionType="SO3", outdir=out)
    per_particle = {
        "true_rotmats": np.concatenate(true_rot),
        "pred_rotmats": np.concatenate(pred_rot),
        "errors_deg": np.zeros(600),
        "confidence": None,
    }
    return out, metrics, per_particle


def _report_parts(text):
    summary_at = text.index('id="summary"')
    first_img = text.index("<img")
    details_at = text.index("<details>")
    return summary_at, first_img, details_at


def _full_table_rows(text):
    part = text[text.index("<details>") :]
    part = part[part.index("<tbody>") + 7 : part.index("</tbody>")]
    rows = []
    for tr in part.split("<tr>")[1:]:
        key = tr[tr.index("<th>") + 4 : tr.index("</th>")]
        cells = tr.split("<td")
        meaning = cells[-1].split(">", 1)[1].split("</td>")[0]
        rows.append((html.unescape(key), html.unescape(meaning)))
    return rows


def test_evaluate_report_opens_with_the_summary_and_folds_the_full_table(evaluated):
    out, metrics, _ = evaluated
    text = (out / "report.html").read_text()
    summary_at, first_img, details_at = _report_parts(text)
    assert summary_at < first_img < details_at  # summary, then plots, then the folded table
    rows = _full_table_rows(text)
    keys = [k for k, _ in rows]
    assert len(keys) == len(set(keys))  # no key twice
    assert not [k for k, meaning in rows if not meaning.strip()]  # every meaning filled
    # the paper's column aliases repeat flavoured keys: listed once, in the flavoured form
    assert "PCC(GT,V)" not in keys and "PCC(GT,V)_masked" in keys
    assert str(out.parent) not in text and str(out) not in text
    assert "/tmp/" not in text and not any(str(v).startswith("/") for v in keys)
    assert ">mask.mrc<" in text or "../tinyR/mask.mrc" in text  # shown relative to the report


def test_report_summary_has_random_pose_and_ground_truth_references(evaluated, tmp_path):
    from cesped.evaluation.references import random_pose_reference

    out, metrics, pp = evaluated
    plots = [("FSC", out / "fsc.png"), ("slices", out / "central_slices.png")]
    ref = random_pose_reference(pp["true_rotmats"], "C1")
    rep = write_report(tmp_path, metrics, pp, plots=plots, references={"random poses": ref})
    text = rep.read_text()
    summary = text[text.index('id="summary"') : text.index("</table>", text.index('id="summary"'))]
    assert "random poses" in summary and "ground-truth poses" in summary
    assert f"{ref['MAnE_deg']:.4g}" in summary  # about 126 deg for C1
    assert f"{metrics['MAnE_deg']:.4g}" in summary
    assert f"{metrics['PCC(GT0,GT1)_masked']:.4g}" in summary  # the ceiling of PCC(V0,V1)
    for label in ("MAnE", "wMAnE", "PCC(V0,V1)", "PCC(GT,V)", "FSCR0.143(GT,V)", "dPCC", "dFSCR0.143"):
        assert f"<th>{html.escape(label)}" in summary
    # without references, per_particle gives the random-pose column by itself
    auto = write_report(tmp_path / "auto", metrics, pp).read_text()
    assert f"{ref['MAnE_deg']:.4g}" in auto


# ------------------------------------------------------------------------------ in a browser
def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


_LAYOUT_JS = """
<script>
window.addEventListener('load', function () {
  var r = function (e) { var b = e.getBoundingClientRect();
    return [b.left + window.scrollX, b.top + window.scrollY, b.width, b.height]; };
  var imgs = Array.from(document.images).map(function (i) { return r(i).concat([i.naturalWidth]); });
  var pre = document.createElement('pre'); pre.id = 'layout';
  pre.textContent = JSON.stringify({summary: r(document.getElementById('summary')), imgs: imgs,
    height: document.documentElement.scrollHeight});
  document.body.appendChild(pre);
});
</script>
"""


@pytest.mark.browser
def test_report_is_drawn_in_headless_chromium(evaluated, tmp_path):
    """Chromium lays the report out and draws it: the summary table and every plot have
    pixels (not blank) where the DOM says they are."""
    import json
    import re
    import subprocess

    from PIL import Image

    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    out, metrics, pp = evaluated
    plots = [
        ("FSC", out / "fsc.png"),
        ("errors", out / "angular_errors.png"),
        ("slices", out / "central_slices.png"),
    ]
    rep = write_report(tmp_path / "r", metrics, pp, plots=plots)
    probe = tmp_path / "probe.html"
    probe.write_text(rep.read_text().replace("</body>", _LAYOUT_JS + "</body>"))
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--force-device-scale-factor=1", "--virtual-time-budget=10000"]  # fmt: skip
    dom = subprocess.run(
        [*flags, "--window-size=1200,900", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    m = re.search(r'<pre id="layout">(.*?)</pre>', dom.stdout, re.S)
    assert m, dom.stderr[-2000:]
    layout = json.loads(html.unescape(m.group(1)))
    assert len(layout["imgs"]) == len(plots) + 1  # the given plots and the orientation coverage
    height = int(layout["height"]) + 10
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--window-size=1200,{height}", f"--screenshot={shot}", rep.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    keep = os.environ.get("CESPED_KEEP_SCREENSHOT")  # e.g. to look at the page by eye
    if keep:
        Path(keep).write_bytes(shot.read_bytes())
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape[0] >= height - 10

    def drawn(rect, min_ink):
        x, y, w, h = (int(round(v)) for v in rect[:4])
        region = img[y : y + h, x : x + w]
        assert region.size > 0 and w > 100 and h > 50, rect
        ink = np.mean(region < 200)  # fraction of non-white pixels
        return ink >= min_ink and region.std() > 10

    assert drawn(layout["summary"], 0.02), "summary table not drawn"
    for rect in layout["imgs"]:
        assert rect[4] > 0, "an image did not decode"
        assert drawn(rect, 0.01), f"plot at {rect} is blank"
