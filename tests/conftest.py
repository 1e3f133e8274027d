"""Shared fixtures: the data directory, the embedded checkpoint, and a tiny random checkpoint."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import torch

from mtbert import BertConfig, BertModel
from mtbert.bert.checkpoint import embedded_model_path

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MTBERT_DATA_DIR") or REPO.parent / "shared" / "data")
TINY = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=128)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.exists():
        pytest.skip(f"minBERT data not found at {DATA_DIR} (set MTBERT_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return embedded_model_path()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, minilm_dir) -> Path:
    """A random 2-layer, 32-wide BERT with the real uncased WordPiece vocabulary."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(TINY).save_pretrained(directory)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(minilm_dir / name, directory / name)
    return directory


@pytest.fixture(scope="session")
def dropout_free_checkpoint(tmp_path_factory, tiny_checkpoint) -> Path:
    """The tiny random encoder without dropout: runs that must compute the same function (one process
    against two, compiled against eager) cannot draw different dropout masks."""
    directory = tmp_path_factory.mktemp("tiny-no-dropout")
    torch.manual_seed(0)
    BertModel(dataclasses.replace(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
              ).save_pretrained(directory)
    for item in tiny_checkpoint.iterdir():
        if not (directory / item.name).exists():
            shutil.copyfile(item, directory / item.name)
    return directory


def dropout_free_heads() -> dict:
    return {f"model.heads.{task}.dropout": 0 for task in ("sst", "quora", "sts")}


def stop_at(step: int):
    """A trainer callback that asks the run to stop after ``step``, as Ctrl-C does (the stop lands at
    the end of that step, then a checkpoint is written)."""
    def callback(trainer) -> None:
        if trainer.step == step:
            trainer.stop.requested = True
    return callback


@pytest.fixture
def no_compiler(monkeypatch):
    """torch.compile as on a machine without a C++ compiler: the compiled function fails when first called."""
    def compile_that_fails(function, **options):
        def fails(*args):
            raise RuntimeError("no C++ compiler found\nlong details")
        return fails

    monkeypatch.setattr(torch, "compile", compile_that_fails)
