"""Parameter-efficient fine-tuning: adapters, PALs, LHUC and LoRA (modules hooked into the encoder,
one set per task or shared), parameter selection (SAM, random, BitFit), parameter accounting and
delta checkpoints. Freezing itself is ``MultitaskModel.freeze_encoder``."""

from . import adapter, lhuc, lora, pals  # noqa: F401  (register the methods)
from .accounting import format_accounting, parameter_accounting
from .base import PEFT_METHODS, SHARED, ActiveTask, PeftMethod, build_peft_method, register_peft_method
from .selection import (SELECTION_FILE, SELECTIONS, ParameterSelection, apply_masks, build_selection,
                        load_selection, save_selection, selected_count)

__all__ = [
    "PEFT_METHODS", "SELECTIONS", "SELECTION_FILE", "SHARED", "ActiveTask", "ParameterSelection", "PeftMethod",
    "apply_masks", "build_peft_method", "build_selection", "format_accounting", "load_selection",
    "parameter_accounting", "register_peft_method", "save_selection", "selected_count",
]
