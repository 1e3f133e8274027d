"""The inference floor benchmark times exactly the matrix products of an inference batch: the same work,
counted in FLOPs, as the encoder's linear layers and attention's two products per layer."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from inference_floor import matrix_products_alone  # noqa: E402
from mtbert import BertConfig, BertModel  # noqa: E402


def test_the_floor_runs_the_forward_pass_matrix_products_and_no_more():
    config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                        vocab_size=100)
    model = BertModel(config).eval()
    batch, length = 3, 10
    ids = torch.randint(0, 100, (batch, length))
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    # the counter sees the linear layers; the fused CPU attention kernel it does not count
    attention = config.num_hidden_layers * 2 * (2 * batch * length * length * config.hidden_size)
    with FlopCounterMode(display=False) as floor:
        matrix_products_alone(model, batch, length, torch.float32)()
    assert forward.get_total_flops() > 0
    assert floor.get_total_flops() == forward.get_total_flops() + attention
