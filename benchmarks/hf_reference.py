"""The single-task reference, measured here: fine-tuning of the same encoder with Hugging Face
transformers, one model per task, in the quoted reference setup (3 epochs SST, 2 Quora, 4 STS; lr 5e-5,
batch 32, bf16 autocast on CPU). The quoted reference numbers (0.482 / 0.835 / 0.854) came from another
machine; this script checks how far those numbers are the setup and how far the draw.

    python benchmarks/hf_reference.py [--tasks sst quora sts] [--seed 42] [--name hf_reference]

What the quoted setup leaves open is taken from transformers' Trainer defaults: AdamW (no weight decay),
linear decay without warm-up, gradient clipping at 1.0, random batches padded to their longest
example (dynamic padding), max length 128, AutoModelForSequenceClassification (the BERT pooler, dropout,
a linear layer; cross-entropy for SST and Quora, mean squared error on the 0-5 score for STS), and
dev scores after the last epoch. Needs the ``test`` extra (transformers); the data readers are
mtbert's, so both systems see the same examples.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import torch

from common import machine, markdown_table, save
from mtbert.bert.checkpoint import resolve_checkpoint_dir
from mtbert.tasks import get_task, read_examples
from mtbert.tasks.metrics import accuracy, pearson

EPOCHS = {"sst": 3, "quora": 2, "sts": 4}  # the quoted reference's
BATCH, LR, MAX_LENGTH = 32, 5e-5, 128


def batches(examples, tokenizer, order):
    for start in range(0, len(order), BATCH):
        chosen = [examples[i] for i in order[start: start + BATCH]]
        texts = [list(column) for column in zip(*(e.texts for e in chosen))]
        encoded = tokenizer(*texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        yield encoded, chosen


def label_tensor(chosen, regression: bool) -> torch.Tensor:
    labels = [float(e.label) for e in chosen]
    return torch.tensor(labels) if regression else torch.tensor(labels).long()


def dev_score(model, tokenizer, dev, regression: bool) -> float:
    model.eval()
    outputs, gold = [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for encoded, chosen in batches(dev, tokenizer, list(range(len(dev)))):
            logits = model(**encoded).logits.float()
            outputs += logits.squeeze(-1).tolist() if regression else logits.argmax(-1).tolist()
            gold += [float(e.label) for e in chosen]
    return float(pearson(outputs, gold) if regression else accuracy(outputs, gold))


def run_task(task: str, model_dir: str, data_dir, seed: int, limit=None) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = get_task(task)
    regression = spec.kind == "regression"
    train = read_examples(spec, data_dir / spec.files["train"]).examples[:limit]
    dev = read_examples(spec, data_dir / spec.files["dev"]).examples[:limit]
    torch.manual_seed(seed)
    shuffler = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    labels = 1 if regression else max(spec.num_labels, 2)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    epochs = EPOCHS[task]
    total = epochs * math.ceil(len(train) / BATCH)  # linear decay to 0, no warm-up (Trainer's default):
    # transformers' get_linear_schedule_with_warmup with 0 warm-up steps, written as the LambdaLR it is
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    started, real, padded, scores = time.perf_counter(), 0, 0, []
    for _ in range(epochs):
        model.train()
        order = list(range(len(train)))
        shuffler.shuffle(order)
        for encoded, chosen in batches(train, tokenizer, order):
            real += int(encoded["attention_mask"].sum())
            padded += encoded["attention_mask"].numel()
            target = label_tensor(chosen, regression)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(**encoded).logits.float()
            loss = (torch.nn.functional.mse_loss(logits.squeeze(-1), target) if regression
                    else torch.nn.functional.cross_entropy(logits, target))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        scores.append(round(dev_score(model, tokenizer, dev, regression), 4))
        print(f"{task} epoch {len(scores)}/{epochs}: dev {scores[-1]:.4f} ({time.perf_counter() - started:.0f} s)",
              flush=True)
    return {"task": task, "epochs": epochs, "dev_per_epoch": scores, "dev": scores[-1],
            "seconds": round(time.perf_counter() - started, 1), "padding_share": round(1 - real / padded, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(EPOCHS), choices=list(EPOCHS))
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--limit", type=int, default=None, help="first N examples of train and dev (smoke runs)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--name", default="hf_reference")
    args = parser.parse_args()
    model_dir = str(resolve_checkpoint_dir(args.model))
    data_dir = Path(args.data_dir)
    results = [run_task(task, model_dir, data_dir, args.seed, args.limit) for task in args.tasks]
    rows = [[r["task"], r["epochs"], f"{r['dev']:.3f}", " / ".join(f"{s:.3f}" for s in r["dev_per_epoch"]),
             f"{r['seconds'] / 60:.1f} min", f"{100 * r['padding_share']:.0f}%"] for r in results]
    table = markdown_table(["task", "epochs", "dev (last epoch)", "dev per epoch", "time", "padding"], rows)
    info = machine(torch.device("cpu"))
    print(f"\nMachine: {info['device']}; transformers, bf16 autocast; model {args.model}; seed {args.seed}\n")
    print(table)
    save(args.name, {"machine": info, "seed": args.seed, "results": results, "table": table})


if __name__ == "__main__":
    main()
