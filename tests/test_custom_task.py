"""A user's own task, described only in the config, trains, evaluates and predicts like a built-in one."""

from __future__ import annotations

import json

import pytest

from mtbert.config import load_config
from mtbert.evaluate import read_predictions
from mtbert.multitask import MultitaskModel
from mtbert.train import Trainer

ROWS = [("A man is sleeping", "Someone rests", 0), ("A dog barks", "A cat sleeps", 2),
        ("Kids play", "Children are playing", 0), ("It rains", "The sun shines", 2),
        ("He runs fast", "He is running", 1), ("She reads", "A book is read by her", 1)]


def write_split(path, rows, labelled=True):
    header = "uid,premise,hypothesis" + (",gold" if labelled else "")
    lines = [header] + [f"u{i},\"{a}\",\"{b}\"" + (f",{label}" if labelled else "") for i, (a, b, label) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def custom_data(tmp_path):
    write_split(tmp_path / "nli-train.csv", ROWS * 3)
    write_split(tmp_path / "nli-dev.csv", ROWS)
    write_split(tmp_path / "nli-test.csv", ROWS, labelled=False)
    return tmp_path


def test_custom_task_trains_and_predicts(custom_data, tiny_checkpoint, tmp_path):
    task = {"name": "nli", "kind": "classification", "num_labels": 3, "text_columns": ["premise", "hypothesis"],
            "label_column": "gold", "id_column": "uid", "delimiter": ",",
            "files": {"train": "nli-train.csv", "dev": "nli-dev.csv", "test": "nli-test.csv"}}
    overrides = [f"model.name={tiny_checkpoint}", f"data.dir={custom_data}", "data.tasks=[nli]",
                 f"data.custom_tasks=[{json.dumps(task)}]", "train.epochs=1", "train.batch_size=4",
                 "train.progress=false", "model.heads={nli: {type: linear, pooling: mean}}"]
    config = load_config(None, overrides)
    results = Trainer(config, tmp_path / "run").train()
    assert set(results["best"]) >= {"nli_acc", "composite"}
    assert results["best"]["composite"] == pytest.approx(results["best"]["nli_acc"])
    predictions = read_predictions(tmp_path / "run" / "predictions" / "nli-test-output.csv")
    assert sorted(predictions) == [f"u{i}" for i in range(len(ROWS))]
    model = MultitaskModel.from_pretrained(tmp_path / "run" / "best")
    assert model.specs["nli"].num_labels == 3 and model.head_settings["nli"]["pooling"] == "mean"


def test_unknown_task_and_head_are_named(tiny_checkpoint, tmp_path):
    config = load_config(None, [f"model.name={tiny_checkpoint}", "data.tasks=[nosuch]"])
    with pytest.raises(KeyError, match="unknown task 'nosuch'"):
        Trainer(config, tmp_path / "x")
    config = load_config(None, [f"model.name={tiny_checkpoint}", "data.tasks=[sst]",
                                "model.heads={sst: {type: cross_encoder}}"])
    with pytest.raises(ValueError, match="needs a sentence-pair task"):
        Trainer(config, tmp_path / "y")


def test_a_custom_task_without_a_delimiter_reads_tabs():
    from mtbert.tasks import TaskSpec

    spec = TaskSpec.from_dict({"name": "pol", "kind": "binary", "text_columns": ["sentence"], "label_column": "label",
                               "files": {"train": "pol-train.csv"}})
    assert spec.delimiter == "\t"


def test_word_labels_are_read_from_the_data_and_saved_as_label_names(tmp_path, tiny_checkpoint):
    from mtbert import Predictor

    rows = [("u0", "A fine film", "pos"), ("u1", "A dull film", "neg"), ("u2", "Loved it", "pos"), ("u3", "Awful", "neg")]
    for split in ("train", "dev"):
        (tmp_path / f"pol-{split}.csv").write_text(
            "id\tsentence\tlabel\n" + "".join(f"{i}{copy}\t{s}\t{label}\n" for copy in "ab" for i, s, label in rows),
            encoding="utf-8")
    task = {"name": "pol", "kind": "binary", "text_columns": ["sentence"], "label_column": "label",
            "files": {"train": "pol-train.csv", "dev": "pol-dev.csv"}}  # no delimiter: tabs; no label_names
    config = load_config(None, [f"model.name={tiny_checkpoint}", f"data.dir={tmp_path}", "data.tasks=[pol]",
                                f"data.custom_tasks=[{json.dumps(task)}]", "train.epochs=1", "train.batch_size=4",
                                "train.progress=false"])
    Trainer(config, tmp_path / "run").train()
    model = MultitaskModel.from_pretrained(tmp_path / "run" / "best")
    assert model.specs["pol"].label_names == ("neg", "pos")  # sorted: neg is class 0
    answer = Predictor.from_pretrained(tmp_path / "run" / "best", device="cpu").predict("pol", ["A fine film"])[0]
    assert answer.label in ("neg", "pos") and set(answer.probabilities) == {"neg", "pos"}
    analysis = (tmp_path / "run" / "analysis" / "pol-dev.jsonl").read_text().splitlines()
    assert {json.loads(line)["gold"] for line in analysis} == {0, 1}


def test_word_labels_named_in_label_names_keep_that_order(tmp_path):
    from mtbert.tasks import TaskSpec
    from mtbert.tasks.readers import parse_label

    spec = TaskSpec.from_dict({"name": "pol", "kind": "binary", "text_columns": ["sentence"], "label_column": "label",
                               "files": {}, "label_names": ["pos", "neg"]})
    assert parse_label(spec, "neg", tmp_path, 2) == 1 and parse_label(spec, "0", tmp_path, 3) == 0
