"""Separable ("SO(3) FFT") transform between flat Wigner coefficients and the e3nn (α, β, γ) grid.

Private helper of :class:`cesped.models.s2_so3.SO3Activation`.

Math
----
e3nn's Wigner matrices factorise as ``D^l(α, β, γ) = D^l_y(α) · D^l_x(β) · D^l_y(γ)``. The
rotation about the pole axis y is ``D^l_y(θ) = exp(θ J_l)`` with ``J_l`` real antisymmetric,
``-i J_l = V diag(m) V^H`` (``m = -l..l``), so ``D^l_y(θ) = Σ_m e^{imθ} P_m`` with
``P_m = v_m v_m^H``. Grouping ``±m`` gives a real expansion ``D^l_y(θ) = Σ_s φ_s(θ) M^l_s`` over
``S = 2L+1`` real Fourier functions indexed by ``s = k + L`` (``k = -L..L``, ``L = lmax``):

* ``k >= 0``: ``φ_s = cos(kθ)``, ``M^l_s = P_k + P_{-k}`` (``P_0`` for ``k = 0``);
* ``k < 0``: ``φ_s = sin(|k|θ)``, ``M^l_s = i (P_{|k|} - P_{-|k|})``;
* ``M^l_s = 0`` for ``|k| > l``.

A flat-Wigner signal ``f(R) = Σ_l √(2l+1) Σ_ij x_l[i, j] D^l(R)[i, j]`` is then::

    f(α, β, γ) = Σ_{s,t} φ_s(α) φ_t(γ) A[β, s, t]
    A[β, s, t] = Σ_l Σ_ij T_l[β, s, t, i, j] x_l[i, j]
    T_l[β, s, t, i, j] = √(2l+1) (M^l_s D^l_x(β) M^l_t)[i, j]

``M^l_s`` only touches the rows ``l ± |k|`` of the real basis, so each ``(s, t)`` receives only a
few coefficients (``K = 2L`` at most): ``x -> A`` is a gather of the coefficients into
``(S², K)`` and one small matrix product per ``(t, s)`` from ``K`` to the ``2r`` β values. The
α and γ sums are real inverse DFTs on the uniform ``4r`` grids, done as products with the dense
``(4r, S)`` matrix ``Φ[a, s] = φ_s(α_a)`` (on CPU, batched ``torch.fft.irfft``/``rfft`` of length ``4r``
with ``L + 1`` non-zero frequencies measured 3-8× slower than these products at lmax 4-6). The
projection back to coefficients (quadrature weights in β) is the exact transpose of these steps,
so the function equals the dense ``x -> D(grid) -> act -> qw -> Dᵀ`` one for every resolution.

Cost per signal at lmax 6, r = 10: about 1.1 M multiply-adds forward (the dense table: 2 × 14.6 M).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

__all__ = ["fourier_tables", "fourier_grid", "block_size", "FourierActivation"]


def so3_generators64(l: int) -> torch.Tensor:
    """e3nn's ``so3_generators(l)`` computed in float64 (e3nn builds them in the default dtype).

    ``D^l(α, β, γ) = exp(α X[1]) exp(β X[0]) exp(γ X[1])`` (``e3nn.o3.wigner_D``). Returns
    ``(3, 2l+1, 2l+1)`` float64.
    """
    from e3nn.o3 import change_basis_real_to_complex

    j = l
    m = torch.arange(-j, j, dtype=torch.float64)
    raising = torch.diag(-torch.sqrt(j * (j + 1) - m * (m + 1)), diagonal=-1)
    m = torch.arange(-j + 1, j + 1, dtype=torch.float64)
    lowering = torch.diag(torch.sqrt(j * (j + 1) - m * (m - 1)), diagonal=1)
    m = torch.arange(-j, j + 1, dtype=torch.float64)
    su2 = torch.stack(
        [0.5 * (raising + lowering) + 0j, torch.diag(1j * m), -0.5j * (raising - lowering)], dim=0
    )
    Q = change_basis_real_to_complex(l, dtype=torch.float64)
    X = Q.conj().T @ su2 @ Q
    return _real_part(X, 1e-12, f"real-basis generator of degree {l}")


def _real_part(x: torch.Tensor, tol: float, what: str) -> torch.Tensor:
    """``x.real`` after checking that ``x`` is real to ``tol`` (an internal invariant, not user input)."""
    err = float(x.imag.abs().max())
    if err >= tol:
        raise RuntimeError(f"{what} is not real (max |imag| {err:.2e} >= {tol:.0e}): e3nn basis changed?")
    return x.real


def _real_fourier_projectors(l: int, L: int) -> torch.Tensor:
    """``M^l_s`` for ``s = 0..2L`` (``k = s - L``), ``(2L+1, 2l+1, 2l+1)`` float64."""
    gen = so3_generators64(l)[1]  # J_l: D^l_y(θ) = exp(θ J_l)
    evals, V = torch.linalg.eigh(-1j * gen.to(torch.complex128))  # -iJ = V diag(m) V^H
    m = torch.round(evals.real).long()
    n = 2 * l + 1
    P = {int(mm): V[:, q : q + 1] @ V[:, q : q + 1].conj().T for q, mm in enumerate(m.tolist())}
    out = torch.zeros(2 * L + 1, n, n, dtype=torch.float64)
    for s in range(2 * L + 1):
        k = s - L
        if abs(k) > l:
            continue
        if k == 0:
            M = P[0]
        elif k > 0:
            M = P[k] + P[-k]
        else:
            M = 1j * (P[-k] - P[k])
        out[s] = _real_part(M, 1e-10, f"Fourier projector k={k} of degree {l}")
    return out


def fourier_tables(lmax: int, alpha: torch.Tensor, beta: torch.Tensor, qw: torch.Tensor):
    """Tables of the separable transform for the grid ``alpha × beta × alpha`` (float64).

    Parameters
    ----------
    lmax : int
    alpha : (na,) ; beta : (nb,) ; qw : (nb,)
        Grid angles (γ uses the α values, as e3nn's ``SO3Grid``) and quadrature weights.

    Returns
    -------
    index : (S², K) int64
        Row ``t·S + s`` (``t`` for γ, ``s`` for α): the flat-Wigner indices ``(l, i, j)`` that feed
        ``A[:, s, t]``; unused slots hold ``dim`` (a zero row appended to the coefficients).
    t_beta : (S², nb, K)
        ``T_l[β_b, s, t, i, j]`` for those coefficients.
    t_beta_qw : (S², K, nb)
        Its transpose times the quadrature weights ``qw[β_b]``.
    phi : (na, S)
        ``φ_s(α_a)`` (the same table serves γ).
    """
    L = int(lmax)
    S = 2 * L + 1
    beta = beta.to(torch.float64)
    entries = [[] for _ in range(S * S)]  # per (t, s), t-major: list of (coefficient index, T over β)
    off = 0
    for l in range(L + 1):
        n = 2 * l + 1
        M = _real_fourier_projectors(l, L)  # (S, n, n)
        dx = torch.matrix_exp(beta[:, None, None] * so3_generators64(l)[0])  # D^l_x(β), (nb, n, n)
        T = math.sqrt(n) * torch.einsum("sip,bpq,tqj->stijb", M, dx, M)  # (S, S, n, n, nb)
        nz = T.abs().amax(-1) > 1e-12
        for s, t, i, j in nz.nonzero().tolist():
            entries[t * S + s].append((off + i * n + j, T[s, t, i, j]))
        off += n * n
    dim = off
    K = max(len(e) for e in entries)
    nb = beta.numel()
    index = torch.full((S * S, K), dim, dtype=torch.long)
    t_beta = torch.zeros(S * S, nb, K, dtype=torch.float64)
    for st, e in enumerate(entries):
        for q, (d, w) in enumerate(e):
            index[st, q] = d
            t_beta[st, :, q] = w
    t_beta_qw = t_beta.transpose(1, 2) * qw.to(torch.float64)
    k = torch.arange(-L, L + 1, dtype=torch.float64)
    ka = alpha.to(torch.float64)[:, None] * k.abs()
    phi = torch.where(k >= 0, torch.cos(ka), torch.sin(ka))
    return index, t_beta, t_beta_qw.contiguous(), phi


def fourier_grid(
    x: torch.Tensor, index: torch.Tensor, t_beta: torch.Tensor, phi: torch.Tensor
) -> torch.Tensor:
    """Signal values on the grid, ``(N, dim) -> (N, na, nb, nc)`` (α, β, γ), without blocking.

    Reference helper (tests, small inputs): ``f(α_a, β_b, γ_c)`` with the tables of
    :func:`fourier_tables` (``t_beta`` unscaled gives ``Σ_l √(2l+1) Σ_ij x_l[i, j] D^l[i, j]``).
    """
    N = x.shape[0]
    S = phi.shape[1]
    xt = torch.cat([x.T, x.new_zeros(1, N)], 0)
    A = torch.bmm(t_beta, xt[index.flatten()].view(S * S, index.shape[1], N))  # (S_t·S_s, nb, N)
    A = A.view(S, S, -1, N)  # (t, s, b, n)
    return torch.einsum("as,ct,tsbn->nabc", phi, phi, A)


def _block_pass(
    xt: torch.Tensor,
    index: torch.Tensor,
    t_in: torch.Tensor,
    t_out: torch.Tensor,
    phi: torch.Tensor,
    pointwise,
    work: torch.Tensor,
    f1: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block of signals through ``coefficients -> grid -> pointwise -> coefficients``.

    Parameters
    ----------
    xt : (dim + 1, n)
        Coefficients of ``n`` signals (transposed), last row zero (the padding slot of ``index``).
    index : (S², K) ; t_in : (S², nb, K) ; t_out : (S², K, nb)
        Gather indices and β tables (``A[st] = t_in[st] @ xt[index[st]]``; the output side is the
        transpose with ``t_out``).
    phi : (na, S)
        Real Fourier functions on the α (= γ) grid.
    pointwise : callable (grid, pre-activation grid or None) -> grid
        Applied to the grid values ``(nc, na·nb·n)`` (γ, then α, β, signal); may work in place.
    work : (>= (2·nc + S)·na·nb·n,)
        Scratch memory reused by every block (fresh multi-MB allocations page-fault on each use).
    f1 : (S, na·nb·n), optional
        The α-transformed coefficients of the forward pass, from which the backward pass
        recomputes the pre-activation grid; None in the forward pass.

    Returns
    -------
    out : (dim, n)
    f1 : (S, na·nb·n)
        The α-transformed input (what the forward pass saves for the backward).
    """
    dim = xt.shape[0] - 1
    n = xt.shape[1]
    S2, nb, K = t_in.shape
    S = phi.shape[1]
    M = nb * n
    g = xt.index_select(0, index.flatten()).view(S2, K, n)
    A = torch.bmm(t_in, g).view(S, S, M)  # (S_t, S_s, nb·n)
    a1 = torch.matmul(phi, A).view(S, -1)  # (S_t, na·M): α inverse DFT
    na, G = phi.shape[0], a1.shape[1]
    grid = torch.mm(phi, a1, out=work[: na * G].view(na, G))  # (nc, na·M): γ inverse DFT
    pre = None
    if f1 is not None:  # backward: pre-activation grid of the forward pass
        pre = torch.mm(phi, f1, out=work[na * G : 2 * na * G].view(na, G))
    else:
        f1 = a1
    h = pointwise(grid, pre)
    h1 = torch.mm(phi.T, h, out=work[2 * na * G : (2 * na + S) * G].view(S, G)).view(S, -1, M)  # γ DFTᵀ
    H = torch.matmul(phi.T, h1).view(S2, nb, n)  # (S_t·S_s, nb, n): α DFTᵀ
    y = torch.bmm(t_out, H)  # (S², K, n)
    out = xt.new_zeros(dim + 1, n).index_add_(0, index.flatten(), y.view(-1, n))
    return out[:dim], f1


def _work_size(phi: torch.Tensor, t_beta: torch.Tensor, n: int) -> int:
    na, S = phi.shape
    return (2 * na + S) * na * t_beta.shape[1] * max(n, 1)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the enclosed torch operations on ``n`` intra-op threads (None: unchanged)."""
    old = torch.get_num_threads()
    if n is None or int(n) == old:
        yield
        return
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def block_size(grid_points: int, n: int, target: int = 1 << 19) -> int:
    """Signals per block so that a block's grid holds about ``target`` values (stays in cache)."""
    return max(1, min(n, target // grid_points))


class FourierActivation(torch.autograd.Function):
    """``(N, dim)`` coefficients -> grid -> ``act`` -> quadrature projection, with a hand-written backward.

    Signals are processed in blocks of ``block`` so that the grid (``32 r³`` values per signal) is
    never materialised for the whole batch; the backward recomputes each block's pre-activation
    grid from the saved α-transformed coefficients (13/40 of the grid's size at r = 10, lmax 6)
    instead of saving the grid. ``threads``: intra-op threads for both passes (None: unchanged).
    """

    @staticmethod
    def forward(ctx, x, index, t_beta, t_beta_qw, phi, act, is_relu, block, threads):
        with torch_threads(threads):
            return FourierActivation._forward(
                ctx, x, index, t_beta, t_beta_qw, phi, act, is_relu, block, threads
            )

    @staticmethod
    def _forward(ctx, x, index, t_beta, t_beta_qw, phi, act, is_relu, block, threads):
        N, dim = x.shape
        xt = torch.cat([x.T, x.new_zeros(1, N)], 0)  # (dim + 1, N)
        if is_relu:

            def pointwise(grid, _pre):
                return grid.clamp_(min=0)

        else:

            def pointwise(grid, _pre):
                return act(grid)

        out = x.new_empty(dim, N)
        f1s = []
        work = x.new_empty(_work_size(phi, t_beta, min(block, N)))
        for n0 in range(0, N, block):
            o, f1 = _block_pass(xt[:, n0 : n0 + block], index, t_beta, t_beta_qw, phi, pointwise, work)
            out[:, n0 : n0 + block] = o
            f1s.append(f1)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(index, t_beta, t_beta_qw, phi, *f1s)
            ctx.act, ctx.is_relu, ctx.block, ctx.threads = act, is_relu, block, threads
        return out.T

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        with torch_threads(ctx.threads):
            return FourierActivation._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad):
        index, t_beta, t_beta_qw, phi, *f1s = ctx.saved_tensors
        N, dim = grad.shape
        gt = torch.cat([grad.T, grad.new_zeros(1, N)], 0)
        act = ctx.act
        if ctx.is_relu:

            def pointwise(g, pre):
                return torch.ops.aten.threshold_backward.grad_input(g, pre, 0, grad_input=g)

        else:

            def pointwise(g, pre):
                with torch.enable_grad():
                    p = pre.detach().requires_grad_()
                    return torch.autograd.grad(act(p), p, g)[0]

        gx = grad.new_empty(dim, N)
        t_in, t_out = t_beta_qw.transpose(1, 2), t_beta.transpose(1, 2)
        work = grad.new_empty(_work_size(phi, t_beta, min(ctx.block, N)))
        for i, n0 in enumerate(range(0, N, ctx.block)):
            xb = gt[:, n0 : n0 + ctx.block]
            o, _ = _block_pass(xb, index, t_in, t_out, phi, pointwise, work, f1s[i])
            gx[:, n0 : n0 + ctx.block] = o
        return gx.T, None, None, None, None, None, None, None, None
