"""The multitask model: one shared encoder, one head per task, optional parameter-efficient modules
in the encoder; saved as one directory.

A full model directory is a Hugging Face-style encoder checkpoint (config.json, model.safetensors,
tokenizer files) plus ``heads.safetensors`` (heads, shared layers, PEFT modules) and ``mtbert.json``
(task specs, head and PEFT settings), so ``predict`` and ``evaluate`` need nothing but the directory,
and the encoder alone loads anywhere. A delta directory (a partly frozen encoder) has
``encoder_delta.safetensors`` instead of model.safetensors and names its base (see peft/delta.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..bert import BertModel, BertTokenizer, CheckpointError, EncoderOutput
from ..integrity import read_json, verify_checksums, write_checksums
from ..peft import ActiveTask, build_peft_method
from ..peft.delta import (DELTA_FILE, Changes, apply_delta, base_fingerprint, base_reference, load_delta,
                          save_delta)
from ..tasks import Example, HeadContext, HeadOutput, SharedLayers, TaskSpec, build_head, default_head_name
from .features import Batch, TaskFeatures, featurize

MODEL_FORMAT = 3  # 3: "peft." keys in heads.safetensors, "peft" and "base" in mtbert.json (delta models)
READABLE_FORMATS = (2, 3)  # 2: heads.safetensors holds "heads." and "shared." keys
FREEZE_MODES = ("none", "encoder", "embeddings")
# How a pair task's sentence order is treated: as in the file; a random order per example each epoch
# in training (the task does not depend on the order, so this is free extra data); or that, and
# predictions that average the head's outputs over both orders (twice the prediction work).
PAIR_ORDERS = ("fixed", "random", "both")
SAVE_MODES = ("auto", "full", "delta")


def check_pair_order(spec: TaskSpec, order: str) -> str:
    if order not in PAIR_ORDERS:
        raise ValueError(f"task {spec.name!r}: pair_order must be one of {', '.join(PAIR_ORDERS)}, not {order!r}")
    if order != "fixed" and not spec.is_pair:
        raise ValueError(f"task {spec.name!r}: pair_order {order!r} needs a sentence-pair task; it has one text")
    return order


def split_output(output: EncoderOutput, parts: int) -> list[EncoderOutput]:
    """Undo the stacking of segments along the batch axis."""
    if parts == 1:
        return [output]
    states = output.last_hidden_state.chunk(parts, dim=0)
    pooled = output.pooler_output.chunk(parts, dim=0)
    return [EncoderOutput(s, p) for s, p in zip(states, pooled)]


class MultitaskModel(nn.Module):
    """The shared encoder, one head per task, and the layers heads share (``shared``).

    ``shared_hidden_layer`` puts one linear + ReLU, shared by every head, on each sentence vector
    before its head (report 002's weight sharing).
    """

    def __init__(self, encoder: BertModel, tokenizer: BertTokenizer, specs: list[TaskSpec],
                 head_settings: Optional[dict[str, dict]] = None, max_length: int = 128,
                 shared_hidden_layer: bool = False, peft: Optional[dict[str, dict]] = None):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.specs = {spec.name: spec for spec in specs}
        self.max_length = max_length
        self.shared_hidden_layer = shared_hidden_layer
        self.encoder_frozen = False
        self.shared = SharedLayers()
        if shared_hidden_layer:
            size = encoder.hidden_size
            self.shared[SharedLayers.SENTENCE] = nn.Sequential(nn.Linear(size, size), nn.ReLU())
        context = HeadContext(encoder.config, self.shared)
        self.head_settings: dict[str, dict] = {}
        self.heads = nn.ModuleDict()
        self.pair_orders: dict[str, str] = {}
        for spec in specs:
            settings = dict((head_settings or {}).get(spec.name, {}))
            name = settings.pop("type", "") or default_head_name(spec)
            self.pair_orders[spec.name] = check_pair_order(spec, settings.pop("pair_order", "fixed"))
            head = build_head(name, spec, context, **settings)
            self.heads[spec.name] = head
            self.head_settings[spec.name] = {"type": name, **head.options(),
                                             "pair_order": self.pair_orders[spec.name]}
        self.active_task = ActiveTask()
        self.peft = nn.ModuleDict()
        for name, options in (peft or {}).items():
            method = build_peft_method(name, encoder.config, list(self.specs), options)
            method.attach(encoder, self.active_task)
            self.peft[name] = method
        # Saving: where the encoder weights came from, the entries a parameter selection trains, and
        # what an earlier delta changed from the base (kept by later saves).
        self.base: Optional[str] = None
        self.selection: dict[str, torch.Tensor] = {}
        self.carried_changes: Changes = {}
        self.save_mode = "auto"
        self.data_dir: Optional[str] = None  # where it was trained: evaluate and predict look there by default

    def encoding(self, task: str) -> str:
        return self.heads[task].encoding

    def pair_order(self, task: str) -> str:
        return self.pair_orders[task]

    def featurize(self, task: str, examples: Sequence[Example]) -> TaskFeatures:
        """Tokenize examples of one of the model's tasks the way its head reads them (both orders of
        each pair when the task's pair order is not fixed)."""
        return featurize(self.tokenizer, self.specs[task], examples, self.encoding(task), self.max_length,
                         both_orders=self.pair_order(task) != "fixed")

    def encode(self, batch: Batch, embedding_output: Optional[torch.Tensor] = None, task: Optional[str] = None
               ) -> tuple[list[EncoderOutput], tuple[torch.Tensor, ...]]:
        """The encoder over all of the batch's segments at once, split back into one output per segment.
        ``embedding_output`` replaces the embedding layer's output (SMART perturbs it). ``task`` picks
        the per-task PEFT modules (default: the batch's task; an augmentation passes its head's task)."""
        self.active_task.task = task or batch.task
        if embedding_output is None:
            output = self.encoder(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        else:
            output = self.encoder(attention_mask=batch.attention_mask, embedding_output=embedding_output)
        return split_output(output, batch.num_segments), batch.attention_mask.chunk(batch.num_segments, dim=0)

    def forward(self, batch: Batch, embedding_output: Optional[torch.Tensor] = None) -> HeadOutput:
        """The head's output for the batch: ``scores`` (logits, one logit, or a score), and the sentence
        vectors for Siamese heads."""
        outputs, masks = self.encode(batch, embedding_output)
        return self.heads[batch.task](outputs, masks)

    # ----- freezing -----------------------------------------------------------------------
    def freeze_encoder(self, trainable_top_layers: int = 0) -> None:
        """Fix the encoder's parameters, except its top ``trainable_top_layers`` layers and, with them,
        the pooler. A wholly frozen encoder also stays in eval mode (no dropout) while the heads train,
        so it is a fixed feature extractor, and no graph is built through it."""
        layers = len(self.encoder.layers)
        if not 0 <= trainable_top_layers <= layers:
            raise ValueError(f"trainable_top_layers must be between 0 and {layers}, not {trainable_top_layers}")
        self.encoder.requires_grad_(False)
        if trainable_top_layers:
            for layer in self.encoder.layers[layers - trainable_top_layers:]:
                layer.requires_grad_(True)
            self.encoder.pooler.requires_grad_(True)
        self.encoder_frozen = trainable_top_layers == 0 and not len(self.peft)
        self.train(self.training)

    def freeze_embeddings(self) -> None:
        """Fix the embedding layer (word, position and token-type embeddings and their LayerNorm): no
        gradient for the 30k-row word matrix, no optimizer work on it, and no backward below layer 1
        (about 10% of a MiniLM step on CPU); the layers and heads train as usual."""
        self.encoder.embeddings.requires_grad_(False)

    def train_only_heads(self, tasks: list[str]) -> None:
        """Freeze everything but these tasks' heads: the encoder, the shared layers, the other heads
        (report 003's final per-task stage). The encoder stays in eval mode."""
        self.requires_grad_(False)
        for task in tasks:
            self.heads[task].requires_grad_(True)
        self.encoder_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True) -> "MultitaskModel":
        super().train(mode)
        if self.encoder_frozen:  # a fixed feature extractor, PEFT modules included
            self.encoder.eval()
            self.peft.eval()
        return self

    # ----- saving and loading -------------------------------------------------------------
    def encoder_changes(self) -> Changes:
        """Encoder tensors that differ from the base: name → None (the whole tensor) or the mask of the
        entries that may differ (a parameter selection), including what a loaded delta changed."""
        changes = dict(self.carried_changes)
        for name, param in self.encoder.named_parameters():
            mask = self.selection.get(name)
            if name in changes and changes[name] is None:
                continue
            if mask is not None:
                if name in changes:
                    changes[name] = changes[name] | mask
                elif param.requires_grad and bool(mask.any()):
                    changes[name] = mask
            elif param.requires_grad:
                changes[name] = None
        return changes

    def check_save_mode(self) -> None:
        if self.save_mode not in SAVE_MODES:
            raise ValueError(f"model.save must be one of {', '.join(SAVE_MODES)}, not {self.save_mode!r}")
        if self.save_mode == "delta" and self.base is None:
            raise ValueError("model.save: delta needs the base checkpoint the encoder was loaded from")

    def delta_changes(self) -> Optional[Changes]:
        """What a delta save stores, or None for a full save. ``auto``: a delta when the encoder has a
        base and not all of it changed; ``full``/``delta`` as named."""
        self.check_save_mode()
        if self.save_mode == "full" or self.base is None:
            return None
        changes = self.encoder_changes()
        if self.save_mode == "auto" and all(changes.get(name, False) is None
                                            for name, _ in self.encoder.named_parameters()):
            return None
        return changes

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        base = None
        changes = self.delta_changes()
        if changes is not None:
            self.encoder.config.save(directory / "config.json")
            save_delta(self.encoder, changes, directory / DELTA_FILE)
            base = {"name": self.base, "fingerprint": base_fingerprint(self.base)}
        else:
            self.encoder.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        save_file(self.task_state(), str(directory / "heads.safetensors"), metadata={"format": "pt"})
        description = {
            "format": MODEL_FORMAT,
            "max_length": self.max_length,
            "shared_hidden_layer": self.shared_hidden_layer,
            "tasks": [spec.to_dict() for spec in self.specs.values()],
            "heads": self.head_settings,
            "peft": {name: method.settings() for name, method in self.peft.items()},
            "base": base,
            "data_dir": self.data_dir,
        }
        (directory / "mtbert.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
        write_checksums(directory)  # last: every file above, checked when the model is loaded

    @classmethod
    def from_pretrained(cls, directory: str | Path, base: Optional[str] = None) -> "MultitaskModel":
        """Load a saved model. A delta model loads its base (from where it was, or ``base``) first and
        refuses a base whose weights differ from those it was trained on."""
        directory = Path(directory)
        description_file = directory / "mtbert.json"
        if not description_file.exists():
            raise CheckpointError(f"{directory} is not an mtbert model directory (no mtbert.json); "
                                  "pass a run's best/ directory")
        verify_checksums(directory)
        description = read_json(description_file, "model description")
        if not isinstance(description, dict) or not isinstance(description.get("tasks"), list):
            raise CheckpointError(f"{description_file}: not an mtbert model description")
        if description.get("format") not in READABLE_FORMATS:
            raise CheckpointError(f"{description_file}: unsupported format {description.get('format')!r}")
        try:
            specs = [TaskSpec.from_dict(values) for values in description["tasks"]]
        except ValueError as error:
            raise CheckpointError(f"{description_file}: {error}") from None
        delta = description.get("base")
        changes: Changes = {}
        if delta:
            base_name = base or delta["name"]
            try:
                found = base_fingerprint(base_name)
            except CheckpointError as error:
                raise CheckpointError(f"{directory} is a delta model and needs its base encoder {base_name}, "
                                      f"which cannot be read ({error}); pass the base's new place "
                                      "(--base DIR, or from_pretrained(..., base=DIR))") from error
            if found != delta["fingerprint"]:
                raise CheckpointError(f"{directory} is a delta on a base whose weights file has SHA-256 "
                                      f"{delta['fingerprint'][:12]}…; {base_name} has {found[:12]}…")
            encoder = BertModel.from_pretrained(base_name)
            changes = apply_delta(encoder, *load_delta(directory / DELTA_FILE), str(directory / DELTA_FILE))
        else:
            encoder = read_part(directory, "encoder weights", BertModel.from_pretrained,
                                next((directory / name for name in ("model.safetensors", "pytorch_model.bin")
                                      if (directory / name).exists()), directory))
        tokenizer = read_part(directory, "tokenizer files", BertTokenizer.from_pretrained)
        model = cls(encoder, tokenizer, specs,
                    description["heads"], description.get("max_length", 128),
                    description.get("shared_hidden_layer", False), description.get("peft") or {})
        heads_file = directory / "heads.safetensors"
        if not heads_file.exists():
            raise CheckpointError(f"{heads_file} not found")
        model.load_heads(read_part(heads_file, "heads", lambda path: load_file(str(path))), str(heads_file))
        model.base = delta["name"] if delta else base_reference(str(directory))
        model.carried_changes = changes
        model.data_dir = description.get("data_dir")
        check_loaded(model, directory)
        return model

    def task_state(self) -> dict[str, torch.Tensor]:
        """Everything but the encoder: heads, shared layers and PEFT modules, one tensor per parameter."""
        state = {f"heads.{k}": v for k, v in self.heads.state_dict().items()}
        state.update({f"shared.{k}": v for k, v in self.shared.state_dict().items()})
        state.update({f"peft.{k}": v for k, v in self.peft.state_dict().items()})
        return {k: v.detach().contiguous() for k, v in state.items()}

    def load_heads(self, state: dict[str, torch.Tensor], source: str) -> None:
        expected = self.task_state()
        problems = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                    for k, v in state.items() if k in expected and v.shape != expected[k].shape]
        problems += [f"{k}: missing" for k in expected if k not in state]
        problems += [f"{k}: unexpected" for k in state if k not in expected]
        if problems:
            raise CheckpointError(f"{source} does not fit the heads in mtbert.json:\n  " + "\n  ".join(problems))
        for prefix, module in (("heads.", self.heads), ("shared.", self.shared), ("peft.", self.peft)):
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def shared_parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters every task's forward uses: the encoder, the shared layers and PEFT
        modules that are not per task (what gradient surgery combines)."""
        shared = list(self.encoder.parameters()) + list(self.shared.parameters())
        shared += [p for method in self.peft.values() if not method.per_task for p in method.parameters()]
        return [p for p in shared if p.requires_grad]


def check_loaded(model: "MultitaskModel", directory: Path) -> None:
    """Values no trained model can have, refused at load with checksums or without: weights that are not
    finite, a length the encoder's positions cannot hold, a vocabulary with ids beyond the embedding rows."""
    positions = model.encoder.config.max_position_embeddings
    length = model.max_length
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= positions:
        raise CheckpointError(f"{directory / 'mtbert.json'}: max_length {length!r} must be a whole number from 1 to the "
                              f"encoder's {positions} positions")
    rows = model.encoder.config.vocab_size
    if model.tokenizer.vocab_size > rows:
        raise CheckpointError(f"{directory}: the tokenizer has {model.tokenizer.vocab_size} tokens but the encoder's "
                              f"embedding has {rows} rows: the tokenizer files are not this encoder's")
    for name, value in model.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{directory}: {name} holds NaN or infinite values: the model is damaged; "
                                  "restore it or train again")


def read_part(path: Path, what: str, read, named: Optional[Path] = None):
    """``read(path)``, or a CheckpointError naming the file (``named``, else ``path``): a truncated or
    garbage file failed deep in a library before (safetensors, tokenizers, json)."""
    try:
        return read(path)
    except CheckpointError:
        raise
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(f"{named or path}: the {what} cannot be read ({type(error).__name__}: {first})") from None
