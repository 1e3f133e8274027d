"""The single-task reference: the same encoder fine-tuned with Hugging Face transformers, one model per
task, on the same examples (mtbert's readers), bf16 autocast on CPU.

    python benchmarks/hf_reference.py [--setup tuned|quoted] [--tasks sst quora sts] [--lr 2e-5 3e-5 5e-5]
                                      [--seed 0] [--out DIR] [--previous DIR] [--name NAME]

Two setups:

- ``tuned`` (the study's reference): what a user tuning a single-task baseline runs. 3 epochs per task,
  batch 32, linear warm-up over the first 10% of steps then linear decay to 0, weight decay 0.01 on all
  but biases and LayerNorm weights (as the Trainer applies it), batches grouped by length (the Trainer's
  ``group_by_length``: shuffled, cut into mega-batches of 50 batches, each sorted by length), dev scored
  after every epoch and the best epoch kept (``load_best_model_at_end``), and the best learning rate per
  task on dev: of 2e-5, 3e-5 and 5e-5, widened upward while the best is the highest tried (8e-5, 1.2e-4,
  2e-4 in turn; the rule is benchmarks/lr_grid.py's). ``--lr`` gives the rates to try instead (no
  widening); ``--lr sst=3e-5`` sets one task's rate alone. ``--previous DIR`` (an earlier ``--out`` of the
  same seed, or the study's record of it) counts the rates it tried as tried: only the rest are trained,
  and a task whose best stays an earlier rate keeps that run's predictions.
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
import shutil
import time
from pathlib import Path

import torch
import yaml

from common import REPO, machine, markdown_table, save
from lr_grid import GRID, next_rates
from mtbert.bert.checkpoint import resolve_checkpoint_dir
from mtbert.evaluate.predictions import prediction_file_name, write_predictions
from mtbert.tasks import composite_score, get_task, metric_key, read_examples
from mtbert.tasks.metrics import METRICS

SETUPS = {
    "tuned": {"epochs": {"sst": 3, "quora": 3, "sts": 3}, "lr": list(GRID), "widen": True, "warmup": 0.1,
              "weight_decay": 0.01, "group_by_length": True, "keep": "best epoch"},
    "quoted": {"epochs": {"sst": 3, "quora": 2, "sts": 4}, "lr": [5e-5], "widen": False, "warmup": 0.0,
               "weight_decay": 0.0, "group_by_length": False, "keep": "last epoch"},
}
# what a result keeps in results.json's "tried" (enough to stand for the run when --previous reads it back)
KEPT = ("lr", "epochs", "dev_per_epoch", "dev", "best_epoch", "seconds", "real_tokens", "padding_share", "parameters")
# the parts of a result that do not depend on the learning rate (the batches are the seed's): an earlier
# record that lacks them takes them from a run of the same task at another rate
RATE_FREE = ("epochs", "real_tokens", "padding_share", "parameters")
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


def pending(done: list[dict], given: list[float], setup: dict) -> list[float]:
    """The rates still to train for a task: those given that are not done; else the setup's grid, widened
    by the lr_grid rule where the setup says so."""
    rates = {r["lr"] for r in done}
    if given:
        return [lr for lr in given if lr not in rates]
    if setup["widen"]:
        return next_rates(done, tuple(setup["lr"]))
    return [lr for lr in setup["lr"] if lr not in rates]


def keep_best_model(results: list[dict]) -> dict:
    """The best result on dev (the first of equals), the only one that keeps its model."""
    best = max(results, key=lambda r: r["dev"])
    for result in results:
        if result is not best:
            result.pop("model", None), result.pop("tokenizer", None)
    return best


def read_previous(path: Path, tasks: list[str]) -> dict[str, list[dict]]:
    """The results an earlier run of the same seed tried per task, from its results.json (an ``--out``
    directory) or record.json (the study's record), each marked with where its predictions are."""
    for name in ("results.json", "record.json"):
        if (path / name).exists():
            tried = json.loads((path / name).read_text(encoding="utf-8")).get("tried", {})
            return {t: [{**r, "task": t, "predictions": path / "predictions"} for r in tried.get(t, [])] for t in tasks}
    raise SystemExit(f"--previous {path}: no results.json or record.json with the rates it tried")


def fill_rate_free(task: str, results: list[dict]) -> None:
    """Gives an earlier result that lacks the learning-rate-free counts those of a run of the same task."""
    source = next((r for r in results if all(k in r for k in RATE_FREE)), None)
    for result in results:
        if not all(k in result for k in RATE_FREE):
            if source is None:
                raise SystemExit(f"{task}: the earlier results lack token counts and no new rate was trained to "
                                 f"supply them; rerun without --previous")
            result.update({k: source[k] for k in RATE_FREE})


def write_run(out: Path, setup_name: str, setup: dict, chosen: dict, tried: dict, data: dict, seed: int,
              model_name: str) -> None:
    """The run as mtbert writes one: what benchmarks/study.py reads into its record. A chosen result from
    ``--previous`` has no model here: its predictions are copied from that run."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = {metric_key(t, get_task(t).metric): r["dev"] for t, r in chosen.items()}
    metrics["composite"] = composite_score(metrics, {t: get_task(t).metric for t in chosen})
    for task, result in chosen.items():
        spec = get_task(task)
        for split in ("dev", "test"):
            target = out / "predictions" / prediction_file_name(spec, split)
            if "model" not in result:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(result["predictions"] / prediction_file_name(spec, split), target)
                continue
            outputs = predict(result["model"], result["tokenizer"], data[task][split], spec.kind == "regression")
            write_predictions(target, spec, [e.id for e in data[task][split]], outputs)
    seconds = sum(r["seconds"] for runs in tried.values() for r in runs)
    final = sum(r["seconds"] for r in chosen.values())
    tokens = sum(r["real_tokens"] for r in chosen.values())
    stored = sum(r["parameters"] for r in chosen.values())
    results = {"best": {"split": "dev", **metrics}, "train_seconds": round(seconds, 1),
               "train_tokens_per_second": round(tokens / final, 1),
               "padding_share": round(sum(r["padding_share"] for r in chosen.values()) / len(chosen), 4),
               "parameters": {"model": {"tunable": stored, "stored": stored}},
               "learning_rates": {t: r["lr"] for t, r in chosen.items()},
               "tried": {t: [{k: r[k] for k in KEPT} for r in runs] for t, runs in tried.items()}}
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
    parser.add_argument("--previous", type=Path, help="an earlier run of this seed whose tried rates count as tried")
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
    previous = read_previous(args.previous, args.tasks) if args.previous else {t: [] for t in args.tasks}
    tried, chosen = {}, {}
    for task in args.tasks:
        tried[task] = previous[task]
        given = learning_rates(args.lr or [], task)  # none given for it: the setup's grid
        while queue := pending(tried[task], given, setup):
            for lr in queue:
                tried[task].append(train_task(task, lr, setup, model_dir, data[task], args.seed))
                keep_best_model(tried[task])
        if not tried[task]:
            raise SystemExit(f"{task}: no learning rate to try")
        fill_rate_free(task, tried[task])
        chosen[task] = keep_best_model(tried[task])
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
                         "results": [{k: v for k, v in r.items() if k not in ("model", "tokenizer", "predictions")}
                                     for t in args.tasks for r in tried[t]]})


if __name__ == "__main__":
    main()
