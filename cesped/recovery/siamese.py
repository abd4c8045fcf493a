"""The Siamese distance network of orientation recovery (Banjac, Donati & Defferrard 2021).

A small CNN embeds each image; a symmetric head maps the pair of embeddings
``(|e_a − e_b|, e_a ⊙ e_b)`` to an angular distance in ``[0, π]`` (radians). It is trained with
labels (MSE against ``angle(R_aᵀ R_b)``) on particles OTHER than those it will be used on: the
other half-set of the entry, as every supervised baseline of the benchmark is trained. Each
training image also enters as its quarter turns (exact, :func:`cesped.physics.image_ops.rot90_images`;
pose ``R·Rz(90°·k)``), which both augments the data and teaches the distances the in-plane tie
of :mod:`cesped.recovery.solve` relies on. Half of each batch is pairs of near neighbours (by the
labels), since uniformly drawn rotations are rarely closer than 60°.

Only C1 distances are defined (a point group would make the label ``min_S angle(R_aᵀ S R_b)``
and the recovery would have to know it); :func:`train_siamese` says so for other groups.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

__all__ = ["SiameseDistance", "train_siamese", "network_distance_fn", "standardize"]


def standardize(images: torch.Tensor) -> torch.Tensor:
    """Per-image zero mean, unit standard deviation ``(n, s, s)`` -> ``(n, 1, s, s)`` float32."""
    x = images.to(torch.float32)
    m = x.mean(dim=(-2, -1), keepdim=True)
    s = x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-8)
    return ((x - m) / s)[:, None]


class SiameseDistance(nn.Module):
    """CNN embedding + symmetric distance head.

    Parameters
    ----------
    image_size : int
        Side of the input images (divisible by 8).
    width : int
        Channels of the first convolution (doubled twice).
    embedding : int
        Embedding dimension.
    """

    def __init__(self, image_size: int = 32, width: int = 32, embedding: int = 128):
        super().__init__()
        if image_size % 8 or image_size < 16:
            raise ValueError(f"SiameseDistance: image_size must be a multiple of 8 >= 16, got {image_size}")
        w = int(width)

        def block(cin, cout, k):
            return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, w, 5), nn.MaxPool2d(2),
            *block(w, 2 * w, 3), nn.MaxPool2d(2),
            *block(2 * w, 4 * w, 3), nn.MaxPool2d(2),
            *block(4 * w, 4 * w, 3),
        )  # fmt: skip
        s = image_size // 8
        self.embed_fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * s * s, 256), nn.ReLU(inplace=True),
                                      nn.Linear(256, embedding))  # fmt: skip
        self.head = nn.Sequential(nn.Linear(2 * embedding, 256), nn.ReLU(inplace=True), nn.Linear(256, 1))
        self.image_size = int(image_size)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, s, s)`` standardized images -> ``(B, embedding)``."""
        return self.embed_fc(self.features(x))

    def distance(self, ea: torch.Tensor, eb: torch.Tensor) -> torch.Tensor:
        """Estimated angular distance (radians, ``(B,)``) of two embedding batches; symmetric."""
        z = torch.cat([(ea - eb).abs(), ea * eb], dim=-1)
        return np.pi * torch.sigmoid(self.head(z)[:, 0])

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        return self.distance(self.embed(xa), self.embed(xb))


def _pair_angles(qa: torch.Tensor, qb: torch.Tensor) -> torch.Tensor:
    from cesped.recovery.quaternions import quat_distance

    return quat_distance(qa, qb, eps=0.0)


def train_siamese(
    images: torch.Tensor,
    rotmats,
    symmetry: str = "C1",
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    width: int = 32,
    embedding: int = 128,
    n_neighbours: int = 16,
    val_fraction: float = 0.1,
    seed: int = 0,
    progress: Callable[[int, dict], None] | None = None,
) -> tuple[SiameseDistance, list[dict]]:
    """Train the distance network on labelled images.

    Parameters
    ----------
    images : torch.Tensor (n, s, s)
        Training images (e.g. the other half-set, Fourier-resized).
    rotmats : array-like (n, 3, 3)
        Their true poses (cesped label convention).
    symmetry : str
        Must be "C1" (see the module docstring).
    steps, batch_size, lr : int, int, float
        Adam steps, pairs per step, learning rate (cosine decay to 0).
    width, embedding : int
        Network size (:class:`SiameseDistance`).
    n_neighbours : int
        Half of each batch pairs a particle with one of its ``n_neighbours`` nearest (by label).
    val_fraction : float
        Held-out particles for the validation error (pairs among them only).
    seed : int
    progress : callable, optional
        ``progress(step, record)`` at each validation (every 250 steps).

    Returns
    -------
    model : SiameseDistance (eval mode)
    history : list of dict
        ``{"step", "train_mse_rad2", "val_mae_deg"}`` per validation.
    """
    from cesped.geometry.rotations import matrix_to_quaternion
    from cesped.geometry.symmetry import normalize_symmetry
    from cesped.physics.image_ops import rot90_images
    from cesped.recovery.quaternions import qmul, quarter_turns

    if normalize_symmetry(symmetry) != "C1":
        raise ValueError(
            f"train_siamese: symmetry {symmetry!r} not supported (only C1 distances are defined)"
        )
    imgs = torch.as_tensor(images)
    if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2]:
        raise ValueError(f"train_siamese: images must be (n, s, s), got {tuple(imgs.shape)}")
    n = imgs.shape[0]
    rot = torch.as_tensor(np.asarray(rotmats), dtype=torch.float64)
    if rot.shape != (n, 3, 3):
        raise ValueError(f"train_siamese: rotmats must be ({n}, 3, 3), got {tuple(rot.shape)}")
    if n < 20:
        raise ValueError(f"train_siamese: need at least 20 training particles, got {n}")
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    x = standardize(imgs)
    q = matrix_to_quaternion(rot)
    perm = torch.randperm(n, generator=gen)
    n_val = max(2, int(round(val_fraction * n)))
    val, tr = perm[:n_val], perm[n_val:]
    # nearest neighbours among training particles (by the labels)
    qt = q[tr]
    d_tr = 2 * torch.arccos(torch.clamp((qt @ qt.T).abs(), max=1.0))
    d_tr.fill_diagonal_(float("inf"))
    k_nn = min(int(n_neighbours), len(tr) - 1)
    nn_idx = tr[torch.topk(d_tr, k_nn, largest=False).indices]  # (n_tr, k) global indices
    del d_tr
    model = SiameseDistance(imgs.shape[1], width, embedding)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(steps))
    history: list[dict] = []
    run = []

    def batch(pool_a, neighbours, b):
        a_pos = torch.randint(0, len(pool_a), (b,), generator=gen)
        ia = pool_a[a_pos]
        ib = pool_a[torch.randint(0, len(pool_a), (b,), generator=gen)]
        if neighbours is not None:
            half = b // 2
            ib[:half] = neighbours[
                a_pos[:half], torch.randint(0, neighbours.shape[1], (half,), generator=gen)
            ]
        ka = torch.randint(0, 4, (b,), generator=gen)
        kb = torch.randint(0, 4, (b,), generator=gen)
        target = _pair_angles(qmul(q[ia], quarter_turns(ka)), qmul(q[ib], quarter_turns(kb))).to(
            torch.float32
        )
        return rot90_images(x[ia], ka), rot90_images(x[ib], kb), target

    for step in range(int(steps)):
        model.train()
        xa, xb, target = batch(tr, nn_idx, int(batch_size))
        loss = ((model(xa, xb) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run.append(loss.item())
        if (step + 1) % 250 == 0 or step + 1 == steps:
            model.eval()
            with torch.no_grad():
                g_state = gen.get_state()
                gen.manual_seed(int(seed) + 1)
                xa, xb, target = batch(val, None, 512)
                gen.set_state(g_state)
                mae = float(np.degrees((model(xa, xb) - target).abs().mean()))
            rec = {"step": step + 1, "train_mse_rad2": float(np.mean(run[-250:])), "val_mae_deg": mae}
            history.append(rec)
            if progress is not None:
                progress(step + 1, rec)
    model.eval()
    return model, history


def network_distance_fn(model: SiameseDistance, images: torch.Tensor, batch_size: int = 512):
    """A :data:`cesped.recovery.solve.DistanceFn` from a trained network and the images to recover.

    The embeddings of every image and its three quarter turns are computed once ``(n, 4, E)``;
    each distance is then one call of the small head.
    """
    from cesped.physics.image_ops import rot90_images

    x = standardize(torch.as_tensor(images))
    if x.shape[-1] != model.image_size:
        raise ValueError(
            f"network_distance_fn: images are {x.shape[-1]} px, the network expects {model.image_size}"
        )
    model.eval()
    out = []
    with torch.no_grad():
        for k in range(4):
            out.append(torch.cat([model.embed(rot90_images(x[s : s + batch_size], k))
                                  for s in range(0, len(x), batch_size)]))  # fmt: skip
    emb = torch.stack(out, dim=1)  # (n, 4, E)

    def fn(i, ki, j, kj):
        with torch.no_grad():
            return model.distance(emb[i, ki], emb[j, kj]).to(torch.float64)

    return fn
