"""WordPiece tokenization through the ``tokenizers`` library, called like Hugging Face's.

The checkpoint's ``tokenizer.json`` is used when present (it carries the normaliser, so casing is
respected); otherwise the tokenizer is built from ``vocab.txt`` with ``do_lower_case`` from
``tokenizer_config.json``. Padding and truncation stored in ``tokenizer.json`` are switched off: this
class pads dynamically, to the longest sequence of each batch, and truncates per call.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from .checkpoint import CheckpointError, resolve_checkpoint_dir

TextInput = Union[str, Sequence[str]]
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class BertTokenizer:
    """Single sentences and sentence pairs ([CLS] a [SEP] b [SEP], token types 0/1)."""

    def __init__(self, tokenizer: Tokenizer, source_dir: Optional[Path] = None, model_max_length: int = 512):
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self._source_dir = source_dir
        self.model_max_length = model_max_length
        self.pad_token_id = tokenizer.token_to_id("[PAD]") or 0
        self.cls_token_id = tokenizer.token_to_id("[CLS]")
        self.sep_token_id = tokenizer.token_to_id("[SEP]")

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path) -> "BertTokenizer":
        directory = resolve_checkpoint_dir(name_or_path)
        settings = {}
        if (directory / "tokenizer_config.json").exists():
            settings = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        max_length = int(settings.get("model_max_length", 512))
        max_length = 512 if max_length > 100_000 else max_length  # HF writes 1e30 for "no limit"
        if (directory / "tokenizer.json").exists():
            return cls(Tokenizer.from_file(str(directory / "tokenizer.json")), directory, max_length)
        if (directory / "vocab.txt").exists():
            wordpiece = BertWordPieceTokenizer(
                str(directory / "vocab.txt"), lowercase=bool(settings.get("do_lower_case", True))
            )
            return cls(wordpiece._tokenizer, directory, max_length)
        raise CheckpointError(f"{directory} has neither tokenizer.json nor vocab.txt")

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tokenizer.save(str(directory / "tokenizer.json"))
        if self._source_dir is not None:
            for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
                if (self._source_dir / name).exists() and not (directory / name).exists():
                    shutil.copyfile(self._source_dir / name, directory / name)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    @property
    def vocab(self) -> dict[str, int]:
        """Token -> id (what two models must share for their embeddings to mean the same)."""
        return self._tokenizer.get_vocab()

    def tokenize(self, text: str) -> list[str]:
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._tokenizer.id_to_token(i) for i in ids]

    def encode_ids(
        self, texts: Sequence[str], pairs: Optional[Sequence[str]] = None, max_length: Optional[int] = None
    ) -> list[tuple[list[int], list[int]]]:
        """(input_ids, token_type_ids) per text, truncated longest-first; the data pipeline's entry."""
        limit = min(max_length or self.model_max_length, self.model_max_length)
        self._tokenizer.enable_truncation(limit, strategy="longest_first")
        try:
            inputs = list(texts) if pairs is None else list(zip(texts, pairs))
            encodings = self._tokenizer.encode_batch(inputs)
        finally:
            self._tokenizer.no_truncation()
        return [(e.ids, e.type_ids) for e in encodings]

    def __call__(
        self,
        text: TextInput,
        text_pair: Optional[TextInput] = None,
        truncation: bool = True,
        max_length: Optional[int] = None,
        padding: Union[bool, str] = False,
        return_tensors: Optional[str] = None,
    ) -> dict:
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        pairs = None
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise ValueError(f"{len(texts)} texts but {len(pairs)} text pairs")
        if truncation:
            encoded = self.encode_ids(texts, pairs, max_length)
        else:
            inputs = texts if pairs is None else list(zip(texts, pairs))
            encoded = [(e.ids, e.type_ids) for e in self._tokenizer.encode_batch(inputs)]
        ids = [e[0] for e in encoded]
        types = [e[1] for e in encoded]
        masks = [[1] * len(x) for x in ids]
        if padding:
            target = max(len(x) for x in ids)
            if padding == "max_length":
                if max_length is None:
                    raise ValueError("padding='max_length' needs max_length")
                target = max(target, max_length)
            elif padding not in (True, "longest"):
                raise ValueError(f"padding must be False, True, 'longest' or 'max_length', not {padding!r}")
            ids = [x + [self.pad_token_id] * (target - len(x)) for x in ids]
            types = [x + [0] * (target - len(x)) for x in types]
            masks = [x + [0] * (target - len(x)) for x in masks]
        result = {"input_ids": ids, "token_type_ids": types, "attention_mask": masks}
        if return_tensors == "pt":
            if len({len(x) for x in ids}) > 1:
                raise ValueError("sequences have different lengths: pass padding=True to get tensors")
            return {k: torch.tensor(v, dtype=torch.long) for k, v in result.items()}
        if return_tensors is not None:
            raise ValueError(f"return_tensors must be None or 'pt', not {return_tensors!r}")
        if single:
            return {k: v[0] for k, v in result.items()}
        return result
