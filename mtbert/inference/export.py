"""``mtbert export``: a trained model in the formats other tools load.

- ``sentence-transformers``: the shared encoder (Hugging Face names), its tokenizer, and the metadata
  sentence-transformers reads (``modules.json``, ``sentence_bert_config.json`` with the model's max
  length, ``1_Pooling/config.json``, and ``2_Normalize`` when asked), so that ``SentenceTransformer(OUT)``
  gives the vectors ``Predictor.encode`` gives, instead of guessed defaults (length 512, mean pooling, no
  normalisation).
- ``onnx``: one encoder graph shared by every task and one small graph per head, with dynamic batch and
  length, described in ``mtbert-onnx.json`` (see ``onnx_bundle``); ``--int8`` adds the encoder with int8
  weights. The Predictor's ``onnx`` and ``onnx-int8`` backends run the same files.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Optional

import torch

from ..output_dir import prepare_output_dir
from ..multitask import MultitaskModel

ST_POOLINGS = ("mean", "cls")


def default_pooling(model: MultitaskModel) -> str:
    """The pooling most heads use (a sentence vector a sentence-transformers user would expect)."""
    counts = Counter(settings.get("pooling", "pooler") for settings in model.head_settings.values())
    return counts.most_common(1)[0][0] if counts else "mean"


def export_sentence_transformers(model: MultitaskModel, output: Path, pooling: Optional[str] = None,
                                 normalize: bool = False, overwrite: bool = False, source: Optional[Path] = None) -> Path:
    """The encoder with its pooling as a sentence-transformers model in ``output`` (``source``: the model
    directory it came from, which ``overwrite`` never removes)."""
    if model.peft:
        raise ValueError(f"the model holds PEFT modules ({', '.join(model.peft)}) that a plain BERT checkpoint "
                         "cannot hold: sentence-transformers would load the encoder without them")
    pooling = pooling or default_pooling(model)
    if pooling not in ST_POOLINGS:
        raise ValueError(f"pooling {pooling!r} has no sentence-transformers equivalent (the BERT pooler layer is not "
                         f"one of its modules): pass --pooling {' or '.join(ST_POOLINGS)}")
    prepare_output_dir(output, overwrite, [source] if source else [], earlier="modules.json")
    model.encoder.save_pretrained(output)
    model.tokenizer.save_pretrained(output)
    hidden = model.encoder.config.hidden_size
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (output / "2_Normalize").mkdir()
    write_json(output / "modules.json", modules)
    write_json(output / "sentence_bert_config.json", {"max_seq_length": model.max_length, "do_lower_case": False})
    (output / "1_Pooling").mkdir()
    write_json(output / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True})
    write_json(output / "config_sentence_transformers.json", {"prompts": {}, "default_prompt_name": None,
                                                              "similarity_fn_name": "cosine"})
    write_json(output / "mtbert-export.json", {"pooling": pooling, "normalize": normalize,
                                               "max_length": model.max_length})
    return output


def export_onnx(model: MultitaskModel, output: Path, overwrite: bool = False, int8: bool = False,
                source: Optional[Path] = None) -> Path:
    """The model's ONNX bundle (``onnx_bundle``: one encoder graph, one graph per head, ``--int8`` adds the
    int8 encoder) in ``output``: the graphs the Predictor's onnx backends run."""
    from .onnx_bundle import MANIFEST, build_bundle, check_exportable

    check_exportable(model)  # before the output directory is touched
    prepare_output_dir(output, overwrite, [source] if source else [], earlier=MANIFEST)
    build_bundle(model, output, int8=int8)
    return output


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def export_transformers_classifier(model: MultitaskModel, task: str, output: Path, overwrite: bool = False,
                                   source: Optional[Path] = None) -> Path:
    """One task as a transformers ``BertForSequenceClassification`` (``pipeline("text-classification")``
    loads it): the encoder and its pooler, and the task's linear head as the classifier. Only a head that is
    exactly that model's (a linear layer on the pooler output, no shared layer, no PEFT modules) can be
    written; anything else is refused with the reason. A binary head's one logit z becomes the logits
    (0, z), whose softmax is (1 − σ(z), σ(z)); a regression head becomes ``num_labels: 1``."""
    from safetensors.torch import load_file, save_file

    if task not in model.specs:
        raise ValueError(f"the model has no task {task!r}; it has {', '.join(model.specs)}")
    spec, settings = model.specs[task], model.head_settings[task]
    problems = []
    if settings.get("type") not in ("linear", "cross_encoder"):
        problems.append(f"its head is {settings.get('type')!r}, not a linear layer over one vector")
    if settings.get("pooling") != "pooler":
        problems.append(f"it pools by {settings.get('pooling')!r}; BertForSequenceClassification reads the pooler "
                        "output")
    if model.shared_hidden_layer:
        problems.append("a shared hidden layer sits before the head")
    if model.peft:
        problems.append(f"the encoder holds PEFT modules ({', '.join(model.peft)})")
    if model.pair_order(task) == "both":
        problems.append("its predictions average both orders of each pair")
    if problems:
        raise ValueError(f"task {task!r} cannot be a transformers BertForSequenceClassification: {'; '.join(problems)}")
    prepare_output_dir(output, overwrite, [source] if source else [], earlier="mtbert-transformers.json")
    model.encoder.save_pretrained(output)
    model.tokenizer.save_pretrained(output)
    weights = {f"bert.{k}": v for k, v in load_file(str(output / "model.safetensors")).items()}
    layer = model.heads[task].output
    weight, bias = layer.weight.detach().float().cpu(), layer.bias.detach().float().cpu()
    if spec.kind == "binary":
        weight, bias = torch.cat([torch.zeros_like(weight), weight]), torch.cat([torch.zeros_like(bias), bias])
    weights["classifier.weight"], weights["classifier.bias"] = weight.contiguous(), bias.contiguous()
    save_file(weights, str(output / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((output / "config.json").read_text(encoding="utf-8"))
    labels = list(spec.labels) if spec.kind != "regression" else ["score"]
    config.update({"architectures": ["BertForSequenceClassification"], "num_labels": len(labels),
                   "id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)},
                   "problem_type": "regression" if spec.kind == "regression" else "single_label_classification",
                   "classifier_dropout": None})
    write_json(output / "config.json", config)
    write_json(output / "mtbert-transformers.json", {"task": task, "kind": spec.kind, "max_length": model.max_length})
    return output
