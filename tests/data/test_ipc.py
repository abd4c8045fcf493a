"""cesped.data.ipc: small tensors pickled by value round-trip exactly; large ones stay shared."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.multiprocessing.reductions import reduce_tensor

from cesped.data.ipc import BY_VALUE_MAX_BYTES, reduce_tensor_small_by_value


def _round_trip(t):
    fn, args = reduce_tensor_small_by_value(t)
    return fn(*pickle.loads(pickle.dumps(args)))


@pytest.mark.parametrize(
    "t",
    [
        torch.randn(32, 3, 3, dtype=torch.float32),
        torch.randn(32, dtype=torch.float64),
        torch.arange(-5, 27, dtype=torch.int64),
        torch.tensor([True, False, True]),
        torch.randn(4, 5, dtype=torch.complex64).conj(),  # a lazily conjugated view
        torch.randn(6, 4).t(),  # not contiguous
        torch.randn(6, 4)[:, 1],  # an offset, strided view of a larger storage
        torch.tensor(3.5, dtype=torch.float64),  # 0-d
        torch.empty(0, 3),
    ],
)
def test_small_tensors_round_trip_by_value(t):
    fn, _ = reduce_tensor_small_by_value(t)
    assert fn is not reduce_tensor(t)[0]  # not through shared memory
    ref = t.resolve_conj().clone()
    out = _round_trip(t)
    assert out.dtype == t.dtype and out.shape == t.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    out.zero_()  # writable, and its own memory
    assert torch.equal(t.resolve_conj(), ref)


def test_large_or_autograd_tensors_go_to_torch():
    big = torch.zeros(BY_VALUE_MAX_BYTES // 4 + 1, dtype=torch.float32)
    assert reduce_tensor_small_by_value(big)[0] is reduce_tensor(big)[0]
    at_limit = torch.zeros(BY_VALUE_MAX_BYTES // 4, dtype=torch.float32)
    assert reduce_tensor_small_by_value(at_limit)[0] is not reduce_tensor(at_limit)[0]
    leaf = torch.zeros(3, requires_grad=True)
    assert reduce_tensor_small_by_value(leaf)[0] is reduce_tensor(leaf)[0]
    half = torch.zeros(3, dtype=torch.bfloat16)  # no NumPy dtype
    assert reduce_tensor_small_by_value(half)[0] is reduce_tensor(half)[0]
