"""The Predictor's backends: ONNX Runtime (fp32 graphs, int8 encoder) answers as the torch backend does,
its graphs are built once beside the model, rebuilt when the weights change and refused when damaged,
and ``mtbert export --format onnx`` writes the same graphs, usable with onnxruntime alone."""

from __future__ import annotations

import builtins
import json
import shutil

import numpy as np
import pytest
import torch

from mtbert import Predictor
from mtbert.cli import BACKEND_OPTION, main
from mtbert.inference.backends import BACKENDS
from mtbert.multitask import MultitaskModel
from test_train_cli import tiny_overrides

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SENTENCES = ["A gorgeous, witty film.", "It was dull and far too long.", "short", "An ok movie with one good scene."]
PAIRS = [("A man plays a guitar.", "A man is playing the guitar."), ("How do I learn Python?", "What is France?"),
         ("one", "two words here")]
# fp32 graphs against the fp32 model: the same arithmetic in another order
ONNX_TOLERANCE = 1e-4
# int8 weights on a tiny random encoder: probabilities within this, labels equal where the torch backend's
# top two labels are further apart than twice it
INT8_TOLERANCE = 0.05


def train_tiny(tmp_path_factory, tiny_checkpoint, data_dir, kind: str):
    """A tiny trained model: the quickstart's heads (linear, relational pairs), or a cross-encoder for
    Quora and a cosine head for STS."""
    run = tmp_path_factory.mktemp(kind)
    extra = {"train.epochs": 1}
    if kind == "cross-encoder":
        extra["model.heads"] = ("{sst: {type: linear, pooling: cls}, quora: {type: cross_encoder, pooling: pooler}, "
                                "sts: {type: cosine, pooling: mean}}")
    args = ["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(run)]
    for item in tiny_overrides(tiny_checkpoint, data_dir, **extra):
        args += ["--set", item]
    assert main(args) == 0
    return run / "best"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_checkpoint, data_dir):
    return train_tiny(tmp_path_factory, tiny_checkpoint, data_dir, "quickstart")


@pytest.fixture(scope="module", params=["quickstart", "cross-encoder"])
def any_model(request, model_dir, tmp_path_factory, tiny_checkpoint, data_dir):
    """Every kind of head: joint and Siamese, pooled by mean, [CLS] and the pooler."""
    if request.param == "quickstart":
        return model_dir
    return train_tiny(tmp_path_factory, tiny_checkpoint, data_dir, request.param)


def answers(predictor: Predictor) -> dict:
    return {"sst": predictor.predict("sst", SENTENCES), "quora": predictor.predict("quora", PAIRS),
            "sts": predictor.predict("sts", PAIRS)}


def assert_close(got: dict, want: dict, tolerance: float) -> None:
    for task in want:
        for mine, theirs in zip(got[task], want[task]):
            if theirs.score is not None:
                assert abs(mine.score - theirs.score) <= tolerance * 5, (task, mine, theirs)  # 0-5 scale
                continue
            probabilities, reference = list(mine.probabilities.values()), list(theirs.probabilities.values())
            assert np.abs(np.subtract(probabilities, reference)).max() <= tolerance, (task, mine, theirs)
            top = sorted(reference, reverse=True)
            if top[0] - top[1] > 2 * tolerance:
                assert mine.label == theirs.label, (task, mine, theirs)


@pytest.mark.parametrize("backend, tolerance", [("onnx", ONNX_TOLERANCE), ("onnx-int8", INT8_TOLERANCE)])
def test_every_backend_answers_as_torch_does(any_model, tmp_path, backend, tolerance):
    model = tmp_path / "model"
    shutil.copytree(any_model, model)
    reference = Predictor.from_pretrained(model, device="cpu", precision="fp32")
    predictor = Predictor.from_pretrained(model, backend=backend)
    assert_close(answers(predictor), answers(reference), tolerance)
    vectors, expected = predictor.encode(SENTENCES), reference.encode(SENTENCES)
    assert vectors.shape == expected.shape
    assert torch.nn.functional.cosine_similarity(vectors, expected).min() > (0.9999 if backend == "onnx" else 0.95)
    manifest = json.loads((model / "onnx" / "mtbert-onnx.json").read_text())
    assert ("encoder.int8.onnx" in manifest["files"]) == (backend == "onnx-int8")


def test_the_graphs_are_built_once_and_again_when_the_weights_change(model_dir, tmp_path, monkeypatch):
    from mtbert.inference import onnx_bundle

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    Predictor.from_pretrained(model, backend="onnx")
    builds = []
    real = onnx_bundle.build_bundle
    monkeypatch.setattr(onnx_bundle, "build_bundle", lambda *a, **k: builds.append(1) or real(*a, **k))
    Predictor.from_pretrained(model, backend="onnx")
    assert builds == []  # the same weights: the graphs on disk are used
    changed = MultitaskModel.from_pretrained(model)
    with torch.no_grad():
        for parameter in changed.heads["sst"].parameters():
            parameter.add_(0.5)
    changed.save_pretrained(model)
    predictor = Predictor.from_pretrained(model, backend="onnx")
    assert builds == [1]
    assert_close(answers(predictor), answers(Predictor.from_pretrained(model, device="cpu", precision="fp32")),
                 ONNX_TOLERANCE)


def test_a_damaged_graph_is_refused_with_its_name(model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    Predictor.from_pretrained(model, backend="onnx")
    graph = model / "onnx" / "heads" / "sst.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"sst\.onnx: does not match the checksum.*delete .*onnx"):
        Predictor.from_pretrained(model, backend="onnx")


def test_a_read_only_model_directory_builds_into_the_user_cache(model_dir, tmp_path, monkeypatch):
    from mtbert.inference import onnx_bundle

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    monkeypatch.setenv("MTBERT_CACHE", str(tmp_path / "cache"))
    real = onnx_bundle.tempfile.mkdtemp

    def read_only_model(prefix=None, dir=None):  # what a model directory the user cannot write gives
        if dir is not None and str(dir).startswith(str(model)):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(prefix=prefix, dir=dir)

    monkeypatch.setattr(onnx_bundle.tempfile, "mkdtemp", read_only_model)
    predictor = Predictor.from_pretrained(model, backend="onnx")
    assert predictor.backend.bundle.is_relative_to(tmp_path / "cache") and not (model / "onnx").exists()
    assert Predictor.from_pretrained(model, backend="onnx").backend.bundle == predictor.backend.bundle  # reused


def test_a_missing_onnxruntime_is_one_line_naming_the_extra(model_dir, monkeypatch, capsys):
    real_import = builtins.__import__

    def without_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnxruntime)
    code = main(["predict", "--model", str(model_dir), "--task", "sst", "--text", "fine", "--backend", "onnx"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "pip install -e '.[onnx]'" in err


def test_the_cli_offers_every_registered_backend_and_predicts_with_one(model_dir, tmp_path, capsys):
    assert sorted(BACKEND_OPTION["choices"]) == sorted(BACKENDS)
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    assert main(["predict", "--model", str(model), "--task", "sst", "--format", "json", "--text", SENTENCES[0],
                 "--backend", "onnx-int8"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["sst"]["label"] in Predictor.from_pretrained(model).tasks["sst"].labels


def test_the_export_is_the_backends_graphs_and_runs_with_onnxruntime_alone(any_model, tmp_path):
    model_dir = any_model
    import onnxruntime as ort
    from tokenizers import Tokenizer

    out = tmp_path / "export"
    assert main(["export", "--model", str(model_dir), "--format", "onnx", "--int8", str(out)]) == 0
    manifest = json.loads((out / "mtbert-onnx.json").read_text())
    assert {"encoder.onnx", "encoder.int8.onnx"} <= set(manifest["files"])
    assert sum(1 for _ in out.rglob("*.onnx")) == 2 + len(manifest["tasks"])  # one encoder, small heads
    reference = Predictor.from_pretrained(model_dir, device="cpu", precision="fp32")
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    encoder = ort.InferenceSession(str(out / "encoder.onnx"))

    def encode(texts):
        rows = tokenizer.encode_batch(texts)
        width = max(len(r.ids) for r in rows)
        ids = np.array([r.ids + [0] * (width - len(r.ids)) for r in rows], dtype=np.int64)
        mask = np.array([[1] * len(r.ids) + [0] * (width - len(r.ids)) for r in rows], dtype=np.int64)
        states, pooled = encoder.run(None, {"input_ids": ids, "attention_mask": mask,
                                            "token_type_ids": np.zeros_like(ids)})
        return states, pooled, mask

    for task, entry in manifest["tasks"].items():
        head = ort.InferenceSession(str(out / entry["file"]))
        wanted = {i.name for i in head.get_inputs()}
        if entry["encoding"] == "separate":  # each side by name, each padded to its own length
            sides = [encode([p[0] for p in PAIRS]), encode([p[1] for p in PAIRS])]
            feed = {f"{side}_{name}": value for side, values in zip("ab", sides)
                    for name, value in zip(("last_hidden_state", "pooler_output", "attention_mask"), values)}
            expected = reference.predict(task, PAIRS)
        elif reference.tasks[task].is_pair:
            rows = tokenizer.encode_batch([(a, b) for a, b in PAIRS])
            width = max(len(r.ids) for r in rows)
            ids = np.array([r.ids + [0] * (width - len(r.ids)) for r in rows], dtype=np.int64)
            mask = (np.arange(width)[None] < np.array([len(r.ids) for r in rows])[:, None]).astype(np.int64)
            types = np.array([r.type_ids + [0] * (width - len(r.ids)) for r in rows], dtype=np.int64)
            states, pooled = encoder.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
            feed = {"last_hidden_state": states, "pooler_output": pooled, "attention_mask": mask}
            expected = reference.predict(task, PAIRS)
        else:
            feed = dict(zip(("last_hidden_state", "pooler_output", "attention_mask"), encode(SENTENCES)))
            expected = reference.predict(task, SENTENCES)
        logits, answer = head.run(None, {k: v for k, v in feed.items() if k in wanted})
        if entry["kind"] == "regression":
            assert np.allclose(answer.reshape(-1), [e.score for e in expected], atol=5 * ONNX_TOLERANCE), task
        else:
            assert np.allclose(answer, [list(e.probabilities.values()) for e in expected], atol=ONNX_TOLERANCE), task
