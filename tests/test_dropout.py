"""The CPU dropout: its drop rate and scale, its gradient, the compiled hashed mask and its eager
fallback, and the attention path that uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mtbert.bert import dropout as dropout_module
from mtbert.bert import hashed_dropout as hashed
from mtbert.bert.dropout import STEPS, Dropout, dropout, keep_scale
from mtbert.bert.model import attention_with_dropout
from mtbert.compiled_kernel import CompiledKernel


@pytest.fixture
def hashed_on(monkeypatch):
    """The compiled hashed dropout, which runs only when asked for."""
    monkeypatch.setenv(hashed.SWITCH, "1")

MASK64 = (1 << 64) - 1


def splitmix64_outputs(seed: int, count: int) -> list[int]:
    """The first ``count`` outputs of SplitMix64 from ``seed``, in plain Python integers (the reference)."""
    state, out = seed & MASK64, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        out.append(z ^ (z >> 31))
    return out


def test_the_mask_drops_p_rounded_to_a_65536th_and_scales_the_rest():
    torch.manual_seed(0)
    scale = keep_scale(torch.Size([400, 1000]), 0.1, torch.float32, torch.device("cpu"))
    dropped = round(0.1 * STEPS) / STEPS
    values = scale.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - dropped))
    share = (scale == 0).float().mean().item()
    assert share == pytest.approx(dropped, abs=0.003)  # 400k draws: 4.7 standard errors
    rows = (scale == 0).float().mean(1)
    assert rows.std().item() < 0.02  # no structure across the 16-bit lanes of a word


def test_dropout_is_the_identity_in_eval_and_its_gradient_is_the_mask():
    layer = Dropout(0.25)
    x = torch.randn(8, 33, requires_grad=True)
    layer.eval()
    assert layer(x) is x
    layer.train()
    y = layer(x)
    y.sum().backward()
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] * (STEPS / (STEPS - round(0.25 * STEPS))))
    assert torch.allclose(x.grad, (y != 0).float() * (STEPS / (STEPS - round(0.25 * STEPS))))
    assert dropout(x, 0.0, True) is x and torch.equal(dropout(x, 1.0, True), torch.zeros_like(x))
    torch.manual_seed(0)
    assert torch.isfinite(dropout(x, 1 - 1e-6, True)).all()  # rounds to dropping all 65,536: no 1/0 scale


def test_attention_with_dropout_is_sdpa_when_nothing_is_dropped():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 4, 7, 8) for _ in range(3))
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[0, ..., 5:] = False
    ours = attention_with_dropout(q, k, v, mask, 1e-9)  # rounds to dropping nothing
    assert torch.allclose(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6)


def test_bf16_attention_takes_the_probabilities_an_fp32_softmax_rounds_to():
    """Under bf16 the softmax runs in bf16 (no fp32 copies): forward, the product with V must see exactly the
    probabilities of an fp32 softmax rounded to bf16; backward, the gradients must be as close to fp32 ones."""
    torch.manual_seed(2)
    full = [3 * torch.randn(2, 4, 33, 8) for _ in range(3)]
    mask = torch.ones(2, 1, 1, 33, dtype=torch.bool)
    mask[1, ..., 20:] = False
    upstream = torch.randn(2, 4, 33, 8)

    def attend(softmax, dtype):
        q, k, v = (t.detach().to(dtype).requires_grad_() for t in full)
        scores = (torch.matmul(q, k.transpose(-1, -2)) * 8 ** -0.5).masked_fill(~mask, float("-inf"))
        out = torch.matmul(softmax(scores).to(dtype), v)
        out.backward(upstream.to(dtype))
        return out, [t.grad.float() for t in (q, k, v)]

    reference, exact = attend(lambda s: torch.softmax(s, -1), torch.float32)
    cast, cast_grads = attend(lambda s: torch.softmax(s, -1, dtype=torch.float32), torch.bfloat16)
    q, k, v = (t.detach().to(torch.bfloat16).requires_grad_() for t in full)
    ours = attention_with_dropout(q, k, v, mask, 1e-9)
    ours.backward(upstream.to(torch.bfloat16))
    assert torch.equal(ours, cast)
    for grad, cast_grad, true in zip((q.grad.float(), k.grad.float(), v.grad.float()), cast_grads, exact):
        assert (grad - true).norm() <= 1.25 * (cast_grad - true).norm()
    assert (ours.float() - reference).norm() / reference.norm() < 1e-2


@pytest.mark.parametrize("seed", [0, 12345, -(1 << 63), (1 << 63) - 1, -987654321987])
def test_the_hashed_draws_are_the_top_16_bits_of_splitmix64(seed):
    expected = [value >> 48 for value in splitmix64_outputs(seed, 300)]
    assert hashed.draws(torch.tensor(seed), 300, torch.device("cpu")).tolist() == expected
    out = hashed.apply_mask(torch.ones(300), torch.tensor(seed), torch.tensor(20000), torch.tensor(1.5))
    assert hashed.KERNEL.broken is None  # this machine has a compiler: the loop was the compiled one
    assert out.tolist() == [1.5 if draw >= 20000 else 0.0 for draw in expected]


SAME_AS_EAGER = """
import torch
from mtbert.bert import hashed_dropout as hashed
for dtype in (torch.float32, torch.bfloat16):
    for count in (5, 16, 17, 4096, 100_003):
        for seed in (7, -(1 << 63), (1 << 63) - 1):
            flat = torch.randn(count).to(dtype)
            args = (torch.tensor(seed), torch.tensor(6554), torch.tensor(1.1))
            assert torch.equal(hashed.apply_mask(flat, *args), hashed.masked_scale(flat, *args)), (dtype, count, seed)
assert hashed.KERNEL.broken is None
print("same")
"""


@pytest.mark.parametrize("threads", ["1", "2"])
def test_the_compiled_mask_is_the_eager_arithmetic_on_one_thread_and_two(threads, tmp_path):
    """In a process of its own, since inductor writes a different loop for one thread (where a constant
    multiplier once made it compute wrong draws past the first 16 elements)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, "-c", SAME_AS_EAGER], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "same", result.stderr[-3000:]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_compiled_mask_is_the_eager_arithmetic_bit_for_bit(dtype):
    torch.manual_seed(3)
    flat = torch.randn(100_003).to(dtype)
    args = (torch.tensor(-42), torch.tensor(round(0.1 * STEPS)), torch.tensor(STEPS / (STEPS - round(0.1 * STEPS))))
    out = hashed.apply_mask(flat, *args)
    assert hashed.KERNEL.broken is None and out.dtype == dtype
    assert torch.equal(out, hashed.masked_scale(flat, *args))
    kept = out != 0
    assert torch.equal(out[kept], (flat[kept].float() * args[2]).to(dtype))  # scaled in fp32, rounded once


def test_hashed_dropout_drops_p_with_no_structure_and_reproduces_under_a_seed(hashed_on):
    x = torch.ones(400, 1000)
    torch.manual_seed(0)
    first = dropout(x, 0.1, True)
    again = dropout(x, 0.1, True)
    torch.manual_seed(0)
    assert torch.equal(dropout(x, 0.1, True), first)  # torch's seed decides the mask
    assert not torch.equal(first, again)  # and each call draws a new one
    dropped = first == 0
    assert dropped.float().mean().item() == pytest.approx(round(0.1 * STEPS) / STEPS, abs=0.003)
    assert dropped.float().mean(1).std().item() < 0.02 and dropped.float().mean(0).std().item() < 0.03
    flat = dropped.flatten().float()
    neighbours = torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()
    calls = torch.corrcoef(torch.stack([flat, (again == 0).flatten().float()]))[0, 1].item()
    assert abs(neighbours) < 0.01 and abs(calls) < 0.01  # 400k pairs: 1/sqrt(n) is 0.0016


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_backward_pass_recomputes_the_forward_mask(dtype, hashed_on):
    torch.manual_seed(4)
    x = torch.randn(6, 4, 33, 17).to(dtype).requires_grad_()
    upstream = torch.randn(6, 4, 33, 17).to(dtype)
    y = dropout(x, 0.3, True)
    y.backward(upstream)
    scale = STEPS / (STEPS - round(0.3 * STEPS))
    kept = y != 0
    assert 0.6 < kept.float().mean().item() < 0.8
    assert torch.equal(x.grad, torch.where(kept, (upstream.float() * scale).to(dtype), torch.zeros((), dtype=dtype)))


def test_the_gradient_and_the_gradient_of_the_gradient_check_out():
    mask = (torch.tensor(99), torch.tensor(round(0.4 * STEPS)), torch.tensor(STEPS / (STEPS - round(0.4 * STEPS))))
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    function = lambda t: hashed._HashedDropout.apply(t, *mask) ** 2  # noqa: E731 (squared: a non-zero second derivative)
    assert torch.autograd.gradcheck(function, (x,)) and torch.autograd.gradgradcheck(function, (x,))


def test_a_transposed_input_is_masked_in_its_logical_order(hashed_on):
    torch.manual_seed(5)
    x = torch.randn(40, 30)
    torch.manual_seed(6)
    ours = dropout(x.t(), 0.2, True)
    torch.manual_seed(6)
    assert torch.equal(ours, dropout(x.t().contiguous(), 0.2, True))


def test_without_a_compiler_dropout_warns_once_and_takes_the_eager_mask(monkeypatch, caplog, no_compiler, hashed_on):
    kernel = CompiledKernel(hashed.masked_scale, "dropout", "the hashed mask", "the eager mask", hashed.SWITCH,
                            default=False)
    monkeypatch.setattr(hashed, "KERNEL", kernel)
    monkeypatch.setattr(dropout_module, "KERNEL", kernel)
    x = torch.randn(50, 40, requires_grad=True)
    with caplog.at_level("WARNING", logger="mtbert"):
        torch.manual_seed(7)
        first = dropout(x, 0.25, True)  # the call that finds out: the hashed arithmetic, run eagerly
        second = dropout(x, 0.25, True)
    assert kernel.broken == "RuntimeError: no C++ compiler found"
    assert sum("compiling the hashed mask failed" in r.message for r in caplog.records) == 1
    torch.manual_seed(7)
    seed = torch.randint(-(1 << 63), (1 << 63) - 1, (), dtype=torch.int64)
    scale = torch.tensor(STEPS / (STEPS - round(0.25 * STEPS)))
    assert torch.equal(first, hashed.masked_scale(x.detach().reshape(-1), seed, torch.tensor(round(0.25 * STEPS)),
                                                  scale).view(50, 40))
    expected = x.detach() * keep_scale(x.shape, 0.25, x.dtype, x.device)  # the next draws, by the eager mask
    assert torch.equal(second, expected)
    (first.sum() + second.sum()).backward()
    assert torch.equal(x.grad, (first != 0) * scale + (second != 0) * scale)


@pytest.mark.parametrize("setting", [None, "0", "1"])
def test_the_eager_mask_is_the_default_and_the_switch_turns_the_hashed_one_on(monkeypatch, setting):
    if setting is None:
        monkeypatch.delenv(hashed.SWITCH, raising=False)
    else:
        monkeypatch.setenv(hashed.SWITCH, setting)
    x = torch.randn(30, 20)
    torch.manual_seed(8)
    ours = dropout(x, 0.1, True)
    torch.manual_seed(8)
    eager = x * keep_scale(x.shape, 0.1, x.dtype, x.device)
    assert torch.equal(ours, eager) == (setting != "1")
