"""Heterogeneous synthetic entries: discrete states (rlnClassNumber) and a linear morph.

Independent references: RELION's ``relion_project --ctf`` recomputes each particle's noiseless
signal from a map and the star file (so the image of a particle of state k must be the projection
of ``gt_map_state{k}.mrc``, and a morph particle at t = 0.5 the projection of the map of the
mid-point atoms); the raw PDB text (parsed here without gemmi) gives the heavy-atom count and
the superposition RMSD.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import warnings

import mrcfile
import numpy as np
import pytest

from cesped.io.mrc import read_map, write_map
from cesped.io.stack import ImageSource
from cesped.io.star import read_star
from cesped.simulate import main
from cesped.simulation import PRESETS, simulate_entry
from cesped.simulation.hetero import MORPH_COLUMN, STATE_COLUMN, read_conformations
from cesped.simulation.presets import resolve_structure

# ADK spans ~72 Å: 32 px of 6 Å hold it with the default shifts
TINY = dict(n_particles=40, pixel_size=6.0, box=32, snr=None, seed=1, progress=False)
ADK = ("adk_open", "adk_closed")


def _pdb_heavy_atoms(name):
    """(names, coords) of the non-hydrogen ATOM records, parsed from the PDB text."""
    names, xyz = [], []
    with gzip.open(resolve_structure(name), "rt") as fh:
        for line in fh:
            if line.startswith(("ATOM", "HETATM")) and not line[12:16].strip().startswith("H"):
                names.append((line[22:26].strip(), line[12:16].strip()))
                xyz.append([float(line[30:38]), float(line[38:46]), float(line[46:54])])
    return names, np.array(xyz)


def _images(d, h):
    star = read_star(d / f"particles_{h}.star")
    return star, ImageSource.from_star(star).read(slice(0, len(star))).astype(np.float64)


def _relion_project(d, map_name, h, px, out):
    res = subprocess.run(
        ["relion_project", "--i", map_name, "--o", out, "--ang", f"particles_{h}.star", "--ctf",
         "--angpix", str(px)],
        cwd=d, capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return mrcfile.read(d / f"{out}.mrcs").astype(np.float64)


def _corr(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    d = tmp_path_factory.mktemp("hetero") / "states"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every element known (no Cd from "CD1")
        return simulate_entry(d, ADK, weights=(0.75, 0.25), **TINY)


def test_atoms_elements_and_superposition_match_the_pdb_text():
    names_o, xyz_o = _pdb_heavy_atoms("adk_open")
    names_c, xyz_c = _pdb_heavy_atoms("adk_closed")
    assert names_o == names_c
    confs, info = read_conformations(ADK)
    assert [len(c.model) for c in confs] == [len(names_o)] * 2
    assert set(confs[0].model.elements.tolist()) == {"C", "N", "O", "S"}
    # Kabsch RMSD from the raw coordinates
    a, b = xyz_c - xyz_c.mean(0), xyz_o - xyz_o.mean(0)
    u, s, vt = np.linalg.svd(a.T @ b)
    s[-1] *= np.sign(np.linalg.det(u @ vt))
    rmsd = np.sqrt(max((a**2).sum() + (b**2).sum() - 2 * s.sum(), 0) / len(a))
    assert info["superposition_rmsd_A"]["adk_closed"] == pytest.approx(rmsd, abs=1e-6)
    # after superposition and centring the two models are as close as the Kabsch RMSD says
    d = confs[0].model.coords - confs[1].model.coords
    assert np.sqrt((d**2).sum(1).mean()) == pytest.approx(rmsd, abs=1e-6)


def test_states_layout_counts_and_average_map(states):
    gen = json.loads((states / "generation.json").read_text())
    het = gen["heterogeneity"]
    assert het["kind"] == "states" and het["column"] == STATE_COLUMN == "rlnClassNumber"
    assert het["n_per_state"] == [30, 10]  # exact proportions 0.75 / 0.25 of 40
    labels = np.concatenate(
        [read_star(states / f"particles_{h}.star").particles[STATE_COLUMN] for h in (0, 1)]
    )
    assert sorted(np.unique(labels).tolist()) == [1, 2]
    assert np.bincount(labels)[1:].tolist() == [30, 10]
    info = json.loads((states / "info_0.json").read_text())
    assert info["heterogeneity"]["state_maps"] == ["gt_map_state1.mrc", "gt_map_state2.mrc"]
    m1, m2, avg = (
        read_map(states / f)[0].astype(np.float64)
        for f in ("gt_map_state1.mrc", "gt_map_state2.mrc", "gt_map.mrc")
    )
    assert np.allclose(avg, 0.75 * m1 + 0.25 * m2, atol=1e-5 * np.abs(avg).max())
    # the two states differ, and hold the same total potential (same atoms)
    assert np.abs(m1 - m2).max() > 0.2 * m1.max()
    assert m1.sum() == pytest.approx(m2.sum(), rel=1e-3)


@pytest.mark.relion
def test_each_particle_is_a_projection_of_its_state_map(states):
    for h in (0, 1):
        star, imgs = _images(states, h)
        cls = star.particles[STATE_COLUMN].to_numpy()
        p1 = _relion_project(states, "gt_map_state1.mrc", h, 6.0, f"p1_{h}")
        p2 = _relion_project(states, "gt_map_state2.mrc", h, 6.0, f"p2_{h}")
        own = np.where((cls == 1)[:, None, None], p1, p2)
        other = np.where((cls == 1)[:, None, None], p2, p1)
        c_own, c_other = _corr(imgs, own), _corr(imgs, other)
        assert c_own.min() > 0.995, c_own
        assert (c_own - c_other).min() > 0.03, (c_own, c_other)


@pytest.mark.relion
def test_morph_particles_are_projections_of_the_interpolated_atoms(tmp_path):
    from cesped.physics.potential import voxelize_atoms

    d = simulate_entry(tmp_path / "m", ADK, morph=True, morph_frames=3, **TINY)
    gen = json.loads((d / "generation.json").read_text())
    assert gen["heterogeneity"]["kind"] == "morph" and gen["heterogeneity"]["t_grid"] == [0.0, 0.5, 1.0]
    confs, _ = read_conformations(ADK, morph=True)
    mid = 0.5 * (confs[0].model.coords + confs[1].model.coords)
    write_map(d / "mid.mrc", voxelize_atoms(mid, confs[0].model.elements, 6.0, 32), 6.0)
    for h in (0, 1):
        star, imgs = _images(d, h)
        t = star.particles[MORPH_COLUMN].to_numpy()
        assert set(np.unique(t).tolist()) <= {0.0, 0.5, 1.0}
        proj = {
            0.0: _relion_project(d, "gt_map_state1.mrc", h, 6.0, f"a_{h}"),
            0.5: _relion_project(d, "mid.mrc", h, 6.0, f"m_{h}"),
            1.0: _relion_project(d, "gt_map_state2.mrc", h, 6.0, f"b_{h}"),
        }
        for tk, p in proj.items():
            sel = t == tk
            if sel.any():
                assert _corr(imgs[sel], p[sel]).min() > 0.995
                for other_t, q in proj.items():
                    if other_t != tk:
                        assert (_corr(imgs[sel], p[sel]) - _corr(imgs[sel], q[sel])).min() > 0.03


def test_morph_coordinate_column_and_endpoint_maps(tmp_path):
    d = simulate_entry(tmp_path / "m", ADK, morph=True, morph_frames=5, **{**TINY, "n_particles": 60})
    t = np.concatenate([read_star(d / f"particles_{h}.star").particles[MORPH_COLUMN] for h in (0, 1)])
    assert set(np.unique(t).tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0} and len(np.unique(t)) >= 4
    states = simulate_entry(tmp_path / "s", ADK, **TINY)  # equal weights by default
    for k in (1, 2):  # the morph's end points are the states' maps
        a = read_map(d / f"gt_map_state{k}.mrc")[0]
        b = read_map(states / f"gt_map_state{k}.mrc")[0]
        assert np.array_equal(a, b)


def test_dataset_metadata_carries_the_conformation(states):
    from cesped.data.dataset import ParticlesDataset

    ds = ParticlesDataset(str(states), 0, download=False)
    star = read_star(states / "particles_0.star")
    for i in (0, len(ds) - 1):
        md = ds[i][3]
        assert md[STATE_COLUMN] == int(star.particles[STATE_COLUMN].iloc[i])


def test_dataset_metadata_carries_the_morph_coordinate_in_batches(tmp_path):
    from torch.utils.data import DataLoader

    from cesped.data.dataset import ParticlesDataset

    d = simulate_entry(tmp_path / "m", ADK, morph=True, morph_frames=5, **TINY)
    star = read_star(d / "particles_1.star")
    ds = ParticlesDataset(str(d), 1, download=False)
    seen = []
    for _, _, _, md in DataLoader(ds, batch_size=8):
        seen.extend(np.asarray(md[MORPH_COLUMN], dtype=np.float64).tolist())
    assert seen == star.particles[MORPH_COLUMN].astype(float).tolist()
    assert ds[0][3][MORPH_COLUMN] == float(star.particles[MORPH_COLUMN].iloc[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(structure=ADK, weights=(0.5, 0.4)), r"weights \(0.5, 0.4\) sum to 0.9, not 1"),
        (dict(structure=ADK, weights=(1.0,)), "weights has 1 values for 2 structures"),
        (dict(structure=ADK, weights=(1.2, -0.2)), "weights must be finite and >= 0"),
        (dict(structure=("adk_open", "4e43"), morph=True), "adk_open and 4e43 must have the same atoms"),
        (dict(structure=ADK + ("adk_open",), morph=True), "exactly 2 structures"),
        (dict(structure=ADK, morph=True, weights=(0.5, 0.5)), "exclusive"),
        (dict(structure=ADK, symmetry="C2"), "C1 only"),
        (dict(structure="adk_open", weights=(1.0,)), "several structures"),
        (dict(structure=ADK, morph=True, morph_frames=1), "morph_frames"),
    ],
)
def test_bad_input(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_entry(tmp_path / "bad", **{**TINY, **kwargs})
    assert not (tmp_path / "bad" / "generation.json").exists()


def test_cli_states_weights_and_morph_preset(tmp_path, capsys):
    common = ["--n", "12", "--pixel-size", "6", "--box", "32", "--noiseless", "--no-progress"]
    out = tmp_path / "cli"
    assert main(["--structure", *ADK, "--weights", "0.25", "0.75", "--out", str(out), *common]) == 0
    assert json.loads((out / "generation.json").read_text())["heterogeneity"]["n_per_state"] == [3, 9]
    out2 = tmp_path / "cli2"
    assert main(["--preset", "synth_adk_motion", "--morph-frames", "4", "--out", str(out2), *common]) == 0
    het = json.loads((out2 / "generation.json").read_text())["heterogeneity"]
    assert het["kind"] == "morph" and het["n_frames"] == 4
    assert main(["--structure", *ADK, "--weights", "0.5", "0.6", "--out", str(tmp_path / "x"), *common]) == 2
    assert "sum to 1.1, not 1" in capsys.readouterr().err


def test_presets():
    assert PRESETS["synth_adk_states"]["weights"] == (0.5, 0.5)
    assert PRESETS["synth_adk_motion"]["morph"] is True
    for name in ("synth_adk_states", "synth_adk_motion"):
        p = PRESETS[name]
        assert (p["n_particles"], p["box"], p["pixel_size"], p["structure"]) == (8000, 64, 3.0, ADK)
