"""The project's AdamW against torch.optim.AdamW, and the LR schedules."""

from __future__ import annotations

import copy

import pytest
import torch

from mtbert import AdamW
from mtbert.optim import LR_SCHEDULES, make_lr_scheduler, make_optimizer


def make_params(seed=0):
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(5, 4)), torch.nn.Parameter(torch.randn(7))]


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_matches_torch_adamw_over_100_steps(weight_decay):
    ours, theirs = make_params(), make_params()
    options = dict(lr=1e-2, betas=(0.9, 0.98), eps=1e-6, weight_decay=weight_decay)
    optimizers = [AdamW(ours, **options), torch.optim.AdamW(theirs, **options)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(100):
        grads = [torch.randn(p.shape, generator=generator) for p in ours]
        for params, optimizer in zip((ours, theirs), optimizers):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max() < 1e-6


def test_parameters_without_gradients_keep_their_own_bias_correction():
    ours, theirs = make_params(), make_params()
    optimizers = [AdamW(ours, lr=1e-2), torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.0)]
    for step in range(20):
        for params, optimizer in zip((ours, theirs), optimizers):
            params[0].grad = torch.full(params[0].shape, 0.5)
            params[1].grad = torch.full(params[1].shape, -1.0) if step % 3 == 0 else None
            optimizer.step()
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max() < 1e-6


def test_state_dict_round_trip_continues_identically():
    a, b = make_params(), make_params()
    first, second = AdamW(a, lr=1e-2), AdamW(b, lr=1e-2)
    for p, q in zip(a, b):
        p.grad = torch.ones_like(p)
        q.grad = torch.ones_like(q)
    first.step()
    second.step()
    restored = AdamW(b, lr=1e-2)
    restored.load_state_dict(copy.deepcopy(first.state_dict()))  # as a save to disk would
    for p, q in zip(a, b):
        p.grad = torch.full_like(p, 2.0)
        q.grad = torch.full_like(q, 2.0)
    first.step()
    restored.step()
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_bad_hyper_parameters_are_refused():
    with pytest.raises(ValueError):
        AdamW(make_params(), lr=-1)
    with pytest.raises(ValueError):
        AdamW(make_params(), betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("sgdx", make_params())


def test_warmup_then_linear_decay_and_cosine():
    linear = LR_SCHEDULES["linear"](10, 110)
    assert linear(0) == pytest.approx(0.1) and linear(9) == pytest.approx(1.0)
    assert linear(60) == pytest.approx(0.5) and linear(110) == 0.0
    cosine = LR_SCHEDULES["cosine"](0, 100)
    assert cosine(0) == pytest.approx(1.0) and cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)
    optimizer = AdamW(make_params(), lr=1.0)
    scheduler = make_lr_scheduler(optimizer, "linear", 2, 4)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.5, 1.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="unknown lr schedule"):
        make_lr_scheduler(optimizer, "exp", 0, 1)
