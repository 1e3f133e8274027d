"""Bad input gets one clear line naming the file, line or field, and loses nothing: data files, configs
and command lines, damaged run files, non-finite training, two writers, and the HTML report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtbert.bert import CheckpointError
from mtbert.cli import main
from mtbert.config import ConfigError, load_config
from mtbert.tasks import TASKS, DataError, TaskSpec, read_examples
from mtbert.train import Trainer
from conftest import stop_at
from test_train_cli import tiny_overrides

SST, QUORA = TASKS["sst"], TASKS["quora"]
QUORA_HEADER = "\tid\tsentence1\tsentence2\tis_duplicate\n"


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def train_args(run: Path, checkpoint, data_dir, **extra) -> list[str]:
    args = ["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(run)]
    for item in tiny_overrides(checkpoint, data_dir, **{"train.epochs": 1, **extra}):
        args += ["--set", item]
    return args


def one_line_error(capsys, exit_code: int, status: int = 2) -> str:
    """The one error line (the log's INFO lines may come before it), with no traceback anywhere."""
    err = capsys.readouterr().err
    assert exit_code == status, err
    errors = [line for line in err.splitlines() if line.startswith("mtbert ")]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


# ----- data files ---------------------------------------------------------------------------
def test_bytes_that_are_not_utf8_name_their_line_and_column(tmp_path):
    path = write(tmp_path, b"\tid\tsentence\tsentiment\n0\ta\tgood film\t3\n1\tb\tcaf\xe9 noir\t2\n")
    with pytest.raises(DataError, match=r"data.csv, line 3: byte 0xe9 at column 8 is not UTF-8"):
        read_examples(SST, path)


@pytest.mark.parametrize("spec, header, row", [
    (QUORA, QUORA_HEADER, '1\tb\t"How do I\tWhat is\t1\n'),
    (SST, "\tid\tsentence\tsentiment\n", '1\tb\t"an open quote\t2\n'),
])
@pytest.mark.parametrize("closed_later", [False, True])
def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path, spec, header, row, closed_later):
    """Before, the quote swallowed the lines after it (79 rows read as 67-71 examples), or was reported at
    the file's last line."""
    good = "0\ta\tone\ttwo\t0\n" if spec is QUORA else "0\ta\tfine\t3\n"
    rest = [good.replace("0\ta", f"{i}\tx{i}") for i in range(2, 9)]
    if closed_later:
        rest[3] = rest[3].replace("\tx5\t", '\tx5\t"a later quote" ')
    path = write(tmp_path, header + good + row + "".join(rest))
    with pytest.raises(DataError, match=r"data.csv, line 3: a quote \(\"\) opened here is (not|never) closed"):
        read_examples(spec, path)


def test_ids_that_repeat_or_could_forge_a_prediction_line_are_refused(tmp_path):
    duplicate = write(tmp_path, "\tid\tsentence\tsentiment\n0\ta\tone\t1\n1\tb\ttwo\t2\n2\ta\tthree\t3\n")
    with pytest.raises(DataError, match=r"line 4: id 'a' repeats the id of line 2"):
        read_examples(SST, duplicate)
    forged = write(tmp_path, "\tid\tsentence\tsentiment\n0\tx , 4 \tone\t1\n", "forged.csv")
    with pytest.raises(DataError, match=r"forged.csv, line 2: id 'x , 4' holds a control character or ' , '"):
        read_examples(SST, forged)
    empty = write(tmp_path, "\tid\tsentence\tsentiment\n0\t \tone\t1\n", "empty.csv")
    with pytest.raises(DataError, match=r"empty.csv, line 2: empty id"):
        read_examples(SST, empty)


def test_a_dev_file_with_a_header_only_is_refused_before_training(tmp_path, tiny_checkpoint, data_dir, capsys):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data, ignore=shutil.ignore_patterns("cfimdb*"))
    (data / "sts-dev.csv").write_text("\tid\tsentence1\tsentence2\tsimilarity\n", encoding="utf-8")
    code = main(train_args(tmp_path / "run", tiny_checkpoint, data_dir) + ["--data-dir", str(data)])
    err = one_line_error(capsys, code)
    assert "sts-dev.csv: no labelled examples" in err and "cannot be scored" in err
    assert not (tmp_path / "run" / "best").exists()


# ----- config and command line --------------------------------------------------------------
@pytest.mark.parametrize("setting, message", [
    ("train.lr=[1", "--set train.lr=[1: the value is not valid YAML"),
    ("train.betas=[0.9]", "train.betas: expected 2 values, got 1"),
    ("train.num_threads=-2", "train.num_threads: must be a whole number >= 1 or null, got -2"),
    ("train.device=gpu0", "train.device: must be auto, cpu, mps, cuda or cuda:N, got 'gpu0'"),
    ("train.epochs=0", "train.epochs: must be a whole number >= 1, got 0"),
    ("train.max_steps=0", "train.max_steps: must be a whole number >= 1 or null, got 0"),
    ("data.limit=0", "data.limit: must be a whole number >= 1 or null, got 0"),
    ("data.limit=-5", "data.limit: must be a whole number >= 1 or null, got -5"),
    ("train.max_grad_norm=-1", "train.max_grad_norm: must be a finite number >= 0, got -1.0"),
    ("train.warmup_ratio=1.5", "train.warmup_ratio: must be in [0, 1], got 1.5"),
    ("train.weight_decay=-0.1", "train.weight_decay: must be a finite number >= 0, got -0.1"),
    ("model.max_length=0", "model.max_length: must be a whole number >= 8, got 0"),
    ("train.bucket_batches=0", "train.bucket_batches: must be a whole number >= 1, got 0"),
    ("train.smart.epsilon=-1e-5", "train.smart.epsilon: must be a finite number > 0, got -1e-05"),
    ("train.lr=.nan", "train.lr: must be a finite number > 0, got nan"),
    ("train.lr=.inf", "train.lr: must be a finite number > 0, got inf"),
    ("train.eps=0", "train.eps: must be a finite number > 0, got 0.0"),
    ("data.custom_tasks=[{name: nli, kind: classification}]", "task 'nli': missing field(s) text_columns"),
    ("data.custom_tasks=[{name: '<b>x', kind: binary, text_columns: [a], label_column: y, files: {}}]",
     "task name '<b>x': use letters, digits"),
])
def test_config_values_out_of_range_are_one_line_before_any_work(setting, message, tmp_path, tiny_checkpoint,
                                                                data_dir, capsys):
    code = main(train_args(tmp_path / "run", tiny_checkpoint, data_dir) + ["--set", setting])
    assert message in one_line_error(capsys, code)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_paths_of_the_wrong_kind_and_a_pair_for_a_single_sentence_task(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for args, message in ((["train", "--config", str(tmp_path)], "is a directory, expected a file"),
                          (["train", "--resume", str(tmp_path / "file")], "is a file, expected a directory"),
                          (["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(tmp_path / "file")],
                           "is a file, expected a directory"),
                          (["predict", "--model", str(tmp_path), "--task", "sst", "--input", str(tmp_path)],
                           "is a directory, expected a file")):
        assert message in one_line_error(capsys, main(args))


def test_predict_refuses_a_text_pair_for_a_single_sentence_task(trained_model, capsys):
    code = main(["predict", "--model", str(trained_model), "--task", "sst", "--text", "a", "--text-pair", "b"])
    assert "task 'sst' takes one sentence: --text-pair does not apply" in one_line_error(capsys, code)


# ----- damaged run files --------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_checkpoint, data_dir) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(train_args(run, tiny_checkpoint, data_dir)) == 0
    return run


@pytest.fixture()
def trained_model(finished_run, tmp_path) -> Path:
    copy = tmp_path / "best"
    shutil.copytree(finished_run / "best", copy)
    return copy


@pytest.mark.parametrize("name, damage, readable_without_checksums", [
    ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), False),
    ("heads.safetensors", lambda p: p.write_bytes(b"garbage" * 10), False),
    ("mtbert.json", lambda p: p.write_text('{"format": 3, "tasks": ['), False),
    ("vocab.txt", lambda p: p.write_text("[PAD]\n"), True),  # a valid, if useless, vocabulary
])
def test_a_damaged_model_file_is_named(trained_model, capsys, name, damage, readable_without_checksums):
    damage(trained_model / name)
    code = main(["evaluate", "--model", str(trained_model), "--limit", "4"])
    assert f"{trained_model / name} is damaged" in one_line_error(capsys, code)
    if readable_without_checksums:
        return
    (trained_model / "checksums.json").unlink()  # a model from before checksums: the reader names the file
    code = main(["evaluate", "--model", str(trained_model), "--limit", "4"])
    assert str(trained_model / name) in one_line_error(capsys, code)


def test_a_finished_run_resumes_without_reading_its_damaged_best(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "best" / "model.safetensors").write_bytes(b"broken")
    assert main(["train", "--resume", str(run)]) == 0
    assert "trained" in capsys.readouterr().out


def flip_bytes(path: Path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture()
def stopped_run(tmp_path, tiny_checkpoint, data_dir) -> tuple[Path, object]:
    config = load_config("recipes/quickstart.yaml", tiny_overrides(tiny_checkpoint, data_dir, **{"train.epochs": 1}))
    run = tmp_path / "stopped"
    Trainer(config, run, callbacks=[stop_at(3)]).train()
    return run, config


def test_a_checkpoint_with_flipped_bytes_is_refused_by_name(stopped_run, capsys):
    run, _ = stopped_run
    flip_bytes(run / "checkpoint.pt")
    code = main(["train", "--resume", str(run)])
    err = one_line_error(capsys, code)
    assert f"{run / 'checkpoint.pt'} is damaged: its SHA-256 differs" in err


def test_a_write_stopped_between_its_two_moves_is_completed(stopped_run):
    from mtbert.integrity import file_sha256, sidecar, verify_file
    from mtbert.train.state import temporary

    run, _ = stopped_run
    path = run / "checkpoint.pt"
    newer = temporary(path)
    shutil.copyfile(path, newer)
    flip_bytes(newer)  # a "newer" checkpoint whose sidecar moved in, but not the file itself
    sidecar(path).write_text(file_sha256(newer) + "\n")
    verify_file(path, newer)
    assert file_sha256(path) == sidecar(path).read_text().strip() and not newer.exists()


def test_a_checkpoint_from_other_settings_is_refused_with_the_fields(stopped_run, capsys):
    run, _ = stopped_run
    code = main(["train", "--resume", str(run), "--set", "train.lr=0.5", "--set", "train.batch_size=4"])
    err = one_line_error(capsys, code)
    assert "written by a run with other settings" in err
    assert "train.batch_size: 8 in the checkpoint, 4 now" in err and "train.lr: 0.001 in the checkpoint, 0.5 now" in err


def test_a_checkpoint_missing_a_key_is_named(stopped_run, capsys):
    run, _ = stopped_run
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    del state["optimizer"]
    torch.save(state, run / "checkpoint.pt")
    (run / "checkpoint.pt.sha256").unlink()
    code = main(["train", "--resume", str(run), "--trust-checkpoint"])
    assert "checkpoint.pt lacks optimizer: not a complete mtbert training checkpoint" in one_line_error(capsys, code)


def test_a_checkpoint_without_its_checksum_is_refused_unless_trusted(stopped_run, capsys):
    run, _ = stopped_run
    (run / "checkpoint.pt.sha256").unlink()
    code = main(["train", "--resume", str(run)])
    err = one_line_error(capsys, code)
    assert "has no checksum beside it" in err and "--trust-checkpoint" in err
    assert main(["train", "--resume", str(run), "--trust-checkpoint"]) == 0


def test_a_checkpoint_whose_step_cannot_be_reached_is_refused(stopped_run, capsys):
    from mtbert.train.state import atomic_torch_save

    run, _ = stopped_run
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["step"] = 10 ** 9
    atomic_torch_save(state, run / "checkpoint.pt")  # a valid checksum: an edit that a checksum cannot catch
    code = main(["train", "--resume", str(run)])
    assert "step 1000000000 is not one this run can reach" in one_line_error(capsys, code)


def test_a_damaged_metrics_file_is_named_with_its_line(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"split": "dev", "step": \n')
    lines = len((run / "metrics.jsonl").read_text().splitlines())
    code = main(["report", str(run)])
    assert f"metrics.jsonl, line {lines}: not a JSON record" in one_line_error(capsys, code)


# ----- non-finite training ------------------------------------------------------------------
def test_a_diverging_run_stops_with_exit_1_and_saves_no_non_finite_model(tmp_path, tiny_checkpoint, data_dir, capsys):
    run = tmp_path / "run"
    code = main(train_args(run, tiny_checkpoint, data_dir, **{"train.lr": 1e6, "train.max_nonfinite_steps": 2,
                                                              "train.max_grad_norm": 0, "train.warmup_ratio": 0}))
    err = capsys.readouterr().err
    assert code == 1 and "consecutive steps (up to step" in err and "non-finite loss" in err, err
    assert "Traceback" not in err
    best = run / "best"
    if best.exists():  # only a model evaluated with finite weights may be there
        from safetensors.torch import load_file
        assert all(torch.isfinite(t).all() for t in load_file(str(best / "heads.safetensors")).values())


def test_non_finite_predictions_are_never_written(tmp_path):
    from mtbert.evaluate import write_predictions

    with pytest.raises(ValueError, match="the prediction for id 'b' is nan"):
        write_predictions(tmp_path / "sts.csv", TASKS["sts"], ["a", "b"], [1.0, float("nan")])
    assert not (tmp_path / "sts.csv").exists()


# ----- two writers, --overwrite, Ctrl-C -----------------------------------------------------
def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path, tiny_checkpoint, data_dir,
                                                                          capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"handle = open({str(run / '.lock')!r}, 'a+'); fcntl.flock(handle, fcntl.LOCK_EX)\n"
        "handle.write('process 12345'); handle.flush(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    try:
        code = main(train_args(run, tiny_checkpoint, data_dir) + ["--overwrite"])
        assert "is in use by process 12345" in one_line_error(capsys, code)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert main(train_args(run, tiny_checkpoint, data_dir) + ["--overwrite"]) == 0  # the dead holder's lock is stale


def test_overwrite_starts_from_an_empty_directory(finished_run, tmp_path, tiny_checkpoint, data_dir):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "predictions" / "old-task-dev-output.csv").write_text("id \t x \n")
    (run / "report").mkdir()
    assert main(train_args(run, tiny_checkpoint, data_dir) + ["--overwrite"]) == 0
    assert not (run / "predictions" / "old-task-dev-output.csv").exists() and not (run / "report").exists()
    elsewhere = tmp_path / "not-a-run"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    assert main(train_args(elsewhere, tiny_checkpoint, data_dir) + ["--overwrite"]) == 2
    assert (elsewhere / "notes.txt").read_text() == "mine"


def test_ctrl_c_before_training_starts_is_one_line(monkeypatch, tmp_path, tiny_checkpoint, data_dir, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "__init__", interrupted)
    code = main(train_args(tmp_path / "run", tiny_checkpoint, data_dir))
    assert "interrupted before there was anything to save" in one_line_error(capsys, code, status=130)


def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, tmp_path, tiny_checkpoint,
                                                                     data_dir, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(Trainer, "__init__", broken)
    code = main(train_args(tmp_path / "run", tiny_checkpoint, data_dir))
    assert "internal error: ZeroDivisionError: a bug" in one_line_error(capsys, code, status=1)
    with pytest.raises(ZeroDivisionError):
        main(train_args(tmp_path / "run", tiny_checkpoint, data_dir) + ["--debug", "--overwrite"])


# ----- the report ---------------------------------------------------------------------------
def test_names_reaching_the_report_are_escaped_and_file_safe():
    from mtbert.experiments.report import Report, safe_name

    image = Report._image(None, '"><script>alert(1)</script>')
    assert "<script>" not in image and "&quot;&gt;&lt;script&gt;" in image
    assert safe_name("../../etc/x y") == "_.._etc_x_y" and "/" not in safe_name("a/b")
    with pytest.raises(ValueError, match="use letters, digits"):
        TaskSpec.from_dict({"name": '"><script>', "kind": "binary", "text_columns": ["a"], "label_column": "y",
                            "files": {}})


def test_json_files_of_a_run_are_named_when_broken(tmp_path):
    from mtbert.integrity import read_json

    (tmp_path / "results.json").write_text('{"best": ')
    with pytest.raises(CheckpointError, match=r"results.json, line 1, column 10: not valid JSON"):
        read_json(tmp_path / "results.json")
    with pytest.raises(ConfigError, match=r"bad.yaml, line 3: not valid YAML"):
        (tmp_path / "bad.yaml").write_text("train:\n  lr: [1\n")
        load_config(tmp_path / "bad.yaml")


# ----- values that cannot be right, and odd values: one line each, never an internal error -------------
def rewrite_model(model: Path, edit) -> None:
    """Change a saved model and re-stamp its checksums, as a careless edit (or a bug) would leave it."""
    from mtbert.integrity import write_checksums

    edit(model)
    write_checksums(model)


def test_a_model_with_non_finite_weights_is_refused_at_load(trained_model, capsys):
    from safetensors.torch import load_file, save_file

    def poison(model):
        heads = load_file(str(model / "heads.safetensors"))
        key = next(k for k in heads if k.startswith("heads.sst"))
        heads[key][0] = float("nan")
        save_file(heads, str(model / "heads.safetensors"), metadata={"format": "pt"})
    rewrite_model(trained_model, poison)
    code = main(["predict", "--model", str(trained_model), "--text", "A film.", "--format", "json"])
    assert "holds NaN or infinite values" in one_line_error(capsys, code)


@pytest.mark.parametrize("length", [0, 100_000])
def test_a_model_whose_length_the_encoder_cannot_hold_is_refused(trained_model, capsys, length):
    def edit(model):
        description = json.loads((model / "mtbert.json").read_text())
        description["max_length"] = length
        (model / "mtbert.json").write_text(json.dumps(description))
    rewrite_model(trained_model, edit)
    code = main(["evaluate", "--model", str(trained_model)])
    assert f"max_length {length} must be a whole number from 1" in one_line_error(capsys, code)


def test_a_max_length_beyond_the_encoders_positions_is_refused(tmp_path, tiny_checkpoint, data_dir, capsys):
    code = main(train_args(tmp_path / "run", tiny_checkpoint, data_dir) + ["--set", "model.max_length=4096"])
    assert "model.max_length 4096 is beyond the 128 positions" in one_line_error(capsys, code)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu:0"])
def test_an_unknown_device_is_named_with_its_option(trained_model, capsys, device):
    code = main(["predict", "--model", str(trained_model), "--text", "A film.", "--device", device])
    err = one_line_error(capsys, code)
    assert f"--device {device!r} is not a device" in err


def test_text_that_is_not_utf8_is_refused(trained_model, capsys):
    code = main(["predict", "--model", str(trained_model), "--text", "caf\udcc3\udca9 bytes"])
    assert "--text number 1 holds bytes that are not UTF-8" in one_line_error(capsys, code)


def test_a_header_only_task_file_and_a_blank_file_are_refused(trained_model, tmp_path, capsys):
    header = tmp_path / "header.csv"
    header.write_text("id\tsentence\tsentiment\n")
    code = main(["predict", "--model", str(trained_model), "--task", "sst", "--input", str(header)])
    assert "a header of task 'sst''s columns and no examples" in one_line_error(capsys, code)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    code = main(["predict", "--model", str(trained_model), "--task", "sst", "--input", str(blank)])
    assert "no input" in one_line_error(capsys, code)


def test_a_task_file_with_another_delimiter_is_not_read_as_plain_text(trained_model, tmp_path, capsys):
    commas = tmp_path / "sst.csv"
    commas.write_text("id,sentence,sentiment\na1,A gorgeous film.,4\n")
    code = main(["predict", "--model", str(trained_model), "--task", "sst", "--input", str(commas)])
    err = one_line_error(capsys, code)
    assert "separated by ','" in err and "line 1" in err


@pytest.mark.parametrize("url, message", [("not a url", "is not a database URL"),
                                          ("sqlite:////no/such/dir/study.db", "cannot be opened")])
def test_a_bad_search_storage_is_one_line_at_once(tmp_path, url, message, capsys):
    started = time.perf_counter()
    code = main(["search", "--config", "recipes/search/quickstart.yaml", "--trials", "1", "--output-dir",
                 str(tmp_path / "s"), "--storage", url])
    assert message in one_line_error(capsys, code) and time.perf_counter() - started < 20


@pytest.mark.parametrize("target", ["model", "run", "parent"])
def test_export_overwrite_never_removes_its_source_or_a_run(finished_run, tmp_path, capsys, target):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    output = {"model": run / "best", "run": run, "parent": tmp_path}[target]
    code = main(["export", "--model", str(run / "best"), "--format", "sentence-transformers", str(output), "--overwrite"])
    assert "this command reads" in one_line_error(capsys, code)
    assert (run / "best" / "mtbert.json").exists() and (run / "checkpoint.pt").exists()
    other = tmp_path / "other-run"
    shutil.copytree(finished_run, other)
    code = main(["export", "--model", str(run / "best"), "--format", "sentence-transformers", str(other), "--overwrite"])
    assert "is a run directory: --overwrite never removes one" in one_line_error(capsys, code)
    assert (other / "checkpoint.pt").exists()
    # an earlier export is what --overwrite replaces
    assert main(["export", "--model", str(run / "best"), "--format", "sentence-transformers", str(tmp_path / "st")]) == 0
    assert main(["export", "--model", str(run / "best"), "--format", "sentence-transformers", str(tmp_path / "st"),
                 "--overwrite"]) == 0


def test_a_run_that_skipped_updates_says_so(tmp_path, tiny_checkpoint, data_dir, capsys, monkeypatch):
    """Fewer skipped updates than the stop limit: the run finishes (exit 0) and says what it skipped."""
    from mtbert.train.step import StepRunner

    real, calls = StepRunner._shard_loss, []

    def one_bad(self, task, indices):
        loss, batch, counted = real(self, task, indices)
        calls.append(task)
        return (loss * float("nan") if len(calls) == 2 else loss), batch, counted
    monkeypatch.setattr(StepRunner, "_shard_loss", one_bad)
    code = main(train_args(tmp_path / "run", tiny_checkpoint, data_dir))
    out = capsys.readouterr().out
    assert code == 0 and "warning: 1 update(s) skipped for a non-finite loss" in out
    assert json.loads((tmp_path / "run" / "results.json").read_text())["skipped_nonfinite_batches"] == 1


def test_a_vocabulary_beyond_the_embedding_rows_is_refused(trained_model, capsys):
    import dataclasses

    from mtbert import BertModel

    def shrink_embedding(model):
        encoder = BertModel.from_pretrained(model)
        small = BertModel(dataclasses.replace(encoder.config, vocab_size=1000))
        small.save_pretrained(model)  # the tokenizer files stay: 30,522 tokens for 1,000 rows
    rewrite_model(trained_model, shrink_embedding)
    code = main(["evaluate", "--model", str(trained_model)])
    assert "the tokenizer has 30522 tokens but the encoder's embedding has 1000 rows" in one_line_error(capsys, code)


# ----- a newcomer's slips: typos, devices, pipes, failed starts ------------------------------------------
@pytest.mark.parametrize("setting, expected", [
    ("train.lrr=1e-4", "--set train.lrr=1e-4: train: unknown option(s) lrr (did you mean lr?)"),
    ("trian.lr=1e-4", "--set trian.lr=1e-4: unknown option(s) trian (did you mean train?)"),
])
def test_a_mistyped_key_is_blamed_on_set_with_the_closest_names(setting, expected, capsys):
    code = main(["train", "--config", "recipes/quickstart.yaml", "--set", setting])
    err = one_line_error(capsys, code)
    assert expected in err and "known in" not in err  # the close names, not all forty


def test_a_mistyped_key_in_a_file_is_blamed_on_the_file(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {lrr: 1.0e-4}\n")
    err = one_line_error(capsys, main(["train", "--config", str(recipe)]))
    assert f"{recipe}: train: unknown option(s) lrr (did you mean lr?)" in err


def test_train_takes_device_and_names_it_in_errors(tmp_path, tiny_checkpoint, data_dir, capsys):
    code = main(train_args(tmp_path / "run", tiny_checkpoint, data_dir) + ["--device", "gpu"])
    assert "--device 'gpu' is not a device" in one_line_error(capsys, code)
    if not torch.cuda.is_available():
        code = main(train_args(tmp_path / "run", tiny_checkpoint, data_dir) + ["--device", "cuda"])
        assert "--device=cuda but CUDA is not available" in one_line_error(capsys, code)
    if not torch.cuda.is_available():  # --device beats the --set train.device=cpu of the tiny settings
        assert main(train_args(tmp_path / "run", tiny_checkpoint, data_dir) + ["--device", "auto"]) == 0
        import yaml
        assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["device"] == "auto"


def test_a_failed_start_leaves_no_run_directory(tmp_path, tiny_checkpoint, data_dir, capsys):
    run = tmp_path / "never"
    code = main(train_args(run, tiny_checkpoint, data_dir) + ["--set", "model.heads.sst.options={nope: 1}"])
    one_line_error(capsys, code)
    assert not run.exists()


def test_predict_into_a_closed_pipe_stops_quietly(trained_model, tmp_path):
    lines = tmp_path / "many.txt"
    lines.write_text("".join(f"sentence {i}\n" for i in range(400)))
    command = (f"{sys.executable} -m mtbert predict --model {trained_model} --task sst --input {lines} "
               "--format csv | head -3")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    assert len(done.stdout.splitlines()) == 3 and "Error" not in done.stderr and "internal error" not in done.stderr
    header = done.stdout.splitlines()[0].split(",")
    assert "sst_p_very_negative" in header and all(" " not in column for column in header)


def test_predict_finds_the_task_from_a_task_files_header(trained_model, data_dir, tmp_path, capsys):
    for stem, tasks in (("ids-sst-dev.csv", {"sst"}), ("sts-dev.csv", {"quora", "sts"})):
        sample = tmp_path / stem
        sample.write_text("".join((data_dir / stem).read_text(encoding="utf-8").splitlines(keepends=True)[:4]))
        assert main(["predict", "--model", str(trained_model), "--input", str(sample), "--format", "json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        first_id = sample.read_text().splitlines()[1].split("\t")[1]
        assert len(rows) == 3 and rows[0]["id"] == first_id  # the file's ids; the header is no sentence
        assert set(rows[0]) - {"id", "inputs"} == tasks


def test_a_header_of_no_task_of_the_model_is_not_predicted(trained_model, tmp_path, capsys):
    other = tmp_path / "pol-test.csv"
    other.write_text("id\ttext\tpolarity\na1\tA fine film.\t1\n")
    code = main(["predict", "--model", str(trained_model), "--input", str(other)])
    assert "a header ('id\\ttext\\tpolarity'), but not of a task file of sst, quora, sts" in one_line_error(capsys, code)
