"""End-to-end throughput: the multitask trainer and evaluator against the same model in Hugging Face
transformers driven by a plain loop, on the real SST/Quora/STS data, in one run.

    python benchmarks/throughput.py [--models all-MiniLM-L6-v2,bert-base] [--steps 40] [--base-steps 8]
                                    [--eval-examples 0] [--base-eval-examples 0] [--device cpu]
                                    [--set KEY=VALUE ...] [--name throughput_cuda_compile]

Training, ours: the steps of recipes/multitask-base.yaml's first epoch as `mtbert train` runs them
(length-bucketed batches of 32, shuffled task order, our encoder and AdamW, clipping, LR schedule).
Training, theirs: transformers.BertModel with the same weights, a linear head per task on the mean-pooled
output, torch.optim.AdamW, clipping; batches of 32 drawn at random and padded to their longest example
(what a DataLoader with DataCollatorWithPadding gives), the same task for each step as ours.
Inference: ours predicts each dev set as `mtbert evaluate` does, in length-sorted batches of at most 128
examples and (on CPU) 1,024 padded tokens (train.eval_batch_size, train.eval_max_tokens; no token cap on a
GPU); theirs runs the dev file in order in batches of 128. Whole dev sets for both models by default. Both see the same examples, tokenized by the same WordPiece tokenizer.

Tokens/s count real (non-padding) tokens, the work a user asked for. MFU = the model FLOPs those real
tokens need (matrix products, attention at each sequence's own length; x3 for training) per second over
the measured peak of a square matrix product in the precision used. Epoch time = one epoch's real tokens
of all three training sets over the measured training rate. bert-base is a randomly initialised
bert-base-sized encoder (no download needed), timed over fewer steps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from common import BASE_RECIPE, RESULTS, machine, markdown_table, matmul_peak, save
from mtbert import BertConfig, BertModel
from mtbert.bert.checkpoint import embedded_model_path
from mtbert.bert.model import count_flops_per_token
from mtbert.config import load_config
from mtbert.evaluate import predict_features
from mtbert.evaluate.evaluator import default_eval_max_tokens
from mtbert.multitask import collate, padding_share, random_batches, sorted_batches
from mtbert.multitask.batching import bucketed_batches
from mtbert.train import Trainer

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def model_directory(name: str, scratch: Path) -> str:
    """The embedded MiniLM's directory, or a random bert-base-sized encoder saved with MiniLM's (same,
    uncased 30,522-piece) vocabulary."""
    if name == "all-MiniLM-L6-v2":
        return str(embedded_model_path())
    directory = scratch / "bert-base-random"
    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(directory)
    for file in TOKENIZER_FILES:
        shutil.copyfile(embedded_model_path() / file, directory / file)
    return str(directory)


def useful_flops(batch, config: BertConfig) -> float:
    """Forward FLOPs of the batch's real tokens, each sequence at its own length."""
    return sum(n * count_flops_per_token(config, n) for n in batch.attention_mask.sum(1).tolist())


class Meter:
    """Real and paid tokens and useful FLOPs of the batches a timed loop ran."""

    def __init__(self, config: BertConfig, passes: int):
        self.config, self.passes = config, passes  # passes: 3 for training (forward + backward), 1 to infer
        self.tokens = self.paid = 0
        self.flops = 0.0

    def add(self, batch) -> None:
        self.tokens += batch.real_tokens
        self.paid += batch.padded_tokens
        self.flops += self.passes * useful_flops(batch, self.config)

    def result(self, seconds: float) -> dict:
        return {"seconds": seconds, "tokens": self.tokens, "flops": self.flops, "padding": 1 - self.tokens / self.paid}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PlainLoopModel(nn.Module):
    """transformers.BertModel plus one linear head per task on the mean-pooled output."""

    def __init__(self, path: str, outputs: dict[str, int]):
        super().__init__()
        import transformers

        self.encoder = transformers.BertModel.from_pretrained(path)
        self.heads = nn.ModuleDict({t: nn.Linear(self.encoder.config.hidden_size, n) for t, n in outputs.items()})

    def forward(self, task: str, batch) -> torch.Tensor:
        hidden = self.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              token_type_ids=batch.token_type_ids).last_hidden_state
        mask = batch.attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.heads[task]((hidden * mask).sum(1) / mask.sum(1))


def plain_loss(task: str, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task == "sst":
        return nn.functional.cross_entropy(scores.float(), labels.long())
    if task == "quora":
        return nn.functional.binary_cross_entropy_with_logits(scores.float().squeeze(-1), labels.float())
    return nn.functional.mse_loss(scores.float().squeeze(-1), labels.float())


def time_ours_training(trainer: Trainer, steps: int, warmup: int) -> dict:
    plan = trainer.epoch_plan(0)[: warmup + steps]
    meter = Meter(trainer.model.encoder.config, 3)
    for position, step in enumerate(plan):
        if position == warmup:
            synchronize(trainer.device)
            started = time.perf_counter()
        trainer.train_step(step)
        if position >= warmup:
            for task, indices in step:
                meter.add(collate(trainer.data[task].get("train"), indices))
    synchronize(trainer.device)
    return {**meter.result(time.perf_counter() - started), "tasks": [step[0][0] for step in plan]}


def time_plain_training(trainer: Trainer, path: str, tasks: list[str], warmup: int) -> dict:
    model = PlainLoopModel(path, {"sst": 5, "quora": 1, "sts": 1}).to(trainer.device).train()
    meter = Meter(trainer.model.encoder.config, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    streams = {task: iter(random_batches(len(trainer.data[task].get("train")), 32, generator))
               for task in set(tasks)}
    precision = trainer.precision
    for position, task in enumerate(tasks):
        if position == warmup:
            synchronize(trainer.device)
            started = time.perf_counter()
        features = trainer.data[task].get("train")
        batch = collate(features, next(streams[task])).to(trainer.device)
        with precision.autocast():
            loss = plain_loss(task, model(task, batch), batch.labels)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if position >= warmup:
            meter.add(batch)
    synchronize(trainer.device)
    return meter.result(time.perf_counter() - started)


@torch.no_grad()
def time_inference(trainer: Trainer, path: str) -> dict:
    dev = {task: splits.get("dev") for task, splits in trainer.data.items()}
    size, max_tokens = trainer.config.train.eval_batch_size, trainer.config.train.eval_max_tokens
    if max_tokens is None:
        max_tokens = default_eval_max_tokens(trainer.device)
    batches = {task: [collate(f, b) for b in sorted_batches(f.lengths, size, max_tokens)] for task, f in dev.items()}
    in_order = {task: [collate(f, range(i, min(i + size, len(f)))) for i in range(0, len(f), size)]
                for task, f in dev.items()}
    result = {}
    synchronize(trainer.device)
    started = time.perf_counter()
    for features in dev.values():
        predict_features(trainer.model, features, size, trainer.precision, max_tokens)
    synchronize(trainer.device)
    config = trainer.model.encoder.config
    result["ours"] = measured(time.perf_counter() - started, [b for bs in batches.values() for b in bs], config)
    model = PlainLoopModel(path, {"sst": 5, "quora": 1, "sts": 1}).to(trainer.device).eval()
    started = time.perf_counter()
    for task, task_batches in in_order.items():
        for batch in task_batches:
            batch = batch.to(trainer.device)
            with trainer.precision.autocast():
                model(task, batch).float().cpu()
    synchronize(trainer.device)
    result["transformers"] = measured(time.perf_counter() - started, [b for bs in in_order.values() for b in bs],
                                      config)
    return result


def measured(seconds: float, batches, config: BertConfig) -> dict:
    meter = Meter(config, 1)
    for batch in batches:
        meter.add(batch)
    return meter.result(seconds)


def epoch_padding(trainer: Trainer) -> dict:
    """Padding share of a whole training epoch under each batching (no model needed)."""
    generator = torch.Generator().manual_seed(0)
    lengths = {task: trainer.data[task].get("train").lengths for task in trainer.train_tasks}
    bucketed = [padding_share(l, bucketed_batches(l, 32, generator, 50)) for l in lengths.values()]
    plain = [padding_share(l, random_batches(len(l), 32, generator)) for l in lengths.values()]
    weights = [sum(l) for l in lengths.values()]
    average = lambda shares: sum(s * w for s, w in zip(shares, weights)) / sum(weights)  # noqa: E731
    return {"ours": average(bucketed), "transformers": average(plain), "epoch_tokens": sum(weights)}


def measure_model(name: str, args, scratch: Path) -> dict:
    """One model's training and inference, ours and theirs, with the epoch padding and times."""
    path = model_directory(name, scratch)
    examples = args.eval_examples if name != "bert-base" else args.base_eval_examples
    config = load_config(BASE_RECIPE, [f"model.name={path}", "train.progress=false", "train.tensorboard=false",
                                       "train.checkpoint_every=0", f"train.device={args.device}",
                                       f"data.eval_limit={examples or 'null'}", *args.set])
    trainer = Trainer(config, scratch / f"run-{name}")
    peak = matmul_peak(trainer.precision.dtype or torch.float32, trainer.device)
    steps = args.steps if name != "bert-base" else args.base_steps
    ours_train = time_ours_training(trainer, steps, args.warmup)
    theirs_train = time_plain_training(trainer, path, ours_train.pop("tasks"), args.warmup)
    record = {"model": name, "overrides": args.set, "precision": trainer.precision.name,
              "peak_tflops": peak / 1e12, "steps": steps,
              "eval_examples_per_task": examples or "all",
              "train": {"ours": ours_train, "transformers": theirs_train}, "inference": time_inference(trainer, path),
              "epoch_padding": epoch_padding(trainer)}
    for mode in ("train", "inference"):
        for result in record[mode].values():
            result["tokens_per_second"] = result["tokens"] / result["seconds"]
            result["mfu"] = result["flops"] / result["seconds"] / peak
        record[mode]["ratio"] = record[mode]["ours"]["tokens_per_second"] / record[mode]["transformers"]["tokens_per_second"]
    record["epoch_minutes"] = {k: record["epoch_padding"]["epoch_tokens"] / record["train"][k]["tokens_per_second"] / 60
                               for k in ("ours", "transformers")}
    return record


def tables(records: list[dict]) -> tuple[str, str]:
    rows, epoch_rows = [], []
    for record in records:
        for mode in ("train", "inference"):
            ours, theirs = record[mode]["ours"], record[mode]["transformers"]
            rows.append([record["model"], record["precision"], mode, f"{ours['tokens_per_second']:,.0f}",
                         f"{100 * ours['mfu']:.1f}%", f"{100 * ours['padding']:.1f}%",
                         f"{theirs['tokens_per_second']:,.0f}", f"{100 * theirs['mfu']:.1f}%",
                         f"{100 * theirs['padding']:.1f}%", f"{record[mode]['ratio']:.2f}x"])
        epoch, minutes = record["epoch_padding"], record["epoch_minutes"]
        epoch_rows.append([record["model"], f"{epoch['epoch_tokens']:,}", f"{100 * epoch['ours']:.1f}%",
                           f"{100 * epoch['transformers']:.1f}%", f"{minutes['ours']:.1f} min",
                           f"{minutes['transformers']:.1f} min"])
    table = markdown_table(["model", "precision", "mode", "ours real tok/s", "ours MFU", "ours padding",
                            "transformers real tok/s", "transformers MFU", "transformers padding", "ratio"], rows)
    epoch_table = markdown_table(["model", "real tokens per epoch (SST+Quora+STS train)", "padding, bucketed",
                                  "padding, random batches", "epoch, ours", "epoch, transformers plain loop"],
                                 epoch_rows)
    return table, epoch_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="all-MiniLM-L6-v2,bert-base",
                        help="models to measure; the saved file keeps earlier records of the others")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps for MiniLM")
    parser.add_argument("--base-steps", type=int, default=8, help="timed training steps for bert-base")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--eval-examples", type=int, default=0, help="dev examples per task for inference (0: all)")
    parser.add_argument("--base-eval-examples", type=int, default=0, help="the same for bert-base")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--set", action="append", default=[], help="a config override for our trainer (repeatable)")
    parser.add_argument("--name", help="results file name (default throughput_<device type>)")
    args = parser.parse_args()
    device = torch.device(args.device)
    scratch = Path(tempfile.mkdtemp(prefix="mtbert-throughput-"))
    try:
        measured_now = [measure_model(name, args, scratch) for name in args.models.split(",")]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    name = args.name or f"throughput_{device.type}"
    previous = RESULTS / f"{name}.json"
    kept = [r for r in (json.loads(previous.read_text())["results"] if previous.exists() else [])
            if r["model"] not in {m["model"] for m in measured_now}]
    records = sorted(kept + measured_now, key=lambda r: r["model"] == "bert-base")
    info = machine(device)
    table, epoch_table = tables(records)
    print(f"\nMachine: {info['device']}; torch {info['torch']}; peak {records[0]['peak_tflops']:.3f} TFLOP/s\n")
    print(table, "\n", epoch_table, sep="\n")
    save(name, {"machine": info, "results": records, "table": table, "epoch_table": epoch_table})


if __name__ == "__main__":
    main()
