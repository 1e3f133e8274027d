"""Bad input and faults, tried through the command line as a user would meet them, counted by what the
user gets. Writes docs/reliability.md:

    python tests/reliability.py [--cases 12] [--seed 0] [--output docs/reliability.md]

Each class of input makes ``--cases`` variants (seeded), runs the matching ``mtbert`` command in this
process, and sorts the outcome: a one-line error (exit 2), a stop with a reason (exit 1), accepted (the
input was valid after all: exit 0), or anything else (a traceback, a wrong exit status): the column that
must stay at zero. tests/test_reliability.py runs a few cases of every class.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtbert.cli import main  # noqa: E402

DATA = Path(os.environ.get("MTBERT_DATA_DIR") or REPO.parent / "shared" / "data")
OUTCOMES = ("one-line error (exit 2)", "stopped with a reason (exit 1)", "accepted (exit 0)", "traceback or other")


def run_cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except BaseException as error:  # noqa: BLE001 - anything escaping main is what we count
            return -1, f"{type(error).__name__}: {error}"
    return code, err.getvalue()


def outcome(code: int, err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("mtbert ")]
    if "Traceback" in err or code < 0:
        return OUTCOMES[3]
    if code == 2 and len(errors) == 1:
        return OUTCOMES[0]
    if code == 1 and len(errors) == 1 and "internal error" not in errors[0]:
        return OUTCOMES[1]
    if code == 0:
        return OUTCOMES[2]
    return OUTCOMES[3]


# ----- a tiny model and run to damage -------------------------------------------------------
def tiny_checkpoint(folder: Path) -> Path:
    import torch

    from mtbert import BertConfig, BertModel
    from mtbert.bert.checkpoint import embedded_model_path

    directory = folder / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(directory)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(embedded_model_path() / name, directory / name)
    return directory


def tiny_settings(checkpoint: Path) -> list[str]:
    values = {"model.name": checkpoint, "data.limit": 16, "train.epochs": 1, "train.batch_size": 8, "train.lr": 1e-3,
              "train.progress": "false", "model.max_length": 32, "train.device": "cpu", "train.checkpoint_every": 2}
    return [item for key, value in values.items() for item in ("--set", f"{key}={value}")]


class Workbench:
    """Everything the cases need: a tiny encoder, a finished run, a copy of the data."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.checkpoint = tiny_checkpoint(folder)
        self.data = folder / "data"
        shutil.copytree(DATA, self.data, ignore=shutil.ignore_patterns("cfimdb*"))
        self.run = folder / "run"
        code, err = run_cli(["train", "--config", str(REPO / "recipes" / "quickstart.yaml"), "--output-dir",
                             str(self.run), "--data-dir", str(self.data), *tiny_settings(self.checkpoint)])
        if code != 0:
            raise RuntimeError(f"the workbench run failed: {err[-2000:]}")
        self.count = 0

    def fresh(self, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{name}-{self.count}"
        return path

    def train(self, *extra: str, run: Path | None = None) -> list[str]:
        return ["train", "--config", str(REPO / "recipes" / "quickstart.yaml"), "--output-dir",
                str(run or self.fresh("train")), "--data-dir", str(self.data), *tiny_settings(self.checkpoint), *extra]


# ----- the classes ------------------------------------------------------------------------
def data_file_case(bench: Workbench, rng: random.Random) -> list[str]:
    """One dev file of one task damaged in one way; scored with mtbert evaluate."""
    stem, columns = rng.choice([("ids-sst-dev.csv", 4), ("quora-dev.csv", 5), ("sts-dev.csv", 5)])
    lines = (bench.data / stem).read_text(encoding="utf-8").splitlines(keepends=True)[:30]
    row = rng.randrange(1, len(lines))
    fields = lines[row].rstrip("\n").split("\t")
    mutation = rng.choice(MUTATIONS)
    text = mutation(lines, row, fields, rng, columns)
    data = bench.fresh("data")
    shutil.copytree(bench.data, data)
    target = data / stem
    if isinstance(text, str) and text == "<directory>":
        target.unlink()
        target.mkdir()
    else:
        target.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return ["evaluate", "--model", str(bench.run / "best"), "--data-dir", str(data), "--limit", "40"]


def _row(lines, row, fields):
    return "".join(lines[:row]) + "\t".join(fields) + "\n" + "".join(lines[row + 1:])


MUTATIONS: list[Callable] = [
    lambda lines, row, fields, rng, n: _row(lines, row, fields[:-2]),                                 # short row
    lambda lines, row, fields, rng, n: _row(lines, row, fields[:-1] + [rng.choice(["x", "7", "-1", "nan", "1e9"])]),
    lambda lines, row, fields, rng, n: _row(lines, row, fields[:2] + ['"' + fields[2]] + fields[3:]),  # open quote
    lambda lines, row, fields, rng, n: _row(lines, row, fields[:2] + [""] + fields[3:]),              # empty text
    lambda lines, row, fields, rng, n: _row(lines, row, fields[:1] + [lines[1].split("\t")[1]] + fields[2:]),
    lambda lines, row, fields, rng, n: _row(lines, row, fields[:1] + [fields[1] + " , 1"] + fields[2:]),  # forged id
    lambda lines, row, fields, rng, n: (_row(lines, row, fields).encode() + b"\xff\xfe bad \xe9\n"),  # not UTF-8
    lambda lines, row, fields, rng, n: lines[0],                                                      # header only
    lambda lines, row, fields, rng, n: "",                                                            # empty file
    lambda lines, row, fields, rng, n: "<directory>",                                                 # a directory
    lambda lines, row, fields, rng, n: lines[0].replace("id", "identifier") + "".join(lines[1:]),    # column renamed
    lambda lines, row, fields, rng, n: _row(lines, row, fields[:2] + [fields[2] + "\x00"] + fields[3:]),  # NUL
    lambda lines, row, fields, rng, n: "".join(lines).replace("\n", "\r\n"),                         # CRLF (valid)
    lambda lines, row, fields, rng, n: _row(lines, row, fields[:-1] + [""]),                          # empty label (skipped)
]


CONFIG_FIELDS = ["train.lr", "train.eps", "train.epochs", "train.batch_size", "train.warmup_ratio",
                 "train.weight_decay", "train.max_grad_norm", "train.max_steps", "train.bucket_batches",
                 "train.num_threads", "data.limit", "data.shrink", "model.max_length", "train.smart.epsilon",
                 "train.betas", "train.device", "train.precision", "train.schedule", "train.balancer",
                 "model.heads.sst.dropout", "data.custom_tasks", "train.unknown_field", "data.tasks"]
CONFIG_VALUES = ["0", "-1", "-0.5", ".nan", ".inf", "1e9", "[0.9]", "[1", "{a: 1}", "''", "x", "null", "gpu",
                 "[{name: t, kind: binary}]", "[nope]", "1.5", "2"]


def config_case(bench: Workbench, rng: random.Random) -> list[str]:
    changes = [f"{rng.choice(CONFIG_FIELDS)}={rng.choice(CONFIG_VALUES)}" for _ in range(rng.randint(1, 2))]
    return bench.train(*[item for change in changes for item in ("--set", change)], "--set", "train.max_steps=2")


def cli_path_case(bench: Workbench, rng: random.Random) -> list[str]:
    a_file, a_dir, missing = str(REPO / "README.md"), str(bench.folder), str(bench.folder / "missing")
    return rng.choice([
        ["train", "--config", rng.choice([a_dir, missing])],
        ["train", "--resume", rng.choice([a_file, missing, a_dir])],
        ["train", "--config", str(REPO / "recipes" / "quickstart.yaml"), "--output-dir", a_file],
        ["evaluate", "--model", rng.choice([a_file, missing, a_dir])],
        ["evaluate", "--model", str(bench.run / "best"), "--data-dir", rng.choice([a_file, missing])],
        ["predict", "--model", str(bench.run / "best"), "--task", "sst", "--input", rng.choice([a_dir, missing])],
        ["predict", "--model", str(bench.run / "best"), "--task", rng.choice(["nli", "sts", "sst"]), "--text", "a",
         "--text-pair", "b"],
        ["predict", "--model", str(bench.run / "best"), "--task", "sst", "--batch-size", rng.choice(["0", "-3", "x"])],
        ["report", rng.choice([a_file, missing])],
        ["compare", missing],
        ["search", "--config", rng.choice([a_dir, str(REPO / "README.md")])],
    ])


def damaged_run_case(bench: Workbench, rng: random.Random) -> list[str]:
    run = bench.fresh("damaged")
    shutil.copytree(bench.run, run)
    victims = [p for p in (run / "best").iterdir()] + [run / "checkpoint.pt", run / "config.yaml",
                                                       run / "metrics.jsonl"]
    victim = rng.choice(victims)
    data = victim.read_bytes()
    how = rng.choice(["truncate", "flip", "garbage", "delete"])
    if how == "truncate":
        victim.write_bytes(data[: len(data) // 3])
    elif how == "flip":
        cut = rng.randrange(len(data)) if data else 0
        victim.write_bytes(data[:cut] + bytes(b ^ 0xFF for b in data[cut:cut + 16]) + data[cut + 16:])
    elif how == "garbage":
        victim.write_bytes(os.urandom(64))
    else:
        victim.unlink()
    if victim.parent.name == "best":
        return ["evaluate", "--model", str(run / "best"), "--data-dir", str(bench.data), "--limit", "8"]
    if victim.name == "metrics.jsonl":
        return ["report", str(run)]
    (run / "results.json").unlink()  # an unfinished run: resume must read the checkpoint
    return ["train", "--resume", str(run)]


def non_finite_case(bench: Workbench, rng: random.Random) -> list[str]:
    lr = rng.choice(["1e6", "1e8", "1e12"])
    return bench.train("--set", f"train.lr={lr}", "--set", "train.max_grad_norm=0", "--set", "train.warmup_ratio=0",
                       "--set", "train.max_nonfinite_steps=2")


def concurrency_case(bench: Workbench, rng: random.Random) -> list[str]:
    """A second writer into a directory whose lock another (live) process holds."""
    run = bench.fresh("busy")
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, time\n"
        f"h = open({str(run / '.lock')!r}, 'a+'); fcntl.flock(h, fcntl.LOCK_EX); h.write('process 1'); h.flush()\n"
        "print('held', flush=True); time.sleep(30)")], stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    bench.holders.append(holder)
    return bench.train("--overwrite", run=run) if rng.random() < 0.5 else bench.train(run=run)


def restamp(model: Path) -> None:
    """Checksums written again after an edit: what a careless tool (or a bug) leaves behind."""
    from mtbert.integrity import write_checksums

    write_checksums(model)


def loaded_values_case(bench: Workbench, rng: random.Random) -> list[str]:
    """A model or checkpoint whose values cannot be right, checksums or not."""
    import json as json_module

    import torch
    from safetensors.torch import load_file, save_file

    from mtbert.train.state import atomic_torch_save

    run = bench.fresh("values")
    shutil.copytree(bench.run, run)
    best = run / "best"
    how = rng.choice(["nan head", "inf encoder", "length", "no checksum", "step"])
    if how in ("nan head", "inf encoder"):
        name = "heads.safetensors" if how == "nan head" else "model.safetensors"
        tensors = load_file(str(best / name))
        key = rng.choice([k for k, v in tensors.items() if v.is_floating_point()])
        tensors[key].view(-1)[0] = float("nan") if how == "nan head" else float("inf")
        save_file(tensors, str(best / name), metadata={"format": "pt"})
        restamp(best)
        return ["predict", "--model", str(best), "--text", "A film.", "--format", "json"]
    if how == "length":
        description = json_module.loads((best / "mtbert.json").read_text(encoding="utf-8"))
        description["max_length"] = rng.choice([0, -4, 10 ** 6, "64"])
        (best / "mtbert.json").write_text(json_module.dumps(description), encoding="utf-8")
        restamp(best)
        return ["evaluate", "--model", str(best), "--data-dir", str(bench.data), "--limit", "8"]
    (run / "results.json").unlink()
    if how == "no checksum":
        (run / "checkpoint.pt.sha256").unlink()
    else:
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        state[rng.choice(["step", "epoch", "position"])] = rng.choice([10 ** 9, -1])
        atomic_torch_save(state, run / "checkpoint.pt")
    return ["train", "--resume", str(run)]


def odd_value_case(bench: Workbench, rng: random.Random) -> list[str]:
    """Values a user can type that are not what the command takes."""
    best = str(bench.run / "best")
    inputs = bench.fresh("inputs")
    inputs.mkdir()
    (inputs / "header.csv").write_text("id\tsentence\tsentiment\n", encoding="utf-8")
    (inputs / "blank.txt").write_text(rng.choice(["", "\n", "  \n\t\n"]), encoding="utf-8")
    (inputs / "commas.csv").write_text("id,sentence,sentiment\na1,A film.,3\n", encoding="utf-8")
    return rng.choice([
        ["predict", "--model", best, "--task", "sst", "--input", str(inputs / rng.choice(["header.csv", "blank.txt",
                                                                                          "commas.csv"]))],
        ["predict", "--model", best, "--text", rng.choice(["caf\udcc3\udca9", "\udcff", "ok \udc80 bytes"])],
        ["predict", "--model", best, "--text", "A film.", "--device", rng.choice(["gpu", "cuda:x", "tpu", "CPU"])],
        ["evaluate", "--model", best, "--device", rng.choice(["gpu0", "npu"])],
        bench.train("--set", f"model.max_length={rng.choice([129, 512, 4096])}"),
        ["search", "--config", str(REPO / "recipes" / "search" / "quickstart.yaml"), "--trials", "1", "--output-dir",
         str(inputs / "search"), "--storage", rng.choice(["not a url", "sqlite:////no/such/dir/x.db", "://", "x:y"])],
    ])


def export_target_case(bench: Workbench, rng: random.Random) -> list[str]:
    """--overwrite aimed at the model being exported, its run, a folder holding it, or another run."""
    run = bench.fresh("export")
    shutil.copytree(bench.run, run)
    other = bench.fresh("other-run")
    shutil.copytree(bench.run, other)
    target = rng.choice([run / "best", run, run.parent, other, other / "best"])
    return ["export", "--model", str(run / "best"), "--format", "sentence-transformers", str(target), "--overwrite"]


CLASSES: dict[str, Callable] = {
    "data files (malformed rows, encodings, quotes, ids, empty splits, directories)": data_file_case,
    "config values (--set: ranges, non-finite, tuple lengths, YAML, unknown fields, custom tasks)": config_case,
    "command-line paths and arguments (missing, wrong kind, pair for a single-sentence task, sizes)": cli_path_case,
    "damaged run files (best/ files, checkpoint.pt, config.yaml, metrics.jsonl: truncated, flipped, garbage, deleted)":
        damaged_run_case,
    "non-finite training (learning rates that diverge)": non_finite_case,
    "two writers in one run directory": concurrency_case,
    "loaded values that cannot be right (non-finite weights, lengths, a checkpoint without its checksum or with "
    "an unreachable step)": loaded_values_case,
    "odd values (devices, non-UTF-8 text, header-only, blank or mis-delimited inputs, lengths beyond the encoder, "
    "storage URLs)": odd_value_case,
    "export targets (the model itself, its run, a folder holding it, another run)": export_target_case,
}


def run_classes(cases: int, seed: int, folder: Path) -> dict[str, dict]:
    bench = Workbench(folder)
    bench.holders = []
    table = {}
    try:
        for number, (name, make) in enumerate(CLASSES.items()):
            rng = random.Random(seed * 1000 + number)
            counts = {o: 0 for o in OUTCOMES}
            examples: dict[str, str] = {}
            for _ in range(cases):
                args = make(bench, rng)
                code, err = run_cli(args)
                result = outcome(code, err)
                counts[result] += 1
                lines = [line for line in err.splitlines() if line.startswith("mtbert ")] or err.splitlines()[-1:]
                line = (lines[0] if lines else "").replace(str(folder), "…").replace(str(REPO) + "/", "")
                examples.setdefault(result, line)
            table[name] = {"counts": counts, "examples": examples}
    finally:
        for holder in bench.holders:
            holder.kill()
    return table


def markdown(table: dict[str, dict], cases: int, seconds: float) -> str:
    import platform

    import torch

    rows = ["| class of bad input or fault | cases | " + " | ".join(OUTCOMES) + " |",
            "|---|---|" + "---|" * len(OUTCOMES)]
    for name, entry in table.items():
        rows.append(f"| {name} | {sum(entry['counts'].values())} | "
                    + " | ".join(str(entry["counts"][o]) for o in OUTCOMES) + " |")
    examples = [f"- {name}: `{entry['examples'].get(OUTCOMES[0]) or entry['examples'].get(OUTCOMES[1]) or ''}`"
                for name, entry in table.items()]
    return "\n".join([
        "# Reliability",
        "",
        "What a user gets from bad input and faults, counted. Produced by `python tests/reliability.py "
        f"--cases {cases}` (seeded variants of each class, each run through the `mtbert` command line in one "
        f"process; {seconds:.0f} s on {platform.processor() or platform.machine()}, torch {torch.__version__}). "
        "An accepted case is input that turned out valid (a row with an empty label is skipped and counted, CRLF "
        "line ends read as LF, a setting within range). The last column must be zero; `tests/test_reliability.py` "
        "runs a few cases of each class in the test suite.",
        "",
        *rows,
        "",
        "What the first error of each class read (paths shortened to …):",
        "",
        *examples,
        "",
        "Classes of fault and where they are handled: readers (`mtbert/tasks/readers.py`: encodings, quotes, ids, "
        "empty splits), one validation pass over the config (`mtbert/validation.py`), argument kinds "
        "(`mtbert/cli.py`), checksums of `best/` and `checkpoint.pt` (`mtbert/integrity.py`), a checkpoint's "
        "settings against the run's (`mtbert/train/trainer.py`), non-finite steps and weights (the trainer stops "
        "after `train.max_nonfinite_steps` and never saves non-finite weights or predictions), the run "
        "directory's lock (`mtbert/train/lock.py`), values checked when a model is loaded (`mtbert/multitask/model.py`) "
        "and a checkpoint resumed (`mtbert/train/state.py`, `trainer.py`), output directories that are never a "
        "source, model or run (`mtbert/output_dir.py`), and escaped names in the HTML report. The server's bad "
        "requests (a lone surrogate, a body nested 100,000 deep, a pass that fails) are tried with 32 concurrent "
        "clients in `tests/test_serve.py`: each fails alone with a 4xx. `--debug` shows the traceback of an "
        "internal error instead of its one line.",
        "",
    ])


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(REPO / "docs" / "reliability.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        table = run_classes(args.cases, args.seed, Path(folder))
    text = markdown(table, args.cases, time.perf_counter() - started)
    Path(args.output).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main_cli()
