"""Native direct Fourier inversion: reproduces the source map, symmetry, weights, kernels agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cesped.evaluation.metrics import fsc
from cesped.geometry.rotations import random_rotations
from cesped.geometry.symmetry import symmetry_matrices
from cesped.io.star import read_star, write_star
from cesped.physics.fourier import centered_rfft2
from cesped.reconstruction.fourier import FourierAccumulator, reconstruct
from cesped.simulation.fixtures import blob_map, write_particle_set

N = 32
K08 = int(0.8 * (N // 2))  # last shell up to 0.8 x Nyquist


@pytest.fixture(scope="module")
def c1_set(tmp_path_factory):
    vol = blob_map(N, n_blobs=24, sigma=1.3, seed=0)
    star = write_particle_set(tmp_path_factory.mktemp("c1"), vol, 500, pixel_size=2.0, snr=np.inf, seed=1)
    return vol, star


def test_reconstruction_with_true_poses_reproduces_source(c1_set):
    vol, star = c1_set
    rec, px = reconstruct(star)
    assert px == pytest.approx(2.0)
    assert rec.shape == (N, N, N) and rec.dtype == np.float32
    curve = fsc(rec, vol)
    assert np.all(curve[: K08 + 1] > 0.9), curve
    # same scale as the source map (no arbitrary normalisation)
    assert float(np.sum(rec * vol) / np.sum(vol * vol)) == pytest.approx(1.0, rel=0.1)


def test_wrong_origin_sign_breaks_the_reconstruction(c1_set):
    """The origin convention matters: negated origins give a much worse map."""
    vol, star = c1_set
    st = read_star(star)
    st.particles["rlnOriginXAngst"] *= -1
    st.particles["rlnOriginYAngst"] *= -1
    bad, _ = reconstruct(st)
    assert fsc(bad, vol)[K08] < 0.5


def _symmetric_set(tmp_path_factory, sym, n_particles):
    vol = blob_map(N, n_blobs=10, sigma=1.3, seed=3, symmetry=sym)
    star = write_particle_set(
        tmp_path_factory.mktemp(sym), vol, n_particles, pixel_size=2.0, snr=np.inf, seed=4
    )
    return vol, star


@pytest.mark.parametrize("sym", ["C2", "C4"])
def test_symmetric_reconstruction(tmp_path_factory, sym):
    vol, star = _symmetric_set(tmp_path_factory, sym, 150)
    # the test map really has the symmetry: V(S r) = V(r) for its operators
    ops = symmetry_matrices(sym)
    assert len(ops) == int(sym[1:])
    rec_sym, _ = reconstruct(star, symmetry=sym)
    rec_c1, _ = reconstruct(star, symmetry="C1")
    f_sym, f_c1 = fsc(rec_sym, vol), fsc(rec_c1, vol)
    assert np.all(f_sym[: K08 + 1] > 0.9), f_sym
    # symmetry adds (correctly placed) copies: better than C1 from the same few particles
    assert f_sym[K08 - 2 : K08 + 1].mean() > f_c1[K08 - 2 : K08 + 1].mean()


def test_unit_weights_change_nothing_and_zero_weights_drop_particles(c1_set):
    vol, star = c1_set
    st = read_star(star)
    n = len(st.particles)
    base, _ = reconstruct(st)
    same, _ = reconstruct(st, weights=np.full(n, 3.0))
    np.testing.assert_allclose(same, base, rtol=1e-4, atol=1e-5 * np.abs(base).max())
    w = np.zeros(n)
    w[: n // 2] = 1.0
    weighted, _ = reconstruct(st, weights=w)
    sub = st.copy()
    sub.particles = st.particles.iloc[: n // 2].reset_index(drop=True)
    first_half, _ = reconstruct(sub)
    np.testing.assert_allclose(weighted, first_half, rtol=1e-4, atol=1e-4 * np.abs(base).max())
    st.particles["rlnParticleFigureOfMerit"] = w
    by_column, _ = reconstruct(st, weights="rlnParticleFigureOfMerit")
    np.testing.assert_allclose(by_column, first_half, rtol=1e-4, atol=1e-4 * np.abs(base).max())


def test_batch_size_and_kernels_agree(c1_set):
    _, star = c1_set
    a, _ = reconstruct(star, batch_size=7, kernel="torch")
    b, _ = reconstruct(star, batch_size=1000, kernel="torch")
    np.testing.assert_allclose(a, b, atol=2e-5 * np.abs(b).max())
    pytest.importorskip("numba")
    c, _ = reconstruct(star, kernel="numba", n_threads=2)
    np.testing.assert_allclose(c, b, atol=2e-5 * np.abs(b).max())


def test_centred_delta_reconstructs_to_a_centred_peak():
    """Images of a centred point (constant spectra) at random poses give a peak at n//2."""
    n = 16
    acc = FourierAccumulator(n, pad=2)
    img = torch.zeros(64, n, n)
    img[:, n // 2, n // 2] = 1.0
    acc.insert(centered_rfft2(img), None, random_rotations(64, generator=torch.Generator().manual_seed(0)))
    vol = acc.finalize(mask_edge=False).numpy()
    assert np.unravel_index(np.argmax(vol), vol.shape) == (n // 2,) * 3


def test_accumulator_kernels_agree_and_merge():
    """The streaming API: the numba kernel (a NumbaGrid under the torch wrapper) and the torch
    scatter give the same map, and two accumulators merged equal one that saw every image."""
    pytest.importorskip("numba")
    n, b = 16, 48
    gen = torch.Generator().manual_seed(1)
    imgs = torch.randn(b, n, n, generator=gen)
    ft = centered_rfft2(imgs)
    rot = random_rotations(b, generator=gen)
    w = torch.rand(b, generator=gen)
    maps = {}
    for kernel in ("torch", "numba"):
        whole = FourierAccumulator(n, pad=2, kernel=kernel)
        whole.insert(ft, None, rot, w)
        first, second = (
            FourierAccumulator(n, pad=2, kernel=kernel),
            FourierAccumulator(n, pad=2, kernel=kernel),
        )
        first.insert(ft[:20], None, rot[:20], w[:20])
        second.insert(ft[20:], None, rot[20:], w[20:])
        merged = first.merge_(second).finalize().numpy()
        maps[kernel] = whole.finalize().numpy()
        np.testing.assert_allclose(merged, maps[kernel], atol=1e-5 * np.abs(maps[kernel]).max())
    assert np.abs(maps["torch"]).max() > 0
    np.testing.assert_allclose(maps["numba"], maps["torch"], atol=2e-5 * np.abs(maps["torch"]).max())


def test_bad_inputs(c1_set, tmp_path):
    _, star = c1_set
    st = read_star(star)
    with pytest.raises(ValueError, match="weights"):
        reconstruct(st, weights=np.ones(3))
    with pytest.raises(ValueError, match="weights"):
        reconstruct(st, weights="noSuchColumn")
    st.particles.loc[3, "rlnAngleTilt"] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        reconstruct(st)
    with pytest.raises(ValueError, match="kernel"):
        FourierAccumulator(8, kernel="fast")
    with pytest.raises(ValueError, match="kernel"):
        reconstruct(star, kernel="fast")
    empty = read_star(star)
    empty.particles = empty.particles.iloc[:0]
    p = tmp_path / "empty.star"
    write_star(p, empty)
    with pytest.raises(ValueError):
        reconstruct(p)


def test_reconstruct_many_equals_separate_reconstructions(c1_set):
    """Several pose sets from one pass over the images give the maps of separate calls."""
    from cesped.reconstruction.fourier import reconstruct_many

    vol, star = c1_set
    st = read_star(star)
    n = len(st.particles)
    rng = np.random.default_rng(7)
    other = st.copy()
    other.particles["rlnAngleTilt"] = rng.uniform(0, 180, n)  # different poses
    other.particles["rlnOriginXAngst"] = st.particles["rlnOriginXAngst"] + rng.normal(0, 1.0, n)
    w = rng.uniform(0.2, 1.0, n)
    ang = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    sh = ["rlnOriginXAngst", "rlnOriginYAngst"]
    poses = [
        {},
        {"angles": other.particles[ang].to_numpy(), "shifts_A": other.particles[sh].to_numpy()},
        {"weights": w},
    ]
    for kernel in ("numba", "torch"):
        vols, px = reconstruct_many(star, poses, kernel=kernel)
        assert px == pytest.approx(2.0) and len(vols) == 3
        refs = [
            reconstruct(star, kernel=kernel)[0],
            reconstruct(other, kernel=kernel)[0],
            reconstruct(star, weights=w, kernel=kernel)[0],
        ]
        for got, ref in zip(vols, refs, strict=True):
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    # the true-pose map reproduces the source, the perturbed one does not
    assert np.all(fsc(vols[0], vol)[: K08 + 1] > 0.9)
    assert fsc(vols[1], vol)[K08] < 0.5
    with pytest.raises(ValueError, match="angles"):
        reconstruct_many(star, [{"angles": np.zeros((n - 1, 3))}])
    with pytest.raises(ValueError, match="pose set"):
        reconstruct_many(star, [{"rotation": 1}])


def test_compiled_ctf_matches_relion_ctf():
    """The vectorised sine of the compiled CTF reproduces RELION's CTF (compute_ctf) at every
    inserted point, astigmatism, phase shift and B-factor included, to float64 rounding."""
    import pandas as pd

    from cesped.physics.ctf import compute_ctf
    from cesped.reconstruction import _splat_numba
    from cesped.reconstruction._inputs import ctf_params as _ctf_params

    n, px = 64, 1.3
    rows = pd.DataFrame(
        {
            "rlnDefocusU": [8000.0, 25000.0, 41000.0],
            "rlnDefocusV": [7000.0, 24500.0, 40000.0],
            "rlnDefocusAngle": [0.0, 37.0, -120.0],
            "rlnPhaseShift": [0.0, 0.0, 90.0],
            "rlnCtfBfactor": [0.0, 50.0, 0.0],
            "rlnVoltage": [300.0, 300.0, 200.0],
            "rlnSphericalAberration": [2.7, 2.7, 0.01],
            "rlnAmplitudeContrast": [0.1, 0.07, 0.1],
            "rlnImagePixelSize": [px] * 3,
            "rlnImageSize": [n] * 3,
        }
    )
    prm = _ctf_params(rows)
    acc = FourierAccumulator(n, pad=2, kernel="torch")
    kx, ky = (acc._kxy[:, i].numpy().astype(np.float64) for i in (0, 1))
    az = np.arctan2(ky, kx)
    k2 = (kx**2 + ky**2) / (n * px) ** 2
    ref = (
        compute_ctf(
            rows["rlnDefocusU"].to_numpy(),
            rows["rlnDefocusV"].to_numpy(),
            rows["rlnDefocusAngle"].to_numpy(),
            rows["rlnVoltage"].to_numpy(),
            rows["rlnSphericalAberration"].to_numpy(),
            rows["rlnAmplitudeContrast"].to_numpy(),
            px,
            n,
            phase_shift=rows["rlnPhaseShift"].to_numpy(),
            bfactor=rows["rlnCtfBfactor"].to_numpy(),
            dtype=torch.float64,
        )
        .reshape(3, -1)[:, acc._flat]
        .numpy()
    )
    for b in range(3):
        out = np.empty(kx.shape[0])
        args = [prm[k][b] for k in ("dfavg", "dfdev", "cos2ang", "sin2ang", "k1", "k2c", "kconst", "bfac")]
        _splat_numba.ctf_row(out, np.cos(2 * az), np.sin(2 * az), k2, *args)
        np.testing.assert_allclose(out, ref[b], atol=1e-9)
        assert np.ptp(out) > 1.0  # the CTF oscillates across the points (not a constant)


@pytest.mark.parametrize("n", [16, 17])
def test_windowed_inverse_equals_full_inverse(n):
    import scipy.fft

    from cesped.reconstruction._inputs import windowed_irfftn as _windowed_irfftn

    m = 2 * n
    rng = np.random.default_rng(3)
    spec = scipy.fft.rfftn(rng.normal(size=(m, m, m))).astype(np.complex64)
    full = scipy.fft.irfftn(spec, s=(m, m, m))
    keep = (np.arange(n) - n // 2) % m
    got = _windowed_irfftn(spec.copy(), n, workers=1)
    assert got.shape == (n, n, n)
    np.testing.assert_allclose(got, full[np.ix_(keep, keep, keep)], rtol=0, atol=1e-6 * np.abs(full).max())


def test_shared_preprocessing_gives_the_plain_maps(c1_set):
    """GT and predicted-pose maps built together from one read/FFT/CTF pass (the evaluation's
    path) equal the maps reconstructed one at a time, for both kernels and with weights."""
    from cesped.reconstruction.fourier import reconstruct_many

    _, star = c1_set
    st = read_star(star)
    n = len(st.particles)
    rng = np.random.default_rng(7)
    gt_angles = st.particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
    pred_angles = gt_angles + rng.normal(0, 5.0, gt_angles.shape)
    fom = rng.uniform(0.1, 1.0, n)
    for kernel in ("numba", "torch"):
        (gt_map, pred_map), _ = reconstruct_many(
            star, [{}, {"angles": pred_angles, "weights": fom}], kernel=kernel
        )
        plain_gt, _ = reconstruct(star, kernel=kernel)
        pst = st.copy()
        pst.particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]] = pred_angles
        plain_pred, _ = reconstruct(pst, weights=fom, kernel=kernel)
        scale = np.abs(plain_gt).max()
        np.testing.assert_allclose(gt_map, plain_gt, atol=1e-5 * scale)
        np.testing.assert_allclose(pred_map, plain_pred, atol=1e-5 * scale)
        assert np.abs(pred_map - gt_map).max() > 1e-2 * scale  # the poses do matter


def test_released_grid_refuses_further_use():
    """finalize(release=True) returns the same map as finalize() and frees the grid: a later
    insert or finalize is a clear error, not a map from an empty grid."""
    from cesped.reconstruction.numba_grid import NumbaGrid

    rng = np.random.default_rng(0)
    rot = random_rotations(8, generator=torch.Generator().manual_seed(0)).numpy()
    grids = [NumbaGrid(16, 2, np.eye(3)[None], n_threads=2) for _ in range(2)]
    vals = [rng.normal(size=(8, grids[0].n_points)).astype(np.float32) for _ in range(2)]
    w = np.abs(rng.normal(size=(8, grids[0].n_points))).astype(np.float32)
    for g in grids:
        g.insert_values(vals[0], vals[1], w, rot)
    kept = grids[0].finalize()
    released = grids[1].finalize(release=True)
    np.testing.assert_array_equal(kept, released)
    assert np.ptp(released) > 0
    with pytest.raises(ValueError, match="released"):
        grids[1].finalize()
    with pytest.raises(ValueError, match="released"):
        grids[1].insert_values(vals[0], vals[1], w, rot)
