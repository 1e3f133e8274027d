"""What runs a Predictor's batches: PyTorch (``torch``, any device and precision) or ONNX Runtime on the
CPU (``onnx``, fp32 graphs; ``onnx-int8``, the encoder's matrix products in int8). Every backend answers
the same two questions for a collated batch, so batching, pair orders and answers stay the Predictor's:
the head's raw scores, and the encoder's outputs (for ``encode``).

A new backend is one class registered here."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..bert import EncoderOutput
from ..multitask import MultitaskModel
from ..multitask.features import Batch
from ..multitask.model import split_output
from ..precision import Precision
from ..registry import Registry
from .onnx_bundle import side_inputs

BACKENDS: Registry[type["Backend"]] = Registry("backend")
register_backend = BACKENDS.register


class Backend:
    """The model's forward pass for the Predictor. ``model_dir``: where the model was loaded from (a
    backend may keep what it builds there)."""

    def __init__(self, model: MultitaskModel, precision: Precision, model_dir: Optional[Path] = None):
        self.model, self.precision = model, precision

    def scores(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def encoder_output(self, batch: Batch) -> EncoderOutput:
        raise NotImplementedError


@register_backend("torch")
class TorchBackend(Backend):
    """The model itself, its encoder in the precision's autocast and its heads in fp32."""

    def scores(self, batch: Batch) -> torch.Tensor:
        from ..evaluate.evaluator import head_scores_in_fp32

        return head_scores_in_fp32(self.model, batch)

    def encoder_output(self, batch: Batch) -> EncoderOutput:
        return self.model.encoder(batch.input_ids, batch.attention_mask, batch.token_type_ids)


def onnxruntime_module():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("the onnx backends need onnxruntime (and onnx to build their graphs): "
                          "pip install -e '.[onnx]'") from None
    return onnxruntime


@register_backend("onnx")
class OnnxBackend(Backend):
    """The model's ONNX bundle (``onnx_bundle``: built on first use beside the model, rebuilt when its
    weights change, refused when a graph's checksum fails) under onnxruntime's CPU provider."""

    int8 = False

    def __init__(self, model: MultitaskModel, precision: Precision, model_dir: Optional[Path] = None):
        super().__init__(model, precision, model_dir)
        if precision.device.type != "cpu" or precision.name != "fp32":
            raise ValueError(f"the {self.name} backend runs fp32 graphs on the CPU: use --device cpu and "
                             f"--precision fp32 or auto with it, not {precision.device.type} {precision.name}")
        ort = onnxruntime_module()
        from .onnx_bundle import ENCODER, ENCODER_INT8, cached_bundle, verify

        bundle, manifest = cached_bundle(model, model_dir, self.int8)
        encoder = ENCODER_INT8 if self.int8 else ENCODER
        self.tasks = manifest["tasks"]
        verify(bundle, manifest, [encoder, *(entry["file"] for entry in self.tasks.values())])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle worker threads sleep instead of spinning: on a few cores a spinning pool takes the time the
        # server's event loop and tokenizer need between passes
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(name: str):
            return ort.InferenceSession(str(bundle / name), options, providers=["CPUExecutionProvider"])

        self.bundle = bundle
        self.encoder = session(encoder)
        self.heads = {task: session(entry["file"]) for task, entry in self.tasks.items()}
        self.head_inputs = {task: {i.name for i in s.get_inputs()} for task, s in self.heads.items()}

    @property
    def name(self) -> str:
        return "onnx-int8" if self.int8 else "onnx"

    def encoder_output(self, batch: Batch) -> EncoderOutput:
        states, pooled = self.encoder.run(None, {"input_ids": batch.input_ids.numpy(),
                                                 "attention_mask": batch.attention_mask.numpy(),
                                                 "token_type_ids": batch.token_type_ids.numpy()})
        return EncoderOutput(torch.from_numpy(states), torch.from_numpy(pooled))

    def scores(self, batch: Batch) -> torch.Tensor:
        outputs = split_output(self.encoder_output(batch), batch.num_segments)
        masks = batch.attention_mask.chunk(batch.num_segments, dim=0)
        names = side_inputs(len(outputs))
        feed = {}
        for i, (output, mask) in enumerate(zip(outputs, masks)):
            for name, value in zip(names[3 * i: 3 * i + 3], (output.last_hidden_state, output.pooler_output, mask)):
                feed[name] = value.contiguous().numpy()
        wanted = self.head_inputs[batch.task]  # the exporter drops inputs a head does not read
        logits = self.heads[batch.task].run(["logits"], {k: v for k, v in feed.items() if k in wanted})[0]
        return torch.from_numpy(logits)


@register_backend("onnx-int8")
class OnnxInt8Backend(OnnxBackend):
    int8 = True
