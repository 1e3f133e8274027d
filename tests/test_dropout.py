"""The CPU dropout: its drop rate and scale, its gradient, and the attention path that uses it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtbert.bert.dropout import STEPS, Dropout, dropout, keep_scale
from mtbert.bert.model import attention_with_dropout


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
