"""Pose-aware data augmentation for particle images (batched torch).

The in-plane operations change the pose label consistently. With the cesped label ``R = Aᵀ``
(projection ``P(r) = Σ_z V(R·[x, y, z])``, image axes ``x = column``, ``y = row``, centre at pixel
``n // 2``), an image whose content is rotated by ``a`` degrees about the centre, i.e.

    ``Q(x, y) = P(Rz(-a)·(x, y))``     (counter-clockwise from +x towards +y),

is the projection of the same volume at ``R' = R · Rz(-a)``, because ``Rz(-a)`` leaves ``z``
unchanged: ``Q(r) = Σ_z V(R·Rz(-a)·r)``. In Euler angles this is ``psi' = psi - a``.
``torch.rot90(img, k, dims=(-2, -1))`` turns the content by ``a = -90°·k`` (so ``psi' = psi + 90k``).
A translation by ``t`` pixels (content moved by ``+t``) and a zoom by ``s`` change RELION's origin
``o`` (``image(x) = projection(x + o)``) into ``o' = s·Rz(a)·o - t``. The test suite proves the
rotation rule on projections of an asymmetric volume.

The default operations and probabilities are those of the original CESPED
(``defaultDataAugmentation.yaml``), with the ranges of the paper: random 90° rotations (p=1),
in-plane rotations of up to ±20° (p=0.5), shifts of up to ±5 % of the box (p=0.5), zoom of up to
±2.5 % (p=0.2), Gaussian noise (std ≤ 0.3, p=0.1), uniform noise (width ≤ 1, p=0.1), Gaussian blur
(σ ≤ 2 px, p=0.2) and random erasing (1–2 % of the area, aspect 0.3–2.3, p=0.1). (The original's
code halves the rotation and shift ranges: ``(rand - 0.5) * maxDegrees``.) Not in the original:
mirroring ``x -> -x`` with the pose ``R -> R·Ry(180°)`` (``p_mirror``, default 0), the projection of
the same particle seen from the opposite side; it teaches the network the handedness that tells a
view from its mirror view.

Example usage
-------------
>>> import torch
>>> from cesped.data.augment import PoseAugmenter
>>> aug = PoseAugmenter(seed=0)
>>> imgs, R, sh = aug(torch.randn(8, 1, 32, 32), torch.eye(3).expand(8, 3, 3), torch.zeros(8, 2))
>>> tuple(imgs.shape), tuple(R.shape)
((8, 1, 32, 32), (8, 3, 3))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cesped.physics.image_ops import rot90_images  # re-exported: its home is physics (models use it)

__all__ = [
    "AugmentationConfig",
    "PoseAugmenter",
    "rotz",
    "rotate_images",
    "rot90_images",
    "mirror_images",
    "MIRROR",
]

#: ``Ry(180°)``: the pose change of a mirrored projection (``x -> -x``), ``R -> R·MIRROR``
MIRROR = ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0))


def rotz(angle_deg: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` active rotations about z: ``[[c, -s, 0], [s, c, 0], [0, 0, 1]]``, angle in degrees."""
    a = torch.deg2rad(angle_deg)
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack(
        [torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2
    )


def mirror_images(images: torch.Tensor) -> torch.Tensor:
    """Mirror ``(B, C, n, n)`` images about the column of pixel ``n // 2``: ``out(x, y) = in(-x, y)``.

    For even ``n`` the flipped columns are rolled so that the centre column stays put (the first
    column wraps around). A projection mirrored this way is the projection of the same volume at
    ``R·Ry(180°)`` (``MIRROR``): ``Σ_z V(R·[-x, y, -z]) = Σ_z V(R·[-x, y, z])``. (This holds in the
    projection approximation; an astigmatic CTF would need its angle mirrored too.)
    """
    out = torch.flip(images, dims=(-1,))
    if images.shape[-1] % 2 == 0:
        out = torch.roll(out, 1, dims=-1)
    return out


def _sampling_grid(n: int, angle_deg, shift_px, zoom, dtype, device) -> torch.Tensor:
    """grid_sample grid for ``out(x) = in(Rz(-a)·(x - t) / s)`` about the centre ``n // 2``."""
    c = n // 2
    coords = torch.arange(n, dtype=dtype, device=device) - c
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    a = torch.deg2rad(angle_deg.to(dtype))[:, None, None]
    x = xx[None] - shift_px[:, 0, None, None].to(dtype)
    y = yy[None] - shift_px[:, 1, None, None].to(dtype)
    cos, sin = torch.cos(a), torch.sin(a)
    s = zoom.to(dtype)[:, None, None]
    src_x = (cos * x + sin * y) / s + c
    src_y = (-sin * x + cos * y) / s + c
    # align_corners=True: -1 and 1 are the centres of the first and last pixels
    return torch.stack([2 * src_x / (n - 1) - 1, 2 * src_y / (n - 1) - 1], dim=-1)


def rotate_images(
    images: torch.Tensor,
    angle_deg: torch.Tensor,
    shift_px: torch.Tensor | None = None,
    zoom: torch.Tensor | None = None,
    padding_mode: str = "reflection",
    mode: str = "bilinear",
) -> torch.Tensor:
    """Rotate, zoom and translate ``(B, C, n, n)`` images about the pixel ``n // 2`` (bilinear).

    ``out(x) = in(Rz(-a)·(x - t) / s)`` with ``x = (column, row) - n // 2``: the content turns by
    ``a`` degrees counter-clockwise from +x (column) towards +y (row), is magnified by ``s`` and then
    moved by ``t = shift_px`` ``(B, 2) [x, y]`` pixels. The matching pose is ``R · Rz(-a)``.
    """
    b, _, n, _ = images.shape
    dtype = images.dtype if images.is_floating_point() else torch.float32
    shift_px = torch.zeros(b, 2, dtype=dtype, device=images.device) if shift_px is None else shift_px
    zoom = torch.ones(b, dtype=dtype, device=images.device) if zoom is None else zoom
    grid = _sampling_grid(n, angle_deg, shift_px, zoom, dtype, images.device)
    return F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


@dataclass
class AugmentationConfig:
    """Probabilities and ranges of :class:`PoseAugmenter` (``p_*`` are per-image probabilities)."""

    p_rot90: float = 1.0
    p_mirror: float = 0.0
    p_rotation: float = 0.5
    max_rotation_deg: float = 20.0
    p_shift: float = 0.5
    max_shift_fraction: float = 0.05
    p_zoom: float = 0.2
    max_zoom_fraction: float = 0.025
    p_gauss_noise: float = 0.1
    gauss_noise_scale: float = 0.3
    p_unif_noise: float = 0.1
    unif_noise_scale: float = 1.0
    p_blur: float = 0.2
    max_blur_sigma: float = 2.0
    p_erasing: float = 0.1
    erasing_scale: tuple[float, float] = (0.01, 0.02)
    erasing_ratio: tuple[float, float] = (0.3, 2.3)
    padding_mode: str = "reflection"

    def __post_init__(self):
        for name, v in vars(self).items():
            if name.startswith("p_") and not 0.0 <= v <= 1.0:
                raise ValueError(f"AugmentationConfig.{name} must be a probability in [0, 1], got {v}")


class PoseAugmenter:
    """Random augmentation of a batch of particle images that keeps the pose labels consistent.

    Parameters
    ----------
    config : AugmentationConfig, optional
        Probabilities and ranges (defaults: the paper's set).
    generator : torch.Generator, optional
        Source of randomness (CPU); results are deterministic given its state.
    seed : int, optional
        Seed for a new generator (ignored when ``generator`` is given).
    **overrides
        Fields of :class:`AugmentationConfig`, e.g. ``p_rotation=1.0``.

    Call
    ----
    ``aug(images (B, 1, n, n), rotmats (B, 3, 3), shifts (B, 2) [x, y], pixel_size=1.0)``
    returns ``(images, rotmats, shifts)``; ``shifts`` are RELION origins in the units of
    ``pixel_size`` (Å with the real pixel size, pixels with 1.0).
    """

    def __init__(
        self,
        config: AugmentationConfig | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        **overrides,
    ):
        cfg = config or AugmentationConfig()
        if overrides:
            cfg = AugmentationConfig(**{**vars(cfg), **overrides})
        self.config = cfg
        if generator is None:
            generator = torch.Generator()
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
        self.generator = generator

    def __repr__(self) -> str:
        return f"PoseAugmenter({self.config})"

    # random helpers ---------------------------------------------------------------------------
    def _rand(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator)

    def _coin(self, b: int, p: float) -> torch.Tensor:
        return self._rand(b) < p

    def __call__(
        self,
        images: torch.Tensor,
        rotmats: torch.Tensor,
        shifts: torch.Tensor | None = None,
        pixel_size: float = 1.0,
    ):
        if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
            raise ValueError(f"PoseAugmenter: images must be (B, C, n, n), got {tuple(images.shape)}")
        b, _, n, _ = images.shape
        if rotmats.shape != (b, 3, 3):
            raise ValueError(f"PoseAugmenter: rotmats must be ({b}, 3, 3), got {tuple(rotmats.shape)}")
        if shifts is None:
            shifts = torch.zeros(b, 2, dtype=rotmats.dtype, device=rotmats.device)
        if shifts.shape != (b, 2):
            raise ValueError(f"PoseAugmenter: shifts must be ({b}, 2), got {tuple(shifts.shape)}")
        cfg = self.config
        dev = images.device
        out = images
        rot = rotmats
        origin_px = shifts.to(torch.float64) / pixel_size

        # 0. mirror x -> -x (exact): pose R -> R Ry(180°), origin (ox, oy) -> (-ox, oy)
        if cfg.p_mirror > 0:
            flip = self._coin(b, cfg.p_mirror)
            if bool(flip.any()):
                out = out.clone()
                out[flip.to(dev)] = mirror_images(out[flip.to(dev)])
                m = torch.tensor(MIRROR, dtype=rot.dtype, device=rot.device)
                rot = torch.where(flip.to(rot.device)[:, None, None], rot @ m, rot)
                origin_px = origin_px.clone()
                origin_px[flip, 0] = -origin_px[flip, 0]

        # 1. quarter turns (exact): content turns by a = -90k, pose R -> R Rz(90k), origin -> Rz(a) o
        k = torch.randint(0, 4, (b,), generator=self.generator) * self._coin(b, cfg.p_rot90)
        if bool((k != 0).any()):
            out = rot90_images(out, k.to(dev))
            a = -90.0 * k.to(torch.float64)
            rot = rot @ rotz(-a).to(rot)
            origin_px = (rotz(a).to(origin_px)[:, :2, :2] @ origin_px[:, :, None])[..., 0]

        # 2. one resampling for rotation, zoom and shift
        angle = (2 * self._rand(b) - 1) * cfg.max_rotation_deg * self._coin(b, cfg.p_rotation)
        zoom = 1 + (2 * self._rand(b) - 1) * cfg.max_zoom_fraction * self._coin(b, cfg.p_zoom)
        t = (2 * self._rand(b, 2) - 1) * cfg.max_shift_fraction * n * self._coin(b, cfg.p_shift)[:, None]
        sel = torch.nonzero((angle != 0) | (zoom != 1) | (t != 0).any(-1)).flatten()
        if len(sel):
            out = out.clone()
            out[sel] = rotate_images(
                out[sel], angle[sel].to(dev), t[sel].to(dev), zoom[sel].to(dev), padding_mode=cfg.padding_mode
            )
            a = angle.to(torch.float64)
            rot = rot @ rotz(-a).to(rot)
            rz = rotz(a).to(origin_px)[:, :2, :2]
            origin_px = zoom.to(origin_px)[:, None] * (rz @ origin_px[:, :, None])[..., 0] - t.to(origin_px)

        # 3. photometric operations (no effect on the labels)
        out = self._noise(out)
        out = self._blur(out)
        out = self._erase(out)
        return out, rot, (origin_px * pixel_size).to(shifts.dtype)

    def _noise(self, x: torch.Tensor) -> torch.Tensor:
        cfg, b = self.config, x.shape[0]
        g = self._rand(b) * cfg.gauss_noise_scale * self._coin(b, cfg.p_gauss_noise)
        u = self._rand(b) * cfg.unif_noise_scale * self._coin(b, cfg.p_unif_noise)
        if bool((g != 0).any()):
            x = x + torch.randn(x.shape, generator=self.generator).to(x) * g.to(x)[:, None, None, None]
        if bool((u != 0).any()):
            x = x + (torch.rand(x.shape, generator=self.generator).to(x) - 0.5) * u.to(x)[:, None, None, None]
        return x

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        b, c, n, _ = x.shape
        sigma = (1e-3 + self._rand(b) * cfg.max_blur_sigma) * self._coin(b, cfg.p_blur)
        sel = torch.nonzero(sigma > 0).flatten()
        if len(sel) == 0:
            return x
        radius = max(1, int(math.ceil(2 * cfg.max_blur_sigma)))
        taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kern = torch.exp(-0.5 * (taps[None] / sigma[sel, None]) ** 2)
        kern = (kern / kern.sum(-1, keepdim=True)).to(x)  # (m, K)
        m = len(sel)
        y = x[sel].reshape(1, m * c, n, n)
        wk = kern.repeat_interleave(c, 0)
        pad = min(radius, n - 1)
        y = F.pad(y, (pad, pad, 0, 0), mode="reflect") if pad == radius else F.pad(y, (radius,) * 2 + (0, 0))
        y = F.conv2d(y, wk[:, None, None, :], groups=m * c)
        y = F.pad(y, (0, 0, pad, pad), mode="reflect") if pad == radius else F.pad(y, (0, 0) + (radius,) * 2)
        y = F.conv2d(y, wk[:, None, :, None], groups=m * c)
        x = x.clone()
        x[sel] = y.reshape(m, c, n, n)
        return x

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        b, _, n, _ = x.shape
        on = self._coin(b, cfg.p_erasing)
        lo, hi = cfg.erasing_scale
        area = (lo + (hi - lo) * self._rand(b)) * n * n
        lr = math.log(cfg.erasing_ratio[0]), math.log(cfg.erasing_ratio[1])
        ratio = torch.exp(lr[0] + (lr[1] - lr[0]) * self._rand(b))
        h = torch.sqrt(area * ratio).round().clamp(1, n).long()
        w = torch.sqrt(area / ratio).round().clamp(1, n).long()
        top = (self._rand(b) * (n - h + 1)).long()
        left = (self._rand(b) * (n - w + 1)).long()
        if not bool(on.any()):
            return x
        idx = torch.arange(n)
        rows = (idx[None] >= top[:, None]) & (idx[None] < (top + h)[:, None])
        cols = (idx[None] >= left[:, None]) & (idx[None] < (left + w)[:, None])
        mask = (rows[:, :, None] & cols[:, None, :] & on[:, None, None]).to(x.device)
        return x.masked_fill(mask[:, None], 0.0)
