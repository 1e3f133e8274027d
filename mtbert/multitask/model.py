"""The multitask model: one shared encoder, one head per task; saved as one directory.

A saved model directory is a Hugging Face-style encoder checkpoint (config.json, model.safetensors,
tokenizer files) plus ``heads.safetensors`` and ``mtbert.json`` (task specs and head settings), so
``predict`` and ``evaluate`` need nothing but the directory, and the encoder alone loads anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..bert import BertModel, BertTokenizer, CheckpointError, EncoderOutput
from ..tasks import TaskSpec, build_head, default_head_name
from .features import Batch

MODEL_FORMAT = 1


def split_output(output: EncoderOutput, parts: int) -> list[EncoderOutput]:
    """Undo the stacking of segments along the batch axis."""
    if parts == 1:
        return [output]
    states = output.last_hidden_state.chunk(parts, dim=0)
    pooled = output.pooler_output.chunk(parts, dim=0)
    return [EncoderOutput(s, p) for s, p in zip(states, pooled)]


class MultitaskModel(nn.Module):
    def __init__(self, encoder: BertModel, tokenizer: BertTokenizer, specs: list[TaskSpec],
                 head_settings: Optional[dict[str, dict]] = None, max_length: int = 128):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.specs = {spec.name: spec for spec in specs}
        self.max_length = max_length
        self.head_settings: dict[str, dict] = {}
        self.heads = nn.ModuleDict()
        for spec in specs:
            settings = dict((head_settings or {}).get(spec.name, {}))
            name = settings.pop("type", "") or default_head_name(spec)
            head = build_head(name, spec, encoder.hidden_size, **settings)
            self.heads[spec.name] = head
            self.head_settings[spec.name] = {"type": name, **head.options()}

    def encoding(self, task: str) -> str:
        return self.heads[task].encoding

    def forward(self, batch: Batch) -> torch.Tensor:
        """The head's raw output for the batch: logits, one logit, or a score."""
        output = self.encoder(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        masks = batch.attention_mask.chunk(batch.num_segments, dim=0)
        return self.heads[batch.task](split_output(output, batch.num_segments), masks)

    # ----- saving and loading -------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        heads = {k: v.detach().contiguous() for k, v in self.heads.state_dict().items()}
        save_file(heads, str(directory / "heads.safetensors"), metadata={"format": "pt"})
        description = {
            "format": MODEL_FORMAT,
            "max_length": self.max_length,
            "tasks": [spec.to_dict() for spec in self.specs.values()],
            "heads": self.head_settings,
        }
        (directory / "mtbert.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "MultitaskModel":
        directory = Path(directory)
        description_file = directory / "mtbert.json"
        if not description_file.exists():
            raise CheckpointError(f"{directory} is not an mtbert model directory (no mtbert.json); "
                                  "pass a run's best/ directory")
        description = json.loads(description_file.read_text(encoding="utf-8"))
        if description.get("format") != MODEL_FORMAT:
            raise CheckpointError(f"{description_file}: unsupported format {description.get('format')!r}")
        specs = [TaskSpec.from_dict(values) for values in description["tasks"]]
        model = cls(BertModel.from_pretrained(directory), BertTokenizer.from_pretrained(directory), specs,
                    description["heads"], description.get("max_length", 128))
        heads_file = directory / "heads.safetensors"
        if not heads_file.exists():
            raise CheckpointError(f"{heads_file} not found")
        model.load_heads(load_file(str(heads_file)), str(heads_file))
        return model

    def load_heads(self, state: dict[str, torch.Tensor], source: str) -> None:
        expected = self.heads.state_dict()
        problems = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                    for k, v in state.items() if k in expected and v.shape != expected[k].shape]
        problems += [f"{k}: missing" for k in expected if k not in state]
        problems += [f"{k}: unexpected" for k in state if k not in expected]
        if problems:
            raise CheckpointError(f"{source} does not fit the heads in mtbert.json:\n  " + "\n  ".join(problems))
        self.heads.load_state_dict(state)
