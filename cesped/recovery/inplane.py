"""The global in-plane angle left by orientation recovery, from the images alone.

After the in-plane tie (:mod:`cesped.recovery.solve`) the recovered poses are
``R̂_i = G·R_i·Rz(φ₀)`` (``G``: the map's frame, harmless). Poses ``R̂_i·Rz(φ)`` describe the
images consistently, as projections of one map, only when ``φ = −φ₀`` (mod 180°: ``φ + 180°`` is
the same set of images in the map of the other hand, which no projection can tell apart).

Score (physics, no labels): a cross-validated reprojection correlation. The particles are split
at random into halves A and B; a map is reconstructed from A at poses ``R̂·Rz(φ)``; it is
projected at the poses of B, multiplied by B's CTFs, and correlated with B's images in Fourier
space (and the same with A and B swapped). A wrong ``φ`` turns every image about its own viewing
axis by a different amount in the map's frame, so A's map is an inconsistent blur that predicts
B's images badly. (A half-map FSC is not used: with many particles two half-maps of the SAME
inconsistent poses converge to the same blur, whatever ``φ``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["InplaneResult", "reprojection_score", "inplane_search"]


@dataclass
class InplaneResult:
    """``angle_deg``: the best ``φ`` in ``[0, 180)``; ``angles_deg``/``scores``: every tried ``φ``."""

    angle_deg: float
    angles_deg: np.ndarray
    scores: np.ndarray


def _check(images, ctf, rotmats, shifts_px):
    imgs = torch.as_tensor(images)
    if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2] or imgs.shape[1] < 8:
        raise ValueError(f"inplane: images must be (n, d, d) with d >= 8, got {tuple(imgs.shape)}")
    n, d = imgs.shape[0], imgs.shape[1]
    if n < 4:
        raise ValueError(f"inplane: need at least 4 particles, got {n}")
    rot = torch.as_tensor(np.asarray(rotmats), dtype=torch.float64)
    if rot.shape != (n, 3, 3):
        raise ValueError(f"inplane: rotmats must be ({n}, 3, 3), got {tuple(rot.shape)}")
    if ctf is not None:
        ctf = torch.as_tensor(ctf, dtype=torch.float32)
        if ctf.shape != (n, d, d // 2 + 1):
            raise ValueError(f"inplane: ctf must be ({n}, {d}, {d // 2 + 1}), got {tuple(ctf.shape)}")
    sh = torch.zeros(n, 2) if shifts_px is None else torch.as_tensor(shifts_px, dtype=torch.float32)
    if sh.shape != (n, 2):
        raise ValueError(f"inplane: shifts_px must be ({n}, 2), got {tuple(sh.shape)}")
    return imgs.to(torch.float32), ctf, rot, sh


def reprojection_score(images_ft, ctf, rotmats, split, max_shell: float) -> float:
    """Mean normalised correlation of each half's images with the reprojections of the other's map.

    Parameters
    ----------
    images_ft : torch.Tensor (n, d, d//2+1) complex
        Centred transforms of the (shift-corrected) images.
    ctf : torch.Tensor (n, d, d//2+1) or None
    rotmats : torch.Tensor (n, 3, 3)
        Poses to score.
    split : np.ndarray (n,) bool
        Half A (True) / B (False).
    max_shell : float
        Frequencies with ``|k| <= max_shell`` (pixels of the transform) are compared.
    """
    from cesped.physics.fourier import fftfreq_grid_2d
    from cesped.physics.projection import Projector
    from cesped.reconstruction.accumulator import FourierAccumulator

    d = images_ft.shape[1]
    ky, kx = fftfreq_grid_2d(d, rfft=True, dtype=torch.float32)
    band = ((kx * d) ** 2 + (ky * d) ** 2 <= max_shell**2) & ((kx * d) ** 2 + (ky * d) ** 2 > 0)
    total, count = 0.0, 0
    for a in (split, ~split):
        ia, ib = np.flatnonzero(a), np.flatnonzero(~a)
        acc = FourierAccumulator(d, pad=2, kernel="torch")
        acc.insert(images_ft[ia], None if ctf is None else ctf[ia], rotmats[ia].to(torch.float32))
        vol = acc.finalize(gridding="skip")
        proj = Projector(vol, pad=2.0).project_rfft(rotmats[ib].to(torch.float32))
        if ctf is not None:
            proj = proj * ctf[ib]
        p, x = proj[:, band], images_ft[ib][:, band]
        num = (p.conj() * x).real.sum(1)
        den = torch.sqrt((p.abs() ** 2).sum(1) * (x.abs() ** 2).sum(1)).clamp_min(1e-30)
        total += float((num / den).sum())
        count += len(ib)
    return total / count


def inplane_search(
    images,
    rotmats,
    ctf=None,
    shifts_px=None,
    coarse_step_deg: float = 5.0,
    fine_step_deg: float = 1.0,
    max_shell: float | None = None,
    max_particles: int = 2000,
    seed: int = 0,
) -> InplaneResult:
    """Find ``φ`` in ``[0, 180)`` maximising :func:`reprojection_score` of the poses ``R̂·Rz(φ)``.

    Parameters
    ----------
    images : array-like (n, d, d)
        Particle images (particle centred after the shifts), any normalisation.
    rotmats : array-like (n, 3, 3)
        Recovered poses ``R̂``.
    ctf : array-like (n, d, d//2+1), optional
        CTF of each image (rfft2 layout); None for images without CTF.
    shifts_px : array-like (n, 2), optional
        ``[x, y]`` shifts (pixels) that centre each particle (``rlnOrigin{X,Y}Angst / pixel size``).
    coarse_step_deg, fine_step_deg : float
        Grid over ``[0, 180)``, then a finer grid within one coarse step of the best.
    max_shell : float, optional
        Highest frequency compared (pixels of the transform); default ``d / 4``.
    max_particles : int
        At most this many particles (random subset) are used.
    seed : int
        Seeds the subset and the split.

    Returns
    -------
    InplaneResult
        Apply as ``R̂ @ Rz(angle_deg)``; ``angle_deg + 180`` is the other hand.
    """
    from cesped.geometry.rotations import rotation_z
    from cesped.physics.fourier import centered_rfft2, shift_images

    imgs, ctf, rot, sh = _check(images, ctf, rotmats, shifts_px)
    if not (0 < fine_step_deg <= coarse_step_deg <= 90):
        raise ValueError(
            "inplane: need 0 < fine_step_deg <= coarse_step_deg <= 90, "
            f"got {fine_step_deg}, {coarse_step_deg}"
        )
    n, d = imgs.shape[0], imgs.shape[1]
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.permutation(n)[: int(max_particles)])
    ft = shift_images(centered_rfft2(imgs[sub]), sh[sub], n=d)
    c = None if ctf is None else ctf[sub]
    r = rot[sub]
    split = rng.permutation(len(sub)) < len(sub) // 2
    shell = d / 4.0 if max_shell is None else float(max_shell)

    def score(phi):
        return reprojection_score(
            ft, c, r @ rotation_z(torch.tensor(float(phi))).to(torch.float64), split, shell
        )

    coarse = np.arange(0.0, 180.0, coarse_step_deg)
    s_coarse = np.array([score(p) for p in coarse])
    best = coarse[int(np.argmax(s_coarse))]
    fine = np.arange(best - coarse_step_deg, best + coarse_step_deg + 1e-9, fine_step_deg)
    s_fine = np.array([score(p) for p in fine])
    angles = np.concatenate([coarse, fine % 180.0])
    scores = np.concatenate([s_coarse, s_fine])
    return InplaneResult(float(angles[int(np.argmax(scores))]), angles, scores)
