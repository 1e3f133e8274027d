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
