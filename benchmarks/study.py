"""The five reports at full scale: a matrix of runs (row x seed), resumable across sittings.

    python benchmarks/study.py --dry-run                      # the plan, with estimated hours
    python benchmarks/study.py [--only ROW ...] [--seeds N]   # run what is not finished yet
    python benchmarks/study.py --table                        # mean ± sd per row, the claims, the recipe
    python benchmarks/study.py --write-docs docs/results.md   # the same, into the page's study section

Each row is a recipe with variants and overrides at the same budget: 3 epochs over the full training sets
(SST 8,544, Quora 14,061, STS 6,040) with all-MiniLM-L6-v2, scored on the full dev sets. Each run is a
``mtbert train`` process of its own (its peak memory is its own), alone on the machine; when it ends its
record goes to ``benchmarks/results/study/<row>/seed<N>/record.json`` (config, dev metrics per epoch,
best dev, wall time, training tokens/s, padding, peak memory, parameter counts, machine load) beside its
``predictions/`` (dev and test, leaderboard format), and its checkpoint is deleted. A rerun skips finished
runs and resumes an interrupted one from its checkpoint. ``--set`` adds overrides to every run (a smoke
test at a tiny scale; such records are marked).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from common import REPO, RESULTS, markdown_table
from lr_grid import grid_finished, next_rates
from study_report import SOUP_SIZE, load, report, rows_needing_seeds, table, tried_a_grid, write_section

RECIPES = REPO / "recipes"
FULL = ("train.epochs=3",)


@dataclasses.dataclass
class Row:
    recipe: str
    variants: tuple[str, ...] = ()
    overrides: tuple[str, ...] = FULL
    seeds: int = 3
    runner: str = "mtbert"  # a key of RUNNERS: how one seed of the row is run
    after: str = ""  # a row whose run of the same seed this one starts from (its best/)


PAPER = "papers/"
ROWS: dict[str, Row] = {
    # report 004's system with its embedding layer fixed (the study's choice: it scores the same in less time)
    "quickstart": Row("quickstart.yaml", overrides=()),
    # the quickstart before that choice: report 004's system as published (004-system's training config)
    "quickstart-trained-embeddings": Row("quickstart.yaml", overrides=("model.freeze=none",)),
    "shuffled-cosine": Row("shuffled-cosine.yaml", overrides=()),  # the quickstart before report 004's system
    "hf-reference": Row("", overrides=(), runner="transformers"),
    # quickstart-trained-embeddings with shuffled-cosine's STS head (its best STS: r 0.872 against 0.858);
    # Quora keeps the relational layer, now its own
    "quickstart-cosine-sts": Row("quickstart.yaml", overrides=("model.freeze=none", "model.heads.sts={type: cosine, "
                                                               "pooling: mean, dropout: 0.3}"), seeds=1),
    # Each report's rows differ from the row they are compared with only in the method a claim is about
    # (study_report.CLAIMS names the fields; tests/test_study.py holds every claim to it). Rows recorded
    # before a recipe took its report's form pin what they ran (a variant or override, said beside them):
    # tests/test_study.py holds every record to its row's config.
    "000-system": Row(PAPER + "000-smart-bilinear-cycled.yaml", ("cpu",)),
    "000-no-smart": Row(PAPER + "000-smart-bilinear-cycled.yaml", ("cpu", "no-smart"), seeds=1),
    # one shuffled stream (no claim of the report's: it compared sequential, zipped and cycled batches)
    "000-shuffled": Row(PAPER + "000-smart-bilinear-cycled.yaml", ("cpu",), FULL + ("train.schedule=shuffled",), 1),
    # Tables 1-3 compared on the system without SMART (a SMART run costs about 11 plain ones here)
    "000-no-smart-sequential": Row(PAPER + "000-smart-bilinear-cycled.yaml", ("cpu", "no-smart", "sequential"), seeds=1),
    "000-no-smart-zipped": Row(PAPER + "000-smart-bilinear-cycled.yaml", ("cpu", "no-smart", "zipped"), seeds=1),
    "000-no-smart-dot-product": Row(PAPER + "000-smart-bilinear-cycled.yaml", ("cpu", "no-smart", "dot-product"),
                                    seeds=1),
    "000-no-smart-uncertainty": Row(PAPER + "000-smart-bilinear-cycled.yaml", ("cpu", "no-smart", "uncertainty"),
                                    seeds=1),
    "000-no-smart-dynamic-balancing": Row(PAPER + "000-smart-bilinear-cycled.yaml",
                                          ("cpu", "no-smart", "dynamic-balancing"), seeds=1),
    # 001 at the study's 3 epochs, every model at the report's uniform lr 1e-3
    "001-adapters": Row(PAPER + "001-adapters-smart-lhuc.yaml", ("cpu",)),
    "001-baseline": Row(PAPER + "001-adapters-smart-lhuc.yaml", ("cpu", "baseline"), seeds=1),
    "001-smart": Row(PAPER + "001-adapters-smart-lhuc.yaml", ("cpu", "smart"), seeds=1),
    "001-adapters-after-layer-norm": Row(PAPER + "001-adapters-smart-lhuc.yaml", ("cpu", "adapters-after-layer-norm"),
                                         seeds=1),
    "001-no-lhuc": Row(PAPER + "001-adapters-smart-lhuc.yaml", ("cpu", "no-lhuc"), seeds=1),
    # recorded before the recipe took the report's form: adapters alone with a zero up-projection, at the
    # report's 10 epochs; LHUC alone; full fine-tuning at lr 1e-4 (the rate it needs; no claim compares it)
    "001-system": Row(PAPER + "001-adapters-smart-lhuc.yaml", ("cpu", "houlsby-zero-up"), FULL + ("train.epochs=10",)),
    "001-lhuc": Row(PAPER + "001-adapters-smart-lhuc.yaml", ("cpu", "lhuc"), FULL, 1),
    "001-full-fine-tuning": Row(PAPER + "001-adapters-smart-lhuc.yaml", ("cpu", "houlsby-zero-up", "baseline"),
                                FULL + ("train.lr=1.0e-4",), 1),
    # 002's rows were recorded with SMART on paraphrase (variant paraphrase-smart); the recipe's own form
    # (L2 for paraphrase) is 002-paraphrase-l2
    "002-system": Row(PAPER + "002-cross-encoder-shuffled.yaml", ("cpu", "paraphrase-smart")),
    "002-siamese": Row(PAPER + "002-cross-encoder-shuffled.yaml", ("cpu", "paraphrase-smart", "siamese-cosine"), FULL, 1),
    "002-no-shared-layer": Row(PAPER + "002-cross-encoder-shuffled.yaml", ("cpu", "paraphrase-smart", "no-shared-layer"),
                               FULL, 1),
    "002-sequential": Row(PAPER + "002-cross-encoder-shuffled.yaml", ("cpu", "paraphrase-smart", "sequential"), FULL, 1),
    "002-sst-smart": Row(PAPER + "002-cross-encoder-shuffled.yaml", ("cpu", "paraphrase-smart"), FULL + (
        "train.smart.tasks=[sst, quora]", "train.smart.task_weights={sst: 3.0}"), 1),
    "002-paraphrase-l2": Row(PAPER + "002-cross-encoder-shuffled.yaml", ("cpu",), FULL, 1),
    # 003's rows were recorded with mtbert's defaults where the report differs (variant mtbert-defaults:
    # SAM scored per task, symmetric KL, STS unclamped, fixed task shares); the report's form is 003-report-form
    "003-system": Row(PAPER + "003-sam-pcgrad-transformer-heads.yaml", ("cpu", "mtbert-defaults")),
    "003-no-pcgrad": Row(PAPER + "003-sam-pcgrad-transformer-heads.yaml", ("cpu", "mtbert-defaults", "no-pcgrad"), FULL, 1),
    "003-no-augmentation": Row(PAPER + "003-sam-pcgrad-transformer-heads.yaml",
                               ("cpu", "mtbert-defaults", "no-augmentation"), FULL, 1),
    "003-no-sam": Row(PAPER + "003-sam-pcgrad-transformer-heads.yaml", ("cpu", "mtbert-defaults", "full-fine-tuning"),
                      FULL, 1),
    "003-final-stage": Row(PAPER + "003-sam-pcgrad-transformer-heads.yaml", ("cpu", "mtbert-defaults"),
                           ("train.epochs=1",), 1, runner="final-stage", after="003-system"),
    "003-report-form": Row(PAPER + "003-sam-pcgrad-transformer-heads.yaml", ("cpu",), FULL, 1),
    "004-system": Row(PAPER + "004-relational-interleaved.yaml", ("cpu",)),
    # rrobin-full: the report's pair heads without the layer (S-BERT), each sentence still encoded alone
    "004-no-relational-layer": Row(PAPER + "004-relational-interleaved.yaml", ("cpu", "no-relational-layer"), FULL, 1),
    "004-combined-steps": Row(PAPER + "004-relational-interleaved.yaml", ("cpu", "combined-steps"), FULL, 1),
    "004-smart": Row(PAPER + "004-relational-interleaved.yaml", ("cpu", "no-relational-layer", "smart"), FULL, 1),
    # rrobin and rrobin+smart: equal batches to the smallest task (6,040 examples of each): little data
    "004-round-robin": Row(PAPER + "004-relational-interleaved.yaml", ("cpu", "round-robin"), FULL, 1),
    "004-round-robin-smart": Row(PAPER + "004-relational-interleaved.yaml", ("cpu", "round-robin", "smart"), FULL, 1),
    # recorded before the recipe took the report's pair heads: both pair tasks cross-encoded, SMART's
    # ascent normalised per token
    "004-cross-encoders": Row(PAPER + "004-relational-interleaved.yaml", ("cpu", "cross-encoder-pairs"), FULL, 1),
    "004-cross-encoders-smart": Row(PAPER + "004-relational-interleaved.yaml", ("cpu", "cross-encoder-pairs", "smart"),
                                    FULL + ("train.smart.ascent_scope=token",), 1),
    # One model per task, each trained alone with the quickstart's encoder, head and budget
    # (recipes/teachers/*.yaml), scored together: the teachers of the distilled rows (seed 0 is theirs).
    "teachers": Row("", overrides=(), runner="teachers"),
    # The quickstart taught by the teachers' seed 0, λ annealed from 0 to 1 (BAM!'s teacher annealing)
    # (nine seeds: three for each of distilled-soup's three soups)
    "distilled": Row("distilled.yaml", overrides=(), seeds=9),
    "distilled-fixed-weight": Row("distilled.yaml", overrides=("train.distill.anneal=false",), seeds=1),
    # the distilled row with its STS teacher's own head (cosine) for STS; Quora keeps the relational layer
    "distilled-cosine-sts": Row("distilled.yaml", overrides=(
        "model.heads.sts={type: cosine, pooling: mean, dropout: 0.3}",), seeds=1),
    # Three of the distilled row's seeds (their heads start from one draw) averaged into one model: soup
    # seed s averages distilled seeds 3s, 3s+1 and 3s+2, so that the soup's own seeds are independent
    "distilled-soup": Row("", overrides=(), runner="soup", after="distilled"),
    # The quickstart with every seed's heads from one draw, so that its seeds can be averaged, and that average
    "quickstart-shared-init": Row("quickstart.yaml", overrides=("model.init_seed=0",)),
    "quickstart-soup": Row("", overrides=(), seeds=1, runner="soup", after="quickstart-shared-init"),
    # The quickstart with report 003's per-task transformer layer as every head (SAM and PCGrad off: the study
    # found both within noise)
    "quickstart-transformer-heads": Row("quickstart.yaml", overrides=(
        "model.heads={sst: {type: transformer_layer, pooling: mean, dropout: 0.3}, quora: {type: transformer_layer, "
        "pooling: mean, dropout: 0.3}, sts: {type: transformer_layer, pooling: mean, dropout: 0.3}}",), seeds=1),
    # Stickland & Murray's annealed task sampling: one task per step, p ∝ n^α, α from 1 to 0.2
    "quickstart-annealed-sampling": Row("quickstart.yaml", overrides=("train.schedule=annealed",
                                                                      "train.step_mode=combined"), seeds=1),
}
TEACHER_TASKS = ("sst", "quora", "sts")
TEACHER_RUNS = REPO / "runs" / "teachers"  # where recipes/distilled.yaml trains (and reuses) its teachers
# 001's report trained 10 epochs of new modules at lr 1e-3; its row keeps the report's epochs (said here).
# 003's final stage trains one head at a time on the frozen system of the same seed (sst, then quora, then
# sts, each from the previous stage's best/), one epoch per head: the report gives up to 30 epochs for
# every stage; one epoch of a head alone is the share of the 3-epoch budget this row can afford.
# The transformers reference tries lr 2e-5, 3e-5 and 5e-5 per task on seed 0, widened upward while the best
# is the highest tried (benchmarks/lr_grid.py), and keeps the best on dev; its other seeds run at the rates
# seed 0 chose. A seed 0 recorded before the grid widened is finished by training only the rates it lacks,
# and a later seed whose rates are no longer seed 0's runs again.


# What a record's config may differ in from its row's without measuring something else: where the data
# lay, the seed and progress display the study sets per run, and the run's name.
NOT_THE_METHOD = ("name", "output_dir", "data.dir", "train.seed", "train.progress")


def row_config(name: str) -> dict:
    """A row's training config as its runs get it now, as dotted keys (a final-stage row's: its last stage,
    the one its record keeps). Loaded once per row: the plan asks for every row's config for each SMART row."""
    row = ROWS[name]
    return dict(_row_config(row.recipe, row.variants, row.overrides, row.runner))


@functools.lru_cache(maxsize=None)
def _row_config(recipe: str, variants: tuple[str, ...], overrides: tuple[str, ...], runner: str) -> dict:
    from mtbert.config import load_config
    from mtbert.experiments.compare import flatten

    variants = (*variants, "final-sts") if runner == "final-stage" else variants
    values = load_config(RECIPES / recipe, list(overrides), variants=variants).to_dict()
    return {k: v for k, v in flatten(values).items() if not k.startswith(NOT_THE_METHOD)}


def same_setting(now, then) -> bool:
    """Equal, or the same path inside the checkout: a record holds the absolute paths of the checkout
    it ran in (a teacher run, a data file), which another clone names differently."""
    if now == then:
        return True
    if isinstance(now, list) and isinstance(then, list):
        return len(now) == len(then) and all(map(same_setting, now, then))
    if isinstance(now, str) and isinstance(then, str) and Path(then).is_absolute() and Path(now).is_relative_to(REPO):
        inside = Path(now).relative_to(REPO).parts
        return Path(then).parts[-len(inside):] == inside
    return False


def config_drift(name: str, record: dict) -> list[str]:
    """The fields in which a row's config now differs from the one its record ran, as "key: recorded ->
    now". A field the record lacks (added to mtbert since) counts only when the row sets it away from
    its default. Paths a final stage starts from are left out (they name that run's machine)."""
    from mtbert.config import ExperimentConfig
    from mtbert.experiments.compare import flatten

    now = row_config(name)
    then = {k: v for k, v in flatten(yaml.safe_load(record["config"])).items() if not k.startswith(NOT_THE_METHOD)}
    defaults = flatten(ExperimentConfig().to_dict())
    drift = []
    for key in sorted(set(now) | set(then)):
        if key == "model.init_from" and ROWS[name].runner == "final-stage":
            continue
        if key in then:
            if key not in now and key not in defaults:
                continue  # a field mtbert no longer has (e.g. a memory setting that became automatic)
            if not same_setting(now.get(key, defaults.get(key)), then[key]):
                drift.append(f"{key}: {then[key]!r} -> {now.get(key, '(unset)')!r}")
        elif now[key] != defaults.get(key, {} if isinstance(now[key], dict) else None):
            drift.append(f"{key}: (not recorded) -> {now[key]!r}")
    return drift


def run_paths(root: Path, runs: Path, row: str, seed: int) -> tuple[Path, Path]:
    return root / row / f"seed{seed}", runs / row / f"seed{seed}"


def mtbert_command(row: Row, run_dir: Path, seed: int, extra: list[str], resume: bool,
                   variants: tuple[str, ...] = (), overrides: tuple[str, ...] = ()) -> list[str]:
    if resume:
        return [sys.executable, "-m", "mtbert", "train", "--resume", str(run_dir)]
    args = [sys.executable, "-m", "mtbert", "train", "--config", str(RECIPES / row.recipe), "--output-dir",
            str(run_dir), "--overwrite"]
    for variant in (*row.variants, *variants):
        args += ["--variant", variant]
    for item in [*row.overrides, *overrides, f"train.seed={seed}", "train.progress=false", *extra]:
        args += ["--set", item]
    return args


SMOKE_FLAGS = {"model.name": "--model", "data.limit": "--limit", "train.epochs": "--epochs"}


def widens(row: Row, seed: int, record_dir: Path) -> bool:
    """Whether this run finishes a recorded seed 0 of the reference whose grid has widened since (the plan
    schedules such a seed 0 only then): the command and the record must agree on it."""
    return row.runner == "transformers" and seed == 0 and (record_dir / "record.json").exists()


def transformers_commands(name: str, row: Row, seed: int, root: Path, runs: Path, extra: list[str],
                          resume: bool) -> list[list[str]]:
    """benchmarks/hf_reference.py, tuned: seed 0 tries the learning-rate grid, later seeds use its choice.
    Smoke overrides that have a counterpart there (model, data limit, epochs) are passed on."""
    record_dir, run_dir = run_paths(root, runs, name, seed)
    args = [sys.executable, str(REPO / "benchmarks" / "hf_reference.py"), "--setup", "tuned", "--seed", str(seed),
            "--out", str(run_dir)]
    if widens(row, seed, record_dir):
        args += ["--previous", str(record_dir)]  # only its new rates are trained
    if seed > 0:
        first = root / name / "seed0" / "record.json"
        if not first.exists():
            raise RuntimeError(f"{name} seed {seed} needs seed 0's learning rates: run seed 0 first")
        rates = json.loads(first.read_text())["learning_rates"]
        args += ["--lr", *(f"{task}={lr}" for task, lr in rates.items())]
    for item in extra:
        key, _, value = item.partition("=")
        if key in SMOKE_FLAGS:
            args += [SMOKE_FLAGS[key], value]
    shutil.rmtree(run_dir, ignore_errors=True)
    return [args]


def final_stage_commands(name: str, row: Row, seed: int, root: Path, runs: Path, extra: list[str],
                         resume: bool) -> list[list[str]]:
    """One head at a time on the frozen model of row.after's run of the same seed, each stage from the
    previous stage's best/; the last stage's run is the row's run."""
    start = run_paths(root, runs, row.after, seed)[1] / "best"
    if not start.exists():
        raise RuntimeError(f"{name} seed {seed} starts from {start}, which does not exist: run {row.after} first")
    run_dir = run_paths(root, runs, name, seed)[1]
    commands, previous = [], start
    for task in ("sst", "quora", "sts"):
        stage_dir = run_dir if task == "sts" else run_dir.with_name(f"{run_dir.name}-{task}")
        commands.append(mtbert_command(row, stage_dir, seed, extra, False, (f"final-{task}",),
                                       (f"model.init_from={previous}",)))
        previous = stage_dir / "best"
    return commands


def mtbert_commands(name: str, row: Row, seed: int, root: Path, runs: Path, extra: list[str],
                    resume: bool) -> list[list[str]]:
    return [mtbert_command(row, run_paths(root, runs, name, seed)[1], seed, extra, resume)]


def teachers_commands(name: str, row: Row, seed: int, root: Path, runs: Path, extra: list[str],
                      resume: bool) -> list[list[str]]:
    """Each task's teacher recipe trained alone (seed 0 in the distilled recipe's own teacher runs, reused
    there once finished), then the three combined into the row's run (benchmarks/combined_run.py)."""
    run_dir = run_paths(root, runs, name, seed)[1]
    commands, parts = [], []
    for task in TEACHER_TASKS:
        part = TEACHER_RUNS / task if seed == 0 and not extra else run_dir.with_name(f"{run_dir.name}-{task}")
        if not (part / "results.json").exists():
            stopped = (part / "checkpoint.pt").exists()
            commands.append(mtbert_command(Row(f"teachers/{task}.yaml", overrides=()), part, seed, extra, stopped))
        parts.append(str(part))
    return commands + [[sys.executable, str(REPO / "benchmarks" / "combined_run.py"), "--out", str(run_dir), *parts]]


def soup_ingredients(seed: int) -> range:
    """The seeds of the averaged row that one seed of a soup row takes: its own, disjoint group."""
    return range(SOUP_SIZE * seed, SOUP_SIZE * (seed + 1))


def soup_commands(name: str, row: Row, seed: int, root: Path, runs: Path, extra: list[str],
                  resume: bool) -> list[list[str]]:
    """The weight average of SOUP_SIZE of row.after's seeds (benchmarks/soup_run.py)."""
    seeds = soup_ingredients(seed)
    ingredients = [run_paths(root, runs, row.after, s)[1] for s in seeds]
    missing = [str(p) for p in ingredients if not (p / "best").exists()]
    if missing:
        raise RuntimeError(f"{name} seed {seed} averages {row.after}'s seeds {seeds[0]}-{seeds[-1]}; "
                           f"not found: {', '.join(missing)}")
    return [[sys.executable, str(REPO / "benchmarks" / "soup_run.py"), "--out", str(run_paths(root, runs, name, seed)[1]),
             *map(str, ingredients)]]


RUNNERS = {"mtbert": mtbert_commands, "transformers": transformers_commands, "final-stage": final_stage_commands,
           "teachers": teachers_commands, "soup": soup_commands}


def run_process(args: list[str], what: str, log: Path):
    """One process to its end, its output appended to ``log``: its resource usage (its own peak memory
    comes with its exit)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, text=True)
        err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{what} failed (exit {code}): {err.strip().splitlines()[-1:]}")
    return usage


def code_version() -> str:
    """The commit the run's code came from, ``-modified`` when the package, the recipes or the benchmark
    scripts differ from it (records and docs written meanwhile do not count): speed work changes a row's
    time per run, so a reader can tell which rows ran on which code. Taken when the run starts."""
    here = Path(__file__).parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        modified = git("status", "--porcelain", "--untracked-files=no", "--", "../mtbert", "../recipes", "*.py")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-modified" if modified else commit


LOG_LINE_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


START_UP_SECONDS = 60.0


def earlier_sittings_seconds(run_dir: Path) -> float:
    """Seconds the run's earlier sittings took, read from its train.log: each sitting from its first line
    to its last, so that the hours between sittings do not count. A sitting ends at the trainer's "stopped
    at step" line where it was interrupted gracefully; where it was killed hard, the next sitting's
    "resumed" line marks the new one, which began at the start-up lines (data loading) logged just before
    it, each within START_UP_SECONDS of the next. What a hard-killed sitting did after its last line (at
    most one log interval) is not counted."""
    log = run_dir / "train.log"
    if not log.exists():
        return 0.0
    times: list[float] = []
    stops, starts = [], [0]  # indices into times: the "stopped at step" lines, each sitting's first line
    for line in log.read_text(encoding="utf-8").splitlines():
        found = LOG_LINE_TIME.match(line)
        if not found:
            continue
        times.append(datetime.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
                     + int(found.group(2)) / 1000)
        index = len(times) - 1
        if " INFO stopped at step " in line:
            stops.append(index)
        elif " INFO resumed " in line:
            if stops and stops[-1] >= starts[-1]:  # stopped gracefully: this sitting began after that line
                first = stops[-1] + 1
            else:  # killed hard: walk back over this sitting's start-up lines
                first = index
                while first - 1 > starts[-1] and times[first] - times[first - 1] <= START_UP_SECONDS:
                    first -= 1
            if first > starts[-1]:
                starts.append(first)
    if not times:
        return 0.0
    ends = [start - 1 for start in starts[1:]] + [len(times) - 1]
    return sum(times[end] - times[start] for start, end in zip(starts, ends))


def code_per_sitting(run_dir: Path, code: str, resume: bool) -> list[str]:
    """The code version of every sitting of a run, this one's last: kept one per line beside the run
    (``seed<N>.code``), started afresh when the run is, so that a resumed record names the commits of all
    the code that trained it, not only the last."""
    sittings = run_dir.with_name(f"{run_dir.name}.code")
    if not resume:
        sittings.unlink(missing_ok=True)
    sittings.parent.mkdir(parents=True, exist_ok=True)
    with open(sittings, "a", encoding="utf-8") as out:
        out.write(code + "\n")
    return sittings.read_text(encoding="utf-8").split()


def recorded_sittings(record_dir: Path) -> tuple[float, list[str]]:
    """What a finished record says its sittings took and ran on: (wall seconds, code per sitting), the
    code "unknown" for a record written before records named it."""
    record = json.loads((record_dir / "record.json").read_text(encoding="utf-8"))
    return record["wall_seconds"], record.get("code_per_sitting", [record.get("code", "unknown")])


def run_one(name: str, row: Row, seed: int, root: Path, runs: Path, extra: list[str]) -> dict:
    record_dir, run_dir = run_paths(root, runs, name, seed)
    resume = (run_dir / "checkpoint.pt").exists() and not (run_dir / "results.json").exists()
    earlier = earlier_sittings_seconds(run_dir) if resume else 0.0
    widened = widens(row, seed, record_dir)
    before: list[str] = []
    if widened:  # the rates it tried before count, and so do their time and code
        earlier, before = recorded_sittings(record_dir)
    load_before = os.getloadavg()[0]
    code = code_version()
    codes = before + code_per_sitting(run_dir, code, resume)
    started = time.perf_counter()
    peak = max(run_process(args, f"{name} seed {seed}", run_dir.with_name(f"{run_dir.name}.out")).ru_maxrss
               for args in RUNNERS[row.runner](name, row, seed, root, runs, extra, resume))
    wall = time.perf_counter() - started + earlier
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    if "parts" in results:  # a combined row: its parts' own sittings, trained now or earlier (combining: < 1 s)
        wall = sum(earlier_sittings_seconds(Path(p)) for p in results["parts"].values())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    record = {
        "row": name, "seed": seed, "runner": row.runner, "recipe": row.recipe, "variants": list(row.variants),
        "overrides": [*row.overrides, *extra], "smoke": bool(extra),
        "resumed": resume, "widened": widened, "earlier_sittings_seconds": round(earlier, 1),
        "best": results["best"], "dev_per_evaluation": [m for m in metrics if m.get("split") == "dev"],
        "wall_seconds": round(wall, 1), "train_seconds": results["train_seconds"],
        "train_tokens_per_second": results["train_tokens_per_second"], "padding_share": results["padding_share"],
        "peak_mib": round(peak / 1024, 1), "parameters": results.get("parameters", {}).get("model", {}),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "code": code, "code_per_sitting": codes,
        "config": (run_dir / "config.yaml").read_text(encoding="utf-8"),
    }
    if "learning_rates" in results:
        record["learning_rates"] = results["learning_rates"]
        record["tried"] = results["tried"]
    if record_dir.exists():
        shutil.rmtree(record_dir)
    record_dir.mkdir(parents=True)
    shutil.copytree(run_dir / "predictions", record_dir / "predictions")
    (record_dir / "record.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for stage in run_dir.parent.glob(f"{run_dir.name}*/checkpoint.pt"):  # a final stage's earlier stages too
        stage.unlink()
    return record


LOGGED_RATE = re.compile(r"step \d+/\d+ epoch \d+: mean loss \S+, ([\d.]+) tokens/s")


def measured_rate(rows: list[str], root: Path, runs: Path) -> float | None:
    """Training tokens/s measured here for these rows: their finished records' and the last rate each
    unfinished run logged, averaged. None where none of them has run."""
    rates = [r["train_tokens_per_second"] for records in load(root, rows).values() for r in records if not r["smoke"]]
    for log in (runs / n / f"seed{s}" / "train.log" for n in rows for s in range(3)):
        if log.exists():
            rates += [float(m.group(1)) for m in LOGGED_RATE.finditer(log.read_text(encoding="utf-8"))][-1:]
    return sum(rates) / len(rates) if rates else None


CHECKPOINTED_STEP = re.compile(r"(?:stopped at|resumed .+ at) step (\d+)")
TOTAL_STEPS = re.compile(r"step \d+/(\d+) epoch")
EPOCH_STEPS = re.compile(r"epoch \d+ \(\S+ schedule\): (\d+) steps")


def total_steps(run_dir: Path, log_text: str) -> int | None:
    """A run's steps: its last progress line's total, else (stopped before the first one) its last epoch's
    steps x the epochs of the config it saved. None where the log says neither."""
    totals = TOTAL_STEPS.findall(log_text)
    if totals:
        return int(totals[-1])
    per_epoch, config = EPOCH_STEPS.findall(log_text), run_dir / "config.yaml"
    if not per_epoch or not config.exists():
        return None
    return int(per_epoch[-1]) * int(yaml.safe_load(config.read_text(encoding="utf-8"))["train"]["epochs"])


def share_left(run_dir: Path) -> float:
    """The share of an unfinished run's steps still to train: 1 - the step its checkpoint holds (the last
    "stopped at step N" or "resumed ... at step N" its log says) over the run's steps. 1.0 where it has
    no checkpoint or its log names neither (a run killed hard resumes from an epoch's end the log does
    not name; the plan then counts it whole, never short)."""
    log = run_dir / "train.log"
    if not (run_dir / "checkpoint.pt").exists() or not log.exists():
        return 1.0
    text = log.read_text(encoding="utf-8")
    steps, total = CHECKPOINTED_STEP.findall(text), total_steps(run_dir, text)
    if not steps or not total:
        return 1.0
    return max(0.0, 1 - int(steps[-1]) / total)


def measured_tokens_per_epoch(rows: list[str], root: Path) -> float | None:
    """Real training tokens an epoch took in these (mtbert) rows' finished records (rate x training time / epochs),
    the largest: an ablation that drops data (no augmentation, another schedule) is overestimated, never
    under. None where none of them has finished."""
    epochs = [r["train_tokens_per_second"] * r["train_seconds"] / max(m["epoch"] for m in r["dev_per_evaluation"])
              for records in load(root, rows).values() for r in records
              if not r["smoke"] and r["dev_per_evaluation"]]
    return max(epochs) if epochs else None


def smart_step_cost() -> float:
    """A SMART step's time over a plain one's (`benchmarks/smart.py --name smart_cost`; 6.0 before it has run)."""
    record = RESULTS / "smart_cost.json"
    return json.loads(record.read_text())["cost"]["ratio"] if record.exists() else 6.0


def uses_smart(name: str) -> bool:
    """Rows whose training adds SMART's adversarial term (the cost the plan scales by)."""
    row = ROWS.get(name)
    return bool(row and row.recipe and row.runner == "mtbert" and row_config(name).get("train.smart.enabled"))


def plain_twins(row: Row) -> list[str]:
    """The rows that train this row's config without SMART (its claims' other side)."""
    def without_smart(name: str) -> dict:
        return {k: v for k, v in row_config(name).items() if not k.startswith("train.smart")}

    name = next(n for n, r in ROWS.items() if r is row)
    return [n for n, r in ROWS.items() if r.recipe == row.recipe and r.runner == "mtbert" and not uses_smart(n)
            and without_smart(n) == without_smart(name)]


def smart_cost(root: Path, runs: Path) -> float:
    """SMART's step cost as the study measured it: the training rate of each SMART row that has run (a
    finished record or an unfinished run's log) against its plain twin's, averaged over the pairs; else
    the step-cost benchmark's. That benchmark times a few short steps of the base recipe and read 6.0x,
    where 000-system's full-length run logged 12.5x (about 417 against 5,219 tokens/s), so the plan
    trusts its own rows first."""
    ratios = []
    for name, row in ROWS.items():
        if uses_smart(name) and row.runner == "mtbert":
            own, plain = measured_rate([name], root, runs), measured_rate(plain_twins(row), root, runs)
            if own and plain:
                ratios.append(plain / own)
    return sum(ratios) / len(ratios) if ratios else smart_step_cost()


def estimate_hours(name: str, row: Row, seed: int, root: Path, runs: Path) -> float:
    """A seed of a row that has run before costs what it cost (seed 0 of a learning-rate grid aside).
    Otherwise rough, epochs as the row sets them, each epoch the tokens measured for the same recipe's
    rows (else 813,783, and 1.3x that for 003's augmented data), at a rate: the training rate measured
    here for the same recipe and variants (an unfinished run's log counts); else, for an ablation without
    SMART, its system's rate (heads and step mode set most of the cost: 003's PCGrad and per-task layers
    run at a quarter of the quickstart's rate); else, for a SMART row, the rate of the same recipe without
    SMART (or the quickstart's) divided by SMART's step cost (`smart_cost`). A half-done run counts only
    the share of its steps it has left (`share_left`)."""
    done = [r for r in load(root, [name]).get(name, []) if not r["smoke"] and (seed == 0 or not tried_a_grid(r))]
    if row.runner == "transformers" and seed == 0 and done:  # a grid to widen: one run per new rate
        return sum(statistics.mean(r["seconds"] for r in results) for results in done[0]["tried"].values()
                   if next_rates(results)) / 3600 + 0.05
    left = share_left(run_paths(root, runs, name, seed)[1]) if row.runner == "mtbert" else 1.0
    if done:
        return sum(r["wall_seconds"] for r in done) / len(done) * left / 3600
    rate = 3886.0  # real tokens/s of the quickstart here (benchmarks/results/quickstart_epyc_bf16.json)
    record = RESULTS / "quickstart_epyc_bf16.json"
    if record.exists():
        rate = json.loads(record.read_text())["results"]["train_tokens_per_second"]
    twins = [n for n, r in ROWS.items() if r.recipe == row.recipe and r.runner == "mtbert"]
    own_rate = measured_rate([n for n in twins if ROWS[n].variants == row.variants], root, runs)
    epochs = 3
    for item in row.overrides:
        if item.startswith("train.epochs="):
            epochs = int(item.split("=")[1])
    factor = 1.0
    if uses_smart(name):
        factor = smart_cost(root, runs)
        rate = measured_rate(plain_twins(row), root, runs) or rate
    if name.startswith("002"):
        factor = 1 + 0.49 * (smart_cost(root, runs) - 1)  # SMART on Quora's batches alone, 49% of the training pairs
    if row.runner == "transformers":
        factor = 1.3 * (3 if seed == 0 else 1)  # ~1.3x slower here (encoder_speed); seed 0 tries three rates
    if row.runner == "final-stage":
        factor = 0.4  # a frozen encoder: forward passes only, one task per stage
    if own_rate is not None and row.runner == "mtbert":
        rate, factor = own_rate, 1.0  # the measured rate holds SMART's cost already
    elif factor == 1.0 and row.runner == "mtbert":
        # the system's rate for its ablations; not where SMART's factor applies (it would count twice)
        systems = [n for n in twins if set(ROWS[n].variants) < set(row.variants)]
        rate = measured_rate(systems, root, runs) or rate
    tokens_per_epoch = 813_783 * (1.3 if name.startswith("003") and "no-augmentation" not in name else 1.0)
    if row.runner == "mtbert":
        tokens_per_epoch = measured_tokens_per_epoch(twins, root) or tokens_per_epoch
    return epochs * tokens_per_epoch / rate * factor * left / 3600 + 0.05  # + evaluation and predictions


def plan(only: list[str], seeds: int | None, root: Path) -> list[tuple[str, int]]:
    unknown = sorted(set(only) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(ROWS)}")
    todo = []
    needing = rows_needing_seeds(load(root, ROWS))  # a claim within noise: its rows get three seeds
    for name, row in ROWS.items():
        if only and name not in only:
            continue
        for seed in range(seeds if seeds is not None else max(3, row.seeds) if name in needing else row.seeds):
            if not finished(name, row, seed, root, first_pending=(name, 0) in todo):
                todo.append((name, seed))
    return todo


def finished(name: str, row: Row, seed: int, root: Path, first_pending: bool = False) -> bool:
    """Whether a seed of a row has its record, and for the transformers reference whether that record is
    still current: seed 0's grid settled by the widening rule, a later seed at seed 0's chosen rates
    (``first_pending``: seed 0 has rates left to try, so they may change)."""
    path = root / name / f"seed{seed}" / "record.json"
    if not path.exists():
        return False
    if row.runner != "transformers":
        return True
    record = json.loads(path.read_text(encoding="utf-8"))
    if seed == 0:
        return grid_finished(record.get("tried", {}))
    first = root / name / "seed0" / "record.json"
    return not first_pending and first.exists() and (
        json.loads(first.read_text(encoding="utf-8"))["learning_rates"] == record["learning_rates"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=[])
    parser.add_argument("--seeds", type=int, help="seeds per row (default: 3 for systems, 1 for ablations)")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the table, the claims and the recipe decision")
    parser.add_argument("--write-docs", type=Path, metavar="PAGE",
                        help="write them between the study markers of PAGE (docs/results.md)")
    parser.add_argument("--set", action="append", default=[], help="an override for every run (smoke tests)")
    parser.add_argument("--root", type=Path, default=RESULTS / "study")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "study")
    args = parser.parse_args()
    if args.table or args.write_docs:
        text = report(load(args.root, ROWS))
        if args.write_docs:
            write_section(args.write_docs, text)
        print(text)
        return
    todo = plan(args.only, args.seeds, args.root)
    if args.dry_run:
        hours = [(name, seed, estimate_hours(name, ROWS[name], seed, args.root, args.runs))
                 for name, seed in todo]
        print(markdown_table(["row", "seed", "estimated hours"], [[n, s, f"{h:.2f}"] for n, s, h in hours]))
        runs = f"{len(todo)} run{'' if len(todo) == 1 else 's'}"
        print(f"\n{runs} left, about {sum(h for *_, h in hours):.1f} hours alone on this machine")
        return
    for name, seed in todo:
        if seed > 0 and finished(name, ROWS[name], seed, args.root):  # seed 0 widened, its choice stood
            print(f"{name} seed {seed}: still at seed 0's rates, kept", flush=True)
            continue
        print(f"{name} seed {seed} ...", flush=True)
        record = run_one(name, ROWS[name], seed, args.root, args.runs, args.set)
        print(f"  composite {record['best'].get('composite', float('nan')):.4f} in {record['wall_seconds'] / 60:.1f} min",
              flush=True)
    print(table(load(args.root, ROWS)))


if __name__ == "__main__":
    main()
