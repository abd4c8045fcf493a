"""FSC (hard shells), resolution rule and PCC against independent references."""

from __future__ import annotations

import numpy as np
import pytest

from cesped.evaluation.metrics import fsc, fsc_frequencies, pcc, resolution_at, shifts_rmse


def _brute_force_fsc(a, b):
    """Full complex FFT, fftshift, explicit shells k <= |r| < k+1 (the original's definition)."""
    n = a.shape[0]
    fa = np.fft.fftshift(np.fft.fftn(a))
    fb = np.fft.fftshift(np.fft.fftn(b))
    x = np.arange(n) - n // 2
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    out = []
    for k in range(n // 2 + 1):
        s = (r >= k) & (r < k + 1)
        num = np.real(fa[s] * np.conj(fb[s])).sum()
        out.append(num / np.sqrt((np.abs(fa[s]) ** 2).sum() * (np.abs(fb[s]) ** 2).sum()))
    return np.array(out)


@pytest.mark.parametrize("n", [16, 17])
def test_fsc_matches_brute_force(n):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, n, n))
    b = a + rng.normal(size=(n, n, n)) * np.linspace(0.1, 3, n)[:, None, None]
    np.testing.assert_allclose(fsc(a, b), _brute_force_fsc(a, b), rtol=1e-10, atol=1e-12)


def test_fsc_self_is_one_and_independent_noise_is_near_zero():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(32, 32, 32))
    np.testing.assert_allclose(fsc(a, a), 1.0, atol=1e-12)
    b = rng.normal(size=(32, 32, 32))
    c = fsc(a, b)
    # shell k >= 3 holds >= ~100 independent complex voxels: |FSC| ~ 1/sqrt(count)
    assert np.max(np.abs(c[3:])) < 0.25
    assert abs(np.mean(c[3:])) < 0.05


def test_masked_fsc_uses_mask_multiplied_maps():
    rng = np.random.default_rng(2)
    a, b, m = rng.normal(size=(3, 16, 16, 16))
    np.testing.assert_allclose(fsc(a, b, mask=m), _brute_force_fsc(a * m, b * m), rtol=1e-10)


def test_resolution_rule_on_a_constructed_curve():
    n, px = 64, 1.5  # shell k has frequency k / 96 1/Å
    curve = np.ones(n // 2 + 1)
    curve[3:] = [0.5, 0.1] + [0.0] * (len(curve) - 5)
    # 0.143: first shell below is 4 (0.1); 1/res = (3 + (0.143-0.5)/(0.1-0.5)) / 96 = 3.8925/96
    assert resolution_at(curve, 0.143, px) == pytest.approx(96 / 3.8925, rel=1e-12)
    # 0.5: shell 3 equals 0.5 (not below), shell 4 is below: 1/res = (3 + 0)/96 -> 32 Å
    assert resolution_at(curve, 0.5, px) == pytest.approx(32.0, rel=1e-12)
    # never below: Nyquist
    assert resolution_at(np.ones(33), [0.143, 0.5], px) == [pytest.approx(3.0), pytest.approx(3.0)]
    # below already at the DC shell: no resolved shell, the box size (not an index -1 artefact)
    assert resolution_at(np.full(33, -0.2), 0.143, px) == pytest.approx(96.0)


def test_frequency_axis():
    np.testing.assert_allclose(fsc_frequencies(64, 1.5), np.arange(33) / 96.0)
    with pytest.raises(ValueError):
        fsc_frequencies(64, 0.0)


def test_pcc_against_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 8, 8, 8))
    b = a + 0.5 * b
    m = rng.uniform(size=(8, 8, 8))
    assert pcc(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], rel=1e-12)
    assert pcc(a, b, mask=m) == pytest.approx(np.corrcoef((a * m).ravel(), (b * m).ravel())[0, 1], rel=1e-12)
    with pytest.raises(ValueError):
        pcc(a, b[:4])


def test_shifts_rmse():
    p = np.array([[1.0, 0.0], [0.0, 0.0]])
    t = np.zeros((2, 2))
    assert shifts_rmse(p, t) == pytest.approx(np.sqrt(1 / 2))
    with pytest.raises(ValueError):
        shifts_rmse(p, np.zeros((3, 2)))


def test_fsc_of_averages_from_averaged_transforms():
    """The evaluation transforms each half-map once: FSC(GT, V) from the averaged transforms of
    the halves equals the FSC of the averaged maps, masked and unmasked."""
    from cesped.evaluation.metrics import fsc_from_transforms, map_transform

    rng = np.random.default_rng(4)
    g0, g1, v0, v1, m = rng.normal(size=(5, 16, 16, 16))
    for mask in (None, m):
        fg = 0.5 * (map_transform(g0, mask) + map_transform(g1, mask))
        fv = 0.5 * (map_transform(v0, mask) + map_transform(v1, mask))
        got = fsc_from_transforms(fg, fv, 16)
        np.testing.assert_allclose(got, fsc(0.5 * (g0 + g1), 0.5 * (v0 + v1), mask=mask), rtol=1e-10)
    with pytest.raises(ValueError, match="transforms must have"):
        fsc_from_transforms(fg[:-1], fv, 16)


def test_resolution_at_an_odd_box():
    """n = 33: 17 shells at k / (33·px), the last one (k = 16) below Nyquist; the box must be
    given (a 17-shell curve could also come from n = 32) and must match the curve."""
    from tests.evaluation._original_reference import ref_resolution

    n, px = 33, 1.5
    rng = np.random.default_rng(5)
    a = rng.normal(size=(n, n, n))
    x = np.fft.fftfreq(n)
    lowpass = np.exp(-(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2) / 0.02)
    a = np.real(np.fft.ifftn(np.fft.fftn(a) * lowpass))
    b = a + 0.02 * rng.normal(size=(n, n, n))
    curve = fsc(a, b)
    assert curve.shape == (17,)
    for thr in (0.143, 0.5):  # the original's rule with the odd box's own frequency axis
        expected = ref_resolution(curve, thr, n, px)
        assert resolution_at(curve, thr, px, box=n) == pytest.approx(expected, rel=1e-12)
    # never below: the last shell, 16 / (33·1.5) 1/Å, not Nyquist (3 Å)
    assert resolution_at(np.ones(17), 0.143, px, box=n) == pytest.approx(n * px / 16)
    assert resolution_at(np.ones(17), 0.143, px) == pytest.approx(3.0)  # box omitted: even (32)
    with pytest.raises(ValueError, match="box of 34 voxels has 18 shells, got 17"):
        resolution_at(curve, 0.143, px, box=34)
    with pytest.raises(ValueError, match="box must be an integer"):
        resolution_at(curve, 0.143, px, box=16.5)
