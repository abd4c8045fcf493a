"""SO3Activation's separable Fourier transform equals the dense Wigner-table reference."""

from __future__ import annotations

import math

import pytest
import torch

from cesped.models._so3_fourier import (
    _real_fourier_projectors,
    fourier_grid,
    fourier_tables,
    so3_generators64,
)
from cesped.models.s2_so3 import SO3Activation, so3_dim
from cesped.models.so3_grid import flat_wigner


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


class _Float64Default:
    """e3nn builds its generators (hence ``wigner_D``) in the default dtype: float64 for references."""

    def __enter__(self):
        self.prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.prev)


def _exact_dense_activation(x: torch.Tensor, lmax: int, res: int, act=torch.relu) -> torch.Tensor:
    """The dense reference (e3nn's SO3Activation computation) with float64 Wigner tables."""
    from e3nn import o3
    from e3nn.math import normalize2mom

    with _Float64Default():
        grid = o3.SO3Grid(0, res)
        a, b, qw = grid.alpha, grid.beta, grid.qw
        A, B = torch.meshgrid(a, b, indexing="ij")
        blocks = []
        for l in range(lmax + 1):  # D(α, β, γ) = D(α, β, 0) D(0, 0, γ)
            dab = o3.wigner_D(l, A.flatten(), B.flatten(), torch.zeros(A.numel()))
            dg = o3.wigner_D(l, torch.zeros_like(a), torch.zeros_like(a), a)
            blocks.append(
                math.sqrt(2 * l + 1) * torch.einsum("pij,kjm->pkim", dab, dg).flatten(2).flatten(0, 1)
            )
        d = torch.cat(blocks, -1)  # (na·nb·nc, dim), flat index (α, β, γ)
        w = qw[None, :, None].expand(len(a), len(b), len(a)).reshape(-1)
        f = normalize2mom(act)
    dim = d.shape[1]
    return (f(x.double() @ d.T / math.sqrt(dim)) * w) @ d * math.sqrt(dim)


def test_float64_generators_are_e3nns():
    from e3nn import o3

    with _Float64Default():
        for l in range(7):
            torch.testing.assert_close(so3_generators64(l), o3.so3_generators(l), atol=1e-12, rtol=0)


def test_e3nn_wigner_factorises_and_pole_rotation_is_a_real_fourier_series():
    """The two facts the transform rests on, checked on e3nn itself."""
    from e3nn import o3

    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.rand(5, generator=g, dtype=torch.float64) * 2 * math.pi for _ in range(3))
    z = torch.zeros_like(a)
    L = 5
    k = torch.arange(-L, L + 1, dtype=torch.float64)
    for l in range(L + 1):
        # D(α, β, γ) = D_y(α) D_x(β) D_y(γ) (tolerance: e3nn builds its generators in float32)
        prod = o3.wigner_D(l, a, z, z) @ o3.wigner_D(l, z, b, z) @ o3.wigner_D(l, z, z, c)
        torch.testing.assert_close(prod, o3.wigner_D(l, a, b, c), atol=1e-5, rtol=0)
        # D_y(θ) = Σ_s φ_s(θ) M_s with φ = cos(kθ) (k >= 0), sin(|k|θ) (k < 0)
        M = _real_fourier_projectors(l, L)
        phi = torch.where(k >= 0, torch.cos(a[:, None] * k.abs()), torch.sin(a[:, None] * k.abs()))
        torch.testing.assert_close(
            torch.einsum("ns,sij->nij", phi, M), o3.wigner_D(l, a, z, z), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("lmax,res", [(2, 3), (3, 2)])
def test_fourier_grid_equals_flat_wigner_on_the_so3_grid(lmax, res):
    from e3nn.o3 import SO3Grid

    grid = SO3Grid(0, res)
    a, b = grid.alpha.double(), grid.beta.double()
    index, t_beta, _, phi = fourier_tables(lmax, a, b, grid.qw)
    x = torch.randn(3, so3_dim(lmax), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    d = flat_wigner(lmax, a[:, None, None], b[None, :, None], a[None, None, :])  # (na, nb, nc, dim)
    ref = torch.einsum("abcd,nd->nabc", d, x)
    assert _rel(fourier_grid(x, index, t_beta, phi), ref) < 1e-6  # e3nn's float32-built generators


@pytest.mark.parametrize("lmax", [3, 4, 6])
@pytest.mark.parametrize("res", ["lmax+1", 10])
def test_fourier_activation_equals_dense_reference(lmax, res, tmp_path):
    r = lmax + 1 if res == "lmax+1" else res
    fast = SO3Activation(lmax, r, cache_dir=tmp_path)
    dense = SO3Activation(lmax, r, cache_dir=tmp_path, method="dense")
    gen = torch.Generator().manual_seed(lmax * 100 + r)
    x = torch.randn(5, 7, so3_dim(lmax), generator=gen)  # 35 signals: several blocks at small sizes
    gy = torch.randn(x.shape, generator=gen)
    exact = x.double().requires_grad_()
    y_exact = _exact_dense_activation(exact, lmax, r)
    (g_exact,) = torch.autograd.grad(y_exact, exact, gy.double())

    # float32, as used in training: forward against the dense module and the float64 reference
    xf = x.clone().requires_grad_()
    y = fast(xf)
    assert y.shape == x.shape and y.dtype == torch.float32
    y_dense = dense(x)
    assert _rel(y, y_dense) < 1e-4 and _rel(y, y_exact) < 1e-4
    # gradient w.r.t. the input against the float64 reference. (The float32 dense module is not a
    # sharp reference for it: its rounding, sums of Σ(2l+1)² terms, flips the sign of grid values
    # within ~1e-6 of zero, which moves its ReLU gradient by up to ~1e-4 relative.)
    y.backward(gy)
    assert _rel(xf.grad, g_exact) < 1e-4
    # in float64 the two methods agree to the float32 rounding of their tables
    x64 = x.double().requires_grad_()
    (g64,) = torch.autograd.grad(fast.double()(x64), x64, gy.double())
    assert _rel(g64, g_exact) < 1e-5


@pytest.mark.parametrize("act", [torch.tanh, torch.nn.functional.silu, lambda t: t])
def test_other_activations_use_the_generic_path_and_match_dense(act, tmp_path):
    fast = SO3Activation(3, 5, act=act, cache_dir=tmp_path).double()
    dense = SO3Activation(3, 5, act=act, cache_dir=tmp_path, method="dense").double()
    assert not fast._relu
    x = torch.randn(4, 3, so3_dim(3), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    gy = torch.randn_like(x)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = fast(xa), dense(xb)
    assert _rel(ya, yb) < 1e-5
    ya.backward(gy)
    yb.backward(gy)
    assert _rel(xa.grad, xb.grad) < 1e-5


def test_blocking_does_not_change_the_result(tmp_path):
    m = SO3Activation(4, 6, cache_dir=tmp_path)
    x = torch.randn(13, 3, so3_dim(4), generator=torch.Generator().manual_seed(6))
    gy = torch.randn_like(x)
    outs = []
    for block_values in (1, 5 * 12 * 24 * 24, 1 << 30):  # 1 signal, 5 signals (remainder), all
        m.block_values = block_values
        xx = x.clone().requires_grad_()
        y = m(xx)
        y.backward(gy)
        outs.append((y.detach(), xx.grad))
    for y, g in outs[1:]:
        torch.testing.assert_close(y, outs[0][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(g, outs[0][1], atol=1e-5, rtol=1e-5)


def test_no_state_and_no_grad_mode(tmp_path):
    m = SO3Activation(3, cache_dir=tmp_path)
    assert len(m.state_dict()) == 0
    assert all(name not in m.state_dict() for name, _ in m.named_buffers())
    x = torch.randn(2, so3_dim(3), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        y0 = m(x)
    torch.testing.assert_close(m(x), y0)
    torch.testing.assert_close(m(x[0]), y0[0])  # a single signal, no batch dimension
    with pytest.raises(ValueError):
        SO3Activation(3, method="fft")
