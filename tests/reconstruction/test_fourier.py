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
from cesped.reconstruction.synthetic import blob_map, write_particle_set

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
