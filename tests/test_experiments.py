"""Experiment tooling: search (Optuna), reports (HTML + PNGs, checked in headless Chromium when it is
installed), run comparison, TensorBoard logging."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtbert.cli import main
from mtbert.config import load_config
from mtbert.experiments import search as search_module
from mtbert.experiments.compare import collect
from mtbert.train import Trainer

from test_train_cli import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "multitask-base.yaml"


def tiny(tiny_checkpoint, data_dir, **extra):
    return tiny_overrides(tiny_checkpoint, data_dir, **{"data.limit": 16, "train.epochs": 1, "train.log_every": 1,
                                                        "train.checkpoint_every": 0, **extra})


def search_file(tmp_path, tiny_checkpoint, data_dir, **fields) -> Path:
    values = {"recipe": str(QUICKSTART), "overrides": tiny(tiny_checkpoint, data_dir), "sampler": "random",
              "trials": 3, "space": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                                     "model.heads.sts.type": {"choices": ["cross_encoder", "cosine"]}}, **fields}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def read_rows(output: Path) -> list[dict]:
    with open(output / "trials.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_tiny_search_writes_its_table_and_best_recipe(tmp_path, tiny_checkpoint, data_dir, capsys):
    output = tmp_path / "out"
    assert main(["search", "--config", str(search_file(tmp_path, tiny_checkpoint, data_dir)),
                 "--output-dir", str(output)]) == 0
    rows = read_rows(output)
    assert [r["trial"] for r in rows] == ["0", "1", "2"] and {r["state"] for r in rows} == {"complete"}
    assert "| trial | state | composite | model.heads.sts.type | train.lr | train_seconds |" in capsys.readouterr().out
    best_row = max(rows, key=lambda r: float(r["composite"]))
    best = load_config(output / "best.yaml")
    assert best.train.lr == pytest.approx(float(best_row["train.lr"]), rel=1e-3)  # to 4 significant digits
    assert best.name.endswith("-search-best") and best.data.limit is None  # its own name, not shortened
    assert "Left out: the search's shortening of its trials (data.limit=16)" in (output / "best.yaml").read_text()
    assert best.model.heads["sts"].type == best_row["model.heads.sts.type"]
    assert (output / "trials.md").exists() and (Path(best_row["run_dir"]) / "results.json").exists()
    # only the best trial keeps its model; no trial keeps a checkpoint
    assert [(Path(r["run_dir"]) / "best").exists() for r in rows] == [r is best_row for r in rows]
    assert not any((Path(r["run_dir"]) / "checkpoint.pt").exists() for r in rows)
    assert all((Path(r["run_dir"]) / "predictions").is_dir() for r in rows)


def test_the_shipped_search_file_is_valid():
    search, recipe = search_module.load_search(REPO / "recipes" / "search" / "quickstart.yaml")
    assert recipe.resolve() == (REPO / "recipes" / "quickstart.yaml").resolve()
    assert search.keep == "best" and set(search.space) == {"train.lr", "train.warmup_ratio", "train.batch_size"}


def test_grid_search_stops_when_the_grid_is_done(tmp_path, tiny_checkpoint, data_dir):
    path = search_file(tmp_path, tiny_checkpoint, data_dir, sampler="grid", trials=10,
                       space={"train.lr": {"choices": [1e-3, 1e-2]}, "train.batch_size": {"choices": [4, 8]}})
    summary = search_module.run_search(path, tmp_path / "grid")
    assert len(summary["trials"]) == 4
    assert {(r["train.lr"], r["train.batch_size"]) for r in summary["trials"]} == {
        (1e-3, 4), (1e-3, 8), (1e-2, 4), (1e-2, 8)}


def test_pruned_trials_stop_at_their_evaluation(tmp_path, tiny_checkpoint, data_dir, monkeypatch):
    import optuna

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    monkeypatch.setattr(search_module, "make_pruner", lambda search: AlwaysPrune())
    path = search_file(tmp_path, tiny_checkpoint, data_dir, trials=2, overrides=tiny(
        tiny_checkpoint, data_dir, **{"train.epochs": 2}))
    summary = search_module.run_search(path, tmp_path / "pruned")
    assert {r["state"] for r in summary["trials"]} == {"pruned"} and "best" not in summary
    metrics = (tmp_path / "pruned" / "trial-0000" / "metrics.jsonl").read_text().splitlines()
    assert sum('"split": "dev"' in line for line in metrics) == 1  # stopped after the first epoch's evaluation


def test_two_workers_share_one_sqlite_study(tmp_path, tiny_checkpoint, data_dir):
    path = search_file(tmp_path, tiny_checkpoint, data_dir, trials=2)
    output = tmp_path / "shared"
    command = [sys.executable, "-m", "mtbert.cli", "search", "--config", str(path), "--output-dir", str(output)]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    workers = [subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
    rows = read_rows(output)
    assert sorted(int(r["trial"]) for r in rows) == [0, 1, 2, 3]
    assert {r["state"] for r in rows} == {"complete"}
    assert len({r["run_dir"] for r in rows}) == 4 and all(Path(r["run_dir"], "results.json").exists() for r in rows)


def test_a_worker_that_loses_the_table_creation_race_joins_the_study(tmp_path, monkeypatch):
    """Two workers starting at once both create the schema; the loser sees "table ... already exists"
    (measured in CI) and must join the study the winner made, not stop."""
    import optuna
    from sqlalchemy.exc import OperationalError

    real = optuna.storages.RDBStorage
    calls = []

    class RacingStorage(real):
        def __init__(self, *args, **kwargs):
            calls.append(args)
            if len(calls) == 1:
                raise OperationalError("CREATE TABLE study_directions", {},
                                       Exception("table study_directions already exists"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", RacingStorage)
    monkeypatch.setattr(search_module.time, "sleep", lambda seconds: None)
    config = search_module.SearchConfig(recipe="r.yaml", space={"train.lr": {"low": 1e-4, "high": 1e-2}})
    study = search_module.open_study(config, f"sqlite:///{tmp_path / 'study.db'}", "joined")
    assert study.study_name == "joined" and len(calls) == 2


def test_bad_search_files_are_one_clear_line(tmp_path, tiny_checkpoint, data_dir, capsys):
    cases = [({"sampler": "annealing"}, "sampler: 'annealing' is not one of tpe, random, grid"),
             ({"sampler": "grid"}, "space.train.lr: grid search needs choices"),
             ({"space": {"train.lrr": {"choices": [1]}}}, "unknown option"),
             ({"space": {"train.lr": {"low": 1.0}}}, "give choices, or low and high")]
    for fields, message in cases:
        path = search_file(tmp_path, tiny_checkpoint, data_dir, **fields)
        assert main(["search", "--config", str(path), "--output-dir", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err


# ----- reports, comparison, TensorBoard ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_checkpoint, data_dir) -> Path:
    run = tmp_path_factory.mktemp("report") / "run"
    Trainer(load_config(QUICKSTART, tiny(tiny_checkpoint, data_dir, **{"train.epochs": 2})), run).train()
    return run


FIGURES = ["curves", "sst_confusion", "sst_per_class", "quora_confusion", "sts_scatter"]


def test_report_has_every_figure_and_table(tiny_run, tmp_path):
    assert main(["report", str(tiny_run), "--output", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    for name in FIGURES:
        png = tmp_path / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f'alt="{name}" src="data:image/png;base64,iVBOR' in page, name
    assert "{{" not in page
    for text in ("most confident wrong predictions", "largest errors", "precision", "recall", "support",
                 "training tokens/s", "tunable", "<h3>config</h3>", "best dev evaluation", "<h2>sst (dev, 16 examples)"):
        assert text in page, text
    analysis = [json.loads(x) for x in (tiny_run / "analysis" / "sst-dev.jsonl").read_text().splitlines()]
    assert len(analysis) == 16 and {"id", "texts", "gold", "prediction", "output"} <= set(analysis[0])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    from matplotlib.image import imread

    assert main(["report", str(tiny_run), "--output", str(tmp_path)]) == 0
    path = tmp_path / "report.html"
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,2400"]
    done = subprocess.run(["chromium", *flags, f"--screenshot={shot}", path.as_uri()], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = imread(str(shot))
    assert pixels.std() > 0.05  # not a blank page
    dom = subprocess.run(["chromium", *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0 and dom.stdout.count("<img") == len(FIGURES)
    assert "Uncaught" not in dom.stderr and "Failed to load resource" not in dom.stderr


def test_compare_lists_what_differs(tiny_run, tmp_path, tiny_checkpoint, data_dir, capsys):
    other = tmp_path / "other"
    Trainer(load_config(QUICKSTART, tiny(tiny_checkpoint, data_dir, **{"train.lr": 3e-3})), other).train()
    differing, rows = collect([tiny_run, other])
    assert differing == ["train.epochs", "train.lr"]
    assert [row["train.lr"] for row in rows] == [1e-3, 3e-3]
    assert all(isinstance(row["composite"], float) and row["train_seconds"] is not None for row in rows)
    assert main(["compare", str(tiny_run), str(other), "--html", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    assert "train.lr" in out and "train.epochs" in out and "composite" in out and str(other) in out
    assert "<td>0.003</td>" in (tmp_path / "c.html").read_text()


def test_tensorboard_gets_losses_metrics_lr_and_throughput(tiny_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/mean_loss", "train/lr", "train/tokens_per_second", "dev/composite",
            "dev/sst_acc", "dev/quora_acc", "dev/sts_pearson"} <= tags
    assert len(events.Scalars("dev/composite")) == 2


def fake_run(directory: Path, seed: int, lr: float, sst: float, finished: bool = True) -> Path:
    """A run directory as the trainer leaves it, reduced to what compare reads."""
    directory.mkdir(parents=True)
    config = {"output_dir": str(directory), "train": {"seed": seed, "lr": lr, "epochs": 3}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    best = {"step": 9, "epoch": 2, "split": "dev", "sst_acc": sst, "composite": sst / 2}
    if finished:
        (directory / "results.json").write_text(json.dumps({"best": best, "train_seconds": 10.0 * seed}))
    else:
        (directory / "metrics.jsonl").write_text(json.dumps(best) + "\n")
    return directory


def test_compare_by_seed_gives_one_row_of_mean_and_sd_per_setting(tmp_path, capsys):
    runs = [fake_run(tmp_path / "a1", 1, 1e-4, 0.4), fake_run(tmp_path / "b1", 1, 5e-5, 0.45),
            fake_run(tmp_path / "a2", 2, 1e-4, 0.5), fake_run(tmp_path / "a3", 3, 1e-4, 0.6, finished=False)]
    assert main(["compare", "--by-seed", *map(str, runs), "--html", str(tmp_path / "c.html")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["train.lr", "runs", "seeds", "finished", "sst_acc", "composite", "train_seconds"]
    # lr 1e-4: sst 0.4, 0.5, 0.6 -> mean 0.5, sample sd 0.1; time only from the two finished runs
    assert lines[1].split() == ["0.0001", "3", "1,", "2,", "3", "2", "0.5000", "±", "0.1000", "0.2500", "±",
                                "0.0500", "15.0000", "±", "7.0711"]
    assert lines[2].split() == ["5e-05", "1", "1", "1", "0.4500", "0.2250", "10.0000"]  # lr 5e-5, one run
    assert "<td>0.5000 ± 0.1000</td>" in (tmp_path / "c.html").read_text()


def test_compare_by_seed_of_one_setting_is_one_row(tmp_path, capsys):
    runs = [fake_run(tmp_path / f"s{seed}", seed, 1e-4, sst) for seed, sst in ((7, 0.4), (8, 0.6))]
    assert main(["compare", "--by-seed", *map(str, runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[:3] == ["2", "7,", "8"] and "0.5000 ± 0.1414" in lines[1]


def test_a_run_saved_before_a_field_existed_does_not_differ_by_it(tmp_path):
    old, new = fake_run(tmp_path / "old", 1, 1e-4, 0.4), fake_run(tmp_path / "new", 1, 3e-4, 0.4)
    config = yaml.safe_load((new / "config.yaml").read_text())
    config["train"]["eval_every"] = 0  # today's default, absent from the older run's file
    (new / "config.yaml").write_text(yaml.safe_dump(config))
    differing, _ = collect([old, new])
    assert differing == ["train.lr"]


def test_a_config_that_no_longer_loads_is_compared_as_written(tmp_path):
    old, new = fake_run(tmp_path / "old", 1, 1e-4, 0.4), fake_run(tmp_path / "new", 1, 1e-4, 0.4)
    config = yaml.safe_load((old / "config.yaml").read_text())
    config["train"]["retired_option"] = 3  # a field this version refuses
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    differing, rows = collect([old, new])
    assert "train.retired_option" in differing and rows[0]["train.retired_option"] == 3


def test_a_search_joining_a_study_of_another_space_kind_is_refused_before_any_trial(tmp_path, tiny_checkpoint,
                                                                                     data_dir, capsys):
    """Grid searches draw from choices; a random search over a range resumed in the same study failed
    inside Optuna ("Cannot set different distribution kind"). The same choices resume fine."""
    output = tmp_path / "study"
    grid = {"sampler": "grid", "trials": 1, "space": {"train.lr": {"choices": [1e-3, 1e-2]}}}
    assert main(["search", "--config", str(search_file(tmp_path, tiny_checkpoint, data_dir, **grid)),
                 "--output-dir", str(output)]) == 0
    ranged = {"sampler": "random", "trials": 1, "space": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}}
    capsys.readouterr()
    assert main(["search", "--config", str(search_file(tmp_path, tiny_checkpoint, data_dir, **ranged)),
                 "--output-dir", str(output)]) == 2
    err = capsys.readouterr().err
    assert "created by a grid search" in err and "already searched train.lr as CategoricalDistribution" in err
    assert "FloatDistribution" in err and "Traceback" not in err
    assert len(read_rows(output)) == 1  # nothing was run
    same_choices = {"sampler": "random", "trials": 1, "space": {"train.lr": {"choices": [1e-3, 1e-2]}}}
    assert main(["search", "--config", str(search_file(tmp_path, tiny_checkpoint, data_dir, **same_choices)),
                 "--output-dir", str(output)]) == 0
    assert [r["state"] for r in read_rows(output)] == ["complete", "complete"]


def test_compare_splits_custom_tasks_into_their_fields():
    from mtbert.experiments.compare import flatten

    flat = flatten({"data": {"custom_tasks": [{"name": "pol", "kind": "binary", "files": {"train": "a.csv"}}]}})
    assert flat == {"data.custom_tasks.pol.kind": "binary", "data.custom_tasks.pol.files.train": "a.csv"}


def test_the_report_names_each_tasks_classes(tiny_run, tmp_path):
    from mtbert.experiments.report import write_report

    page = Path(write_report(tiny_run, tmp_path / "report")).read_text(encoding="utf-8")
    assert "very negative" in page and "not duplicate" in page and "0 (no)" not in page
