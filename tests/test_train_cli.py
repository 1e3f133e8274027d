"""End to end on a tiny random encoder and small slices of the real data, through the CLI and the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtbert.cli import main
from mtbert.config import load_config
from mtbert.evaluate import read_predictions
from mtbert.multitask import MultitaskModel
from mtbert.tasks import TASKS, read_examples
from mtbert.train import Trainer
from conftest import stop_at

PREDICTION_FILES = ["sst-dev-output.csv", "sst-test-output.csv", "para-dev-output.csv", "para-test-output.csv",
                    "sts-dev-output.csv", "sts-test-output.csv"]


def tiny_overrides(checkpoint, data_dir, **extra):
    """A small run of the tiny encoder on the CPU: its checks (bit-identical resume, fp32 sums) are the
    CPU's; tests/test_cuda.py asks for the GPU itself."""
    values = {"model.name": str(checkpoint), "data.dir": str(data_dir), "data.limit": 24, "train.epochs": 2,
              "train.device": "cpu",
              "train.batch_size": 8, "train.lr": 1e-3, "train.progress": False, "train.checkpoint_every": 3,
              "model.max_length": 64, **extra}
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_checkpoint, data_dir):
    run = tmp_path_factory.mktemp("run")
    args = ["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(run)]
    for item in tiny_overrides(tiny_checkpoint, data_dir):
        args += ["--set", item]
    assert main(args) == 0
    return run


def test_train_writes_every_promised_file(trained_run):
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "results.json", "best/mtbert.json",
                 "best/model.safetensors", "best/heads.safetensors", "best/vocab.txt"):
        assert (trained_run / name).exists(), name
    for name in PREDICTION_FILES:
        assert (trained_run / "predictions" / name).exists(), name
    lines = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in lines if r["split"] == "dev"]
    assert len(records) == 2 and [r["epoch"] for r in records] == [1, 2]
    # the quickstart's steps hold one batch of each task: 24 examples in batches of 8, 3 steps an epoch
    assert [(r["split"], r["step"]) for r in lines if r["split"] == "train"] == [("train", 6)]  # the last step
    for record in records:
        assert {"step", "epoch", "split", "sst_acc", "quora_acc", "sts_pearson", "composite"} <= set(record)
        expected = (record["sst_acc"] + record["quora_acc"] + (record["sts_pearson"] + 1) / 2) / 3
        assert record["composite"] == pytest.approx(expected)
    assert load_config(trained_run / "config.yaml").data.limit == 24


def test_prediction_files_parse_and_cover_every_id(trained_run, data_dir):
    for task, prefix in (("sst", "sst"), ("quora", "para"), ("sts", "sts")):
        spec = TASKS[task]
        for split in ("dev", "test"):
            rows = read_predictions(trained_run / "predictions" / f"{prefix}-{split}-output.csv")
            ids = [e.id for e in read_examples(spec, data_dir / spec.files[split], split != "test", limit=24).examples]
            assert sorted(rows) == sorted(ids)
            values = [float(v) for v in rows.values()]
            if task == "sts":
                assert all(0.0 <= v <= 5.0 for v in values)
            else:
                assert all(v == int(v) and 0 <= v < spec.output_dim + (spec.kind == "binary") for v in values)


def test_predict_covers_a_whole_test_file(trained_run, data_dir, tmp_path, capsys):
    output = tmp_path / "para-test-output.csv"
    assert main(["predict", "--model", str(trained_run / "best"), "--task", "quora",
                 "--input", str(data_dir / "quora-test-student.csv"), "--output", str(output)]) == 0
    ids = [e.id for e in read_examples(TASKS["quora"], data_dir / "quora-test-student.csv", labelled=False).examples]
    assert sorted(read_predictions(output)) == sorted(ids) and len(ids) == 3020


def test_predict_text_and_evaluate_commands(trained_run, data_dir, capsys):
    assert main(["predict", "--model", str(trained_run / "best"), "--task", "sts",
                 "--text", "A dog runs.", "--text-pair", "A dog is running."]) == 0
    line = capsys.readouterr().out.strip().split("\t")
    assert line[0] == "1" and line[1].startswith("sts: ") and 0.0 <= float(line[1].split()[1]) <= 5.0
    assert line[2] == "A dog runs. | A dog is running."
    assert main(["evaluate", "--model", str(trained_run / "best"), "--data-dir", str(data_dir), "--limit", "24",
                 "--device", "cpu"]) == 0  # the run trained on the CPU; test_cuda compares devices
    printed = json.loads(capsys.readouterr().out)
    best = json.loads((trained_run / "results.json").read_text())["best"]
    for key in ("sst_acc", "quora_acc", "sts_pearson", "composite"):
        assert printed[key] == pytest.approx(best[key], abs=1e-6)


def test_saved_model_reloads_to_identical_outputs(trained_run):
    model = MultitaskModel.from_pretrained(trained_run / "best").eval()
    again = MultitaskModel.from_pretrained(trained_run / "best").eval()
    batch = model.tokenizer(["one two", "three"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model.encoder(**batch).pooler_output, again.encoder(**batch).pooler_output)
    assert set(model.heads) == {"sst", "quora", "sts"}


def test_interrupted_run_resumes_to_the_same_result(tmp_path, tiny_checkpoint, data_dir):
    """Stop mid-epoch the way Ctrl-C does (a stop request after a step), resume, and compare with a
    run that was never stopped: same metrics and bit-identical parameters."""
    config = load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir, **{
        "train.epochs": 2, "train.log_every": 2}))
    whole = Trainer(config, tmp_path / "whole").train()

    first = Trainer(config, tmp_path / "cut", callbacks=[stop_at(5)]).train()
    assert first["interrupted"] and first["step"] == 5
    assert main(["train", "--resume", str(tmp_path / "cut")]) == 0
    resumed = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert resumed["best"] == whole["best"]
    assert resumed["steps"] == whole["steps"]
    ours = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    theirs = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert lines == (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    assert sum('"split": "train"' in line for line in lines) >= 3  # training records survive the resume too


def test_max_steps_stops_early_and_still_evaluates(tmp_path, tiny_checkpoint, data_dir):
    config = load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir, **{"train.max_steps": 4}))
    results = Trainer(config, tmp_path / "short").train()
    assert results["steps"] == 4 and results["best"]["step"] == 4


def test_dev_files_come_from_the_best_evaluation_and_match_the_saved_model(tmp_path, tiny_checkpoint, data_dir,
                                                                            monkeypatch):
    """The finish writes dev files from the best evaluation's outputs (only test splits run again), and
    they are what the saved best model predicts."""
    import mtbert.train.trainer as trainer_module
    from mtbert.evaluate import predict_features
    from mtbert.evaluate.predictions import format_value

    config = load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir))
    finished = []
    monkeypatch.setattr(trainer_module, "predict_features",
                        lambda model, features, *args: finished.append(features) or predict_features(model, features, *args))
    trainer = Trainer(config, tmp_path / "run")
    trainer.train()
    assert sorted((f.spec.name, len(f)) for f in finished) == sorted(
        (task, len(splits.get("test"))) for task, splits in trainer.data.items())
    best = MultitaskModel.from_pretrained(tmp_path / "run" / "best")
    for task, splits in trainer.data.items():
        spec = splits.get("dev").spec
        again = predict_features(best, splits.get("dev"), config.train.eval_batch_size, trainer.precision,
                                 config.train.eval_max_tokens)
        written = read_predictions(tmp_path / "run" / "predictions" / f"{spec.output_prefix}-dev-output.csv")
        assert written == {i: format_value(spec, p) for i, p in zip(again.ids, again.predictions)}


@pytest.mark.parametrize("args,message", [
    (["train"], "needs --config"),
    (["train", "--config", "nope.yaml"], "mtbert train: error: argument --config: nope.yaml not found"),
    (["train", "--config", "recipes/multitask-base.yaml", "--set", "train.bogus=1"], "unknown option(s) bogus"),
    (["train", "--resume", "/nonexistent/run"], "argument --resume: /nonexistent/run not found"),
    (["train", "--resume", "recipes"], "recipes/config.yaml not found: --resume takes a run directory"),
    (["evaluate", "--model", "/nonexistent/model"], "argument --model: /nonexistent/model not found"),
    (["evaluate", "--model", "recipes"], "not an mtbert model directory"),
    (["evaluate", "--model", "recipes", "--batch-size", "0"], "argument --batch-size: must be 1 or more, got 0"),
])
def test_cli_errors_are_one_clear_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_existing_run_is_not_overwritten_silently(trained_run, capsys):
    assert main(["train", "--config", "recipes/multitask-base.yaml", "--output-dir", str(trained_run)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_wrong_head_shapes_are_refused(trained_run, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from mtbert import CheckpointError

    copy = tmp_path / "best"
    shutil.copytree(trained_run / "best", copy)
    heads = load_file(str(copy / "heads.safetensors"))
    heads["heads.sst.output.weight"] = torch.zeros(3, heads["heads.sst.output.weight"].shape[1])
    save_file(heads, str(copy / "heads.safetensors"))
    with pytest.raises(CheckpointError, match=r"heads.safetensors is damaged: its SHA-256 differs"):
        MultitaskModel.from_pretrained(copy)  # the checksum sees the change first
    (copy / "checksums.json").unlink()  # as a model saved before checksums existed
    with pytest.raises(CheckpointError, match=r"sst.output.weight: file \(3, 32\) vs model \(5, 32\)"):
        MultitaskModel.from_pretrained(copy)


def test_train_from_another_directory_then_evaluate_best_without_data_dir(tmp_path, tiny_checkpoint, data_dir,
                                                                          monkeypatch, capsys):
    """The recipe's paths are its folder's, the run records its data directory, and evaluate on best/
    finds the data there, from any working directory, with no --data-dir or $MTBERT_DATA_DIR."""
    from mtbert.config import DATA_DIR_ENV

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    recipe = Path("recipes/quickstart.yaml").resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    overrides = [o for o in tiny_overrides(tiny_checkpoint, data_dir, **{"train.epochs": 1}) if not o.startswith("data.dir")]
    args = ["train", "--config", str(recipe), "--output-dir", "run", "--data-dir", str(data_dir)]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    assert load_config(elsewhere / "run" / "config.yaml").data.dir == str(data_dir.resolve())
    later = tmp_path / "later"
    later.mkdir()
    monkeypatch.chdir(later)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(elsewhere / "run" / "best"), "--limit", "24"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    recorded = [json.loads(line) for line in (elsewhere / "run" / "metrics.jsonl").read_text().splitlines()
                if '"dev"' in line][-1]
    assert evaluated["composite"] == pytest.approx(recorded["composite"], abs=1e-6)


def test_a_data_directory_that_is_nowhere_names_every_place_looked(tmp_path, tiny_checkpoint, data_dir, monkeypatch,
                                                                   capsys):
    from mtbert.config import DATA_DIR_ENV

    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "missing"))
    args = ["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(tmp_path / "run")]
    for item in tiny_overrides(tiny_checkpoint, data_dir):
        if not item.startswith("data.dir"):  # the recipe's own data.dir, replaced by the environment
            args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"data directory {tmp_path / 'missing'} not found" in err
    assert f"--data-dir unset; ${DATA_DIR_ENV} {tmp_path / 'missing'} (it replaces a config file's data.dir)" in err
    assert f"data.dir {tmp_path / 'missing'} (used)" in err


def test_keep_checkpoint_none_leaves_no_checkpoint_and_the_model_still_serves(tmp_path, tiny_checkpoint, data_dir,
                                                                              capsys):
    run = tmp_path / "run"
    args = ["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(run)]
    for item in tiny_overrides(tiny_checkpoint, data_dir, **{"train.keep_checkpoint": "none", "train.epochs": 1}):
        args += ["--set", item]
    assert main(args) == 0
    assert not (run / "checkpoint.pt").exists() and (run / "best" / "mtbert.json").exists()
    results = json.loads((run / "results.json").read_text())
    on_disk = sum(f.stat().st_size for f in run.rglob("*") if f.is_file() and f.name != "results.json")
    assert results["run_bytes"] == on_disk
    assert main(["evaluate", "--model", str(run / "best"), "--limit", "24"]) == 0
    assert main(["predict", "--model", str(run / "best"), "--task", "sst", "--text", "A gorgeous film."]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert "nothing to resume" in capsys.readouterr().out


def test_train_ends_with_a_short_summary_not_the_results_json(trained_run, tiny_checkpoint, data_dir, tmp_path,
                                                             capsys):
    run = tmp_path / "summary"
    args = ["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(run)]
    for item in tiny_overrides(tiny_checkpoint, data_dir, **{"train.epochs": 1}):
        args += ["--set", item]
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("trained 3 steps in ") and "composite" in out and "results.json" in out
    assert len(out.splitlines()) <= 10
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("mtbert ")


def test_off_a_terminal_training_writes_log_lines_not_a_bar(tmp_path, tiny_checkpoint, data_dir, capfd):
    args = ["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(tmp_path / "run")]
    for item in tiny_overrides(tiny_checkpoint, data_dir, **{"train.progress": True, "train.log_every": 2}):
        args += ["--set", item]
    assert main(args) == 0
    err = capfd.readouterr().err
    assert "\r" not in err, "a progress bar's carriage returns went into a file"
    assert "step 2/" in err and "examples scored in" in err


def test_a_run_from_python_keeps_a_train_log_and_an_interrupted_one_says_so(tmp_path, tiny_checkpoint, data_dir):
    from conftest import stop_at

    config = load_config("recipes/quickstart.yaml", tiny_overrides(tiny_checkpoint, data_dir))
    stopped = Trainer(config, tmp_path / "run", callbacks=[stop_at(5)]).train()
    assert stopped["interrupted"] and stopped["step"] == 5 and "composite" in stopped["best"]  # epoch 1 ended at 3
    results = Trainer(config, tmp_path / "run").train(resume=True)
    assert "composite" in results["best"]
    text = (tmp_path / "run" / "train.log").read_text()
    assert "epoch 1 (interleaved schedule)" in text and "resumed" in text


def test_the_resume_line_counts_epochs_as_the_epoch_lines_do(tmp_path, tiny_checkpoint, data_dir):
    from conftest import stop_at

    config = load_config("recipes/quickstart.yaml", tiny_overrides(tiny_checkpoint, data_dir))
    Trainer(config, tmp_path / "run", callbacks=[stop_at(2)]).train()  # in the first epoch (3 steps each)
    Trainer(config, tmp_path / "run").train(resume=True)
    text = (tmp_path / "run" / "train.log").read_text()
    assert "at step 2 (epoch 1, batch 2 of it)" in text and "(epoch 0" not in text
