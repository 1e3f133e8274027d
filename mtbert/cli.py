"""``mtbert train | evaluate | predict | export | soup | serve | search | report | compare``: the command line over
the Python API."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

from .cli_args import Parser, existing, input_path, non_negative_int, positive_int, writable

log = logging.getLogger("mtbert")


def _setup_logging(run_dir: Optional[Path] = None, main_process: bool = True) -> None:
    """INFO to stderr and ``run_dir/train.log``; under torchrun only rank 0 logs below WARNING and
    writes the file."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if run_dir is not None and main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run_dir / "train.log", encoding="utf-8"))
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train import default_run_dir
    from .train.distributed import current_world

    overrides = list(args.set)
    if args.device:
        from .precision import resolve_device

        resolve_device(args.device, option="--device")  # named as the user gave it, before any work
        overrides.append(f"train.device={args.device}")
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").exists():
            raise FileNotFoundError(f"{run_dir / 'config.yaml'} not found: --resume takes a run directory")
        if (run_dir / "results.json").exists() and not (run_dir / "checkpoint.pt").exists():
            print(f"{run_dir} finished (results.json) and kept no checkpoint: nothing to resume")
            return 0
        if args.config or args.variant:
            raise ValueError("--resume continues a run with its saved config.yaml; do not pass --config or --variant")
        config = load_config(run_dir / "config.yaml", overrides)
    else:
        if not args.config:
            raise ValueError("mtbert train needs --config FILE (e.g. recipes/quickstart.yaml) or --resume RUN_DIR")
        config = load_config(args.config, overrides, args.variant)
        run_dir = default_run_dir(config, args.output_dir)
        if holds_a_run(run_dir) and not args.overwrite:
            raise FileExistsError(f"{run_dir} already holds a run: --resume {run_dir} to continue it, "
                                  "--overwrite to start again, or --output-dir for a new directory")
    world = current_world()
    created = not run_dir.exists()
    try:
        return _train_in(args, config, run_dir, world)
    except BaseException:
        if created and world.is_main:
            remove_if_nothing_ran(run_dir)
        raise


def remove_if_nothing_ran(run_dir: Path) -> None:
    """A run directory this command created and that holds no run yet (a config or data problem stopped it
    before the first checkpoint): removed, so a failed start leaves nothing behind to trip the next one."""
    from .train.lock import LOCK_FILE

    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {LOCK_FILE, "train.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)


def _train_in(args: argparse.Namespace, config, run_dir: Path, world) -> int:
    from .train import Trainer
    from .train.distributed import close_world
    from .train.lock import run_directory_lock

    lock = run_directory_lock(run_dir) if world.is_main else contextlib.nullcontext()
    finished = False
    with lock:
        if args.overwrite and not args.resume and world.is_main:
            empty_run_directory(run_dir)
        _setup_logging(run_dir, world.is_main)
        try:
            # No name keeps the Trainer: close_world can then free it, and the process group it holds,
            # while the interpreter is fully alive.
            results = Trainer(config, run_dir, data_dir=args.data_dir,
                              trust_checkpoint=args.trust_checkpoint).train(resume=bool(args.resume))
            finished = True
        finally:
            close_world(finished)
    if world.is_main:
        print(run_summary(results, run_dir))
    return 130 if results.get("interrupted") else 0


RUN_FILES = ("config.yaml", "checkpoint.pt", "results.json", "metrics.jsonl")


def holds_a_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in RUN_FILES)


def empty_run_directory(run_dir: Path) -> None:
    """``--overwrite``: start from an empty directory, so nothing of the old run (predictions, analysis,
    report) is left beside the new one. Only a directory that holds a run is emptied."""
    from .train.lock import LOCK_FILE

    if not run_dir.exists():
        return
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_FILE]
    if entries and not (holds_a_run(run_dir) or (run_dir / "train.log").exists()):
        raise FileExistsError(f"{run_dir} is not a run directory ({', '.join(RUN_FILES)} are missing) and is not "
                              "empty: --overwrite empties only run directories; choose another --output-dir")
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def run_summary(results: dict, run_dir: Path) -> str:
    """What a person wants to see when training ends; everything else is in results.json."""
    if results.get("interrupted"):
        return f"interrupted at step {results['step']}; continue with: mtbert train --resume {run_dir}"
    best = results.get("best") or {}
    metrics = [(key, value) for key, value in best.items()
               if key not in ("step", "epoch", "split", "train_loss", "lr") and isinstance(value, (int, float))]
    lines = [f"trained {results['steps']} steps in {results['train_seconds'] / 60:.1f} min "
             f"({results['train_tokens_per_second']:,.0f} tokens/s, {results['precision']} on {results['device']})"]
    skipped = results.get("skipped_nonfinite_batches", 0)
    if skipped:
        lines.append(f"warning: {skipped} update(s) skipped for a non-finite loss (results.json: "
                     "skipped_nonfinite_batches); the model learned from fewer batches than planned")
    if metrics:
        lines.append(f"best dev, after step {best.get('step')} (epoch {best.get('epoch')}):")
        width = max(len(key) for key, _ in metrics)
        lines += [f"  {key:<{width}}  {value:.4f}" for key, value in metrics]
    lines.append(f"model: {run_dir / 'best'}   predictions: {run_dir / 'predictions'}")
    lines.append(f"all numbers: {run_dir / 'results.json'}; run directory {results.get('run_bytes', 0) / 2**20:,.0f} MiB")
    return "\n".join(lines)


def _load_model_and_precision(args: argparse.Namespace):
    from .multitask import MultitaskModel
    from .precision import resolve_device, resolve_precision

    device = resolve_device(args.device, option="--device")
    model = MultitaskModel.from_pretrained(args.model, base=args.base)
    return model.to(device), resolve_precision(args.precision, device)


def model_data_dir(model, flag: Optional[Path]) -> Path:
    """Where a saved model's task files are: ``--data-dir``, ``$MTBERT_DATA_DIR``, where it was trained."""
    from .config import describe_data_dirs, resolve_data_dir

    data_dir = resolve_data_dir(flag, model.data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} not found (places, first set wins: "
                                f"{describe_data_dirs(flag, model.data_dir)}; the model's is where it was trained)")
    return data_dir


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_split, prediction_file_name, write_predictions
    from .train.data import labelled_split, load_task_splits

    _setup_logging()
    forward = None
    if args.backend == "torch":
        model, precision = _load_model_and_precision(args)
    else:  # the Predictor's backend scores the batches (its model still tokenizes and batches them)
        from .inference import Predictor

        predictor = Predictor.from_pretrained(args.model, args.device, args.precision, args.base,
                                              backend=args.backend)
        model, precision, forward = predictor.model, predictor.precision, predictor.backend.scores
    data = load_task_splits(model, model_data_dir(model, args.data_dir), args.limit, splits=(args.split,))
    metrics, predictions = evaluate_split(model, labelled_split(data, args.split), args.batch_size, precision,
                                        args.max_tokens, forward=forward)
    if args.output_dir:
        for task, result in predictions.items():
            spec = model.specs[task]
            write_predictions(Path(args.output_dir) / prediction_file_name(spec, args.split), spec, result.ids,
                              result.predictions)
    print(json.dumps({"split": args.split, **metrics}, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Labels, probabilities and scores for sentences or pairs, from --text, a file, or standard input."""
    from .evaluate import write_predictions
    from .inference import Predictor
    from .inference.inputs import read_inputs, read_stream, task_files_of, valid_unicode, write_answers
    from .precision import resolve_device
    from .tasks.readers import read_text

    _setup_logging()
    resolve_device(args.device, option="--device")  # a bad --device is named before the model loads
    predictor = Predictor.from_pretrained(args.model, args.device, args.precision, args.base, args.batch_size,
                                          args.max_tokens, args.backend)
    specs = predictor.tasks
    for task in args.task or []:
        predictor.spec(task)  # unknown tasks are named before any work
    single = specs[args.task[0]] if args.task and len(args.task) == 1 else None
    if single is None and not args.task and len(specs) == 1:  # a one-task model needs no --task
        single = next(iter(specs.values()))
    found_tasks: list[str] = []
    if args.text:
        if args.text_pair and len(args.text_pair) != len(args.text):
            raise ValueError("give one --text-pair per --text")
        for flag, values in (("--text", args.text), ("--text-pair", args.text_pair or [])):
            for number, value in enumerate(values, start=1):
                if not valid_unicode(value):
                    raise ValueError(f"{flag} number {number} holds bytes that are not UTF-8 text")
        inputs = [(t,) if not args.text_pair else (t, p) for t, p in zip(args.text, args.text_pair or args.text)]
        ids = [str(i + 1) for i in range(len(inputs))]
    else:
        if args.input is None and sys.stdin.isatty():
            raise ValueError("give --text (and --text-pair for pairs), --input FILE, or inputs on standard input")
        source = "<stdin>" if args.input in (None, "-") else str(args.input)
        text = read_stream(sys.stdin, source) if source == "<stdin>" else read_text(Path(args.input))
        if single is None and not args.task and source != "<stdin>":  # a task file says whose it is
            found_tasks = task_files_of(text, specs)
            single = specs[found_tasks[0]] if found_tasks else None
        ids, inputs = read_inputs(text, source, single, None if source == "<stdin>" else Path(args.input),
                                  known=list(specs.values()))
    pairs = len(inputs[0]) == 2
    if any(len(item) != len(inputs[0]) for item in inputs):
        raise ValueError("the inputs mix single sentences and pairs: give one kind per call")
    tasks = args.task or found_tasks or [name for name, spec in specs.items() if spec.is_pair == pairs]
    for task in tasks:
        if specs[task].is_pair != pairs:
            raise ValueError(f"task {task!r} takes {'pairs' if specs[task].is_pair else 'one sentence'}: "
                             f"{'--text-pair does not apply' if pairs else 'give --text-pair (or tab-separated pairs)'}")
    if not tasks:
        raise ValueError(f"the model has no task that takes {'pairs' if pairs else 'single sentences'}")
    answers = predictor.predict_tasks([item if pairs else item[0] for item in inputs], tasks)
    if args.output:
        if len(tasks) != 1:
            raise ValueError("--output writes one task's leaderboard file: name the task with --task")
        spec = specs[tasks[0]]
        values = [a.score if a.score is not None else a.label_id for a in answers[tasks[0]]]
        write_predictions(Path(args.output), spec, ids, values)
        print(f"wrote {len(ids)} predictions to {args.output}")
        return 0
    write_answers(sys.stdout, args.format, ids, inputs, answers, {task: specs[task] for task in tasks})
    return 0


BACKEND_OPTION = dict(default="torch", choices=["torch", "onnx", "onnx-int8"],
                      help="torch (default); onnx or onnx-int8: onnxruntime on the CPU, fp32 graphs or the encoder "
                      "in int8 (needs the onnx extra; graphs built on first use into MODEL/onnx)")


def cmd_export(args: argparse.Namespace) -> int:
    from .inference.export import export_onnx, export_sentence_transformers, export_transformers_classifier
    from .multitask import MultitaskModel

    _setup_logging()
    model = MultitaskModel.from_pretrained(args.model, base=args.base).eval()
    output = Path(args.output)
    if args.format == "onnx":
        import importlib.util

        if importlib.util.find_spec("onnx") is None:  # the exporter writes through it
            raise ImportError("--format onnx needs the onnx extra: pip install -e '.[onnx]' (onnx, onnxruntime)")
        if args.int8 and importlib.util.find_spec("onnxruntime") is None:  # its quantiser writes the int8 graph
            raise ImportError("--int8 needs onnxruntime: pip install -e '.[onnx]'")
        export_onnx(model, output, args.overwrite, int8=args.int8, source=args.model)
    elif args.format == "transformers":
        if not args.task:
            raise ValueError(f"--format transformers writes one task: give --task ({', '.join(model.specs)})")
        export_transformers_classifier(model, args.task, output, args.overwrite, source=args.model)
    else:
        export_sentence_transformers(model, output, args.pooling, args.normalize, args.overwrite, source=args.model)
    print(f"wrote {output} ({args.format})")
    return 0


def dev_scorer(model, data_dir_flag: Optional[Path], precision, batch_size: int, max_tokens: Optional[int]):
    """A function model -> dev composite, over the dev sets of ``model``'s tasks, read and tokenized once
    (every model it scores must read them alike: a soup's ingredients do)."""
    from .evaluate import evaluate_split
    from .train.data import labelled_split, load_task_splits

    dev = labelled_split(load_task_splits(model, model_data_dir(model, data_dir_flag), splits=("dev",)), "dev")

    def score(candidate) -> float:
        metrics, _ = evaluate_split(candidate.to(precision.device), dev, batch_size, precision, max_tokens)
        log.info("dev: %s", " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        return metrics["composite"]
    return score


def cmd_soup(args: argparse.Namespace) -> int:
    from .experiments.soup import make_soup, model_directory
    from .multitask import MultitaskModel
    from .precision import resolve_device, resolve_precision

    _setup_logging()
    device = resolve_device(args.device, option="--device")
    precision = resolve_precision(args.precision, device)
    score = None
    if args.method == "greedy" or not args.no_eval:
        first = MultitaskModel.from_pretrained(model_directory(args.models[0]))
        score = dev_scorer(first, args.data_dir, precision, args.batch_size, args.max_tokens)
    record = make_soup(args.models, args.output, args.method, score, args.overwrite)
    used = len(record["used"])
    scored = f", dev composite {record['score']:.4f}" if "score" in record else ""
    print(f"wrote {args.output} ({args.method} soup of {used} of {len(record['ingredients'])} models{scored})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .precision import resolve_device
    from .serve.app import serve

    _setup_logging()
    resolve_device(args.device, option="--device")
    serve(str(args.model), args.host, args.port, args.device, args.precision, args.window_ms, args.max_tokens,
          str(args.base) if args.base else None, args.backend)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .experiments.search import format_table, run_search

    output = Path(args.output_dir or Path("runs") / f"search-{Path(args.config).stem}")
    _setup_logging(output)
    summary = run_search(args.config, output, args.trials, args.storage, args.study, tuple(args.set))
    print(format_table(summary["trials"]))
    if "best" in summary:
        best = summary["best"]
        print(f"\nbest: trial {best['number']}, {best['value']:.4f} with {json.dumps(best['params'])}; "
              f"recipe {best['recipe']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .experiments.report import write_report

    path = write_report(args.run_dir, args.output)
    print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .experiments.compare import compare

    print(compare(args.run_dirs, args.html, by_seed=args.by_seed))
    if args.html:
        print(f"\nwrote {args.html}")
    return 0


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mtbert")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mtbert", description="Multitask fine-tuning of BERT encoders.")
    parser.add_argument("--version", action="version", version=f"mtbert {package_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks instead of one-line errors (accepted anywhere on the line)")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune an encoder on one or more tasks")
    train.add_argument("--config", type=existing("file"), help="YAML recipe, e.g. recipes/quickstart.yaml")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set train.lr=3e-5 (repeatable)")
    train.add_argument("--variant", action="append", default=[], metavar="NAME",
                       help="apply one of the recipe's named variants (an ablation, its cpu scale; repeatable)")
    train.add_argument("--output-dir", type=writable("dir"), help="run directory (default runs/<name>)")
    train.add_argument("--resume", metavar="RUN_DIR", type=existing("dir"),
                       help="continue a stopped run from its checkpoint")
    train.add_argument("--overwrite", action="store_true", help="start again in a directory that holds a run")
    train.add_argument("--trust-checkpoint", action="store_true",
                       help="--resume from a checkpoint.pt that has no checksum beside it (it cannot be verified)")
    train.add_argument("--data-dir", type=existing("dir"), help="directory of the task files (before $MTBERT_DATA_DIR, the config's "
                       "data.dir and ./data)")
    train.add_argument("--device", help="auto (CUDA when present), cpu, cuda or cuda:N (the same as --set train.device=)")
    train.set_defaults(handler=cmd_train)

    for name, handler, help_text in (("evaluate", cmd_evaluate, "score a trained model on a labelled split"),
                                     ("predict", cmd_predict, "predict with a trained model")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--model", required=True, type=existing("dir"), help="a model directory (a run's best/)")
        command.add_argument("--base", type=existing("dir"),
                             help="for a delta model whose base encoder has moved: its directory now")
        command.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
        command.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                             help="autocast: auto is bf16 on a CPU with native bf16 and on CUDA, else fp32")
        command.add_argument("--batch-size", type=positive_int, default=128, help="most examples per batch")
        command.add_argument("--max-tokens", type=non_negative_int, default=None,
                             help="most padded tokens per batch (0: no cap; default 1024 on CPU, no cap on a GPU)")
        command.set_defaults(handler=handler)
        command.add_argument("--backend", **BACKEND_OPTION)
        if name == "evaluate":
            command.add_argument("--data-dir", type=existing("dir"), help="directory of the task files (before $MTBERT_DATA_DIR, the "
                                 "directory the model was trained on, and ./data)")
            command.add_argument("--split", default="dev", choices=["train", "dev"])
            command.add_argument("--limit", type=positive_int, help="first N examples per task")
            command.add_argument("--output-dir", type=writable("dir"), help="also write leaderboard prediction files here")
        else:
            command.add_argument("--task", action="append", help="a task of the model, e.g. sst (repeatable; default: "
                                 "every task that takes this kind of input)")
            command.add_argument("--text", action="append", help="a sentence (repeatable)")
            command.add_argument("--text-pair", action="append", help="the second sentence, for pair tasks")
            command.add_argument("--input", type=input_path, help="a file: the task's own format (its ids are kept) or "
                                 "plain text, one sentence or tab-separated pair per line; - for standard input")
            command.add_argument("--format", choices=["text", "json", "csv"], default="text",
                                 help="text (one line per input), json (one object per line) or csv")
            command.add_argument("--output", type=writable("file"),
                                 help="write one task's leaderboard-format file instead of printing")

    export = commands.add_parser("export", help="write a trained model for sentence-transformers or ONNX")
    export.add_argument("--model", required=True, type=existing("dir"), help="a model directory (a run's best/)")
    export.add_argument("--base", type=existing("dir"), help="for a delta model whose base encoder has moved")
    export.add_argument("--format", required=True, choices=["sentence-transformers", "onnx", "transformers"],
                        help="sentence-transformers: the encoder with its pooling and length; onnx: one encoder graph "
                        "and a graph per head; "
                        "transformers: one task (--task) as a BertForSequenceClassification")
    export.add_argument("--task", help="--format transformers: the task to write")
    export.add_argument("output", type=writable("dir"), help="the directory to write")
    export.add_argument("--pooling", choices=["mean", "cls"],
                        help="sentence-transformers: the sentence vector (default: what most heads use)")
    export.add_argument("--normalize", action="store_true", help="sentence-transformers: unit-length vectors")
    export.add_argument("--int8", action="store_true", help="onnx: also the encoder with int8 weights "
                        "(encoder.int8.onnx, what --backend onnx-int8 runs)")
    export.add_argument("--overwrite", action="store_true", help="replace a directory that is not empty")
    export.set_defaults(handler=cmd_export)

    soup = commands.add_parser("soup", help="average the weights of several trained models into one")
    soup.add_argument("models", nargs="+", type=existing("dir"), help="run directories or model directories (best/)")
    soup.add_argument("--output", required=True, type=writable("dir"), help="the model directory to write")
    soup.add_argument("--method", choices=["uniform", "greedy"], default="uniform",
                      help="uniform: average all; greedy: add each model (best dev first) only if the dev composite "
                      "does not drop")
    soup.add_argument("--data-dir", type=existing("dir"), help="directory of the task files for the dev scores")
    soup.add_argument("--no-eval", action="store_true", help="uniform: do not score the soup on dev")
    soup.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    soup.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="autocast")
    soup.add_argument("--batch-size", type=positive_int, default=128, help="most examples per dev batch")
    soup.add_argument("--max-tokens", type=non_negative_int, default=None, help="most padded tokens per dev batch")
    soup.add_argument("--overwrite", action="store_true", help="replace an existing model directory at --output")
    soup.set_defaults(handler=cmd_soup)

    serve = commands.add_parser("serve", help="serve a trained model over HTTP (needs the serve extra)")
    serve.add_argument("--model", required=True, type=existing("dir"), help="a model directory (a run's best/)")
    serve.add_argument("--base", type=existing("dir"), help="for a delta model whose base encoder has moved")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=positive_int, default=8000, help="port (default 8000)")
    serve.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    serve.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="autocast")
    serve.add_argument("--window-ms", type=float, default=5.0,
                       help="how long a pass waits for more requests to share it (default 5 ms)")
    serve.add_argument("--max-tokens", type=positive_int, default=8192, help="most tokens gathered into one pass")
    serve.add_argument("--backend", **BACKEND_OPTION)
    serve.set_defaults(handler=cmd_serve)

    search = commands.add_parser("search", help="hyper-parameter search with Optuna (grid, random, TPE)")
    search.add_argument("--config", required=True, type=existing("file"),
                        help="the search file: recipe, space, sampler, trials")
    search.add_argument("--trials", type=positive_int, help="trials for this worker (default: the file's)")
    search.add_argument("--output-dir", type=writable("dir"), help="where trials, tables and best.yaml go (default runs/search-<file>)")
    search.add_argument("--storage", help="Optuna storage URL shared by workers (default sqlite in the output dir)")
    search.add_argument("--study", help="study name (default: the search file's name)")
    search.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every trial, after the file's (repeatable)")
    search.set_defaults(handler=cmd_search)

    report = commands.add_parser("report", help="an HTML report with figures of one run")
    report.add_argument("run_dir", type=existing("dir"), help="a run directory (what mtbert train wrote)")
    report.add_argument("--output", type=writable("dir"), help="directory for report.html and the PNGs (default RUN_DIR/report)")
    report.set_defaults(handler=cmd_report)

    compare = commands.add_parser("compare", help="one table of several runs: config differences, metrics, time")
    compare.add_argument("run_dirs", nargs="+", type=existing("dir"), help="run directories to put side by side")
    compare.add_argument("--html", type=writable("file"), help="also write the table as an HTML page")
    compare.add_argument("--by-seed", action="store_true",
                         help="one row per setting: runs that differ only in train.seed as mean ± sd")
    compare.set_defaults(handler=cmd_compare)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit 0 on success, 2 for bad input (one line naming the file, field or option), 1 when training
    diverged, 130 when interrupted. A fault in mtbert itself is one line too; ``--debug`` shows its traceback."""
    from .errors import USER_ERRORS, TrainingDiverged

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its one-line error (or the help, or the version)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.handler(args)
    except TrainingDiverged as error:
        print(f"mtbert {args.command}: stopped: {error}", file=sys.stderr)
        return 1
    except USER_ERRORS as error:
        if debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"mtbert {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mtbert {args.command}: interrupted before there was anything to save", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``mtbert predict ... | head``): stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that flushing stdout at exit does not raise again
        return 141
    except Exception as error:  # a bug in mtbert: one line, the traceback with --debug
        if debug:
            raise
        print(f"mtbert {args.command}: internal error: {type(error).__name__}: {error} "
              "(run again with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
