"""A ground truth without CTF columns is refused unless the entry declares that it has no CTF.

Before: the star passed the checks and the native backend failed later with a message naming
neither the file nor a way out, while ``--backend relion`` ran ``relion_reconstruct --ctf`` on it.
Now: refused naming the star file and the missing columns; ``"ctf": false`` in the info files,
``ctf=False`` or ``--no-ctf`` evaluate it without a CTF and ``metrics.json`` records ``"ctf"``.
"""

from __future__ import annotations

import json
import shutil

import pytest

from cesped.evaluateEntry import evaluate, main
from cesped.io.star import read_star, write_star

from ._entries import make_entry
from .test_evaluate import _preds

CTF = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage", "rlnSphericalAberration",
       "rlnAmplitudeContrast", "rlnPhaseShift", "rlnCtfBfactor")  # fmt: skip


@pytest.fixture(scope="module")
def base_entry(tmp_path_factory):
    return make_entry(tmp_path_factory.mktemp("bench"), "tinyCtf", "C1", n_per_half=60, seed=5)


@pytest.fixture
def entry(base_entry, tmp_path):
    return shutil.copytree(base_entry, tmp_path / "bench" / "tinyCtf")


def _drop_ctf(entry, halves=(0, 1), columns=CTF):
    for h in halves:
        st = read_star(entry / f"particles_{h}.star")
        st.particles = st.particles.drop(columns=[c for c in columns if c in st.particles.columns])
        st.optics = st.optics.drop(columns=[c for c in columns if c in st.optics.columns])
        write_star(entry / f"particles_{h}.star", st)


def _declare(entry, value):
    for h in (0, 1):
        p = entry / f"info_{h}.json"
        info = json.loads(p.read_text())
        info["ctf"] = value
        p.write_text(json.dumps(info))


def _cli(entry, p0, p1, *extra):
    args = ["--targetName", str(entry), "--half0PredsFname", str(p0), "--half1PredsFname", str(p1)]
    return main([*args, "--mask", "none", *extra])


def test_missing_ctf_columns_are_refused_naming_file_and_columns(entry, tmp_path, capsys):
    p0, p1 = _preds(entry, tmp_path)
    _drop_ctf(entry, halves=(1,))
    with pytest.raises(
        ValueError, match=r"particles_1\.star: no CTF columns rlnDefocusU, rlnDefocusV.*--no-ctf"
    ):
        evaluate(str(entry), p0, p1, mask="none", plots=False)
    assert _cli(entry, p0, p1) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "particles_1.star" in err and "rlnAmplitudeContrast" in err
    assert not (tmp_path / "out").exists()


def test_declared_no_ctf_is_evaluated_and_recorded(entry, tmp_path):
    p0, p1 = _preds(entry, tmp_path)
    with_ctf = evaluate(str(entry), p0, p1, mask="none", plots=False, use_cache=False)
    assert with_ctf["ctf"] is True
    _drop_ctf(entry)
    out = tmp_path / "out"
    m = evaluate(str(entry), p0, p1, mask="none", plots=False, ctf=False, outdir=out, use_cache=False)
    assert json.loads((out / "metrics.json").read_text())["ctf"] is False
    assert m["MAnE_deg"] == pytest.approx(0.0, abs=1e-6)
    # the maps differ from those made with the CTF (it was not applied): images simulated with a CTF
    # reconstructed without it correlate differently with each other
    assert m["PCC(GT0,GT1)_unmasked"] != pytest.approx(with_ctf["PCC(GT0,GT1)_unmasked"], abs=1e-4)
    assert _cli(entry, p0, p1, "--no-ctf", "--outdir", str(tmp_path / "cli")) == 0
    assert json.loads((tmp_path / "cli" / "metrics.json").read_text())["ctf"] is False


def test_info_files_declare_no_ctf(entry, tmp_path):
    p0, p1 = _preds(entry, tmp_path)
    _drop_ctf(entry)
    _declare(entry, False)
    m = evaluate(str(entry), p0, p1, mask="none", plots=False, use_cache=False)
    assert m["ctf"] is False
    with pytest.raises(ValueError, match=r"ctf=True contradicts the entry's info files"):
        evaluate(str(entry), p0, p1, mask="none", plots=False, ctf=True)
    _declare(entry, "no")
    with pytest.raises(ValueError, match=r"info_0\.json: 'ctf' must be true or false"):
        evaluate(str(entry), p0, p1, mask="none", plots=False)


def test_disagreeing_info_files_on_ctf(entry, tmp_path):
    p0, p1 = _preds(entry, tmp_path)
    p = entry / "info_1.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), "ctf": False}))
    _declare_only_0 = json.loads((entry / "info_0.json").read_text())
    (entry / "info_0.json").write_text(json.dumps({**_declare_only_0, "ctf": True}))
    with pytest.raises(
        ValueError, match=r"disagree on 'ctf'.*info_0\.json says True.*info_1\.json says False"
    ):
        evaluate(str(entry), p0, p1, mask="none", plots=False)


@pytest.mark.relion
def test_no_ctf_native_agrees_with_relion_without_ctf(entry, tmp_path):
    """The independent reference: ``relion_reconstruct`` without ``--ctf`` on the same stars (RELION
    3.1 reads the optics' voltage even then, so only the per-particle defocus columns go)."""
    p0, p1 = _preds(entry, tmp_path)
    _drop_ctf(entry, columns=CTF[:3])
    with pytest.raises(
        ValueError, match=r"particles_0\.star: no CTF columns rlnDefocusU, rlnDefocusV, rlnDefocusAngle:"
    ):
        evaluate(str(entry), p0, p1, mask="none", plots=False, backend="relion")
    nat = evaluate(str(entry), p0, p1, mask="none", plots=False, ctf=False, use_cache=False)
    rel = evaluate(str(entry), p0, p1, mask="none", plots=False, ctf=False, backend="relion", use_cache=False)
    assert rel["ctf"] is False and nat["ctf"] is False
    for k in ("PCC(GT0,GT1)_unmasked", "PCC(GT,V)_unmasked", "PCC(V0,V1)_unmasked"):
        assert rel[k] == pytest.approx(nat[k], abs=0.02), k
