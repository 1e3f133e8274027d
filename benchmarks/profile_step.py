"""Where a training step and an inference batch spend their time, by operator class. (Not named profile.py:
that would shadow the standard library's profile module, which cProfile and torch import, for every script here.)

    python benchmarks/profile_step.py [--models all-MiniLM-L6-v2,bert-base] [--batch 32] [--length 64] [--steps 3]

Our encoder and AdamW (weight decay 0.01), bf16 autocast where the CPU has native bf16, a batch of
``--batch`` x ``--length`` tokens without padding, dropout on; torch.profiler over ``--steps`` steps after
two warm-up steps. Every aten operator's self time goes to one class (matrix products, attention,
norms, activations, dropout, optimizer, casts and copies, embeddings, other); Python and framework
overhead is the wall time no operator accounts for. The map every speed change is judged on.
"""

from __future__ import annotations

import argparse
import re
import time

import torch
from torch.profiler import ProfilerActivity, profile

from common import machine, markdown_table, save
from mtbert import AdamW, BertConfig, BertModel
from mtbert.precision import resolve_precision

CLASSES = [  # (class, pattern over aten operator names), first match wins
    ("matrix products", r"^aten::(mm|addmm|bmm|matmul|linear|baddbmm|_addmm_activation)$"),
    ("attention (softmax, masks)", r"softmax|scaled_dot_product|masked_fill|isneginf|^aten::where$"),
    ("norms", r"layer_norm"),
    ("activations", r"gelu|tanh"),
    ("dropout", r"bernoulli|dropout|^aten::(randint|random_|ge)$"),
    # the encoder is not compiled here, so the one compiled graph is AdamW's update of its large tensors
    ("optimizer", r"^aten::_foreach|^aten::(sqrt|lerp_|addcdiv_|addcmul_)$|Optimizer|CompiledFxGraph"),
    ("casts and copies", r"^aten::(_to_copy|copy_|to|clone|contiguous)$"),
    ("embeddings", r"embedding|index_select"),
]


def classify(name: str) -> str:
    for label, pattern in CLASSES:
        if re.search(pattern, name):
            return label
    return "other operators"


def build(name: str) -> BertModel:
    if name == "all-MiniLM-L6-v2":
        return BertModel.from_pretrained(name)
    torch.manual_seed(0)
    return BertModel(BertConfig())  # bert-base sized, random weights


def profile_mode(model: BertModel, train: bool, batch: int, length: int, steps: int) -> dict:
    precision = resolve_precision("auto", torch.device("cpu"))
    ids = torch.randint(1000, 20000, (batch, length))
    mask = torch.ones_like(ids)
    optimizer = AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    model.train(train)

    def step():
        if train:
            with precision.autocast():
                out = model(input_ids=ids, attention_mask=mask)
            (out.last_hidden_state.float().pow(2).mean() + out.pooler_output.float().mean()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), precision.autocast():
                model(input_ids=ids, attention_mask=mask)

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - started) / steps
    by_class: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith(("aten::", "Optimizer", "## Call CompiledFxGraph")):
            label = classify(event.key)
            by_class[label] = by_class.get(label, 0.0) + event.self_cpu_time_total / 1e6 / steps
    by_class["Python and framework overhead"] = max(0.0, wall - sum(by_class.values()))
    return {"wall_seconds": wall, "tokens_per_second": batch * length / wall, "classes": by_class,
            "precision": precision.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="all-MiniLM-L6-v2,bert-base")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--name", default="profile")
    args = parser.parse_args()
    records, tables = {}, []
    for name in args.models.split(","):
        model = build(name)
        for mode, train in (("training step", True), ("inference batch", False)):
            record = profile_mode(model, train, args.batch, args.length, args.steps)
            records[f"{name} {mode}"] = record
            wall = record["wall_seconds"]
            rows = [[label, f"{1000 * seconds:.1f}", f"{100 * seconds / wall:.0f}%"]
                    for label, seconds in sorted(record["classes"].items(), key=lambda kv: -kv[1])]
            rows.append(["whole step", f"{1000 * wall:.1f}", f"{record['tokens_per_second']:,.0f} tok/s"])
            tables.append(f"**{name}, {mode}** ({record['precision']})\n\n"
                          + markdown_table(["operator class", "ms", "share"], rows))
    info = machine(torch.device("cpu"))
    print(f"\nMachine: {info['device']} (1-min load {info.get('load_average_1min')}); batch {args.batch} x "
          f"{args.length} tokens, no padding; mean of {args.steps} profiled steps\n")
    print("\n\n".join(tables))
    save(args.name, {"machine": info, "batch": args.batch, "length": args.length, "records": records,
                     "tables": tables})


if __name__ == "__main__":
    main()
