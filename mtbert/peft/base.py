"""What every parameter-efficient method shares: a registry, one module set per task (or one shared
set), and forward hooks that put the method into the encoder without changing the encoder's code.

Methods attach with ``torch`` forward hooks on the encoder's own modules (the feed-forward output,
the attention block, a layer), so the encoder's parameter names stay those of the checkpoint (it
still saves with Hugging Face names and loads in ``transformers``), and removing a method is
dropping its hooks. The method's parameters live in the method module, which the multitask model
owns: they move, train and save with it.

Task switching: the model writes the task of the batch it is about to encode into one shared
``ActiveTask``; each hook looks up that task's module set (or the shared set). A batch of an
augmentation uses the set of the task whose head it trains.
"""

from __future__ import annotations

import functools
from typing import Iterable, Iterator, Optional

import torch
from torch import nn

from ..bert import BertConfig, BertModel
from ..registry import Registry, check_options

SHARED = "shared"  # the key of the one set that every task uses when a method is not per task


class ActiveTask:
    """The task the next encoder pass is for; written by the model, read by the hooks."""

    def __init__(self) -> None:
        self.task: Optional[str] = None


class PeftMethod(nn.Module):
    """One method's modules for every task (``per_task``) or for all tasks at once, and its hooks.

    A subclass builds one task's set of modules (``build_set``: a ModuleDict keyed by site), names
    the encoder modules to hook (``sites``) and says what a site does to its module's output
    (``transform``)."""

    registry_name = ""

    def __init__(self, config: BertConfig, tasks: Iterable[str], per_task: bool = True):
        super().__init__()
        self.per_task = per_task
        self.encoder_config = config
        keys = list(tasks) if per_task else [SHARED]
        self.sets = nn.ModuleDict({key: self.build_set(config) for key in keys})
        self.active: Optional[ActiveTask] = None

    # ----- what a method defines ----------------------------------------------------------
    def build_set(self, config: BertConfig) -> nn.ModuleDict:
        raise NotImplementedError

    def sites(self, encoder: BertModel) -> list[tuple[str, nn.Module]]:
        """(site name, encoder module whose output the site changes)."""
        raise NotImplementedError

    def transform(self, modules: nn.ModuleDict, site: str, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        """The hooked module's new output, from the active task's ``modules``, the module's inputs and
        its output."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The constructor options that rebuild this method (saved in mtbert.json)."""
        return {"per_task": self.per_task}

    # ----- attaching and switching ---------------------------------------------------------
    def attach(self, encoder: BertModel, active: ActiveTask) -> None:
        self.active = active
        for site, module in self.sites(encoder):
            module.register_forward_hook(functools.partial(self._hook, site))

    def _hook(self, site: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return self.transform(self.current(), site, inputs, output)

    def current(self) -> nn.ModuleDict:
        if not self.per_task:
            return self.sets[SHARED]
        task = self.active.task if self.active is not None else None
        if task not in self.sets:
            raise RuntimeError(f"{self.registry_name}: no module set for task {task!r} "
                               f"(it has {', '.join(self.sets)}); encode through MultitaskModel")
        return self.sets[task]

    def parameters_for(self, task: str) -> Iterator[nn.Parameter]:
        """The parameters a task's forward uses: its own set, or the shared one."""
        return self.sets[task if self.per_task else SHARED].parameters()


PEFT_METHODS: Registry[type[PeftMethod]] = Registry("parameter-efficient method")
register_peft_method = PEFT_METHODS.register


def build_peft_method(name: str, config: BertConfig, tasks: list[str], options: Optional[dict] = None) -> PeftMethod:
    cls = PEFT_METHODS.get(name)
    options = dict(options or {})
    check_options(cls, options, f"model.peft.{name}", supplied=("config", "tasks"))
    return cls(config, tasks, **options)


def chosen_layers(count: int, layers: Optional[list[int]]) -> list[int]:
    """The layer indices a method goes into: all ``count`` by default, or the listed ones (negative
    counts from the top, as in Python)."""
    if layers is None:
        return list(range(count))
    chosen = []
    for index in layers:
        if not -count <= index < count:
            raise ValueError(f"layer {index} does not exist; the encoder has {count} layers")
        chosen.append(index % count)
    return sorted(set(chosen))
