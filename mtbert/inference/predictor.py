"""Using a trained model: ``Predictor.from_pretrained("runs/x/best").predict("sst", ["A gorgeous film."])``.

One multitask model serves every task it was trained on; a predictor answers in the task's own terms:
a classification or binary task gives its label name, the label's index and the probability of every
label; a regression task gives its score (clamped to the task's range, as the evaluator scores it).
Batches are the evaluator's (length-sorted, capped in padded tokens), so predictions here equal the
ones ``mtbert evaluate`` scores. ``encode`` gives sentence vectors pooled as a head pools them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..evaluate.evaluator import batched_outputs, predict_features
from ..multitask import MultitaskModel
from ..multitask.features import featurize
from ..precision import Precision, resolve_device, resolve_precision
from ..tasks import Example, TaskSpec
from ..tasks.heads.base import POOLINGS
from .backends import BACKENDS

Input = Union[str, Sequence[str]]  # one sentence, or a pair (a, b)


@dataclasses.dataclass
class Prediction:
    """One input's answer. Classification and binary tasks: ``label``, ``label_id`` and ``probabilities``
    (label name -> probability); regression: ``score``."""

    task: str
    label: Optional[str] = None
    label_id: Optional[int] = None
    probabilities: Optional[dict[str, float]] = None
    score: Optional[float] = None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


class Predictor:
    def __init__(self, model: MultitaskModel, precision: Precision, batch_size: int = 128,
                 max_tokens: Optional[int] = None, backend: str = "torch", model_dir: Optional[Path] = None):
        self.model = model.eval()
        self.precision = precision
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.backend = BACKENDS.get(backend)(self.model, precision, model_dir)
        self.backend_name = backend

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "auto", precision: str = "auto",
                        base: Optional[str] = None, batch_size: int = 128,
                        max_tokens: Optional[int] = None, backend: str = "torch") -> "Predictor":
        """A saved model (a run's ``best/``, full or delta; ``base`` where a delta's base encoder now is)
        on ``device`` (auto: CUDA when present) in ``precision`` (auto: bf16 where native, else fp32),
        run by ``backend``: ``torch``; ``onnx`` or ``onnx-int8`` (onnxruntime on the CPU, fp32 graphs or the
        encoder in int8; the graphs are built on first use into ``directory/onnx`` and reused while the
        weights stay the same).

        Under torch in bf16 or fp16 the model's linear weights are stored in that dtype once
        (``Precision.keep_weights_cast``), so call ``predictor.model`` inside
        ``predictor.precision.autocast()``, and load ``MultitaskModel.from_pretrained`` to train further.
        ``Predictor(model, precision)`` leaves a model it is given as it is."""
        BACKENDS.get(backend)  # an unknown backend is named before the model loads
        onnx = backend != "torch"
        resolved = resolve_device("cpu" if onnx and device == "auto" else device, option="device")
        model = MultitaskModel.from_pretrained(directory, base=base).to(resolved)
        chosen = resolve_precision("fp32" if onnx and precision == "auto" else precision, resolved)
        if not onnx:
            # the predictor owns this model: the encoder's weights cast once, not on every call; the heads
            # stay fp32, as they run outside autocast (scores and probabilities in fp32, not rounded to bf16)
            chosen.keep_weights_cast(model.encoder)
        return cls(model, chosen, batch_size, max_tokens, backend, Path(directory))

    # ----- what the model offers ----------------------------------------------------------
    @property
    def tasks(self) -> dict[str, TaskSpec]:
        return dict(self.model.specs)

    def describe(self) -> dict[str, dict]:
        """Per task: its kind, whether it takes pairs, and its labels or score range."""
        out = {}
        for name, spec in self.model.specs.items():
            entry = {"kind": spec.kind, "inputs": "pair" if spec.is_pair else "sentence"}
            if spec.kind == "regression":
                entry["range"] = list(spec.label_range)
            else:
                entry["labels"] = list(spec.labels)
            out[name] = entry
        return out

    # ----- predicting ---------------------------------------------------------------------
    def examples(self, task: str, inputs: Sequence[Input]) -> list[Example]:
        """Inputs as examples of ``task``: a string per input for a one-sentence task, a pair for a pair task."""
        spec = self.spec(task)
        examples = []
        for i, item in enumerate(inputs):
            texts = (item,) if isinstance(item, str) else tuple(item)
            if len(texts) != len(spec.text_columns) or not all(isinstance(t, str) for t in texts):
                wanted = "a pair of sentences" if spec.is_pair else "one sentence"
                raise ValueError(f"input {i} of task {task!r}: expected {wanted}, got {item!r}")
            if not all(t.strip() for t in texts):
                raise ValueError(f"input {i} of task {task!r}: empty text")
            examples.append(Example(str(i), tuple(t.strip() for t in texts), None, i + 1))
        return examples

    def spec(self, task: str) -> TaskSpec:
        if task not in self.model.specs:
            raise KeyError(f"the model has no task {task!r}; it has {', '.join(self.model.specs)}")
        return self.model.specs[task]

    def outputs(self, task: str, inputs: Sequence[Input]) -> torch.Tensor:
        """The head's raw outputs (logits, one logit, or a score), in input order; the mean over both
        orders of a pair where the model was trained to average them."""
        features = self.model.featurize(task, self.examples(task, inputs))
        return predict_features(self.model, features, self.batch_size, self.precision, self.max_tokens,
                                progress=False, forward=self.backend.scores).outputs

    def predict(self, task: str, inputs: Union[Input, Sequence[Input]]) -> list[Prediction]:
        """One prediction per input (a single sentence or pair may be passed alone)."""
        spec = self.spec(task)
        if isinstance(inputs, str) or (spec.is_pair and _is_pair(inputs)):
            inputs = [inputs]
        if not inputs:
            return []
        return [answer(spec, row) for row in self.outputs(task, list(inputs))]

    def predict_tasks(self, inputs: Sequence[Input], tasks: Optional[Sequence[str]] = None
                      ) -> dict[str, list[Prediction]]:
        """Several tasks on the same inputs, one encoder pass per task: every task of the model that takes
        this kind of input (sentences or pairs), or the ``tasks`` named."""
        pairs = bool(inputs) and not isinstance(inputs[0], str)
        chosen = list(tasks) if tasks is not None else [t for t, s in self.model.specs.items() if s.is_pair == pairs]
        return {task: self.predict(task, inputs) for task in chosen}

    def encode(self, sentences: Sequence[str], pooling: str = "mean", normalize: bool = False) -> torch.Tensor:
        """Sentence vectors of the shared encoder, pooled as a head pools them (``mean``, ``cls``,
        ``pooler``), optionally L2-normalised; (n, hidden) fp32 on the CPU, in input order."""
        pool = POOLINGS.get(pooling)
        spec = TaskSpec(name="sentences", kind="regression", text_columns=("text",), label_column="", files={})
        examples = [Example(str(i), (s,), None, i + 1) for i, s in enumerate(sentences)]
        features = featurize(self.model.tokenizer, spec, examples, "joint", self.model.max_length)
        def vectors(batch):
            return pool(self.backend.encoder_output(batch), batch.attention_mask)
        if not examples:
            return torch.empty(0, self.model.encoder.config.hidden_size)
        result = batched_outputs(self.model, features, self.batch_size, self.precision, vectors, self.max_tokens,
                                 progress=False)
        return torch.nn.functional.normalize(result, dim=-1) if normalize else result


def _is_pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, str) for v in value)


def answer(spec: TaskSpec, output: torch.Tensor) -> Prediction:
    """A head's raw output as the task's answer."""
    if spec.kind == "regression":
        low, high = spec.label_range
        return Prediction(spec.name, score=float(output.float().clamp(low, high).reshape(-1)[0]))
    if spec.kind == "binary":
        positive = float(torch.sigmoid(output.float().reshape(-1)[0]))
        probabilities = [1.0 - positive, positive]
    else:
        probabilities = torch.softmax(output.float(), -1).tolist()
    label_id = int(max(range(len(probabilities)), key=probabilities.__getitem__))
    names = spec.labels
    return Prediction(spec.name, label=names[label_id], label_id=label_id,
                      probabilities={name: round(p, 6) for name, p in zip(names, probabilities)})
