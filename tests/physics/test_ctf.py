"""CTF against analytic properties of RELION's formula and against relion_project --ctf."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cesped.physics.ctf import compute_ctf, ctf_from_particles, ctf_parameters, electron_wavelength
from cesped.physics.fourier import fftfreq_grid_2d

from ._relion_helpers import gaussian_blobs, relion_project, write_map, write_particles_star


def test_wavelength_300kv():
    # Relativistic electron wavelength at 300 kV: 0.019687 Å (standard tabulated value).
    assert electron_wavelength(300.0) == pytest.approx(0.019687, abs=2e-6)
    assert electron_wavelength(200.0) == pytest.approx(0.025079, abs=2e-6)


@pytest.mark.parametrize("q0, phase", [(0.1, 0.0), (0.07, 0.0), (0.1, 90.0)])
def test_dc_value(q0, phase):
    ctf = compute_ctf(15000.0, 14000.0, 30.0, 300.0, 2.7, q0, 1.0, 32, phase_shift=phase)
    assert ctf.shape == (32, 17)
    assert float(ctf[0, 0]) == pytest.approx(math.sin(math.radians(phase) + math.asin(q0)), abs=1e-6)


def test_first_zero_isotropic():
    # Cs = 0, Q0 = 0: CTF = -sin(-pi*lambda*df*k^2) = sin(pi lambda df k^2); zero at k^2 = 1/(lambda df).
    df, px, n = 20000.0, 1.0, 256
    ctf = compute_ctf(df, df, 0.0, 300.0, 0.0, 0.0, px, n, dtype=torch.float64)
    lam = electron_wavelength(300.0)
    k = np.fft.rfftfreq(n) / px
    expected = np.sin(np.pi * lam * df * k**2)
    np.testing.assert_allclose(ctf[0].numpy(), expected, atol=1e-10)
    # full layout is Hermitian-consistent with the rfft layout
    full = compute_ctf(df, df, 0.0, 300.0, 0.0, 0.0, px, n, rfft=False, dtype=torch.float64)
    np.testing.assert_allclose(full[:, : n // 2 + 1].numpy(), ctf.numpy())


@pytest.mark.parametrize("angle", [0.0, 30.0, 125.0])
def test_astigmatism_axes(angle):
    """The defocus is U along the direction at `angle` from the x (column) axis and V at +90°."""
    u, v, n, px = 25000.0, 15000.0, 128, 1.0
    ctf = compute_ctf(u, v, angle, 300.0, 2.7, 0.1, px, n, dtype=torch.float64)
    if angle == 0.0:
        # x axis = first row of the rfft layout (ky = 0), y axis = first column (kx = 0)
        iso_u = compute_ctf(u, u, 0.0, 300.0, 2.7, 0.1, px, n, dtype=torch.float64)
        iso_v = compute_ctf(v, v, 0.0, 300.0, 2.7, 0.1, px, n, dtype=torch.float64)
        torch.testing.assert_close(ctf[0, :], iso_u[0, :])
        torch.testing.assert_close(ctf[:, 0], iso_v[:, 0])
        assert (ctf[0, :] - iso_v[0, :]).abs().max() > 0.5
    # swapping U and V changes the CTF, and equals rotating the angle by 90°
    swapped = compute_ctf(v, u, angle, 300.0, 2.7, 0.1, px, n, dtype=torch.float64)
    assert (swapped - ctf).abs().max() > 0.5
    rotated = compute_ctf(u, v, angle + 90.0, 300.0, 2.7, 0.1, px, n, dtype=torch.float64)
    torch.testing.assert_close(rotated, swapped)


def test_astigmatism_closed_form():
    """Direct evaluation of RELION's deltaf formula at every pixel."""
    u, v, ang, n, px = 22000.0, 18000.0, 40.0, 64, 1.3
    ctf = compute_ctf(u, v, ang, 300.0, 2.7, 0.1, px, n, dtype=torch.float64).numpy()
    lam = 12.2643247 / math.sqrt(300e3 * (1 + 300e3 * 0.978466e-6))
    kyv, kxv = np.meshgrid(np.fft.fftfreq(n) / px, np.fft.rfftfreq(n) / px, indexing="ij")
    k2 = kxv**2 + kyv**2
    df = -((u + v) / 2 + (u - v) / 2 * np.cos(2 * (np.arctan2(kyv, kxv) - math.radians(ang))))
    chi = math.pi * lam * df * k2 + math.pi / 2 * 2.7e7 * lam**3 * k2**2 - math.atan(0.1 / math.sqrt(0.99))
    np.testing.assert_allclose(ctf, -np.sin(chi), atol=1e-9)


def test_bfactor_envelope():
    kw = dict(
        defocus_u=15000.0,
        defocus_v=15000.0,
        defocus_angle=0.0,
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.1,
        pixel_size=2.0,
        image_size=32,
        dtype=torch.float64,
    )
    ratio = compute_ctf(bfactor=80.0, **kw) / compute_ctf(**kw)
    ky, kx = fftfreq_grid_2d(32, dtype=torch.float64)
    k2 = (kx**2 + ky**2) / 4.0
    ok = compute_ctf(**kw).abs() > 1e-3
    torch.testing.assert_close(ratio[ok], torch.exp(-80.0 * k2 / 4)[ok])


def test_batched_equals_single():
    rng = np.random.default_rng(1)
    u = rng.uniform(1e4, 2.5e4, 5)
    v = u - rng.uniform(0, 2e3, 5)
    a = rng.uniform(0, 180, 5)
    ph = rng.uniform(0, 90, 5)
    batch = compute_ctf(u, v, a, 300.0, 2.7, 0.1, 1.5, 24, phase_shift=ph)
    assert batch.shape == (5, 24, 13)
    for i in range(5):
        single = compute_ctf(u[i], v[i], a[i], 300.0, 2.7, 0.1, 1.5, 24, phase_shift=ph[i])
        torch.testing.assert_close(batch[i], single)


def test_ctf_from_particles_with_optics_groups():
    parts = pd.DataFrame(
        {
            "rlnDefocusU": [12000.0, 20000.0],
            "rlnDefocusV": [11000.0, 19000.0],
            "rlnDefocusAngle": [10.0, 80.0],
            "rlnOpticsGroup": [2, 1],
            "rlnCtfBfactor": [0.0, 50.0],
        }
    )
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1, 2],
            "rlnVoltage": [300.0, 200.0],
            "rlnSphericalAberration": [2.7, 2.0],
            "rlnAmplitudeContrast": [0.1, 0.07],
            "rlnImagePixelSize": [1.5, 1.5],
            "rlnImageSize": [20, 20],
        }
    )
    ctf = ctf_from_particles(parts, optics)
    assert ctf.shape == (2, 20, 11)
    torch.testing.assert_close(ctf[0], compute_ctf(12000.0, 11000.0, 10.0, 200.0, 2.0, 0.07, 1.5, 20))
    expected1 = compute_ctf(20000.0, 19000.0, 80.0, 300.0, 2.7, 0.1, 1.5, 20, bfactor=50.0)
    torch.testing.assert_close(ctf[1], expected1)
    # RELION's phase-shift label, and the rlnCtfPhaseShift fallback
    with_phase = ctf_from_particles(parts.assign(rlnPhaseShift=[40.0, 0.0]), optics)
    torch.testing.assert_close(
        with_phase[0], compute_ctf(12000.0, 11000.0, 10.0, 200.0, 2.0, 0.07, 1.5, 20, phase_shift=40.0)
    )
    torch.testing.assert_close(
        ctf_from_particles(parts.assign(rlnCtfPhaseShift=[40.0, 0.0]), optics), with_phase
    )
    # already-joined table, with a size override
    joined = parts.merge(optics, on="rlnOpticsGroup", how="left")
    torch.testing.assert_close(ctf_from_particles(joined), ctf)
    assert ctf_from_particles(joined, image_size=10, pixel_size=3.0).shape == (2, 10, 6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="amplitude_contrast"):
        compute_ctf(1e4, 1e4, 0, 300, 2.7, 1.0, 1.0, 16)
    with pytest.raises(ValueError, match="pixel_size"):
        compute_ctf(1e4, 1e4, 0, 300, 2.7, 0.1, 0.0, 16)
    with pytest.raises(ValueError, match="image_size"):
        compute_ctf(1e4, 1e4, 0, 300, 2.7, 0.1, 1.0, 0)
    with pytest.raises(ValueError, match="rlnDefocusV"):
        ctf_from_particles(pd.DataFrame({"rlnDefocusU": [1.0], "rlnDefocusAngle": [0.0]}))
    with pytest.raises(ValueError, match="rlnOpticsGroup"):
        ctf_from_particles(
            pd.DataFrame(
                {"rlnDefocusU": [1e4], "rlnDefocusV": [1e4], "rlnDefocusAngle": [0.0], "rlnOpticsGroup": [3]}
            ),
            pd.DataFrame(
                {
                    "rlnOpticsGroup": [1],
                    "rlnVoltage": [300.0],
                    "rlnSphericalAberration": [2.7],
                    "rlnAmplitudeContrast": [0.1],
                    "rlnImagePixelSize": [1.0],
                    "rlnImageSize": [16],
                }
            ),
        )


@pytest.mark.relion
def test_ctf_matches_relion_project(tmp_path):
    """relion_project --ctf applies RELION's own CTF (with astigmatism) to its projections.

    Our CTF applied to relion_project's CTF-free projections must reproduce them; a mirrored
    defocus angle (the original package's bug) or the opposite phase-shift sign must not.
    Half of the particles carry a phase-plate shift in RELION's ``rlnPhaseShift`` column.
    """
    n, px = 48, 2.0
    vol = gaussian_blobs(n, 12, 1.5, seed=3)
    write_map(tmp_path / "map.mrc", vol, px)
    rng = np.random.default_rng(2)
    b = 6
    ang = rng.uniform([0, 0, 0], [360, 180, 360], (b, 3))
    du = rng.uniform(8000, 20000, b)
    dv = du - rng.uniform(2000, 5000, b)
    da = rng.uniform(10, 170, b)
    ph = np.where(np.arange(b) % 2 == 1, rng.uniform(30, 120, b), 0.0)
    parts = pd.DataFrame(
        {
            "rlnAngleRot": ang[:, 0],
            "rlnAngleTilt": ang[:, 1],
            "rlnAnglePsi": ang[:, 2],
            "rlnDefocusU": du,
            "rlnDefocusV": dv,
            "rlnDefocusAngle": da,
            "rlnPhaseShift": ph,
        }
    )
    write_particles_star(tmp_path / "ang.star", parts, px, n)
    plain = relion_project(tmp_path, tmp_path / "map.mrc", tmp_path / "ang.star", px, ctf=False)
    with_ctf = relion_project(tmp_path, tmp_path / "map.mrc", tmp_path / "ang.star", px, ctf=True)

    def ours(angle, phase=ph):
        ctf = compute_ctf(du, dv, angle, 300.0, 2.7, 0.1, px, n, phase_shift=phase, dtype=torch.float64)
        ft = torch.fft.rfft2(torch.fft.ifftshift(torch.from_numpy(plain), dim=(-2, -1)))
        return torch.fft.fftshift(torch.fft.irfft2(ft * ctf, s=(n, n)), dim=(-2, -1)).numpy()

    good, mirrored = ours(da), ours(90.0 - da)
    for i in range(b):
        ref = with_ctf[i].ravel()
        assert np.corrcoef(good[i].ravel(), ref)[0, 1] > 0.999
        assert np.std(good[i]) / np.std(ref) == pytest.approx(1.0, abs=0.02)
    worst_mirrored = min(np.corrcoef(mirrored[i].ravel(), with_ctf[i].ravel())[0, 1] for i in range(b))
    assert worst_mirrored < 0.99
    flipped = ours(da, -ph)
    for i in np.flatnonzero(ph):
        assert np.corrcoef(flipped[i].ravel(), with_ctf[i].ravel())[0, 1] < 0.9


def test_ctf_parameters_reads_relion_phase_shift_label():
    """RELION's label is rlnPhaseShift; rlnCtfPhaseShift is only a fallback."""
    base = {"rlnDefocusU": [15000.0], "rlnDefocusV": [14000.0], "rlnDefocusAngle": [30.0],
            "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1]}
    both = pd.DataFrame({**base, "rlnPhaseShift": [90.0], "rlnCtfPhaseShift": [10.0]})
    assert ctf_parameters(both)["phase_shift"][0] == 90.0
    legacy = pd.DataFrame({**base, "rlnCtfPhaseShift": [10.0]})
    assert ctf_parameters(legacy)["phase_shift"][0] == 10.0
    assert ctf_parameters(pd.DataFrame(base))["phase_shift"][0] == 0.0
    with pytest.raises(ValueError, match="rlnVoltage"):
        ctf_parameters(pd.DataFrame({k: v for k, v in base.items() if k != "rlnVoltage"}))
