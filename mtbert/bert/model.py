"""The minBERT encoder: embeddings, self-attention layers and the [CLS] pooler.

The module tree is the project's own (query/key/value fused into one projection, which is one
matrix product instead of three); `checkpoint.py` maps Hugging Face parameter names onto it.
Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` so that the fused
CPU/CUDA kernels are used, with the padding mask passed as a boolean mask.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import BertConfig
from .dropout import Dropout, dropout


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
}


@dataclasses.dataclass
class EncoderOutput:
    """What the encoder returns; names match Hugging Face's so user code ports unchanged."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor
    hidden_states: Optional[tuple[torch.Tensor, ...]] = None


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"sequence of {length} tokens is longer than the model's "
                f"{self.position_embeddings.num_embeddings} positions; truncate it"
            )
        positions = torch.arange(length, device=input_ids.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        summed = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.layer_norm(summed))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection and SDPA."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_probs_dropout_prob

    def forward(self, hidden: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        batch, length, width = hidden.shape
        qkv = self.qkv(hidden).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.training and self.attention_dropout > 0.0 and hidden.device.type == "cpu":
            context = attention_with_dropout(query, key, value, mask, self.attention_dropout)
        else:
            context = F.scaled_dot_product_attention(
                query,
                key,
                value,
                attn_mask=mask,
                dropout_p=self.attention_dropout if self.training else 0.0,
            )
        return self.out(context.transpose(1, 2).reshape(batch, length, width))


def attention_with_dropout(query, key, value, mask: Optional[torch.Tensor], p: float) -> torch.Tensor:
    """softmax(QKᵀ/√d + mask) with dropout, times V: what SDPA computes on a CPU when dropout is on (it
    falls back to this arithmetic there), with the cheap dropout mask.

    The softmax runs in the scores' dtype. Under bf16 autocast the scores come out of the matrix product
    in bf16, and the CPU kernel computes in fp32 inside: its probabilities are, bit for bit, an fp32
    softmax's rounded to bf16 (tests/test_dropout.py), the values the bf16 product with V is given either
    way. Asking for an fp32 softmax would add four (batch, heads, length, length) casts per layer and step
    and keep fp32 probabilities for the backward pass (twice the memory); the backward pass starts from
    the bf16 ones, whose rounding is of the size of the bf16 gradient's own."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * (query.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(dropout(probs, p, True), value)


class BertLayer(nn.Module):
    """One post-LayerNorm transformer block: attention, residual, LN; feed-forward, residual, LN."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertSelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        hidden = self.attention_norm(hidden + self.dropout(self.attention(hidden, mask)))
        feed_forward = self.ffn_out(self.activation(self.ffn_in(hidden)))
        return self.output_norm(hidden + self.dropout(feed_forward))


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence vector BERT's next-sentence objective trained."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


def attention_mask_for_sdpa(attention_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Turn a (batch, length) 1/0 padding mask into SDPA's boolean (batch, 1, 1, length) form.

    Returns None when nothing is padded, which lets SDPA take its fastest unmasked kernel.
    """
    if attention_mask is None:
        return None
    traced = torch.compiler.is_compiling() or torch.jit.is_tracing()  # a data-dependent branch would break a
    if not traced and bool(attention_mask.all()):                      # compiled graph or freeze an exported one
        return None
    return attention_mask.bool()[:, None, None, :]


class BertModel(nn.Module):
    """The encoder. ``forward`` starts from token ids, or from ``embedding_output`` (see ``embed``).

    Starting from the embedding layer's output is what SMART needs: it perturbs that output and
    runs the layers on it, without applying position/type embeddings and LayerNorm a second time.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = BertPooler(config)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation (normal(0, 0.02), zero bias, unit LayerNorm) for random configs."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def embed(self, input_ids: torch.Tensor, token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The embedding layer's output: the tensor SMART perturbs and feeds back to ``forward``."""
        return self.embeddings(input_ids, token_type_ids)

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        embedding_output: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        if (input_ids is None) == (embedding_output is None):
            raise ValueError("pass exactly one of input_ids and embedding_output")
        hidden = self.embed(input_ids, token_type_ids) if embedding_output is None else embedding_output
        mask = attention_mask_for_sdpa(attention_mask)
        states = [hidden] if output_hidden_states else None
        for layer in self.layers:
            hidden = layer(hidden, mask)
            if states is not None:
                states.append(hidden)
        return EncoderOutput(
            last_hidden_state=hidden,
            pooler_output=self.pooler(hidden),
            hidden_states=tuple(states) if states is not None else None,
        )

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, strict: bool = True) -> "BertModel":
        """Load a local directory, the embedded ``all-MiniLM-L6-v2``, or a hub id (see checkpoint.py)."""
        from .checkpoint import load_pretrained_encoder

        return load_pretrained_encoder(cls, name_or_path, strict=strict)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json and model.safetensors with Hugging Face parameter names."""
        from .checkpoint import save_encoder

        save_encoder(self, directory)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def count_flops_per_token(config: BertConfig, length: int) -> float:
    """Forward matrix-product FLOPs per token (2 per multiply-add), used for MFU in benchmarks."""
    width, inner = config.hidden_size, config.intermediate_size
    per_layer = 2 * (4 * width * width + 2 * width * inner) + 2 * 2 * length * width
    return config.num_hidden_layers * per_layer + 2 * width * width


