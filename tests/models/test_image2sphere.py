"""Image2Sphere: in-plane equivariance in the label frame, determinism, loss, symmetric labels."""

from __future__ import annotations

import math
import urllib.error

import pytest
import torch

from cesped.geometry.rotations import random_rotations, rotation_z
from cesped.geometry.symmetry import symmetry_matrices
from cesped.models.encoders import GaussianFilterBank, ResNetEncoder
from cesped.models.image2sphere import Image2Sphere
from cesped.models.projector import HemisphereProjector
from cesped.models.so3_grid import OutputGrid, flat_wigner
from cesped.training.losses import symmetric_cross_entropy

SMALL = dict(
    resnet="resnet18",
    lmax=4,
    s2_fdim=16,
    so3_fdim=4,
    hp_order_projector=2,
    hp_order_s2=1,
    hp_order_so3=2,
    so3_act_resolution=6,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Image2Sphere(**SMALL).eval()


def _label_permutation(m: Image2Sphere, data_rot: torch.Tensor) -> torch.Tensor:
    """Index map n -> index of the grid rotation whose data-frame pose is pose(n) · data_rot."""
    g = m.output_grid
    poses = m.to_data_frame(g.rotations(torch.arange(g.size)))
    return g.nearest(m.to_network_frame(poses @ data_rot.float()))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rot90_of_feature_map_moves_logits_as_the_label(model, k):
    """``torch.rot90(img, k)`` changes the label R -> R·Rz(90k) (cesped.data.augment). The head's logits
    must move the same way: logits'(pose) = logits(pose · Rz(-90k))."""
    torch.manual_seed(1)
    fmap = torch.randn(2, 512, 3, 3)
    with torch.no_grad():
        l1 = model.grid_logits(model.head(fmap))
        l2 = model.grid_logits(model.head(torch.rot90(fmap, k, dims=(-2, -1))))
    perm = _label_permutation(model, rotation_z(torch.tensor(-90.0 * k, dtype=torch.float64)))
    assert perm.unique().numel() == perm.numel()  # the grid is closed under the move: a permutation
    torch.testing.assert_close(l2, l1[:, perm], atol=1e-4 * float(l1.abs().max()), rtol=0)


def test_right_rotate_coeffs_is_a_right_translation_of_the_signal(model):
    """flat_wigner(L)·c' == flat_wigner(L·Q)·c for random L and Q (e3nn angles)."""
    from e3nn import o3

    torch.manual_seed(2)
    c = torch.randn(3, model.head.dim, dtype=torch.float64)
    q = (0.3, 1.1, -2.0)
    moved = model.right_rotate_coeffs(c, q)
    a, b, g = (torch.rand(5, dtype=torch.float64) * 3 for _ in range(3))
    rl = o3.angles_to_matrix(a, b, g)
    rq = o3.angles_to_matrix(*(torch.tensor(v, dtype=torch.float64) for v in q))
    a2, b2, g2 = o3.matrix_to_angles(rl @ rq)
    lhs = flat_wigner(model.lmax, a, b, g) @ moved.T
    rhs = flat_wigner(model.lmax, a2, b2, g2) @ c.T
    torch.testing.assert_close(lhs, rhs, atol=1e-5 * float(rhs.abs().max()), rtol=0)  # e3nn D in float32


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rot90_averaged_prediction_is_exactly_equivariant(model, k):
    """The four-copy average moves exactly as the label when the whole image (ResNet included) turns."""
    from cesped.physics.image_ops import rot90_images

    torch.manual_seed(3)
    img = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        l1 = model.grid_logits(model.rot90_averaged(img))
        l2 = model.grid_logits(model.rot90_averaged(rot90_images(img, k)))
        plain1, plain2 = model.grid_logits(model(img)), model.grid_logits(model(rot90_images(img, k)))
    perm = _label_permutation(model, rotation_z(torch.tensor(-90.0 * k, dtype=torch.float64)))
    torch.testing.assert_close(l2, l1[:, perm], atol=1e-4 * float(l1.abs().max()), rtol=0)
    # the un-averaged network is not exactly equivariant (its ResNet is not)
    assert float((plain2 - plain1[:, perm]).abs().max()) > 1e-3 * float(plain1.abs().max())
    # predict(): the best pose of the original, turned like the label, is a best pose of the turned image
    r1, _ = model.predict(img, rot90_average=True)
    moved = r1[:, 0] @ rotation_z(torch.tensor(90.0 * k, dtype=torch.float64)).float()
    idx = model.output_grid.nearest(model.to_network_frame(moved))
    assert torch.all(l2.gather(1, idx[:, None])[:, 0] >= l2.max(1).values - 1e-4 * float(l2.abs().max()))


def test_identity_label_frame_breaks_equivariance():
    torch.manual_seed(0)
    m = Image2Sphere(**SMALL, label_frame="identity").eval()
    fmap = torch.randn(2, 512, 3, 3)
    with torch.no_grad():
        l1 = m.grid_logits(m.head(fmap))
        l2 = m.grid_logits(m.head(torch.rot90(fmap, 1, dims=(-2, -1))))
    perm = _label_permutation(m, rotation_z(torch.tensor(-90.0, dtype=torch.float64)))
    assert float((l2 - l1[:, perm]).abs().max()) > 0.1 * float(l1.abs().max())


def test_filter_bank_commutes_with_rot90():
    bank = GaussianFilterBank((1.0, 2.0))
    x = torch.randn(2, 1, 33, 33)
    torch.testing.assert_close(bank(torch.rot90(x, 1, (-2, -1))), torch.rot90(bank(x), 1, (-2, -1)))
    # a centred delta gives a centred, normalised Gaussian of sigma 1 px truncated at 3 sigma
    d = torch.zeros(1, 1, 33, 33)
    d[..., 16, 16] = 1
    out = bank(d)[0, 1]
    dx = torch.arange(33) - 16.0
    g = torch.exp(-(dx**2) / 2) * (dx.abs() <= 3)
    ref = g[:, None] * g[None]
    torch.testing.assert_close(out / out.sum(), ref / ref.sum(), atol=1e-6, rtol=0)


def test_prediction_is_deterministic_and_training_subset_is_unbiased(model):
    torch.manual_seed(2)
    img = torch.randn(3, 1, 64, 64)
    r1, p1 = model.predict(img, top_k=3)
    r2, p2 = model.predict(img, top_k=3)
    assert torch.equal(r1, r2) and torch.equal(p1, p2)
    assert r1.shape == (3, 3, 3, 3) and bool((p1[:, :-1] >= p1[:, 1:]).all()) and float(p1.sum(1).max()) <= 1
    torch.testing.assert_close(r1 @ r1.transpose(-1, -2), torch.eye(3).expand_as(r1), atol=1e-5, rtol=0)
    # the projector's random subset (training only) is an unbiased estimate of the evaluation output
    proj = HemisphereProjector(8, 4, lmax=3, order=2, subset_fraction=0.5)
    fmap = torch.randn(1, 8, 2, 2)
    with torch.no_grad():
        ref = proj.eval()(fmap)
        proj.train()
        samples = torch.stack([proj(fmap) for _ in range(1500)])
    assert not torch.equal(samples[0], samples[1])
    err = (samples.mean(0) - ref).abs().max() / ref.abs().max()
    assert float(err) < 0.05


def test_refinement_never_lowers_the_signal(model):
    torch.manual_seed(3)
    img = torch.randn(4, 1, 64, 64)
    with torch.no_grad():
        coeffs = model(img)
        grid_r, _ = model.predict_from_coeffs(coeffs)
        ref_r, _ = model.predict_from_coeffs(coeffs, refine_steps=3)
    from e3nn import o3

    def value(r):
        a, b, g = o3.matrix_to_angles(model.to_network_frame(r[:, 0]).double())
        return (flat_wigner(model.lmax, a, b, g).float() * coeffs).sum(1)

    assert bool((value(ref_r) >= value(grid_r) - 1e-4).all())
    spacing = (8 * math.pi**2 / model.output_grid.size) ** (1 / 3)
    from cesped.geometry.errors import angular_distance

    assert float(angular_distance(ref_r[:, 0], grid_r[:, 0]).max()) < math.degrees(spacing)


def test_loss_matches_torch_soft_cross_entropy():
    torch.manual_seed(4)
    logits = torch.randn(5, 40)
    tgt = torch.randint(0, 40, (5, 4))
    w = torch.rand(5)
    soft = torch.zeros(5, 40).scatter_add_(1, tgt, torch.full((5, 4), 0.25))
    for eps in (0.0, 0.1):
        ref = (
            torch.nn.functional.cross_entropy(logits, soft, reduction="none", label_smoothing=eps) * w
        ).mean()
        torch.testing.assert_close(symmetric_cross_entropy(logits, tgt, w, eps), ref)
    with pytest.raises(ValueError):
        symmetric_cross_entropy(logits, tgt[:, 0], w)


def test_symmetric_label_gets_equal_probability_on_its_mates():
    """Toy training of a free SO(3) signal with D2-expanded labels: its 4 mates become equally likely."""
    grid = OutputGrid(6, 2)
    sym = symmetry_matrices("D2").float()
    R = random_rotations(3, torch.Generator().manual_seed(5)).float()
    tgt = grid.nearest(sym[None] @ R[:, None])  # (3, 4)
    assert tgt.shape == (3, 4) and all(t.unique().numel() == 4 for t in tgt)
    x = torch.zeros(3, 455, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        symmetric_cross_entropy(grid.logits(x), tgt).backward()
        opt.step()
    p = torch.softmax(grid.logits(x.detach()), 1).gather(1, tgt)
    assert float(p.sum(1).min()) > 0.5
    assert float((p.max(1).values / p.min(1).values).max()) < 1.1


def test_target_indices_expand_the_symmetry(model):
    R = random_rotations(4, torch.Generator().manual_seed(6)).float()
    sym = symmetry_matrices("C2").float()
    t = model.target_indices(R, sym)
    assert t.shape == (4, 2)
    assert torch.equal(t[:, 0], model.output_grid.nearest(model.to_network_frame(R)))
    # the mate's target is the grid rotation nearest to S·R
    torch.testing.assert_close(
        model.to_data_frame(model.output_grid.rotations(t[:, 1])), (sym[1] @ R), atol=0.2, rtol=0
    )


def test_state_dict_has_no_derived_tables(model):
    keys = list(model.state_dict())
    assert not any(k.endswith(("pix_table", "gamma_table", ".d", ".y", ".sh", ".qw", "frame")) for k in keys)
    assert any(k.startswith("encoder.trunk") for k in keys)


def test_pretrained_weights_offline_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="TORCH_HOME"):
        ResNetEncoder("resnet18", pretrained=True)
    with pytest.raises(ValueError, match="resnet"):
        ResNetEncoder("resnet19")


def test_width_scales_the_trunk_and_keeps_torchvision_layout():
    import torchvision

    full = ResNetEncoder("resnet18", width=64)
    tv = torchvision.models.resnet18(weights=None)
    n_tv = sum(p.numel() for n, p in tv.named_parameters() if not n.startswith("fc."))
    assert sum(p.numel() for p in full.parameters()) == n_tv
    narrow = ResNetEncoder("resnet18", width=32, stem_stride=16).eval()
    assert narrow.out_channels == 256
    assert narrow(torch.randn(2, 1, 32, 32)).shape == (2, 256, 2, 2)
    assert ResNetEncoder("resnet50", width=16).out_channels == 512
    # torchvision's own blocks in torchvision's layout, about 4x fewer weights
    stages = [m for m in narrow.trunk if isinstance(m, torch.nn.Sequential)]
    assert [len(s) for s in stages] == [2, 2, 2, 2]
    assert all(isinstance(b, torchvision.models.resnet.BasicBlock) for s in stages for b in s)
    assert 3.5 < n_tv / sum(p.numel() for p in narrow.parameters()) < 4.5
    with pytest.raises(ValueError, match="width"):
        ResNetEncoder("resnet18", pretrained=True, width=32)


def test_stem_stride_sets_the_feature_map_size():
    x = torch.zeros(1, 1, 64, 64)
    for stride, side in ((32, 2), (16, 4), (8, 8)):
        enc = ResNetEncoder("resnet18", stem_stride=stride).eval()
        with torch.no_grad():
            assert enc(x).shape == (1, 512, side, side)
    with pytest.raises(ValueError, match="stem_stride"):
        ResNetEncoder("resnet18", stem_stride=4)


def test_direct_path_starts_at_zero_and_learns():
    """The optional non-equivariant path adds nothing at initialisation and receives gradients."""
    torch.manual_seed(8)
    plain = Image2Sphere(**SMALL).eval()
    torch.manual_seed(8)
    direct = Image2Sphere(**SMALL, direct_path=True).eval()
    missing = direct.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("head.direct.") for k in missing)
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(direct(x), plain(x))
    direct(x).square().sum().backward()
    assert float(direct.head.direct[-1].weight.grad.abs().max()) > 0


def test_channels_last_trunk_gives_the_same_output():
    torch.manual_seed(9)
    ref = Image2Sphere(**SMALL).eval()
    cl = Image2Sphere(**SMALL, channels_last=True).eval()
    cl.load_state_dict(ref.state_dict())
    x = torch.randn(3, 1, 64, 64)
    torch.testing.assert_close(cl(x), ref(x), rtol=1e-4, atol=1e-4)
    assert cl.encoder.trunk[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_distinct_top_k_prediction_keeps_the_best_pose_and_spreads_the_others(model):
    """``min_separation_deg``: the first pose is the plain top-1, the others are the most probable
    cells at least that far from every earlier one (checked against the whole grid's logits)."""
    from cesped.geometry.errors import angular_distance

    torch.manual_seed(3)
    img = torch.randn(4, 1, 64, 64)
    plain_r, plain_p = model.predict(img, top_k=4)
    r, p = model.predict(img, top_k=4, min_separation_deg=30.0)
    assert torch.equal(r[:, 0], plain_r[:, 0]) and torch.equal(p[:, 0], plain_p[:, 0])
    assert bool((p[:, :-1] >= p[:, 1:]).all())
    for b in range(4):
        d = angular_distance(r[b, :, None].double(), r[b, None].double())
        assert float(d[~torch.eye(4, dtype=torch.bool)].min()) > 30.0 - 1e-3
        # greedy reference over every grid cell: the second pick is the best cell > 30 deg from the first
        with torch.no_grad():
            logits = model.grid_logits(model(img[b : b + 1]))[0]
        poses = model.to_data_frame(model.output_grid.rotations(torch.arange(model.output_grid.size)))
        far = angular_distance(poses.double(), r[b, 0].double().expand(len(poses), 3, 3)) > 30.0
        best_far = poses[torch.where(far, logits, torch.tensor(-torch.inf)).argmax()]
        torch.testing.assert_close(r[b, 1], best_far, atol=1e-5, rtol=0)
    assert torch.equal(model.predict(img, top_k=4, min_separation_deg=0.0)[0], plain_r)
    with pytest.raises(ValueError, match="min_separation_deg"):
        model.predict(img, top_k=2, min_separation_deg=-1.0)
