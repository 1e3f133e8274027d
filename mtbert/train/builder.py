"""Building the pieces a run needs from its config: the model, the optimizer, the LR schedule."""

from __future__ import annotations

from torch import nn

from ..bert import BertModel, BertTokenizer
from ..config import ExperimentConfig
from ..multitask import MultitaskModel
from ..optim import make_lr_scheduler, make_optimizer
from ..tasks import DEFAULT_LOSS, get_loss
from .data import task_specs

NO_DECAY_SUFFIXES = ("bias", "layer_norm.weight", "attention_norm.weight", "output_norm.weight")


def build_model(config: ExperimentConfig) -> MultitaskModel:
    specs = task_specs(config)
    encoder = BertModel.from_pretrained(config.model.name)
    tokenizer = BertTokenizer.from_pretrained(config.model.name)
    settings = {}
    for spec in specs:
        head = config.model.heads.get(spec.name)
        if head is not None:
            settings[spec.name] = {"type": head.type, "pooling": head.pooling, "dropout": head.dropout}
    unknown = sorted(set(config.model.heads) - {s.name for s in specs})
    if unknown:
        raise ValueError(f"model.heads names task(s) not in data.tasks: {', '.join(unknown)}")
    return MultitaskModel(encoder, tokenizer, specs, settings, config.model.max_length)


def task_losses(config: ExperimentConfig, model: MultitaskModel) -> dict:
    losses = {}
    for name, spec in model.specs.items():
        head = config.model.heads.get(name)
        losses[name] = get_loss((head.loss if head is not None else "") or DEFAULT_LOSS[spec.kind])
    return losses


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights only, not on biases and LayerNorm gains (BERT's usual split)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(NO_DECAY_SUFFIXES) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(config: ExperimentConfig, model: nn.Module, total_steps: int):
    train = config.train
    optimizer = make_optimizer(train.optimizer, parameter_groups(model, train.weight_decay), lr=train.lr,
                               betas=tuple(train.betas), eps=train.eps)
    warmup = int(round(train.warmup_ratio * total_steps))
    return optimizer, make_lr_scheduler(optimizer, train.lr_schedule, warmup, total_steps)
