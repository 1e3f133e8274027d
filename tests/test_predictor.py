"""Using a trained model: the Predictor's labels, probabilities and scores against the evaluator's
predictions, several tasks in one call, sentence vectors, and `mtbert predict` in its three formats and
two input kinds."""

from __future__ import annotations

import csv
import io
import json
import sys

import pytest
import torch

from mtbert import BertTokenizer, Predictor
from mtbert.cli import main
from mtbert.evaluate import predict_features
from mtbert.multitask import MultitaskModel
from mtbert.precision import resolve_precision
from mtbert.tasks import TASKS, read_examples
from test_heads import PAIR_HEADS, SENTENCE_HEADS, make_model
from test_train_cli import trained_run  # noqa: F401  (the module's trained tiny run)


@pytest.fixture(scope="module")
def predictor(trained_run):  # noqa: F811
    return Predictor.from_pretrained(trained_run / "best", device="cpu")


def test_labels_are_saved_with_the_model(trained_run):  # noqa: F811
    description = json.loads((trained_run / "best" / "mtbert.json").read_text())
    names = {t["name"]: t["label_names"] for t in description["tasks"]}
    assert names["sst"] == ["very negative", "negative", "neutral", "positive", "very positive"]
    assert names["quora"] == ["not duplicate", "duplicate"] and names["sts"] == []


@pytest.mark.parametrize("task", ["sst", "quora", "sts"])
def test_predictions_match_the_evaluator_on_dev(predictor, trained_run, data_dir, task):  # noqa: F811
    spec = TASKS[task]
    examples = read_examples(spec, data_dir / spec.files["dev"], limit=24).examples
    model = MultitaskModel.from_pretrained(trained_run / "best").eval()
    expected = predict_features(model, model.featurize(task, examples), 128, resolve_precision("auto", torch.device("cpu")))
    inputs = [e.texts[0] if len(e.texts) == 1 else e.texts for e in examples]
    answers = predictor.predict(task, inputs)
    if spec.kind == "regression":
        assert [a.score for a in answers] == pytest.approx(expected.predictions, abs=1e-5)
    else:
        assert [a.label_id for a in answers] == [int(p) for p in expected.predictions]
        for a in answers:
            assert sum(a.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
            assert a.label == spec.labels[a.label_id] and a.probabilities[a.label] == max(a.probabilities.values())


def test_one_input_several_tasks_and_bad_inputs(predictor):
    assert len(predictor.predict("sst", "A gorgeous film.")) == 1
    assert len(predictor.predict("quora", ("How do I cook?", "How to cook?"))) == 1
    both = predictor.predict_tasks([("a b", "c d"), ("e", "f")])
    assert set(both) == {"quora", "sts"} and all(len(v) == 2 for v in both.values())
    assert set(predictor.predict_tasks(["one", "two"])) == {"sst"}
    with pytest.raises(ValueError, match="input 0 of task 'quora': expected a pair of sentences"):
        predictor.predict("quora", ["only one"])
    with pytest.raises(KeyError, match="the model has no task 'nli'"):
        predictor.predict("nli", ["x"])
    assert predictor.describe()["sts"] == {"kind": "regression", "inputs": "pair", "range": [0.0, 5.0]}


def test_encode_pools_like_a_mean_pooling_head(trained_run):  # noqa: F811
    predictor = Predictor.from_pretrained(trained_run / "best", device="cpu", precision="fp32")
    vectors = predictor.encode(["A dog runs.", "Something else entirely, and longer."])
    model = predictor.model
    batch = model.tokenizer(["A dog runs."], return_tensors="pt")
    with torch.no_grad():
        states = model.encoder(**batch).last_hidden_state[0]
    assert vectors.shape == (2, model.encoder.config.hidden_size)
    assert torch.allclose(vectors[0], states.mean(0), atol=1e-5)
    normalized = predictor.encode(["A dog runs."], normalize=True)
    assert normalized.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_cli_predict_formats_and_plain_text_input(trained_run, tmp_path, capsys, monkeypatch):  # noqa: F811
    model = str(trained_run / "best")
    assert main(["predict", "--model", model, "--text", "A gorgeous film.", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["id"] == "1" and row["inputs"] == ["A gorgeous film."] and set(row) == {"id", "inputs", "sst"}
    assert row["sst"]["label"] in TASKS["sst"].labels and len(row["sst"]["probabilities"]) == 5
    plain = tmp_path / "pairs.txt"
    plain.write_text("How do I cook?\tHow to cook?\n\nIs it hot?\tIs it warm?\n", encoding="utf-8")
    assert main(["predict", "--model", model, "--input", str(plain), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["id"] for r in rows] == ["1", "3"] and rows[0]["text_pair"] == "How to cook?"
    assert {"quora_label", "quora_p_duplicate", "sts_score"} <= set(rows[0])
    monkeypatch.setattr(sys, "stdin", io.StringIO("A dull film.\nA fine one.\n"))
    assert main(["predict", "--model", model, "--task", "sst", "--input", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("1\tsst: ") and lines[1].endswith("A fine one.")


def test_cli_predict_keeps_the_ids_of_a_task_file(trained_run, data_dir, capsys):  # noqa: F811
    path = data_dir / "sts-test-student.csv"
    assert main(["predict", "--model", str(trained_run / "best"), "--task", "sts", "--input", str(path),
                 "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ids = [e.id for e in read_examples(TASKS["sts"], path, labelled=False).examples]
    assert [r["id"] for r in rows] == ids and all(0.0 <= r["sts"]["score"] <= 5.0 for r in rows)


SENTENCES = ["A gorgeous, witty film.", "Dull.", "It is neither good nor bad, and it goes on for far too long.", "Fine"]
CAST_SETTINGS = (
    [({"sts": {"type": head}}, {}, "sts") for head in PAIR_HEADS]
    + [({"sst": {"type": head}}, {}, "sst") for head in SENTENCE_HEADS]
    + [({"sst": {"type": "linear"}}, {"shared_hidden_layer": True,
        "peft": {"adapter": {"size": 4}, "lhuc": {}, "lora": {"rank": 2}, "pals": {"size": 4, "heads": 2}}}, "sst")]
)


@pytest.mark.parametrize("heads, options, task", CAST_SETTINGS,
                         ids=[f"{task}-{next(iter(h.values()))['type']}{'-peft' if o else ''}" for h, o, task in CAST_SETTINGS])
def test_weights_kept_cast_predict_exactly_what_casting_on_every_call_does(tiny_checkpoint, tmp_path, heads, options,
                                                                          task):
    """A loaded predictor stores its linear weights in bf16 once instead of autocast casting them on every
    call: every head and adapter must give the same outputs to the last bit, and the vectors too."""
    model = make_model(tiny_checkpoint, BertTokenizer.from_pretrained(tiny_checkpoint), heads, tasks=(task,), **options)
    with torch.no_grad():
        for parameter in model.parameters():  # zero-initialised adapters and heads would hide a difference
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.save_pretrained(tmp_path)
    inputs = SENTENCES if task == "sst" else list(zip(SENTENCES, reversed(SENTENCES)))
    kept = Predictor.from_pretrained(tmp_path, device="cpu", precision="bf16")
    given = MultitaskModel.from_pretrained(tmp_path)
    per_call = Predictor(given, resolve_precision("bf16", torch.device("cpu")))
    assert {p.dtype for n, p in kept.model.named_parameters() if "embeddings" not in n} >= {torch.bfloat16}
    assert {p.dtype for p in given.parameters()} == {torch.float32}  # a model handed to a Predictor stays as it is
    assert torch.equal(kept.outputs(task, inputs), per_call.outputs(task, inputs))
    assert torch.equal(kept.encode(SENTENCES), per_call.encode(SENTENCES))


def test_fp32_predictor_keeps_fp32_weights(trained_run):  # noqa: F811
    predictor = Predictor.from_pretrained(trained_run / "best", device="cpu", precision="fp32")
    assert {p.dtype for p in predictor.model.parameters()} == {torch.float32}
    assert predictor.precision.keep_weights_cast(predictor.model) == 0


def test_json_answers_never_hold_a_bare_nan():
    import io
    import json

    from mtbert.inference.inputs import write_answers
    from mtbert.inference.predictor import Prediction
    from mtbert.tasks import get_task

    answer = Prediction(task="sts", score=float("nan"))
    out = io.StringIO()
    write_answers(out, "json", ["1"], [("a", "b")], {"sts": [answer]}, {"sts": get_task("sts")})
    assert json.loads(out.getvalue())["sts"]["score"] is None and "NaN" not in out.getvalue()


def test_scores_are_fp32_not_rounded_to_bf16(trained_run):  # noqa: F811
    predictor = Predictor.from_pretrained(trained_run / "best", device="cpu", precision="bf16")
    pairs = [(a, b) for a in SENTENCES for b in SENTENCES]
    scores = predictor.outputs("sts", pairs)
    assert scores.dtype == torch.float32
    assert (scores.to(torch.bfloat16).float() != scores).float().mean() > 0.5, "the scores carry bf16's 8 bits only"
    assert {p.dtype for p in predictor.model.heads.parameters()} == {torch.float32}
