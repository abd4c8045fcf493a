"""The orientation-recovery baseline end to end: train the distance network, recover, fix ``φ``, write.

1. The Siamese network (:mod:`cesped.recovery.siamese`) is trained with labels on ``train_star``
   (the OTHER half-set of the entry).
2. The orientations of ``star`` are recovered from the network's distances alone
   (:mod:`cesped.recovery.solve`; the poses in ``star``, if any, are not read, except with
   ``oracle=True``: exact distances from them, to check the recovery alone).
3. The global in-plane angle is set by :mod:`cesped.recovery.inplane` from the images.
4. The poses ``R̂·Rz(φ)`` are written into a copy of ``star`` (angles only; origins and CTFs
   kept, as for the ``SO3`` prediction type), atomically, with a JSON record beside it.

The poses are then defined up to the map's frame and hand: evaluate them with
``--frame free --allow-mirror``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["run_recovery"]


def run_recovery(
    star,
    out,
    train_star=None,
    oracle: bool = False,
    image_size: int = 32,
    train_steps: int = 6000,
    train_lr: float = 3e-3,
    width: int = 8,
    recover_steps: int = 3000,
    pair_batch: int = 2048,
    lr: float = 0.05,
    inplane_particles: int = 1000,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Recover the orientations of the particles of ``star`` and write them to ``out``.

    Parameters
    ----------
    star : path
        Particles to recover (images, CTF columns, origins).
    out : path
        Output star file (written atomically); ``<out>.json`` gets the record.
    train_star : path, optional
        Labelled particles of the same structure (the other half-set); required unless ``oracle``.
    oracle : bool
        Use exact distances from the poses in ``star`` instead of a network (checks the recovery
        and the in-plane search alone; NOT a baseline).
    image_size : int
        Images are Fourier-resized to this side (px) for the network and the in-plane search.
    train_steps, train_lr, width : int, float, int
        Network training steps, learning rate and width (:func:`cesped.recovery.siamese.train_siamese`).
    recover_steps, pair_batch, lr : int, int, float
        Recovery (:func:`cesped.recovery.solve.recover_orientations`).
    inplane_particles : int
        Particles used by the in-plane search.
    seed : int

    Returns
    -------
    dict
        The record written to ``<out>.json`` (timings, network history, ``φ``, final loss).
    """
    from cesped.geometry.rotations import matrix_to_euler, rotation_z
    from cesped.io.star import read_star, write_star
    from cesped.recovery.inplane import inplane_search
    from cesped.recovery.particles import load_particles
    from cesped.recovery.solve import exact_distance_fn, recover_orientations

    say = log or (lambda s: None)
    out = Path(out)
    if not oracle and train_star is None:
        raise ValueError(
            "run_recovery: train_star (labelled particles of the other half-set) is required unless oracle"
        )
    rec: dict = {"star": str(star), "train_star": None if oracle else str(train_star), "oracle": bool(oracle),
                 "image_size": image_size, "seed": seed}  # fmt: skip
    t0 = time.perf_counter()
    target = load_particles(star, image_size)
    n = len(target.images)
    if oracle:
        if target.rotmats is None:
            raise ValueError(f"run_recovery: oracle needs the angle columns in {star}")
        dist = exact_distance_fn(target.rotmats)
    else:
        from cesped.recovery.siamese import network_distance_fn, train_siamese

        train = load_particles(train_star, image_size)
        if train.rotmats is None:
            raise ValueError(
                f"run_recovery: {train_star} has no rlnAngleRot/Tilt/Psi (training needs labels)"
            )
        t1 = time.perf_counter()
        model, history = train_siamese(
            train.images, train.rotmats, steps=train_steps, lr=train_lr, width=width, seed=seed,
            progress=lambda s, r: say(f"[recover] network step {s}: {json.dumps(r)}"),
        )  # fmt: skip
        rec["network_history"] = history
        rec["train_s"] = time.perf_counter() - t1
        dist = network_distance_fn(model, target.images)
    t1 = time.perf_counter()
    res = recover_orientations(
        n, dist, steps=recover_steps, batch_size=pair_batch, lr=lr, seed=seed,
        progress=lambda s, v: say(f"[recover] recovery step {s}: loss {v:.5f} rad^2"),
    )  # fmt: skip
    rec["recover_s"] = time.perf_counter() - t1
    rec["final_loss_rad2"] = float(res.losses[-100:].mean())
    R = res.rotmats()
    t1 = time.perf_counter()
    ip = inplane_search(target.images, R, ctf=target.ctf, shifts_px=target.shifts_px,
                        max_particles=inplane_particles, seed=seed)  # fmt: skip
    rec["inplane_s"] = time.perf_counter() - t1
    rec["inplane_angle_deg"] = ip.angle_deg
    rec["inplane_scores"] = {f"{a:g}": float(s) for a, s in zip(ip.angles_deg, ip.scores, strict=True)}
    say(f"[recover] in-plane angle {ip.angle_deg:g} deg (score {ip.scores.max():.4f})")
    R = R @ rotation_z(torch.tensor(ip.angle_deg)).to(torch.float64).numpy()
    star_obj = read_star(star)
    angles = matrix_to_euler(torch.from_numpy(R)).numpy()
    for j, col in enumerate(("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")):
        star_obj.particles[col] = angles[:, j]
    for col in ("rlnParticleFigureOfMerit", "rlnMaxValueProbDistribution"):
        if col in star_obj.particles.columns:
            star_obj.particles = star_obj.particles.drop(columns=col)
    rec["total_s"] = time.perf_counter() - t0
    write_star(out, star_obj)
    from cesped.io.atomic import atomic_open

    with atomic_open(out.with_name(out.name + ".json")) as fh:
        json.dump(rec, fh, indent=1)
    return rec
