"""A trained model as ONNX graphs: one encoder graph that every task shares, and one small graph per
task's head. It is what ``mtbert export --format onnx`` writes and what the Predictor's ``onnx`` and
``onnx-int8`` backends run, so what a user hands on is what mtbert measured.

Files (described in ``mtbert-onnx.json``, with a SHA-256 of each and a fingerprint of the weights they
came from):

- ``encoder.onnx``: ``input_ids``, ``attention_mask``, ``token_type_ids`` (batch, length) ->
  ``last_hidden_state`` (batch, length, hidden) and ``pooler_output`` (batch, hidden); dynamic batch and
  length. ``encoder.int8.onnx`` (``--int8``): the same with its matrix products' weights quantised to int8
  (onnxruntime's dynamic quantisation; activations are quantised per batch at run time).
- ``heads/<task>.onnx``: a joint head (one input holds the sentence, or [CLS] a [SEP] b [SEP]) takes the
  encoder's two outputs and the ``attention_mask``; a Siamese head takes each side by name
  (``a_last_hidden_state``, ``a_pooler_output``, ``a_attention_mask``, then ``b_...``), each side encoded
  alone, so the two sides may have different lengths. A head keeps only the inputs it reads (the
  manifest's ``inputs``: a mean-pooling head has no ``pooler_output``). Outputs: ``logits`` (the head's raw output) and
  ``probabilities`` (softmax; for a binary task, (P(no), P(yes))) or ``score`` (clamped to the task's
  range, as mtbert scores it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..bert import EncoderOutput
from ..integrity import file_sha256
from ..multitask import MultitaskModel
from ..tasks import TaskSpec

MANIFEST = "mtbert-onnx.json"
ENCODER, ENCODER_INT8 = "encoder.onnx", "encoder.int8.onnx"
FORMAT = 2  # the layout above; a bundle of another format is rebuilt
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ENCODER_OUTPUTS = ("last_hidden_state", "pooler_output")
SIDES = ("a", "b")


def side_inputs(segments: int) -> list[str]:
    """A head graph's input names: the encoder's outputs and mask, once per side of a Siamese pair."""
    names = [*ENCODER_OUTPUTS, "attention_mask"]
    return names if segments == 1 else [f"{side}_{name}" for side in SIDES for name in names]


def output_names(spec: TaskSpec) -> list[str]:
    return ["logits", "score" if spec.kind == "regression" else "probabilities"]


def answer_tensor(spec: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """What a head's logits mean: probabilities of every label, or the score clamped to the task's range."""
    if spec.kind == "regression":
        low, high = spec.label_range
        return logits.clamp(low, high)
    if spec.kind == "binary":
        positive = torch.sigmoid(logits.reshape(-1))
        return torch.stack([1 - positive, positive], dim=-1)
    return torch.softmax(logits, dim=-1)


class EncoderGraph(nn.Module):
    def __init__(self, model: MultitaskModel):
        super().__init__()
        self.encoder = model.encoder

    def forward(self, input_ids, attention_mask, token_type_ids):
        output = self.encoder(input_ids, attention_mask, token_type_ids)
        return output.last_hidden_state, output.pooler_output


class HeadGraph(nn.Module):
    """One task's head as a function of the encoder's outputs for each of its segments."""

    def __init__(self, model: MultitaskModel, task: str):
        super().__init__()
        self.head, self.spec = model.heads[task], model.specs[task]
        self.shared = model.shared  # the layers heads share are the model's, not the head's: the graph needs them
        self.segments = 2 if model.encoding(task) == "separate" else 1

    def forward(self, *tensors):
        outputs, masks = [], []
        for i in range(self.segments):
            states, pooled, mask = tensors[3 * i: 3 * i + 3]
            outputs.append(EncoderOutput(states, pooled))
            masks.append(mask)
        logits = self.head(outputs, masks).scores.float()
        return logits, answer_tensor(self.spec, logits)


def weights_fingerprint(model: MultitaskModel) -> str:
    """SHA-256 over every tensor of the model (names, dtypes, shapes, bytes), its heads' settings and its
    length: the graphs of a bundle are current while this stays the same."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(json.dumps([model.head_settings, model.max_length, FORMAT], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _export(graph: nn.Module, example: tuple, path: Path, inputs: list[str], outputs: list[str],
            axes: dict, opset: int) -> None:
    with warnings.catch_warnings():
        # the encoder's check that a batch fits its positions is a Python comparison the tracer cannot keep
        # (the Predictor truncates to max_length first); the legacy exporter's notices are not the user's
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(graph, example, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=opset, dynamo=False)


def check_exportable(model: MultitaskModel) -> None:
    if model.peft:
        raise ValueError(f"the model holds PEFT modules ({', '.join(model.peft)}) whose forward hooks ONNX export "
                         "does not follow: ONNX is for models without them")


def build_bundle(model: MultitaskModel, output: Path, int8: bool = False, opset: int = 17,
                 fingerprint: Optional[str] = None) -> dict:
    """Write the encoder graph, every head's graph, the tokenizer and the manifest into ``output``
    (an empty or new directory); returns the manifest. The model is exported in fp32 and left in eval.
    ``fingerprint``: ``weights_fingerprint(model)`` where the caller has it already."""
    check_exportable(model)
    fingerprint = fingerprint or weights_fingerprint(model)  # of the weights as given, as cached_bundle compares
    model = model.float().eval()
    output.mkdir(parents=True, exist_ok=True)
    (output / "heads").mkdir(exist_ok=True)
    rows, length = 2, 9
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[0, -3:] = 0  # padding in the example: the encoder's no-padding shortcut must not be the traced path
    ids = torch.randint(1000, 2000, (rows, length))
    with torch.no_grad():
        _export(EncoderGraph(model), (ids, mask, torch.zeros_like(ids)), output / ENCODER, list(ENCODER_INPUTS),
                list(ENCODER_OUTPUTS), {**{n: {0: "batch", 1: "length"} for n in ENCODER_INPUTS},
                                        "last_hidden_state": {0: "batch", 1: "length"}, "pooler_output": {0: "batch"}},
                opset)
        encoded = model.encoder(ids, mask, torch.zeros_like(ids))
    tasks = {}
    for task, spec in model.specs.items():
        graph = HeadGraph(model, task).eval()
        example = (encoded.last_hidden_state, encoded.pooler_output, mask) * graph.segments
        names = side_inputs(graph.segments)
        axes = {}
        for name in names:
            axes[name] = {0: "batch"} if name.endswith("pooler_output") else {0: "batch", 1: f"length_{name[0]}"
                                                                               if graph.segments == 2 else "length"}
        outputs = output_names(spec)
        axes.update({name: {0: "batch"} for name in outputs})
        with torch.no_grad():
            _export(graph, example, output / "heads" / f"{task}.onnx", names, outputs, axes, opset)
        tasks[task] = {"file": f"heads/{task}.onnx", "kind": spec.kind, "encoding": model.encoding(task),
                       "inputs": graph_inputs(output / "heads" / f"{task}.onnx"), "outputs": outputs, "labels": list(spec.labels),
                       "range": list(spec.label_range) if spec.kind == "regression" else None,
                       "pair_order": model.pair_order(task)}
    model.tokenizer.save_pretrained(output)
    manifest = {"format": FORMAT, "opset": opset, "fingerprint": fingerprint,
                "max_length": model.max_length, "encoder": ENCODER, "tasks": tasks, "files": {}}
    if int8:
        quantize_encoder(output)
    manifest["files"] = {path.relative_to(output).as_posix(): file_sha256(path)
                         for path in sorted(output.rglob("*.onnx"))}
    write_manifest(output, manifest)
    return manifest


def graph_inputs(path: Path) -> list[str]:
    """The inputs a graph kept: the exporter drops the ones a head does not read (a mean-pooling head
    takes no ``pooler_output``), so a caller feeds exactly these."""
    import onnx

    return [item.name for item in onnx.load(str(path), load_external_data=False).graph.input]


def quantize_encoder(bundle: Path) -> Path:
    """``encoder.int8.onnx`` beside ``encoder.onnx``: the weights of its matrix products in int8, per
    tensor (signed, as onnxruntime's VNNI kernels take them), activations quantised per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = bundle / ENCODER_INT8
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the graph first goes to the root logger
    try:
        with tempfile.TemporaryDirectory(dir=bundle) as scratch:
            staged = Path(scratch) / ENCODER_INT8
            quantize_dynamic(str(bundle / ENCODER), str(staged), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"])
            staged.replace(target)
    finally:
        root.setLevel(level)
    return target


def write_manifest(bundle: Path, manifest: dict) -> None:
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def read_manifest(bundle: Path) -> Optional[dict]:
    try:
        manifest = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def verify(bundle: Path, manifest: dict, names: list[str]) -> None:
    """Refuse a graph whose bytes are not the ones the manifest recorded (changed or damaged)."""
    for name in names:
        want = manifest.get("files", {}).get(name)
        path = bundle / name
        if want is None or not path.exists() or file_sha256(path) != want:
            raise ValueError(f"{path}: does not match the checksum in {bundle / MANIFEST} (changed or damaged); "
                             f"delete {bundle} and it is built again")


def cached_bundle(model: MultitaskModel, model_dir: Optional[Path], int8: bool) -> tuple[Path, dict]:
    """The model's bundle: ``<model_dir>/onnx`` (or a per-user cache where that cannot be written, or for
    a model given without its directory), reused while its fingerprint matches the model's weights,
    built again (in a scratch folder, then moved in) when it does not."""
    fingerprint = weights_fingerprint(model)
    candidates = ([model_dir / "onnx"] if model_dir is not None else []) + [user_cache() / fingerprint[:16]]
    for bundle in candidates:
        manifest = read_manifest(bundle)
        if manifest is not None and manifest.get("fingerprint") == fingerprint:
            if int8 and ENCODER_INT8 not in manifest["files"]:
                verify(bundle, manifest, [ENCODER])
                manifest["files"][ENCODER_INT8] = file_sha256(quantize_encoder(bundle))
                write_manifest(bundle, manifest)
            return bundle, manifest
    last_error: Optional[OSError] = None
    for bundle in candidates:
        try:
            bundle.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".onnx-", dir=bundle.parent))
        except OSError as error:  # a read-only model directory: the next place
            last_error = error
            continue
        try:
            manifest = build_bundle(model, scratch, int8=int8, fingerprint=fingerprint)
            if bundle.exists():
                shutil.rmtree(bundle)  # graphs of other weights (or damaged ones): only mtbert writes here
            scratch.replace(bundle)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return bundle, manifest
    raise OSError(f"no place to build the ONNX graphs: {last_error}")


def user_cache() -> Path:
    root = os.environ.get("MTBERT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME")
                                                          or os.path.expanduser("~/.cache"), "mtbert")
    return Path(root) / "onnx"
