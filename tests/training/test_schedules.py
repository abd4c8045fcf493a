"""Warm-up + cosine learning-rate schedule: the analytic profile."""

from __future__ import annotations

import math

import pytest
import torch

from cesped.training.schedules import warmup_cosine


def _lrs(n_steps, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, **kw)
    out = []
    for _ in range(n_steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_profile():
    lrs = _lrs(120, total_steps=100, warmup_steps=10, min_factor=0.1)
    assert lrs[0] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(0.0))))  # 1/10 of the way up
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 9 / 100)))
    assert lrs[50] == pytest.approx(0.1 + 0.9 * 0.5)  # half way: the mean of start and end
    assert lrs[100] == pytest.approx(0.1) and lrs[119] == pytest.approx(0.1)  # held at the floor
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone after the warm-up


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(total_steps=0), "total_steps"),
        (dict(total_steps=10, warmup_steps=-1), "warmup_steps"),
        (dict(total_steps=10, min_factor=1.5), "min_factor"),
    ],
)
def test_bad_arguments(kw, match):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=match):
        warmup_cosine(opt, **kw)
