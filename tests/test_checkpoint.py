"""Checkpoint resolution and loading: names mapped, errors clear, nothing unpickled."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from mtbert import BertModel, CheckpointError
from mtbert.bert.checkpoint import hf_to_mtbert, mtbert_to_hf, resolve_checkpoint_dir


def copy_checkpoint(source, target):
    shutil.copytree(source, target)
    return target


def test_embedded_name_resolves_to_the_packaged_files(minilm_dir):
    assert resolve_checkpoint_dir("all-MiniLM-L6-v2") == minilm_dir
    assert (minilm_dir / "model.safetensors").exists()


def test_missing_local_directory_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        BertModel.from_pretrained(str(tmp_path / "nope" / "deeper"))


def test_offline_hub_id_says_how_to_get_the_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match="download the checkpoint elsewhere"):
        BertModel.from_pretrained("bert-base-uncased")


def test_directory_without_weights(tmp_path, tiny_checkpoint):
    directory = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights file"):
        BertModel.from_pretrained(directory)


def test_shape_mismatch_names_parameter_and_shapes(tmp_path, tiny_checkpoint):
    directory = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    config = json.loads((directory / "config.json").read_text())
    config["intermediate_size"] = 48
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"layers\.0\.ffn_in\.weight: checkpoint \(64, 32\) vs model \(48, 32\)"):
        BertModel.from_pretrained(directory)


def test_unexpected_and_missing_keys_are_reported(tmp_path, tiny_checkpoint):
    directory = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    state = load_file(str(directory / "model.safetensors"))
    state["encoder.layer.0.mystery.weight"] = torch.zeros(2)
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected weights encoder.layer.0.mystery.weight"):
        BertModel.from_pretrained(directory)
    del state["encoder.layer.0.mystery.weight"]
    del state["pooler.dense.weight"]
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing weights for 1 parameters: pooler.dense.weight"):
        BertModel.from_pretrained(directory)
    assert BertModel.from_pretrained(directory, strict=False) is not None


def test_old_names_with_prefix_and_pytorch_bin_load_the_same(tmp_path, tiny_checkpoint):
    reference = BertModel.from_pretrained(tiny_checkpoint).eval()
    directory = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    state = load_file(str(directory / "model.safetensors"))
    old = {}
    for key, value in state.items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        old[f"bert.{key}"] = value
    old["cls.predictions.bias"] = torch.zeros(3)  # a pre-training head: expected, ignored
    (directory / "model.safetensors").unlink()
    torch.save(old, directory / "pytorch_model.bin")
    loaded = BertModel.from_pretrained(directory).eval()
    ids = torch.randint(1000, 30000, (2, 6))
    with torch.no_grad():
        assert torch.equal(reference(ids).pooler_output, loaded(ids).pooler_output)


class Exploit:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickled_objects_are_refused(tmp_path, tiny_checkpoint):
    directory = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    (directory / "model.safetensors").unlink()
    with open(directory / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"x": Exploit()}, handle)
    with pytest.raises(CheckpointError, match="cannot be read as plain tensors"):
        BertModel.from_pretrained(directory)


def test_name_mapping_round_trips(tiny_checkpoint):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    mapped, unused = hf_to_mtbert(state)
    assert not unused
    back = mtbert_to_hf(mapped)
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
