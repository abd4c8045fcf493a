"""Contrast transfer function (CTF) in RELION's convention (``src/ctf.h``, RELION 3.1).

For a spatial frequency ``k = (kx, ky)`` in Å⁻¹ (``kx`` = column/x, ``ky`` = row/y)::

    lambda  = 12.2643247 / sqrt(V * (1 + 0.978466e-6 * V))         # Å, V in volts (relativistic)
    deltaf  = -[(U + V)/2 + (U - V)/2 * cos(2 * (atan2(ky, kx) - angle))]   # Å, U/V = rlnDefocusU/V
    chi     = pi * lambda * deltaf * |k|^2 + (pi/2) * Cs * lambda^3 * |k|^4
              - phase_shift - atan(Q0 / sqrt(1 - Q0^2))
    CTF     = -sin(chi) * exp(-B |k|^2 / 4)

with Cs in Å (the mm value times 1e7), ``angle`` = rlnDefocusAngle measured from the x (column)
axis towards y (row), ``phase_shift`` = ``rlnPhaseShift`` in radians and ``B`` = rlnCtfBfactor
(Å²). Positive defocus is underfocus, and ``CTF(0) = sin(phase_shift + asin(Q0))``, i.e. ``+Q0``
without a phase plate. At ``k = 0`` the defocus term is 0, as in RELION.

Note: RELION's star label for the phase-plate shift is ``rlnPhaseShift`` (``EMDL_CTF_PHASESHIFT``;
``relion_project`` and ``relion_reconstruct`` 3.1 ignore a column named ``rlnCtfPhaseShift``).
:func:`ctf_from_particles` reads ``rlnPhaseShift`` and falls back to ``rlnCtfPhaseShift``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from cesped.physics.ctf_params import _OPTICS_COLUMNS, ctf_parameters, electron_wavelength
from cesped.physics.fourier import fftfreq_grid_2d

__all__ = ["electron_wavelength", "compute_ctf", "ctf_parameters", "ctf_from_particles"]


def _as_param(value, name: str, dtype: torch.dtype, device) -> torch.Tensor:
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.array(value, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        msg = f"compute_ctf: {name} must be a number or an array of numbers, got {value!r}"
        raise ValueError(msg) from exc
    t = t.to(device=device, dtype=dtype)
    if not torch.isfinite(t).all():
        raise ValueError(f"compute_ctf: {name} has non-finite values")
    return t


def compute_ctf(
    defocus_u,
    defocus_v,
    defocus_angle,
    voltage,
    spherical_aberration,
    amplitude_contrast,
    pixel_size,
    image_size: int,
    phase_shift=0.0,
    bfactor=0.0,
    rfft: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """CTF images in RELION's convention, batched over particles.

    Every parameter may be a Python/NumPy scalar, a NumPy array or a torch tensor; all of them
    broadcast together (typically scalars and ``(B,)`` arrays).

    Parameters
    ----------
    defocus_u, defocus_v : float or array (B,)
        ``rlnDefocusU`` / ``rlnDefocusV`` in Å (positive = underfocus).
    defocus_angle : float or array (B,)
        ``rlnDefocusAngle`` in degrees, measured from the x (column) axis towards y (row).
    voltage : float or array
        Acceleration voltage in kV (``rlnVoltage``).
    spherical_aberration : float or array
        Cs in mm (``rlnSphericalAberration``).
    amplitude_contrast : float or array
        Q0 (``rlnAmplitudeContrast``), in ``[0, 1)``.
    pixel_size : float or array
        Å/px of the image the CTF applies to.
    image_size : int
        Side ``n`` of the square image in pixels.
    phase_shift : float or array
        Phase-plate shift in degrees (star label ``rlnPhaseShift``; default 0).
    bfactor : float or array
        ``rlnCtfBfactor`` in Å² (envelope ``exp(-B k^2 / 4)``, default 0).
    rfft : bool
        ``True``: :func:`torch.fft.rfft2` layout ``(n, n // 2 + 1)``; ``False``: full unshifted
        :func:`torch.fft.fft2` layout ``(n, n)``.
    dtype, device
        Of the computation and the result (default float32, CPU).

    Returns
    -------
    torch.Tensor
        ``(*batch, n, n // 2 + 1)`` (or ``(*batch, n, n)``) real, where ``batch`` is the
        broadcast shape of the parameters: ``(B, n, n // 2 + 1)`` for ``(B,)`` parameters,
        ``(n, n // 2 + 1)`` when all of them are scalars. Unshifted: ``[..., 0, 0]`` is DC.
    """
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"compute_ctf: image_size must be a positive integer, got {image_size!r}")
    n = int(image_size)
    names = (
        "defocus_u",
        "defocus_v",
        "defocus_angle",
        "voltage",
        "spherical_aberration",
        "amplitude_contrast",
        "pixel_size",
        "phase_shift",
        "bfactor",
    )
    values = (
        defocus_u,
        defocus_v,
        defocus_angle,
        voltage,
        spherical_aberration,
        amplitude_contrast,
        pixel_size,
        phase_shift,
        bfactor,
    )
    p = {name: _as_param(v, name, dtype, device) for name, v in zip(names, values)}
    if (p["voltage"] <= 0).any():
        raise ValueError("compute_ctf: voltage must be > 0 kV")
    if (p["pixel_size"] <= 0).any():
        raise ValueError("compute_ctf: pixel_size must be > 0 Å/px")
    q0 = p["amplitude_contrast"]
    if ((q0 < 0) | (q0 >= 1)).any():
        raise ValueError("compute_ctf: amplitude_contrast must be in [0, 1)")
    try:  # (numpy's version: torch.broadcast_shapes imports heavy modules on first use)
        batch = torch.Size(np.broadcast_shapes(*(tuple(t.shape) for t in p.values())))
    except ValueError as exc:
        shapes = {k: tuple(v.shape) for k, v in p.items()}
        raise ValueError(f"compute_ctf: parameter shapes do not broadcast: {shapes}") from exc

    def col(t: torch.Tensor) -> torch.Tensor:  # (*batch) -> (*batch, 1, 1)
        return t.expand(batch)[..., None, None]

    ky, kx = fftfreq_grid_2d(n, rfft=rfft, device=device, dtype=dtype)  # cycles/px
    # k² cos(2 theta) = kx² - ky² and k² sin(2 theta) = 2 kx ky, with theta = atan2(ky, kx): the
    # astigmatic term needs no atan2 and vanishes at k = 0 as in RELION.
    k2_px = kx**2 + ky**2
    c2_px = kx**2 - ky**2
    s2_px = 2.0 * kx * ky
    inv_px2 = col(1.0 / p["pixel_size"] ** 2)  # cycles/px -> Å⁻¹ (squared)
    lam = electron_wavelength(p["voltage"])
    k1 = math.pi * lam
    k2c = 0.5 * math.pi * p["spherical_aberration"] * 1e7 * lam**3
    k3 = torch.atan(q0 / torch.sqrt(1.0 - q0**2))
    k5 = torch.deg2rad(p["phase_shift"])
    avg = -0.5 * (p["defocus_u"] + p["defocus_v"])
    dev = -0.5 * (p["defocus_u"] - p["defocus_v"])
    two_alpha = 2.0 * torch.deg2rad(p["defocus_angle"])
    # chi = K1 deltaf k² + K2 k⁴ - K5 - K3, deltaf k² = avg k² + dev k² cos(2 (theta - alpha))
    a_k2 = col(k1 * avg) * inv_px2
    a_c2 = col(k1 * dev * torch.cos(two_alpha)) * inv_px2
    a_s2 = col(k1 * dev * torch.sin(two_alpha)) * inv_px2
    a_k4 = col(k2c) * inv_px2**2
    offset = col(k5 + k3)
    chi = a_k2 * k2_px + a_c2 * c2_px + a_s2 * s2_px + a_k4 * k2_px**2 - offset
    ctf = -torch.sin(chi)
    bfac = col(p["bfactor"])
    if (bfac != 0).any():
        ctf = ctf * torch.exp(-bfac * inv_px2 * k2_px / 4.0)
    return ctf


def ctf_from_particles(
    particles: pd.DataFrame,
    optics: pd.DataFrame | None = None,
    image_size: int | None = None,
    pixel_size: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """CTF images for the rows of a RELION particles table.

    Parameters
    ----------
    particles : pandas.DataFrame
        Rows of ``data_particles`` with ``rlnDefocusU``, ``rlnDefocusV``, ``rlnDefocusAngle``
        and optionally ``rlnPhaseShift`` (RELION's label; ``rlnCtfPhaseShift`` is accepted when
        ``rlnPhaseShift`` is absent; default 0°), ``rlnCtfBfactor`` (default 0 Å²) and
        ``rlnOpticsGroup`` (default 1). When ``optics`` is None the optics columns
        (``rlnVoltage``, ``rlnSphericalAberration``, ``rlnAmplitudeContrast``,
        ``rlnImagePixelSize``, ``rlnImageSize``) must already be joined per row (as
        :func:`cesped.io.star.particle_optics` does).
    optics : pandas.DataFrame, optional
        ``data_optics`` table, matched through ``rlnOpticsGroup``.
    image_size : int, optional
        Override of ``rlnImageSize`` (e.g. after cropping). Must be the same for all rows.
    pixel_size : float, optional
        Override of ``rlnImagePixelSize`` in Å/px (e.g. after Fourier resizing).
    dtype, device
        Of the result.

    Returns
    -------
    torch.Tensor
        ``(B, n, n // 2 + 1)`` CTF in the :func:`torch.fft.rfft2` layout, one per row.
    """
    for col in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"):
        if col not in particles.columns:
            raise ValueError(f"ctf_from_particles: particles table lacks column {col}")
    df = particles
    if optics is not None:
        groups = (
            particles["rlnOpticsGroup"].to_numpy(dtype=np.int64)
            if "rlnOpticsGroup" in particles.columns
            else np.ones(len(particles), dtype=np.int64)
        )
        if "rlnOpticsGroup" in optics.columns:
            opt = optics.set_index(optics["rlnOpticsGroup"].astype(np.int64))
        else:
            opt = optics.set_index(pd.Index(np.arange(1, len(optics) + 1)))
        missing = sorted(set(groups.tolist()) - set(opt.index.tolist()))
        if missing:
            raise ValueError(f"ctf_from_particles: rlnOpticsGroup {missing} not found in the optics table")
        joined = opt.loc[groups].reset_index(drop=True)
        df = particles.reset_index(drop=True).copy()
        for col in joined.columns:
            if col not in df.columns or col in _OPTICS_COLUMNS + ("rlnImagePixelSize", "rlnImageSize"):
                df[col] = joined[col].to_numpy()
    needed = list(_OPTICS_COLUMNS)
    if pixel_size is None:
        needed.append("rlnImagePixelSize")
    if image_size is None:
        needed.append("rlnImageSize")
    for col in needed:
        if col not in df.columns:
            raise ValueError(f"ctf_from_particles: column {col} missing (give the optics table)")
    if image_size is None:
        sizes = np.unique(df["rlnImageSize"].to_numpy(dtype=np.int64))
        if len(sizes) != 1:
            raise ValueError(f"ctf_from_particles: rows have different rlnImageSize {sizes.tolist()}")
        image_size = int(sizes[0])

    params = ctf_parameters(df)
    return compute_ctf(
        **params,
        pixel_size=df["rlnImagePixelSize"].to_numpy(dtype=np.float64) if pixel_size is None else pixel_size,
        image_size=image_size,
        rfft=True,
        dtype=dtype,
        device=device,
    )
