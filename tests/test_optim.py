"""The project's AdamW against torch.optim.AdamW, and the LR schedules."""

from __future__ import annotations

import copy

import pytest
import torch

from mtbert import AdamW
from mtbert.optim import LR_SCHEDULES, adamw, compiled_update, make_lr_scheduler, make_optimizer
from mtbert.optim.compiled_update import CompiledUpdate


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
    # torch scales p by the fp32-rounded factor (1 − lr·wd); ours adds lr·wd·p to the step (exact to
    # the step's precision): with decay the two differ by that rounding, a few 1e-6 after 100 steps
    tolerance = 1e-5 if weight_decay else 1e-6
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max() < tolerance


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


def float64_adamw_trajectory(start, lr, weight_decay, steps=1000, seed=1):
    """A tiny linear regression trained by a textbook float64 AdamW (decay as p − lr·wd·p): its final
    weights and the gradient of every step, so that an fp32 optimizer can be fed the same gradients
    and judged on its own arithmetic."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(256, start.shape[0], generator=generator, dtype=torch.float64)
    y = x @ target_weights(start.shape)
    p, m, v = start.double().clone(), torch.zeros_like(start, dtype=torch.float64), torch.zeros_like(start, dtype=torch.float64)
    grads = []
    for t in range(1, steps + 1):
        g = 2 * x.T @ (x @ p - y) / len(x)
        grads.append(g)
        p -= lr * weight_decay * p
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p -= lr * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-6)
    return p, grads


def target_weights(shape):
    return 1 + torch.rand(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def fp32_adamw_error(weight_decay, compiled=False):
    """‖p_fp32 − p_float64‖ / ‖p_float64‖ after 1,000 steps at lr 1e-3 (weights in [1, 2], away from 0)."""
    start = (target_weights((32, 8)) + 0.4 * torch.rand(32, 8, generator=torch.Generator().manual_seed(3)) - 0.2).float()
    reference, grads = float64_adamw_trajectory(start, 1e-3, weight_decay)
    param = torch.nn.Parameter(start.clone())
    optimizer = AdamW([param], lr=1e-3, weight_decay=weight_decay, compiled=compiled)
    for g in grads:
        param.grad = g.float()
        optimizer.step()
    return ((param.detach().double() - reference).norm() / reference.norm()).item()


@pytest.fixture
def every_tensor_compiled(monkeypatch):
    """The compiled update for tensors of any size, from a fresh bookkeeping (no earlier signatures)."""
    update = CompiledUpdate()
    monkeypatch.setattr(compiled_update, "LARGE", 1)
    monkeypatch.setattr(adamw, "COMPILED_UPDATE", update)
    return update


@pytest.mark.parametrize("compiled", [False, True])
def test_weight_decay_is_as_exact_as_the_adam_step_over_1000_steps(compiled, request):
    """lr·wd = 1e-7: the factor 1 − 1e-7 rounds to 1 − 1.19e-7 in fp32 (19% more decay than asked), a
    3e-5 relative error after 1,000 steps. Rounding p to fp32 a thousand times already costs ~1.6e-6
    without any decay (a random walk of half-ulp steps); the decay must add nothing to that floor."""
    if compiled:
        update = request.getfixturevalue("every_tensor_compiled")
    floor = fp32_adamw_error(0.0, compiled)
    with_decay = fp32_adamw_error(1e-4, compiled)
    if compiled:
        assert update.broken is None and update.signatures
    assert floor < 2e-6
    assert with_decay < 1.25 * floor, (with_decay, floor)


@pytest.mark.parametrize("compiled", [False, True])
def test_weight_decay_still_acts_when_lr_times_decay_is_1e_9(compiled, request):
    """With p ← p·(1 − 1e-9) the fp32 factor is exactly 1 and nothing decays. Fed the same gradients,
    runs with and without decay must drift apart by about lr·wd·p per step."""
    if compiled:
        request.getfixturevalue("every_tensor_compiled")
    torch.manual_seed(0)
    start = torch.rand(4096) + 1.0
    runs = {}
    for weight_decay in (0.0, 1e-6):
        param = torch.nn.Parameter(start.clone())
        optimizer = AdamW([param], lr=1e-3, weight_decay=weight_decay, compiled=compiled)
        generator = torch.Generator().manual_seed(5)
        for _ in range(1000):
            param.grad = torch.randn(param.shape, generator=generator)
            optimizer.step()
        runs[weight_decay] = param.detach().double()
    drift = (runs[0.0] - runs[1e-6]) / runs[0.0]  # expected: 1000 steps × 1e-9 = 1e-6 relative
    assert drift.mean().item() == pytest.approx(1e-6, rel=0.2)


def large_and_small_params(seed=0):
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(300, 256)), torch.nn.Parameter(torch.randn(7)),
            torch.nn.Parameter(torch.randn(1 << 17))]


def train_both(weight_decay, steps=30):
    """The same gradients through the compiled and the foreach update: (compiled params, optimizer), (foreach ...)."""
    runs = []
    for compiled in (True, False):
        params = large_and_small_params()
        runs.append((params, AdamW(params, lr=1e-2, weight_decay=weight_decay, compiled=compiled)))
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        grads = [torch.randn(p.shape, generator=generator) for p in runs[0][0]]
        for params, optimizer in runs:
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
    return runs


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_compiled_update_agrees_with_the_foreach_update(weight_decay, monkeypatch):
    update = CompiledUpdate()
    monkeypatch.setattr(adamw, "COMPILED_UPDATE", update)
    (compiled, first), (plain, second) = train_both(weight_decay)
    assert update.broken is None
    assert update.signatures == {(((300, 256), "cpu"), ((1 << 17,), "cpu"))}  # the large two; the small on foreach
    for a, b, start in zip(compiled, plain, large_and_small_params()):
        assert (a - b).abs().max() < 2e-6  # about an ulp of values near 2 after 30 steps
        assert (a - start).abs().max() > 0.1  # it moved
    for a, b in zip(compiled, plain):  # the state is the same shape of thing: a checkpoint resumes either way
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(first.state[a][key], second.state[b][key], rtol=1e-5, atol=1e-6)
        assert first.state[a]["step"] == second.state[b]["step"] == 30


def test_a_failed_compile_warns_once_and_the_foreach_update_carries_on(monkeypatch, caplog, no_compiler):
    update = CompiledUpdate()
    monkeypatch.setattr(adamw, "COMPILED_UPDATE", update)
    with caplog.at_level("WARNING", logger="mtbert"):
        (compiled, _), (plain, _) = train_both(0.01, steps=5)
    assert update.broken == "RuntimeError: no C++ compiler found"
    assert sum("compiling the fused update failed" in r.message for r in caplog.records) == 1
    assert all(torch.equal(a, b) for a, b in zip(compiled, plain))  # the foreach path did every update


def test_past_the_signature_limit_new_shapes_take_the_foreach_path(monkeypatch):
    update = CompiledUpdate()
    monkeypatch.setattr(adamw, "COMPILED_UPDATE", update)
    monkeypatch.setattr(compiled_update, "MAX_SIGNATURES", 0)
    (compiled, _), (plain, _) = train_both(0.01, steps=3)
    assert update.signatures == set() and update.kernel.compiled is None
    assert all(torch.equal(a, b) for a, b in zip(compiled, plain))


def test_the_environment_switch_turns_the_automatic_choice_off(monkeypatch):
    update = CompiledUpdate()
    assert update.wanted(None, torch.device("cpu")) or compiled_update.os.environ.get("MTBERT_COMPILED_ADAMW") == "0"
    monkeypatch.setenv("MTBERT_COMPILED_ADAMW", "0")
    assert not update.wanted(None, torch.device("cpu"))
    assert update.wanted(True, torch.device("cpu"))
    assert not update.wanted(None, torch.device("meta"))  # auto means a CPU only


def test_layer_wise_lr_decay_gives_each_encoder_depth_its_rate(tiny_checkpoint):
    from mtbert.config import load_config
    from mtbert.train.builder import build_model, build_optimizer

    config = load_config("recipes/multitask-base.yaml", [f"model.name={tiny_checkpoint}", "train.lr=1e-3",
                                                         "train.layer_lr_decay=0.5", "train.weight_decay=0.01"])
    model = build_model(config)
    optimizer, _ = build_optimizer(config, model, total_steps=10)
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    # two layers: the top (1) at lr, layer 0 at lr/2, the embeddings at lr/4; heads at lr
    assert rate[id(named["encoder.layers.1.attention.qkv.weight"])] == pytest.approx(1e-3)
    assert rate[id(named["encoder.layers.0.attention.qkv.weight"])] == pytest.approx(5e-4)
    assert rate[id(named["encoder.embeddings.word_embeddings.weight"])] == pytest.approx(2.5e-4)
    head = next(n for n in named if n.startswith("heads."))
    assert rate[id(named[head])] == pytest.approx(1e-3)
    assert decay[id(named["encoder.layers.0.attention.qkv.bias"])] == 0.0
    assert decay[id(named["encoder.layers.0.attention.qkv.weight"])] == 0.01
    assert len(rate) == sum(1 for p in model.parameters() if p.requires_grad)
