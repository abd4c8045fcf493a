"""Image2Sphere pose estimator: ResNet -> hemisphere projection -> S²/SO(3) convolutions -> grid logits.

Label frame
-----------
cesped labels are ``R = Aᵀ`` (RELION's ``A(rot, tilt, psi)`` transposed). Rotating an image by
``torch.rot90(k=1)`` maps its label to ``R·Rz(+90°)``, whereas the network's output mode moves as
``L -> L·Ry(-90°)`` when its feature map is rotated the same way. Inside the network the label is
therefore expressed in the frame ``L = R·K`` with ``K = Rx(-90°)`` (``label_frame="rx90"``), for which
``R·Rz(90°)·K = L·Ry(-90°)``: the built-in in-plane equivariance of the S²/SO(3) layers agrees with
in-plane rotations of the image. ``label_frame="identity"`` uses ``L = R`` (as the original code).
Symmetry still acts on the left: ``S·R·K = S·L``.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from cesped.models.encoders import ResNetEncoder
from cesped.models.projector import HemisphereProjector
from cesped.models.s2_so3 import S2Conv, SO3Activation, SO3Conv, so3_dim
from cesped.models.so3_grid import OutputGrid

__all__ = ["label_frame_matrix", "Image2SphereHead", "Image2Sphere"]


def label_frame_matrix(name: str = "rx90", dtype=torch.float32) -> torch.Tensor:
    """``K`` such that the network's label is ``L = R·K``: ``"rx90"`` -> ``Rx(-90°)``, ``"identity"`` -> I."""
    if name == "rx90":
        return torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=dtype)
    if name == "identity":
        return torch.eye(3, dtype=dtype)
    raise ValueError(f"label_frame must be 'rx90' or 'identity', got {name!r}")


class Image2SphereHead(nn.Module):
    """Feature map ``(B, C, h, w)`` -> SO(3) signal ``(B, Σ_l (2l+1)²)`` (flat Wigner coefficients)."""

    def __init__(
        self,
        in_channels: int,
        lmax: int = 6,
        s2_fdim: int = 512,
        so3_fdim: int = 16,
        hp_order_projector: int = 2,
        hp_order_s2: int = 2,
        projector_sigma: float = 0.2,
        projector_subset_fraction: float = 0.5,
        projector_activation: str = "none",
        so3_act_resolution: int | None = None,
        so3_kernel_max_beta_deg: float = 22.5,
        cache_dir: str | os.PathLike | None = None,
        direct_path: bool = False,
    ) -> None:
        super().__init__()
        self.projector = HemisphereProjector(
            in_channels,
            s2_fdim,
            lmax,
            hp_order_projector,
            projector_sigma,
            subset_fraction=projector_subset_fraction,
            activation=projector_activation,
        )
        self.s2_conv = S2Conv(s2_fdim, so3_fdim, lmax, hp_order_s2)
        self.so3_act = SO3Activation(lmax, so3_act_resolution, cache_dir=cache_dir)
        self.so3_conv = SO3Conv(so3_fdim, 1, lmax, so3_kernel_max_beta_deg)
        self.dim = so3_dim(lmax)
        self.so3_fdim = int(so3_fdim)
        # optional non-equivariant path: the 2x2-pooled feature map read linearly into the hidden
        # SO(3) signal, added to the S2 convolution's output (zero at initialisation)
        self.direct = None
        if direct_path:
            self.direct = nn.Sequential(
                nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * in_channels, self.so3_fdim * self.dim)
            )
            nn.init.zeros_(self.direct[-1].weight)
            nn.init.zeros_(self.direct[-1].bias)
        # grid logits have std ≈ √dim · std(coefficients): scale the last layer so that the initial
        # output is close to uniform (loss ≈ ln N) instead of confidently random (loss ≈ 5 ln N)
        with torch.no_grad():
            self.so3_conv.weight.mul_(1.0 / math.sqrt(self.dim))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        x = self.s2_conv(self.projector(fmap))
        if self.direct is not None:
            x = x + self.direct(fmap).reshape(x.shape)
        x = self.so3_act(x)
        return self.so3_conv(x)[:, 0]


class Image2Sphere(nn.Module):
    """Image2Sphere (Klee et al. 2023) for cryo-EM particle images.

    Parameters
    ----------
    resnet : str
        ``resnet18`` ... ``resnet152``.
    pretrained : bool
        ImageNet weights (torchvision weights API; offline needs a cached file under ``$TORCH_HOME``).
    sigmas : (float, float)
        Gaussian widths (pixels) of the two filtered input channels.
    lmax : int
        Band limit of the S² and SO(3) signals.
    s2_fdim, so3_fdim : int
        Channels of the sphere signal and of the hidden SO(3) signal.
    hp_order_projector, hp_order_s2, hp_order_so3 : int
        HEALPix orders of the projector hemisphere, the S² filter grid and the output SO(3) grid
        (``72·8**order`` rotations).
    projector_subset_fraction : float
        Fraction of hemisphere points used per training forward (evaluation uses all).
    so3_act_resolution : int, optional
        Grid resolution of the SO(3) activation (default ``lmax + 1``, the smallest exact one; the
        original uses 10).
    label_frame : {"rx90", "identity"}
        See the module docstring.
    cache_dir : path, optional
        Where derived Wigner tables are cached (default :func:`cesped.settings.cache_dir`).
    stem_stride : {32, 16, 8}
        Down-sampling of the ResNet trunk (:class:`cesped.models.encoders.ResNetEncoder`); 16 or 8
        keep a 4x4 or 8x8 feature map for 64 px images.
    width : int
        Channels of the ResNet stem (64: torchvision's; smaller for CPU configurations).
    direct_path : bool
        Also read the (2x2-pooled) feature map linearly into the hidden SO(3) signal, a path
        without the projector's in-plane equivariance (off: the Image2Sphere architecture).
    channels_last : bool
        Channels-last memory layout for the ResNet trunk (faster on CPU, same result).

    Shapes
    ------
    ``forward``: images ``(B, 1, N, N)`` (float32, normalised) -> ``(B, Σ_l (2l+1)²)`` coefficients;
    :meth:`grid_logits` turns them into ``(B, 72·8**hp_order_so3)`` logits.
    """

    def __init__(
        self,
        resnet: str = "resnet18",
        pretrained: bool = False,
        sigmas=(1.0, 2.0),
        lmax: int = 6,
        s2_fdim: int = 512,
        so3_fdim: int = 16,
        hp_order_projector: int = 2,
        hp_order_s2: int = 2,
        hp_order_so3: int = 3,
        projector_sigma: float = 0.2,
        projector_subset_fraction: float = 0.5,
        projector_activation: str = "none",
        so3_act_resolution: int | None = None,
        so3_kernel_max_beta_deg: float = 22.5,
        label_frame: str = "rx90",
        cache_dir: str | os.PathLike | None = None,
        stem_stride: int = 32,
        width: int = 64,
        direct_path: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(resnet, pretrained, tuple(sigmas), stem_stride, width, channels_last)
        self.head = Image2SphereHead(
            self.encoder.out_channels,
            lmax,
            s2_fdim,
            so3_fdim,
            hp_order_projector,
            hp_order_s2,
            projector_sigma,
            projector_subset_fraction,
            projector_activation,
            so3_act_resolution,
            so3_kernel_max_beta_deg,
            cache_dir,
            direct_path,
        )
        self.output_grid = OutputGrid(lmax, hp_order_so3, cache_dir)
        self.register_buffer("frame", label_frame_matrix(label_frame), persistent=False)
        self.lmax = int(lmax)
        self.cache_dir = cache_dir
        self._grids: dict[int, OutputGrid] = {}

    # ----------------------------------------------------------------- network
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(img))

    def grid(self, order: int | None = None) -> OutputGrid:
        """The output grid (default) or a grid of another order (built lazily, cached on disk)."""
        if order is None or order == self.output_grid.order:
            return self.output_grid
        if order not in self._grids:
            self._grids[order] = OutputGrid(self.lmax, order, self.cache_dir).to(self.frame.device)
        return self._grids[order]

    def grid_logits(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, N)`` over the output grid."""
        return self.output_grid.logits(coeffs)

    # ----------------------------------------------------------------- frames
    def to_network_frame(self, rotmats: torch.Tensor) -> torch.Tensor:
        """Data label ``R = Aᵀ`` -> network label ``L = R·K``, ``(..., 3, 3)``."""
        return rotmats @ self.frame.to(rotmats.dtype)

    def to_data_frame(self, net_rotmats: torch.Tensor) -> torch.Tensor:
        """Network rotation ``L`` -> data label ``R = L·Kᵀ``, ``(..., 3, 3)``."""
        return net_rotmats @ self.frame.to(net_rotmats.dtype).T

    def target_indices(
        self, rotmats: torch.Tensor, symmetry_matrices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Nearest output-grid indices of the symmetry-expanded labels ``S_g·R``, ``(B, G)``.

        Parameters
        ----------
        rotmats : (B, 3, 3) data-frame labels ``R = Aᵀ``.
        symmetry_matrices : (G, 3, 3), optional (default: identity only).
        """
        r = rotmats.to(self.frame.dtype)
        if symmetry_matrices is None:
            expanded = r[:, None]
        else:
            expanded = symmetry_matrices.to(r)[None] @ r[:, None]  # (B, G, 3, 3)
        return self.output_grid.nearest(self.to_network_frame(expanded))

    def label_values(
        self, coeffs: torch.Tensor, rotmats: torch.Tensor, symmetry_matrices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The SO(3) signal at the exact symmetry-expanded labels ``S_g·R`` (not their grid cells).

        Parameters
        ----------
        coeffs : (B, Σ_l (2l+1)²) flat Wigner coefficients (the network's output).
        rotmats : (B, 3, 3) data-frame labels ``R = Aᵀ``.
        symmetry_matrices : (G, 3, 3), optional (default: identity only).

        Returns
        -------
        torch.Tensor (B, G)
            ``f(S_g·R·K)``; differentiable in ``coeffs``. Memory ``B × G × Σ(2l+1)²`` floats.
        """
        r = rotmats.to(torch.float64)
        expanded = r[:, None] if symmetry_matrices is None else symmetry_matrices.to(r)[None] @ r[:, None]
        return self.signal_at(coeffs, self.to_network_frame(expanded))

    def signal_at(self, coeffs: torch.Tensor, net_rotmats: torch.Tensor) -> torch.Tensor:
        """The SO(3) signal ``f`` at arbitrary network-frame rotations (not restricted to a grid).

        Parameters
        ----------
        coeffs : (B, Σ_l (2l+1)²) flat Wigner coefficients.
        net_rotmats : (B, K, 3, 3) rotations ``L`` in the network frame (converted to float64 for
            the Euler angles).

        Returns
        -------
        torch.Tensor (B, K), differentiable in ``coeffs``; memory ``B × K × Σ(2l+1)²`` floats.
        """
        from e3nn import o3

        from cesped.models.so3_grid import flat_wigner

        w = flat_wigner(self.lmax, *o3.matrix_to_angles(net_rotmats.double())).to(coeffs.dtype)
        return (w @ coeffs[:, :, None])[..., 0]

    def jittered_grid_logits(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, N)`` on the output grid turned by a uniformly random rotation per image.

        Value ``n`` of image ``b`` is ``f(R_n·Q_b)`` with ``Q_b`` uniform on SO(3) (torch's global
        RNG): every point of the turned grid is uniformly distributed, so ``logsumexp`` over it is
        an unbiased-in-expectation quadrature of the partition function that a sharp peak placed
        between the fixed grid's rotations cannot exploit.
        """
        from e3nn import o3

        angles = o3.rand_angles(coeffs.shape[0], dtype=torch.float64, device=coeffs.device)
        return self.output_grid.logits(self.right_rotate_coeffs(coeffs, angles))

    # ----------------------------------------------------------------- rot90 averaging
    def right_rotate_coeffs(self, coeffs: torch.Tensor, angles) -> torch.Tensor:
        """Coefficients of ``g(L) = f(L·Q)`` from those of ``f``, ``Q = Ry(α)Rx(β)Ry(γ)`` (e3nn angles, rad).

        Per degree ``l`` the ``(2l+1, 2l+1)`` block ``c_l`` becomes ``c_l · D^l(Q)ᵀ``, because the
        logit is ``f(L) = Σ_l √(2l+1) Σ_im D^l(L)_im c_l,im`` and ``D(L·Q) = D(L)·D(Q)``.
        ``angles`` is ``(α, β, γ)``: three floats (one ``Q`` for all) or three ``(B,)`` tensors (one
        ``Q`` per image). Shapes: ``(..., Σ_l (2l+1)²)`` -> same.
        """
        from e3nn import o3

        a, b, g = (torch.as_tensor(v, dtype=torch.float64) for v in angles)
        out, off = [], 0
        for l in range(self.lmax + 1):
            n = 2 * l + 1
            d = o3.wigner_D(l, a, b, g).to(coeffs)  # (n, n) or (B, n, n)
            block = coeffs[..., off : off + n * n].reshape(*coeffs.shape[:-1], n, n)
            out.append((block @ d.transpose(-1, -2)).flatten(-2))
            off += n * n
        return torch.cat(out, -1)

    def rot90_averaged(self, img: torch.Tensor) -> torch.Tensor:
        """SO(3) coefficients averaged over the four quarter turns of the image, ``(B, dim)``.

        The copy turned by ``k`` quarter turns (:func:`cesped.physics.image_ops.rot90_images`, label
        ``L -> L·Ry(-90°k)`` in the network frame) is mapped back with ``f_k(L·Ry(-90°k))``, so each
        copy votes for the pose of the original image. The set of copies of a turned image is the
        same set, so the averaged prediction moves exactly as the label when the input is turned
        (the plain network is only equivariant after its ResNet, which is not). 4x the cost.
        """
        from cesped.physics.image_ops import rot90_images

        total = None
        for k in range(4):
            c = self(img if k == 0 else rot90_images(img, k))
            if k:
                c = self.right_rotate_coeffs(c, (-math.pi / 2 * k, 0.0, 0.0))
            total = c if total is None else total + c
        return total / 4

    # ----------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict(
        self,
        img: torch.Tensor,
        top_k: int = 1,
        order: int | None = None,
        refine_steps: int = 0,
        rot90_average: bool = False,
        min_separation_deg: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Most probable poses on the grid (deterministic: call in ``eval()`` mode).

        Parameters
        ----------
        img : (B, 1, N, N)
        top_k : int
            Number of poses per image.
        order : int, optional
            Grid order for the argmax (default: the output grid). Probabilities are normalised over
            that grid.
        refine_steps : int
            Local refinement of the best pose: each step evaluates the SO(3) signal on 27 rotations
            ``R·exp(δ)`` around the current best (δ on a cube of half the previous spacing) and keeps
            the maximum. 0 disables it. Only the first pose is refined.
        rot90_average : bool
            Average the SO(3) signal over the four quarter turns of the image
            (:meth:`rot90_averaged`; 4x the cost).
        min_separation_deg : float
            With ``top_k > 1``: the poses are the most probable cells at least this far apart
            (degrees; greedy, :func:`cesped.geometry.selection.distinct_top` over the best
            ``max(16·top_k, 64)`` cells), i.e. distinct modes rather than the neighbours of the
            first. 0: the plain top-k cells.

        Returns
        -------
        rotmats : (B, top_k, 3, 3) data-frame labels ``R = Aᵀ`` (float32)
        probs : (B, top_k) probabilities of the returned grid cells
        """
        coeffs = self.rot90_averaged(img) if rot90_average else self(img)
        return self.predict_from_coeffs(coeffs, top_k, order, refine_steps, min_separation_deg)

    @torch.no_grad()
    def predict_from_coeffs(
        self,
        coeffs: torch.Tensor,
        top_k: int = 1,
        order: int | None = None,
        refine_steps: int = 0,
        min_separation_deg: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`predict`, from the SO(3) coefficients ``(B, dim)``."""
        from cesped.geometry.selection import distinct_top

        if not (min_separation_deg >= 0 and math.isfinite(min_separation_deg)):
            raise ValueError(f"min_separation_deg must be >= 0, got {min_separation_deg}")
        grid = self.grid(order)
        distinct = top_k > 1 and min_separation_deg > 0
        pool = min(grid.size, max(16 * top_k, 64)) if distinct else top_k
        if grid.size * coeffs.shape[0] <= 2**25:  # small enough: one pass over the whole grid
            logits = grid.logits(coeffs)
            vals, idx = logits.topk(pool, dim=1)
            lse = torch.logsumexp(logits, 1)
        else:  # order 5 and large batches: pixel chunks, never the (B, N) array
            vals, idx, lse = grid.topk_logsumexp(coeffs, pool)
        if distinct:
            pos = distinct_top(vals, grid.rotations(idx), top_k, min_separation_deg)
            vals, idx = vals.gather(1, pos), idx.gather(1, pos)
        probs = torch.exp(vals - lse[:, None])
        net = grid.rotations(idx)  # (B, k, 3, 3)
        if refine_steps > 0:
            spacing = (8 * math.pi**2 / grid.size) ** (1 / 3) / 2
            best = net[:, 0]
            best = self._refine(coeffs, best, spacing, refine_steps)
            net = torch.cat([best[:, None], net[:, 1:]], 1)
        return self.to_data_frame(net), probs

    def _refine(self, coeffs: torch.Tensor, best: torch.Tensor, spacing: float, steps: int) -> torch.Tensor:
        offs = torch.stack(torch.meshgrid(*[torch.tensor([-1.0, 0.0, 1.0])] * 3, indexing="ij"), -1).reshape(
            -1, 3
        )
        offs = offs.to(best)
        for _ in range(steps):
            spacing = spacing / 2
            delta = torch.linalg.matrix_exp(_skew(offs * spacing))  # (27, 3, 3)
            cand = best[:, None] @ delta[None]  # (B, 27, 3, 3)
            val = self.signal_at(coeffs, _orthonormalise(cand.double()))  # (B, 27)
            best = cand[torch.arange(best.shape[0]), val.argmax(1)]
        return best


def _skew(v: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(v[..., 0])
    x, y, w = v.unbind(-1)
    return torch.stack([z, -w, y, w, z, -x, -y, x, z], -1).reshape(v.shape[:-1] + (3, 3))


def _orthonormalise(r: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(r)
    return u @ vh
