"""The single-task reference: the same encoder fine-tuned with Hugging Face transformers, one model per
task, on the same examples (mtbert's readers), bf16 autocast on CPU.

    python benchmarks/hf_reference.py [--setup tuned|quoted] [--tasks sst quora sts] [--lr 2e-5 3e-5 5e-5]
                                      [--seed 0] [--out DIR] [--name NAME]

Two setups:

- ``tuned`` (the study's reference): what a user tuning a single-task baseline runs. 3 epochs per task,
  batch 32, linear warm-up over the first 10% of steps then linear decay to 0, weight decay 0.01 on all
  but biases and LayerNorm weights (as the Trainer applies it), batches grouped by length (the Trainer's
  ``group_by_length``: shuffled, cut into mega-batches of 50 batches, each sorted by length), dev scored
  after every epoch and the best epoch kept (``load_best_model_at_end``), and the best of the learning
  rates given (``--lr``, per task on dev). ``--lr sst=3e-5`` sets one task's rate alone.
- ``quoted``: the setup of the reference numbers quoted with the project (3 epochs SST, 2 Quora, 4 STS;
  lr 5e-5; the Trainer's defaults otherwise: no warm-up, no weight decay, random batches padded to their
  longest example, the last epoch's dev score).

Both: gradient clipping at 1.0, max length 128, AutoModelForSequenceClassification (the BERT pooler,
dropout, a linear layer; cross-entropy for SST and Quora, mean squared error on the 0-5 score for STS).
With ``--out`` the run is written as mtbert writes one (results.json, metrics.jsonl, config.yaml and
predictions/ for dev and test in the leaderboard format), which is how benchmarks/study.py records it.
Needs the ``test`` extra (transformers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

import torch
import yaml

from common import REPO, machine, markdown_table, save
from mtbert.bert.checkpoint import resolve_checkpoint_dir
from mtbert.evaluate.predictions import prediction_file_name, write_predictions
from mtbert.tasks import composite_score, get_task, metric_key, read_examples
from mtbert.tasks.metrics import METRICS

SETUPS = {
    "tuned": {"epochs": {"sst": 3, "quora": 3, "sts": 3}, "lr": [2e-5, 3e-5, 5e-5], "warmup": 0.1,
              "weight_decay": 0.01, "group_by_length": True, "keep": "best epoch"},
    "quoted": {"epochs": {"sst": 3, "quora": 2, "sts": 4}, "lr": [5e-5], "warmup": 0.0, "weight_decay": 0.0,
               "group_by_length": False, "keep": "last epoch"},
}
BATCH, MAX_LENGTH, MEGA_BATCH = 32, 128, 50


def length_grouped(examples, shuffler: random.Random) -> list[int]:
    """The Trainer's LengthGroupedSampler order: a random permutation cut into mega-batches of 50 batches,
    each sorted longest first, so that batches hold examples of similar length (little padding) yet
    their order stays random."""
    order = list(range(len(examples)))
    shuffler.shuffle(order)
    size = MEGA_BATCH * BATCH
    length = [sum(len(text) for text in e.texts) for e in examples]  # characters stand in for tokens
    return [i for start in range(0, len(order), size)
            for i in sorted(order[start: start + size], key=lambda i: -length[i])]


def batches(examples, tokenizer, order):
    for start in range(0, len(order), BATCH):
        chosen = [examples[i] for i in order[start: start + BATCH]]
        texts = [list(column) for column in zip(*(e.texts for e in chosen))]
        encoded = tokenizer(*texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        yield encoded, chosen


def label_tensor(chosen, regression: bool) -> torch.Tensor:
    labels = [float(e.label) for e in chosen]
    return torch.tensor(labels) if regression else torch.tensor(labels).long()


def predict(model, tokenizer, examples, regression: bool) -> list[float]:
    model.eval()
    outputs = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for encoded, _ in batches(examples, tokenizer, list(range(len(examples)))):
            logits = model(**encoded).logits.float()
            outputs += logits.squeeze(-1).tolist() if regression else logits.argmax(-1).tolist()
    return outputs


def score(spec, outputs, examples) -> float:
    return float(METRICS[spec.metric][0](outputs, [float(e.label) for e in examples]))


def decay_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on every weight but biases and LayerNorm weights, as the Trainer groups them."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_task(task: str, lr: float, setup: dict, model_dir: str, data: dict, seed: int) -> dict:
    """One model for one task at one learning rate: dev per epoch, and the kept epoch's weights."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = get_task(task)
    regression = spec.kind == "regression"
    train, dev = data["train"], data["dev"]
    torch.manual_seed(seed)
    shuffler = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    labels = 1 if regression else max(spec.num_labels, 2)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=labels)
    optimizer = torch.optim.AdamW(decay_groups(model, setup["weight_decay"]), lr=lr)
    epochs = setup["epochs"][task]
    total = epochs * math.ceil(len(train) / BATCH)
    warmup = math.ceil(setup["warmup"] * total)
    # transformers' get_linear_schedule_with_warmup, written as the LambdaLR it is
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: step / max(1, warmup) if step < warmup else max(0.0, (total - step) / max(1, total - warmup)))
    started, real, padded, scores, kept = time.perf_counter(), 0, 0, [], None
    for _ in range(epochs):
        model.train()
        if setup["group_by_length"]:
            order = length_grouped(train, shuffler)
        else:
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
        scores.append(round(score(spec, predict(model, tokenizer, dev, regression), dev), 4))
        if setup["keep"] == "last epoch" or scores[-1] == max(scores):
            kept = {k: v.detach().clone() for k, v in model.state_dict().items()}
        print(f"{task} lr {lr:g} epoch {len(scores)}/{epochs}: dev {scores[-1]:.4f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    seconds = time.perf_counter() - started
    best_epoch = len(scores) if setup["keep"] == "last epoch" else scores.index(max(scores)) + 1
    model.load_state_dict(kept)
    return {"task": task, "lr": lr, "epochs": epochs, "dev_per_epoch": scores, "dev": scores[best_epoch - 1],
            "best_epoch": best_epoch, "seconds": round(seconds, 1), "tokens_per_second": round(real / seconds, 1),
            "real_tokens": real, "padding_share": round(1 - real / padded, 4),
            "parameters": sum(p.numel() for p in model.parameters()), "model": model, "tokenizer": tokenizer}


def learning_rates(items: list[str], task: str) -> list[float]:
    """``--lr`` items: a bare rate applies to every task, ``task=rate`` to one; a task's own rates win."""
    own = [float(i.split("=", 1)[1]) for i in items if i.split("=", 1)[0] == task and "=" in i]
    return own or [float(i) for i in items if "=" not in i]


def write_run(out: Path, setup_name: str, setup: dict, chosen: dict, tried: dict, data: dict, seed: int,
              model_name: str) -> None:
    """The run as mtbert writes one: what benchmarks/study.py reads into its record."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = {metric_key(t, get_task(t).metric): r["dev"] for t, r in chosen.items()}
    metrics["composite"] = composite_score(metrics, {t: get_task(t).metric for t in chosen})
    for task, result in chosen.items():
        spec = get_task(task)
        for split in ("dev", "test"):
            outputs = predict(result["model"], result["tokenizer"], data[task][split], spec.kind == "regression")
            write_predictions(out / "predictions" / prediction_file_name(spec, split), spec,
                              [e.id for e in data[task][split]], outputs)
    seconds = sum(r["seconds"] for runs in tried.values() for r in runs)
    final = sum(r["seconds"] for r in chosen.values())
    tokens = sum(r["real_tokens"] for r in chosen.values())
    stored = sum(r["parameters"] for r in chosen.values())
    results = {"best": {"split": "dev", **metrics}, "train_seconds": round(seconds, 1),
               "train_tokens_per_second": round(tokens / final, 1),
               "padding_share": round(sum(r["padding_share"] for r in chosen.values()) / len(chosen), 4),
               "parameters": {"model": {"tunable": stored, "stored": stored}},
               "learning_rates": {t: r["lr"] for t, r in chosen.items()},
               "tried": {t: [{k: r[k] for k in ("lr", "dev_per_epoch", "dev", "best_epoch", "seconds")} for r in runs]
                         for t, runs in tried.items()}}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lines = [{"epoch": e + 1, "split": "dev", "task": t, "lr": r["lr"], "score": s}
             for t, runs in tried.items() for r in runs for e, s in enumerate(r["dev_per_epoch"])]
    (out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    config = {"system": "transformers AutoModelForSequenceClassification, one model per task", "setup": setup_name,
              **setup, "batch_size": BATCH, "max_length": MAX_LENGTH, "seed": seed, "model": model_name,
              "learning_rates": {t: r["lr"] for t, r in chosen.items()}}
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", choices=list(SETUPS), default="tuned")
    parser.add_argument("--tasks", nargs="+", default=["sst", "quora", "sts"], choices=["sst", "quora", "sts"])
    parser.add_argument("--lr", nargs="+", help="learning rates to try (default: the setup's); task=rate for one task")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--data-dir", default=os.environ.get("MTBERT_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--limit", type=int, default=None, help="first N examples of each split (smoke runs)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for every task (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the run (results, predictions) into this directory")
    parser.add_argument("--name", help="save a summary as benchmarks/results/NAME.json")
    args = parser.parse_args()
    setup = dict(SETUPS[args.setup])
    if args.epochs:
        setup["epochs"] = {t: args.epochs for t in setup["epochs"]}
    model_dir = str(resolve_checkpoint_dir(args.model))
    data_dir = Path(args.data_dir)
    data = {t: {split: read_examples(get_task(t), data_dir / get_task(t).files[split], labelled=split != "test",
                                     limit=args.limit).examples for split in ("train", "dev", "test")}
            for t in args.tasks}
    tried, chosen = {}, {}
    for task in args.tasks:
        tried[task] = []
        for lr in learning_rates(args.lr or [], task) or setup["lr"]:  # no rate given for it: the setup's
            result = train_task(task, lr, setup, model_dir, data[task], args.seed)
            tried[task].append(result)
            if task not in chosen or result["dev"] > chosen[task]["dev"]:
                chosen[task] = result  # the best rate on dev; the others' models are dropped
        for result in tried[task]:
            if result is not chosen[task]:
                result.pop("model"), result.pop("tokenizer")
    if args.out:
        write_run(args.out, args.setup, setup, chosen, tried, data, args.seed, args.model)
    rows = [[t, f"{r['lr']:g}", r["epochs"], f"{r['dev']:.3f}", r["best_epoch"],
             " / ".join(f"{s:.3f}" for s in r["dev_per_epoch"]), f"{r['seconds'] / 60:.1f} min",
             f"{100 * r['padding_share']:.0f}%"] for t in args.tasks for r in tried[t]]
    table = markdown_table(["task", "lr", "epochs", "dev (kept epoch)", "kept epoch", "dev per epoch", "time",
                            "padding"], rows)
    info = machine(torch.device("cpu"))
    print(f"\nMachine: {info['device']}; transformers, bf16 autocast; model {args.model}; setup {args.setup}; "
          f"seed {args.seed}\n")
    print(table)
    if args.name:
        save(args.name, {"machine": info, "setup": args.setup, "seed": args.seed, "table": table,
                         "results": [{k: v for k, v in r.items() if k not in ("model", "tokenizer")}
                                     for t in args.tasks for r in tried[t]]})


if __name__ == "__main__":
    main()
