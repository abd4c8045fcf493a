"""Per-particle CTF parameters from RELION star rows, and the electron wavelength (no torch).

The CTF images themselves are computed by :mod:`cesped.physics.ctf` (torch); these helpers are
separate so that the CPU reconstruction of ``python -m cesped.evaluateEntry`` can read the CTF
parameters without importing torch. Both names are re-exported by :mod:`cesped.physics.ctf`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["electron_wavelength", "ctf_parameters"]


def electron_wavelength(voltage_kv):
    """Relativistic electron wavelength in Å for an acceleration voltage in kV (RELION's formula).

    Works on floats, numpy arrays and torch tensors. 300 kV gives 0.019687 Å.
    """
    volts = voltage_kv * 1e3
    if hasattr(volts, "detach"):  # a torch tensor: stay in torch (and on its device)
        return 12.2643247 / (volts * (1.0 + volts * 0.978466e-6)).sqrt()
    return 12.2643247 / np.sqrt(volts * (1.0 + volts * 0.978466e-6))


_OPTICS_COLUMNS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")


def ctf_parameters(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-particle CTF parameters of RELION rows whose optics columns are joined per row.

    Parameters
    ----------
    rows : pandas.DataFrame
        ``rlnDefocusU``, ``rlnDefocusV`` (Å), ``rlnDefocusAngle`` (°), ``rlnVoltage`` (kV),
        ``rlnSphericalAberration`` (mm), ``rlnAmplitudeContrast``; optionally ``rlnPhaseShift``
        (°, RELION's label; ``rlnCtfPhaseShift`` is accepted when it is absent; default 0) and
        ``rlnCtfBfactor`` (Å², default 0). :func:`cesped.io.star.particle_optics` gives such rows.

    Returns
    -------
    dict of float64 arrays (n,)
        Keyword arguments of :func:`compute_ctf`: ``defocus_u``, ``defocus_v``,
        ``defocus_angle``, ``voltage``, ``spherical_aberration``, ``amplitude_contrast``,
        ``phase_shift``, ``bfactor``.

    Raises
    ------
    ValueError
        A required column is missing (named in the message), or ``rlnAmplitudeContrast`` is
        outside ``[0, 1)`` (row named).
    """
    for col in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", *_OPTICS_COLUMNS):
        if col not in rows.columns:
            raise ValueError(f"CTF parameters: column {col} missing (give the optics table)")

    def values(col: str, default: float = 0.0) -> np.ndarray:
        if col in rows.columns:
            return rows[col].to_numpy(dtype=np.float64)
        return np.full(len(rows), default)

    phase_col = "rlnPhaseShift" if "rlnPhaseShift" in rows.columns else "rlnCtfPhaseShift"
    q0 = values("rlnAmplitudeContrast")
    bad = ~((q0 >= 0) & (q0 < 1))  # also NaN: the phase term atan(Q0/sqrt(1-Q0²)) needs [0, 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"CTF parameters: rlnAmplitudeContrast must be in [0, 1), got {q0[i]} at row {i} (0-based)"
        )
    return {
        "defocus_u": values("rlnDefocusU"),
        "defocus_v": values("rlnDefocusV"),
        "defocus_angle": values("rlnDefocusAngle"),
        "voltage": values("rlnVoltage"),
        "spherical_aberration": values("rlnSphericalAberration"),
        "amplitude_contrast": values("rlnAmplitudeContrast"),
        "phase_shift": values(phase_col),
        "bfactor": values("rlnCtfBfactor"),
    }
