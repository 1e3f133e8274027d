"""How fast can an encoder's inference batch be at all? Its matrix products alone, against ours and transformers.

An inference batch of our encoder and of ``transformers.BertModel`` runs the same matrix products through
the same kernels (the linear layers, attention's two batched products); everything else (embeddings,
softmax and masks, norms, GELU, casts) is what a faster encoder could shed. Timing those products alone,
with their weights and inputs already in the autocast dtype, gives the floor no eager encoder on this
machine goes under, and ``transformers' time / floor`` the largest speed-up over transformers that any
work on the rest could bring. In one run, on the batch ``encoder_speed.py`` uses (32 x 64, no padding):

    python benchmarks/inference_floor.py [--models all-MiniLM-L6-v2,bert-base] [--repeats 10]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from common import machine, markdown_table, save, timed
from encoder_speed import BATCH_SHAPE, fixed_batch, load_pair, measure
from mtbert import BertModel
from mtbert.precision import resolve_precision


def matrix_products_alone(model: BertModel, batch_size: int, length: int, dtype: torch.dtype):
    """A function running the forward pass's matrix products and nothing else, at its shapes and dtype.

    Every linear layer of the encoder (the fused query/key/value projection, attention's output, the two
    feed-forward layers) on ``batch_size * length`` token vectors, each layer's two attention products
    (scores and weighted values) per head, and the pooler on one vector per sequence. Inputs and weights
    are made before timing, so no cast or copy is inside it.
    """
    config = model.config
    tokens = batch_size * length
    heads = config.num_attention_heads
    head_size = config.hidden_size // heads
    products = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            rows = batch_size if name.startswith("pooler") else tokens
            weight = module.weight.detach().to(dtype)
            bias = None if module.bias is None else module.bias.detach().to(dtype)
            products.append((torch.randn(rows, module.in_features, dtype=dtype), weight, bias))
    query = torch.randn(batch_size * heads, length, head_size, dtype=dtype)
    key_t = torch.randn(batch_size * heads, head_size, length, dtype=dtype)
    probabilities = torch.randn(batch_size * heads, length, length, dtype=dtype)

    @torch.no_grad()
    def run():
        for inputs, weight, bias in products:
            F.linear(inputs, weight, bias)
        for _ in range(config.num_hidden_layers):
            torch.bmm(query, key_t)
            torch.bmm(probabilities, query)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="all-MiniLM-L6-v2,bert-base")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--name", default="inference_floor")
    args = parser.parse_args()
    device = torch.device("cpu")
    precision = resolve_precision("auto", device)
    dtype = precision.dtype or torch.float32
    batch_size, length = BATCH_SHAPE
    batch = fixed_batch(device)
    tokens = batch_size * length
    rows, records = [], []
    for name in args.models.split(","):
        ours, theirs = load_pair(name, device)
        seconds = {"ours": measure(ours, None, batch, precision, args.repeats, train=False),
                   "transformers": measure(theirs, None, batch, precision, args.repeats, train=False),
                   "matrix products alone": timed(matrix_products_alone(ours, batch_size, length, dtype),
                                                  args.repeats, device)}
        record = {"model": name, "precision": precision.name,
                  **{f"{label} tok/s": tokens / s for label, s in seconds.items()},
                  "ours over transformers": seconds["transformers"] / seconds["ours"],
                  "ceiling over transformers": seconds["transformers"] / seconds["matrix products alone"]}
        records.append(record)
        rows.append([name, precision.name, *(f"{tokens / seconds[k]:,.0f}" for k in seconds),
                     f"{record['ours over transformers']:.2f}x", f"{record['ceiling over transformers']:.2f}x"])
        print(rows[-1], flush=True)
    info = machine(device)
    table = markdown_table(["model", "precision", "ours tok/s", "transformers tok/s", "matrix products alone tok/s",
                            "ours / transformers", "ceiling / transformers"], rows)
    print(f"\nMachine: {info['device']} (1-min load {info.get('load_average_1min')}); inference, batch "
          f"{batch_size} x {length} tokens, no padding; medians of {args.repeats}\n")
    print(table)
    save(args.name, {"machine": info, "batch": [batch_size, length], "repeats": args.repeats, "results": records,
                     "table": table})


if __name__ == "__main__":
    main()
