"""Image encoders: a fixed Gaussian filter bank followed by a torchvision ResNet trunk."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["gaussian_kernel_1d", "GaussianFilterBank", "ResNetEncoder", "RESNET_CHANNELS"]

RESNET_CHANNELS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048}


def gaussian_kernel_1d(sigma: float, truncate: float = 3.0, dtype=torch.float32) -> torch.Tensor:
    """Normalised, symmetric 1-D Gaussian of odd length ``2·ceil(truncate·σ) + 1`` (σ in pixels)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma}")
    r = max(1, math.ceil(truncate * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


class GaussianFilterBank(nn.Module):
    """Stack an image with Gaussian-filtered copies: ``(B, 1, H, W) -> (B, 1 + len(sigmas), H, W)``.

    The kernels are odd-sized and symmetric (centred), applied separably with zero padding, so the
    bank commutes exactly with 90° rotations and flips of square images. The filters are fixed.

    Parameters
    ----------
    sigmas : sequence of float
        Standard deviations in pixels (default 1 and 2).
    """

    def __init__(self, sigmas=(1.0, 2.0)) -> None:
        super().__init__()
        self.sigmas = tuple(float(s) for s in sigmas)
        for i, s in enumerate(self.sigmas):
            self.register_buffer(f"k{i}", gaussian_kernel_1d(s), persistent=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 1:
            raise ValueError(f"expected images of shape (B, 1, H, W), got {tuple(img.shape)}")
        out = [img]
        for i in range(len(self.sigmas)):
            k = getattr(self, f"k{i}").to(img.dtype)
            r = (k.numel() - 1) // 2
            y = nn.functional.conv2d(img, k.view(1, 1, -1, 1), padding=(r, 0))
            y = nn.functional.conv2d(y, k.view(1, 1, 1, -1), padding=(0, r))
            out.append(y)
        return torch.cat(out, 1)


_RESNET_LAYOUT = {
    "resnet18": ("BasicBlock", [2, 2, 2, 2]),
    "resnet34": ("BasicBlock", [3, 4, 6, 3]),
    "resnet50": ("Bottleneck", [3, 4, 6, 3]),
    "resnet101": ("Bottleneck", [3, 4, 23, 3]),
    "resnet152": ("Bottleneck", [3, 8, 36, 3]),
}


class _WidthResNet(nn.Module):
    """torchvision's ResNet layout with ``width`` channels after the stem instead of 64.

    The layers are torchvision's own ``BasicBlock``/``Bottleneck`` modules with widths
    ``width·(1, 2, 4, 8)``; ``width=64`` has exactly the architecture of ``torchvision.models.<name>``.
    """

    def __init__(self, name: str, width: int) -> None:
        super().__init__()
        from torchvision.models import resnet as tv

        block = getattr(tv, _RESNET_LAYOUT[name][0])
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = width
        for i, n_blocks in enumerate(_RESNET_LAYOUT[name][1]):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != planes * block.expansion:
                down = nn.Sequential(
                    nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            blocks = [block(inplanes, planes, stride, down)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes) for _ in range(n_blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool, self.fc = nn.Identity(), nn.Identity()  # dropped by ResNetEncoder
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")


def _load_resnet(name: str, pretrained: bool, width: int = 64) -> nn.Module:
    import torchvision

    if name not in RESNET_CHANNELS:
        raise ValueError(f"resnet name must be one of {sorted(RESNET_CHANNELS)}, got {name!r}")
    if width != 64:
        if pretrained:
            raise ValueError(
                f"ImageNet weights exist for width 64 only; got width={width} with pretrained=true"
            )
        if width < 8:
            raise ValueError(f"width must be >= 8 channels, got {width}")
        return _WidthResNet(name, int(width))
    builder = getattr(torchvision.models, name)
    if not pretrained:
        return builder(weights=None)
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    model = builder(weights=None)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # offline, no cached file, or corrupt download
        hub = torch.hub.get_dir()
        raise RuntimeError(
            f"Could not load the ImageNet weights of {name} ({weights.url}): {exc}. "
            f"torchvision looks for them in {hub}/checkpoints (set TORCH_HOME to change the location). "
            f'Download them once with network access, e.g. `python -c "import torchvision; '
            f"torchvision.models.{name}(weights='IMAGENET1K_V1')\"`, copy the file there, "
            f"or set model.encoder.pretrained=false."
        ) from exc
    model.load_state_dict(state)
    return model


class ResNetEncoder(nn.Module):
    """Gaussian filter bank + torchvision ResNet without its pooling and classification layers.

    Parameters
    ----------
    name : str
        ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` or ``resnet152``.
    pretrained : bool
        Load ImageNet weights through torchvision's weights API (cached under ``$TORCH_HOME``).
        Without network access and without the cached file a ``RuntimeError`` explains how
        to obtain them.
    sigmas : sequence of float
        Gaussian filter widths (pixels) of the two extra input channels.

    stem_stride : {32, 16, 8}
        Total down-sampling of the trunk. 32 is torchvision's ResNet (for 224-256 px images);
        16 drops the stem's max-pool and 8 also makes the first convolution stride 1, so that
        small images (64 px) still give a 4x4 or 8x8 feature map for the spherical projector
        instead of 2x2. The ImageNet weights stay valid (only strides change).
    width : int
        Channels after the stem (torchvision: 64); the four stages have ``width·(1, 2, 4, 8)``
        (times 4 for the bottleneck ResNets). A narrower trunk (e.g. 32: ~4x fewer operations) is
        for small CPU configurations; ImageNet weights need 64.
    channels_last : bool
        Run the trunk in the channels-last memory layout (same result; the demo's whole training
        step runs at 1.09x the images/s on 2 CPU cores: ``benchmarks/bench_i2s_budget.py probe=1
        width=32 cl=1``).

    Shapes
    ------
    ``(B, 1, H, W) -> (B, C, ceil(H/s), ceil(W/s))`` with ``C = RESNET_CHANNELS[name]·width/64``
    and ``s = stem_stride``.
    """

    def __init__(
        self,
        name: str = "resnet18",
        pretrained: bool = False,
        sigmas=(1.0, 2.0),
        stem_stride: int = 32,
        width: int = 64,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if len(tuple(sigmas)) != 2:
            raise ValueError(f"sigmas must hold two widths (3 input channels for the ResNet), got {sigmas}")
        self.filters = GaussianFilterBank(sigmas)
        resnet = _load_resnet(name, pretrained, int(width))
        if stem_stride not in (8, 16, 32):
            raise ValueError(f"stem_stride must be 8, 16 or 32, got {stem_stride!r}")
        if stem_stride <= 16:
            resnet.maxpool = nn.Identity()
        if stem_stride == 8:
            resnet.conv1.stride = (1, 1)
        self.stem_stride = int(stem_stride)
        self.trunk = nn.Sequential(*list(resnet.children())[:-2])
        self.out_channels = RESNET_CHANNELS[name] * int(width) // 64
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.trunk.to(memory_format=torch.channels_last)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.filters(img)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.trunk(x)
