"""Array conversion shared by the torch-free modules (the evaluation's path)."""

from __future__ import annotations

import numpy as np


def as_float64(x, name: str) -> np.ndarray:
    """``x`` as a float64 numpy array; a torch tensor is detached and moved to the CPU first
    (recognised by its ``detach`` method, so torch is not imported here).

    Raises
    ------
    ValueError
        ``x`` is complex (the message names ``name``).
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if np.iscomplexobj(a):
        raise ValueError(f"{name}: expected real values, got a complex array")
    return a.astype(np.float64, copy=False)
