"""Simulated entries checked with RELION's own binaries (independent reference).

``relion_reconstruct --ctf`` inverts RELION's image model (Euler angles, origin sign, CTF with
astigmatism); if any of our conventions differed, the reconstruction would not match the
ground-truth map. ``relion_project --ctf`` recomputes the noiseless signal of every particle
from the star file, which measures the SNR without using our code.
"""

import subprocess

import mrcfile
import numpy as np
import pytest

from cesped.io.stack import ImageSource
from cesped.io.star import read_star, write_star
from cesped.simulation import simulate_entry


def hard_shell_fsc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """FSC with shells k <= |r| < k+1 (numpy only), k = 0 .. n // 2."""
    n = a.shape[0]
    fa = np.fft.fftshift(np.fft.fftn(a))
    fb = np.fft.fftshift(np.fft.fftn(b))
    z, y, x = np.meshgrid(*[np.arange(n) - n // 2] * 3, indexing="ij")
    shell = np.sqrt(x**2 + y**2 + z**2).astype(int)
    out = []
    for k in range(n // 2 + 1):
        m = shell == k
        num = np.real((fa[m] * np.conj(fb[m])).sum())
        out.append(num / np.sqrt((np.abs(fa[m]) ** 2).sum() * (np.abs(fb[m]) ** 2).sum()))
    return np.array(out)


@pytest.mark.relion
@pytest.mark.parametrize(
    "symmetry, extra",
    [("C1", {}), ("C2", {}), ("C1", {"phase_shift_range": (30.0, 120.0), "astigmatism_max": 4000.0})],
    ids=["C1", "C2", "C1-phase-plate-astigmatic"],
)
def test_relion_reconstruct_matches_gt_map(tmp_path, symmetry, extra):
    px, box = 3.0, 32
    d = simulate_entry(
        tmp_path / "e", "4e43", 3000, px, box, snr=5.0, symmetry=symmetry, seed=2, progress=False, **extra
    )
    res = subprocess.run(
        ["relion_reconstruct", "--i", "particles_0.star", "--o", "rec_0.mrc", "--ctf", "--sym", symmetry],
        cwd=d,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    rec = mrcfile.read(d / "rec_0.mrc").astype(np.float64)
    gt = mrcfile.read(d / "gt_map.mrc").astype(np.float64)
    fsc = hard_shell_fsc(rec, gt)
    # shell k has resolution box * px / k; 2.5 x pixel size -> k = box / 2.5
    k_max = int(np.floor(box / 2.5))
    assert fsc[1 : k_max + 1].min() > 0.5, np.round(fsc, 3)
    if symmetry == "C1" and not extra:
        # negative control: the opposite origin sign convention ruins the reconstruction
        star = read_star(d / "particles_0.star")
        star.particles["rlnOriginXAngst"] *= -1
        star.particles["rlnOriginYAngst"] *= -1
        write_star(d / "flipped.star", star)
        subprocess.run(
            ["relion_reconstruct", "--i", "flipped.star", "--o", "rec_flip.mrc", "--ctf"],
            cwd=d,
            capture_output=True,
            check=True,
        )
        bad = hard_shell_fsc(mrcfile.read(d / "rec_flip.mrc").astype(np.float64), gt)
        assert bad[1 : k_max + 1].min() < 0.5


@pytest.mark.relion
def test_snr_measured_with_relion_project(tmp_path):
    px, box, snr = 3.0, 32, 0.2
    d = simulate_entry(tmp_path / "e", "4e43", 300, px, box, snr=snr, seed=5, progress=False)
    measured = []
    for h in (0, 1):
        res = subprocess.run(
            [
                "relion_project",
                "--i",
                "gt_map.mrc",
                "--o",
                f"clean_{h}",
                "--ang",
                f"particles_{h}.star",
                "--ctf",
                "--angpix",
                str(px),
            ],
            cwd=d,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        clean = mrcfile.read(d / f"clean_{h}.mrcs").astype(np.float64)
        star = read_star(d / f"particles_{h}.star")
        imgs = ImageSource.from_star(star).read(slice(0, len(star))).astype(np.float64)
        # images = alpha * clean + noise: alpha by least squares over the whole half-set
        alpha = float((imgs * clean).sum() / (clean * clean).sum())
        noise = imgs - alpha * clean
        signal_var = (alpha * clean).reshape(len(clean), -1).var(axis=1).mean()
        measured.append(signal_var / noise.var())
        # the residual is white noise: uncorrelated with the signal
        assert abs(np.corrcoef(noise.ravel(), clean.ravel())[0, 1]) < 0.02
    assert np.mean(measured) == pytest.approx(snr, rel=0.1)
