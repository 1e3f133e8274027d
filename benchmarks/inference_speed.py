"""The Predictor's backends on the CPU, timed in one process, alternating, on the same sentences.

    python benchmarks/inference_speed.py [--model RUN/best] [--models all-MiniLM-L6-v2,bert-base]
                                         [--rounds 5] [--accuracy]

For each model (the MiniLM multitask model given by ``--model``, else benchmarks/serve.py's few-step
model; and a bert-base-sized encoder with random weights and the quickstart's heads) and each backend
(``torch`` in the machine's default precision, ``onnx``, ``onnx-int8``, and sentence-transformers'
own ``backend="onnx"`` on the encoder where it and optimum are installed): single SST dev sentences
(latency p50 and p99 over every call of every round) and batches of 32 (sentences/s over all rounds).
Each round runs every backend once, in turn, so a change in the machine's load falls on all of them.

``--accuracy`` also scores each backend on the full dev sets of ``--model`` (every task and the
composite, as ``mtbert evaluate --backend`` does). Speed does not depend on how well a model was trained.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import REPO, machine, markdown_table, save
from mtbert import Predictor
from mtbert.tasks import TASKS, read_examples

DATA = Path(os.environ.get("MTBERT_DATA_DIR") or REPO.parent / "shared" / "data")
BACKENDS = ("torch", "onnx", "onnx-int8")
SINGLE_CALLS = 48  # single sentences per backend per round
BATCH = 32
PRECISION_SHOWN = {"onnx-int8": "int8 weights, fp32 activations quantised per batch"}


def bert_base_model(folder: Path) -> Path:
    """A bert-base-sized encoder (12 layers, 768 wide) with random weights under the quickstart's heads."""
    from mtbert.bert import BertConfig, BertModel
    from mtbert.config import load_config
    from mtbert.train.builder import build_model
    from mtbert.bert.checkpoint import embedded_model_path

    encoder = folder / "bert-base-random"
    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(encoder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(embedded_model_path() / name, encoder / name)
    config = load_config(REPO / "recipes" / "quickstart.yaml", [f"model.name={encoder}"])
    model = build_model(config)
    model.save_pretrained(folder / "best")
    return folder / "best"


def sentence_transformers_onnx(model_dir: Path, folder: Path):
    """sentence-transformers' ONNX backend on the model's encoder (exported with mean pooling), or the
    reason it cannot run here."""
    try:
        import optimum.onnxruntime  # noqa: F401  (sentence-transformers' ONNX backend runs through it)
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        return None, f"not installed ({error.name})"
    from mtbert.inference.export import export_sentence_transformers
    from mtbert.multitask import MultitaskModel

    out = folder / "st"
    export_sentence_transformers(MultitaskModel.from_pretrained(model_dir), out, pooling="mean")
    return SentenceTransformer(str(out), backend="onnx", device="cpu"), ""


def time_backends(calls: dict, sentences: list[str], rounds: int) -> dict:
    """``calls``: name -> function(list of sentences). Rounds alternate the backends."""
    latencies = {name: [] for name in calls}
    batch_seconds = {name: 0.0 for name in calls}
    batched = sentences[: (len(sentences) // BATCH) * BATCH]
    for name, call in calls.items():  # warm-up: first-call costs (allocations, graph preparation) are not timed
        call(sentences[:BATCH])
        call(sentences[:1])
    for _ in range(rounds):
        for name, call in calls.items():
            for sentence in sentences[:SINGLE_CALLS]:
                started = time.perf_counter()
                call([sentence])
                latencies[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(0, len(batched), BATCH):
                call(batched[i: i + BATCH])
            batch_seconds[name] += time.perf_counter() - started
    out = {}
    for name in calls:
        values = sorted(latencies[name])
        out[name] = {"single_p50_ms": round(1000 * statistics.median(values), 2),
                     "single_p99_ms": round(1000 * values[min(len(values) - 1, int(0.99 * len(values)))], 2),
                     "single_per_second": round(len(values) / sum(values), 1),
                     "batch_sentences_per_second": round(rounds * len(batched) / batch_seconds[name], 1)}
    return out


def dev_accuracy(model_dir: Path, backends: list[str]) -> dict:
    """Every task's dev metric and the composite per backend, on the full dev sets."""
    from mtbert.evaluate import evaluate_split
    from mtbert.train.data import labelled_split, load_task_splits

    out = {}
    for backend in backends:
        predictor = Predictor.from_pretrained(model_dir, backend=backend)
        data = load_task_splits(predictor.model, DATA, None, splits=("dev",))
        started = time.perf_counter()
        metrics, _ = evaluate_split(predictor.model, labelled_split(data, "dev"), 128, predictor.precision,
                                    forward=predictor.backend.scores, progress=False)
        out[backend] = {**{k: round(v, 4) for k, v in metrics.items()},
                        "seconds": round(time.perf_counter() - started, 1),
                        "precision": PRECISION_SHOWN.get(backend, predictor.precision.name)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a MiniLM model directory (default: serve.py's few-step model)")
    parser.add_argument("--models", default="all-MiniLM-L6-v2,bert-base")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=256, help="SST dev sentences (batches of 32 over them)")
    parser.add_argument("--accuracy", action="store_true", help="also score every backend on the full dev sets")
    parser.add_argument("--name", default="inference_speed")
    args = parser.parse_args()
    sentences = [e.texts[0] for e in read_examples(TASKS["sst"], DATA / "ids-sst-dev.csv",
                                                   limit=args.sentences).examples]
    records, rows = {}, []
    with tempfile.TemporaryDirectory() as scratch:
        for kind in args.models.split(","):
            folder = Path(scratch) / kind
            if kind == "bert-base":
                source = bert_base_model(folder)
            else:
                from serve import a_model

                source = args.model or a_model(REPO / "runs" / "serve-bench-model")
            model_dir = folder / "model"
            shutil.copytree(source, model_dir, ignore=shutil.ignore_patterns("onnx"))  # graphs built here, timed
            calls, built = {}, {}
            for backend in BACKENDS:
                started = time.perf_counter()
                predictor = Predictor.from_pretrained(model_dir, backend=backend)
                built[backend] = {"load_seconds": round(time.perf_counter() - started, 1),
                                  "precision": PRECISION_SHOWN.get(backend, predictor.precision.name)}
                calls[backend] = (lambda p: lambda batch: p.predict("sst", batch))(predictor)
            st_model, why = sentence_transformers_onnx(model_dir, folder)
            if st_model is not None:
                calls["sentence-transformers onnx (encoder only)"] = lambda batch: st_model.encode(batch, batch_size=BATCH)
            timings = time_backends(calls, sentences, args.rounds)
            torch_rates = timings["torch"]
            for name, result in timings.items():
                result["batch_speed_up"] = round(result["batch_sentences_per_second"]
                                                 / torch_rates["batch_sentences_per_second"], 2)
                result["single_speed_up"] = round(result["single_per_second"] / torch_rates["single_per_second"], 2)
                precision = built.get(name, {}).get("precision", "fp32")
                rows.append([kind, name, precision, result["single_p50_ms"], result["single_p99_ms"],
                             result["batch_sentences_per_second"], f"{result['batch_speed_up']:.2f}x",
                             f"{result['single_speed_up']:.2f}x"])
            records[kind] = {"timings": timings, "built": built,
                             "sentence_transformers_onnx": why or "timed"}
            if args.accuracy and kind != "bert-base":
                records[kind]["dev"] = dev_accuracy(model_dir, list(BACKENDS))
    info = machine(torch.device("cpu"))
    table = markdown_table(["model", "backend", "precision", "single p50 ms", "single p99 ms",
                            f"batch of {BATCH}: sentences/s", "batch speed-up", "single speed-up"], rows)
    print(f"\nMachine: {info['device']} (1-min load {info.get('load_average_1min')}); {args.rounds} alternating "
          f"rounds of {SINGLE_CALLS} single SST dev sentences and {args.sentences} in batches of {BATCH}\n")
    print(table)
    accuracy_rows = []
    for kind, record in records.items():
        for backend, metrics in record.get("dev", {}).items():
            accuracy_rows.append([kind, backend, metrics["precision"], metrics["sst_acc"],
                                  metrics["quora_acc"], metrics["sts_pearson"], metrics["composite"]])
    accuracy = ""
    if accuracy_rows:
        accuracy = markdown_table(["model", "backend", "precision", "SST acc", "Quora acc", "STS r", "composite"],
                                  accuracy_rows)
        print(f"\nFull dev sets, {args.model}:\n\n{accuracy}")
    save(args.name, {"machine": info, "rounds": args.rounds, "sentences": args.sentences,
                     "model": str(args.model) if args.model else "serve.py's few-step model", "records": records,
                     "table": table, "accuracy_table": accuracy})


if __name__ == "__main__":
    main()
