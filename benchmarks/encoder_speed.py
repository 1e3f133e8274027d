"""Encoder speed: ours against transformers.BertModel on the same batches, in one run.

Training step = forward + backward + optimizer step (ours: mtbert.AdamW; transformers: torch.optim.AdamW,
what a plain loop would use). Inference = forward under no_grad. Batch 32 x 64 tokens, no padding.
Models: the embedded all-MiniLM-L6-v2 and a randomly initialised bert-base-sized config.
MFU = achieved matmul FLOP/s over the measured peak of a 2048^2 matrix product in the same dtype.

    python benchmarks/encoder_speed.py [--precisions fp32,bf16] [--repeats 3] [--device cpu] [--name NAME]

bf16 is skipped on a CPU without native bf16 (emulated, it runs ~50x slower than fp32) unless asked for.
"""

from __future__ import annotations

import argparse

import torch

from common import machine, markdown_table, matmul_peak, save, timed
from mtbert import AdamW, BertConfig, BertModel
from mtbert.bert.checkpoint import embedded_model_path
from mtbert.bert.model import count_flops_per_token
from mtbert.precision import Precision, cpu_has_native_bf16


def load_ours(name: str, device: torch.device) -> BertModel:
    """Our encoder: the embedded all-MiniLM-L6-v2, or a bert-base-sized one from seed 0."""
    if name == "all-MiniLM-L6-v2":
        return BertModel.from_pretrained(name).to(device)
    torch.manual_seed(0)
    return BertModel(BertConfig()).to(device)  # bert-base: 12 layers, 768 wide


def load_pair(name: str, device: torch.device):
    """Ours and transformers' encoder with the same weights or, for bert-base, the same config."""
    import transformers

    ours = load_ours(name, device)
    if name == "all-MiniLM-L6-v2":
        theirs = transformers.BertModel.from_pretrained(embedded_model_path())
    else:
        theirs = transformers.BertModel(transformers.BertConfig(**{k: v for k, v in ours.config.to_dict().items()
                                                                 if k != "architectures"}))
    return ours, theirs.to(device)


BATCH_SHAPE = (32, 64)  # sequences x tokens, no padding


def fixed_batch(device: torch.device) -> dict[str, torch.Tensor]:
    """The batch every encoder timing here uses: BATCH_SHAPE random ids (seeded), nothing padded."""
    generator = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(1000, 30000, BATCH_SHAPE, generator=generator).to(device),
            "attention_mask": torch.ones(BATCH_SHAPE, dtype=torch.long, device=device)}


def measure(model, optimizer, batch, precision: Precision, repeats, train: bool) -> float:
    device = precision.device

    def train_step():
        with precision.autocast():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss = out.last_hidden_state.float().pow(2).mean() + out.pooler_output.float().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def infer():
        with precision.autocast():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    model.train(train)
    return timed(train_step if train else infer, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--models", default="all-MiniLM-L6-v2,bert-base")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--force-emulated-bf16", action="store_true")
    parser.add_argument("--name", help="results file name (default encoder_speed_<device type>)")
    args = parser.parse_args()
    device = torch.device(args.device)
    precisions = args.precisions.split(",")
    if device.type == "cpu" and not cpu_has_native_bf16() and not args.force_emulated_bf16 and "bf16" in precisions:
        print("skipping bf16: this CPU has no native bf16 (pass --force-emulated-bf16 to time it anyway)")
        precisions.remove("bf16")
    batch_size, length = BATCH_SHAPE
    batch = fixed_batch(device)
    tokens = batch_size * length
    rows, records = [], []
    for precision in precisions:
        autocast = Precision(precision, device)
        peak = matmul_peak(autocast.dtype or torch.float32, device)
        for name in args.models.split(","):
            ours, theirs = load_pair(name, device)
            flops = count_flops_per_token(ours.config, length) * tokens
            result = {"model": name, "precision": precision, "peak_tflops": peak / 1e12}
            for mode, train in (("train", True), ("infer", False)):
                seconds = {}
                for label, model, opt_cls in (("ours", ours, AdamW), ("transformers", theirs, torch.optim.AdamW)):
                    optimizer = opt_cls(model.parameters(), lr=1e-5)
                    seconds[label] = measure(model, optimizer, batch, autocast, args.repeats, train)
                work = flops * (3 if train else 1)
                for label in seconds:
                    result[f"{mode}_{label}_tok_s"] = tokens / seconds[label]
                    result[f"{mode}_{label}_mfu"] = work / seconds[label] / peak
                result[f"{mode}_ratio"] = seconds["transformers"] / seconds["ours"]
                rows.append([name, precision, mode, f"{tokens / seconds['ours']:,.0f}",
                             f"{tokens / seconds['transformers']:,.0f}", f"{result[f'{mode}_ratio']:.2f}x",
                             f"{100 * result[f'{mode}_ours_mfu']:.1f}%", f"{100 * result[f'{mode}_transformers_mfu']:.1f}%"])
            records.append(result)
            print(rows[-2], rows[-1], flush=True)
    info = machine(device)
    table = markdown_table(["model", "precision", "step", "ours tok/s", "transformers tok/s", "ratio",
                            "ours MFU", "transformers MFU"], rows)
    print(f"\nMachine: {info['device']}; torch {info['torch']}; batch {batch_size} x {length} tokens\n")
    print(table)
    save(args.name or f"encoder_speed_{device.type}", {"machine": info, "batch": [batch_size, length], "results": records,
                                          "table": table})


if __name__ == "__main__":
    main()
