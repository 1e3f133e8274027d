"""The tokenizer against transformers' BertTokenizerFast on every data file."""

from __future__ import annotations

import shutil

import pytest
import torch

from mtbert import BertTokenizer
from mtbert.tasks import TASKS, read_examples

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tokenizers(minilm_dir):
    return BertTokenizer.from_pretrained("all-MiniLM-L6-v2"), transformers.BertTokenizerFast.from_pretrained(minilm_dir)


@pytest.mark.parametrize("task", ["sst", "quora", "sts", "cfimdb"])
@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_ids_equal_transformers_on_every_data_file(tokenizers, data_dir, task, split):
    ours, theirs = tokenizers
    spec = TASKS[task]
    examples = read_examples(spec, data_dir / spec.files[split], labelled=split != "test").examples
    sample = examples[:: max(1, len(examples) // 60)]
    texts = [e.texts[0] for e in sample]
    pairs = [e.texts[1] for e in sample] if spec.is_pair else None
    a = ours(texts, pairs, truncation=True, max_length=64)
    b = theirs(texts, pairs, truncation=True, max_length=64)
    assert a["input_ids"] == b["input_ids"]
    assert a["token_type_ids"] == b["token_type_ids"]
    assert a["attention_mask"] == b["attention_mask"]


def test_single_text_pair_layout_and_padding():
    tokenizer = BertTokenizer.from_pretrained("all-MiniLM-L6-v2")
    one = tokenizer("Hello world", "Second")
    tokens = tokenizer.convert_ids_to_tokens(one["input_ids"])
    assert tokens == ["[CLS]", "hello", "world", "[SEP]", "second", "[SEP]"]
    assert one["token_type_ids"] == [0, 0, 0, 0, 1, 1]
    batch = tokenizer(["a b c d", "a"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 6)
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert tokenizer(["a"], padding="max_length", max_length=8, return_tensors="pt")["input_ids"].shape == (1, 8)
    with pytest.raises(ValueError, match="padding=True"):
        tokenizer(["a b", "a"], return_tensors="pt")


def test_longest_first_truncation_of_pairs():
    tokenizer = BertTokenizer.from_pretrained("all-MiniLM-L6-v2")
    out = tokenizer(" ".join(["long"] * 50), "short text", max_length=12)
    assert len(out["input_ids"]) == 12
    assert out["token_type_ids"].count(1) == 3  # 'short text [SEP]' kept whole; the long side was cut


def test_vocab_only_directory_respects_lower_casing(tmp_path, minilm_dir):
    shutil.copyfile(minilm_dir / "vocab.txt", tmp_path / "vocab.txt")
    lower = BertTokenizer.from_pretrained(tmp_path)
    assert lower.tokenize("HELLO") == ["hello"]
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    cased = BertTokenizer.from_pretrained(tmp_path)
    assert cased.tokenize("HELLO") != ["hello"]


def test_tensors_are_long(tokenizers):
    batch = tokenizers[0](["x y"], return_tensors="pt")
    assert batch["input_ids"].dtype == torch.long
