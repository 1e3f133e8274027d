"""Building the pieces a run needs from its config: the model, what each task minimises (label losses,
augmentations, distillation, SMART), the penalties, the optimizer and LR schedule, the weight average.
The trainer runs the loop over what ``build_training_parts`` returns; a new training method adds a
builder function here, not lines in ``Trainer.__init__``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional, Sequence

from torch import nn

from ..bert import BertModel, BertTokenizer
from ..config import ConfigError, ExperimentConfig
from ..multitask import FREEZE_MODES, MultitaskModel
from ..peft.delta import base_reference
from ..optim import make_lr_scheduler, make_optimizer
from ..multitask.augmentation import SENTIMENT_WEIGHT, Augmentation, build_augmentation
from ..tasks import LOSSES, build_task_loss
from ..precision import Precision
from .averaging import WeightAverage, build_weight_average
from .data import TaskSplits, task_specs
from .distill import Distillation, DistilledObjective, build_distillation
from .objectives import AugmentationObjective, LabelObjective, Objective, SmartObjective
from .smart import Smart

NO_DECAY_SUFFIXES = ("bias", "layer_norm.weight", "attention_norm.weight", "output_norm.weight")


def build_model(config: ExperimentConfig) -> MultitaskModel:
    if config.model.init_from:
        model = load_saved_model(config)
    else:
        model = new_model(config)
    apply_freezing(config, model)
    model.save_mode = config.model.save
    model.check_save_mode()  # now rather than at the first save
    return model


def load_saved_model(config: ExperimentConfig) -> MultitaskModel:
    """A later stage: the saved model as it is (its heads come from its mtbert.json, not model.heads)."""
    if config.model.heads or config.model.peft:
        raise ValueError("model.heads and model.peft do not apply with model.init_from: "
                         "the heads and PEFT modules come from the saved model")
    model = MultitaskModel.from_pretrained(config.model.init_from)
    missing = [task for task in config.data.tasks if task not in model.specs]
    if missing:
        raise ValueError(f"model.init_from {config.model.init_from} has no head for {', '.join(missing)}; "
                         f"it has {', '.join(model.specs)}")
    return model


def new_model(config: ExperimentConfig) -> MultitaskModel:
    specs = task_specs(config)
    encoder = BertModel.from_pretrained(config.model.name)
    positions = encoder.config.max_position_embeddings
    if config.model.max_length > positions:
        raise ConfigError(f"model.max_length {config.model.max_length} is beyond the {positions} positions of "
                          f"{config.model.name}'s encoder: at most {positions}")
    tokenizer = BertTokenizer.from_pretrained(config.model.name)
    settings = {}
    for spec in specs:
        head = config.model.heads.get(spec.name)
        if head is not None:
            settings[spec.name] = {"type": head.type, "pooling": head.pooling, "dropout": head.dropout,
                                   "pair_order": head.pair_order, **head.options}
    unknown = sorted(set(config.model.heads) - {s.name for s in specs})
    if unknown:
        raise ValueError(f"model.heads names task(s) not in data.tasks: {', '.join(unknown)}")
    model = MultitaskModel(encoder, tokenizer, specs, settings, config.model.max_length,
                           config.model.shared_hidden_layer, config.model.peft)
    model.base = base_reference(config.model.name)
    return model


def apply_freezing(config: ExperimentConfig, model: MultitaskModel) -> None:
    mode, top = config.model.freeze, config.model.trainable_top_layers
    if mode not in FREEZE_MODES:
        raise ValueError(f"model.freeze must be one of {', '.join(FREEZE_MODES)}, not {mode!r}")
    if mode == "encoder":
        model.freeze_encoder(top)
    elif mode == "embeddings":
        model.freeze_embeddings()
    elif top:
        raise ValueError("model.trainable_top_layers only applies with model.freeze: encoder")
    if config.model.trainable_heads:
        unknown = sorted(set(config.model.trainable_heads) - set(config.data.tasks))
        if unknown:
            raise ValueError(f"model.trainable_heads names {', '.join(unknown)}, not in data.tasks")
        model.train_only_heads(config.model.trainable_heads)


def task_losses(config: ExperimentConfig, model: MultitaskModel, data: dict[str, TaskSplits]) -> dict:
    """Each task's label loss from its head config; the training labels feed ``balanced`` class weights."""
    losses = {}
    for name, spec in model.specs.items():
        head = config.model.heads.get(name)
        train = data[name].get("train") if name in data else None
        losses[name] = build_task_loss(
            spec, head.loss if head is not None else "", head.loss_options if head is not None else {},
            provides_vectors=model.heads[name].provides_vectors,
            train_labels=train.labels if train is not None else None)
    return losses


def build_augmentations(config: ExperimentConfig) -> list[Augmentation]:
    unknown = sorted(set(config.data.augment_options) - set(config.data.augment))
    if unknown:
        raise ValueError(f"data.augment_options names {', '.join(unknown)}, not in data.augment")
    return [build_augmentation(name, config.data.augment_options.get(name)) for name in config.data.augment]


def task_objectives(config: ExperimentConfig, model: MultitaskModel, data: dict[str, TaskSplits],
                    augmentations: list[Augmentation]) -> dict[str, Objective]:
    """What each training task (and augmentation) minimises, times its weight: ``train.task_weights``,
    else report 003's ½ for SST and ⅙ per augmentation when sentiment augmentation is on, else 1."""
    defaults = {a.name: a.default_weight for a in augmentations}
    if augmentations:
        defaults.update({a.head_task: SENTIMENT_WEIGHT for a in augmentations})
    known = set(model.specs) | set(defaults)
    unknown = sorted(set(config.train.task_weights) - known)
    if unknown:
        raise ValueError(f"train.task_weights names {', '.join(unknown)}; training tasks: {', '.join(sorted(known))}")
    weight = lambda task: float(config.train.task_weights.get(task, defaults.get(task, 1.0)))  # noqa: E731
    objectives: dict[str, Objective] = {task: LabelObjective(loss, weight(task))
                                        for task, loss in task_losses(config, model, data).items()}
    objectives.update({a.name: AugmentationObjective(a, weight(a.name)) for a in augmentations})
    return objectives


def penalty_terms(config: ExperimentConfig, model: nn.Module) -> list:
    """(weight, penalty, parameters, tasks) for each configured parameter penalty, over the decayed
    parameters: ``tasks`` None for ``train.penalties`` (every update), the task for ``train.task_penalties``
    (an update whose step holds that task's batch: the penalty is part of that task's loss, as report 002
    gives paraphrase its own L2 term)."""
    wanted = [(f"train.penalties: {name!r}", name, weight, None) for name, weight in config.train.penalties.items()]
    tasks = list(getattr(model, "specs", {}))
    for task, penalties in config.train.task_penalties.items():
        if tasks and task not in tasks:
            raise ValueError(f"train.task_penalties: {task!r} is not one of the run's tasks ({', '.join(tasks)})")
        if not isinstance(penalties, dict):
            raise ValueError(f"train.task_penalties.{task}: expected penalty -> weight, e.g. {{l2: 1.0e-6}}")
        wanted += [(f"train.task_penalties.{task}: {name!r}", name, weight, task) for name, weight in penalties.items()]
    terms = []
    for where, name, weight, task in wanted:
        penalty = LOSSES.get(name)
        if penalty.role != "penalty":
            raise ValueError(f"{where} is a {penalty.role}, not a parameter penalty")
        if weight:
            decayed = [p for group in parameter_groups(model, 1.0) if group["weight_decay"] for p in group["params"]]
            terms.append((weight, penalty(), decayed, task))
    return terms


def parameter_groups(model: nn.Module, weight_decay: float, layer_lr_decay: float = 1.0, lr: float = 1.0) -> list[dict]:
    """Weight decay on weights only, not on biases and LayerNorm gains (BERT's usual split); with
    ``layer_lr_decay`` below 1, one pair of groups per encoder depth, each with its own learning rate."""
    layers = getattr(getattr(model, "encoder", None), "config", None)
    depth = layers.num_hidden_layers if layers is not None else 0
    groups: dict[tuple[float, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            scale = layer_lr_decay ** layers_below_top(name, depth) if layer_lr_decay != 1.0 else 1.0
            groups.setdefault((scale, name.endswith(NO_DECAY_SUFFIXES)), []).append(param)
    if not groups:
        groups[(1.0, False)] = []
    out = []
    for (scale, no_decay), params in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1])):
        group = {"params": params, "weight_decay": 0.0 if no_decay else weight_decay}
        if layer_lr_decay != 1.0:
            group["lr"] = lr * scale
        out.append(group)
    return out


def layers_below_top(name: str, depth: int) -> int:
    """How many encoder layers lie above a parameter: 0 for the top layer, the pooler and everything
    outside the encoder (heads), ``depth`` for the embeddings."""
    if not name.startswith("encoder."):
        return 0
    rest = name[len("encoder."):]
    if rest.startswith("embeddings."):
        return depth
    if rest.startswith("layers."):
        return depth - 1 - int(rest.split(".")[1])
    return 0


def build_optimizer(config: ExperimentConfig, model: nn.Module, total_steps: int, extra: nn.Module | None = None):
    """AdamW over the model (decay on weights only) and ``extra``'s parameters (learned loss weights,
    never decayed), with the LR schedule over ``total_steps`` optimizer updates."""
    train = config.train
    groups = parameter_groups(model, train.weight_decay, train.layer_lr_decay, train.lr)
    extra_params = [p for p in extra.parameters() if p.requires_grad] if extra is not None else []
    if extra_params:
        groups.append({"params": extra_params, "weight_decay": 0.0})
    optimizer = make_optimizer(train.optimizer, groups, lr=train.lr, betas=tuple(train.betas), eps=train.eps)
    warmup = int(round(train.warmup_ratio * total_steps))
    return optimizer, make_lr_scheduler(optimizer, train.lr_schedule, warmup, total_steps)


@dataclasses.dataclass
class TrainingParts:
    """What the loop runs, besides the model, data, schedule and balancer."""

    objectives: dict[str, Objective]
    penalties: list
    optimizer: object
    lr_scheduler: object
    smart: Optional[Smart]
    average: Optional[WeightAverage]
    distillation: Optional[Distillation]


def build_training_parts(config: ExperimentConfig, model: MultitaskModel, data: dict[str, TaskSplits],
                         augmentations: list[Augmentation], train_tasks: Sequence[str], balancer: nn.Module,
                         updates: int, counters: dict, run_dir: Path, precision: Precision,
                         orientation: Callable[[str], Optional[Sequence[bool]]], data_dir: Optional[Path] = None,
                         main_process: bool = True) -> TrainingParts:
    """The objectives (label losses, augmentations; mixed with the teachers' targets where distilled, then
    SMART's regulariser where it is on), penalties, optimizer and schedule over ``updates`` optimizer
    updates, and the weight average. ``orientation(task)``: the pair-order flags the epoch shows."""
    train = config.train
    objectives = task_objectives(config, model, data, augmentations)
    optimizer, lr_scheduler = build_optimizer(config, model, updates, balancer)
    distillation = build_distillation(
        train.distill, model, {task: data[task].get("train") for task in train_tasks if task in model.specs},
        run_dir, precision, train.eval_batch_size, train.eval_max_tokens, orientation, data_dir,
        use_cache=main_process)
    if distillation is not None:
        distillation.progress = lambda: lr_scheduler.last_epoch / max(1, updates)  # updates done, as a share
        for task in train.distill.teachers:
            objectives[task] = DistilledObjective(objectives[task], distillation, task)
    smart = None
    if train.smart.enabled:
        smart = Smart(train.smart, model, updates, counters)
        for task in smart.tasks:
            if task in train_tasks:
                objectives[task] = SmartObjective(objectives[task], smart)
    average = build_weight_average(train.averaging, train.averaging_options, model, updates)
    return TrainingParts(objectives, penalty_terms(config, model), optimizer, lr_scheduler, smart, average,
                         distillation)
