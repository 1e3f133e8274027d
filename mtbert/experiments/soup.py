"""``mtbert soup``: one model whose weights are the average of several fine-tuned runs (a "model soup",
Wortsman et al. 2022).

Runs fine-tuned from the same pretrained encoder tend to lie in one basin of the loss, so their average
is a model of its own that often scores above each ingredient at no inference cost. ``uniform``
averages every ingredient; ``greedy`` ranks them by dev composite and adds each in turn only when the
average's dev composite does not drop (the paper's greedy soup). Ingredients must be the same model
shape: the same tasks, heads, PEFT modules, encoder architecture and vocabulary; anything else is
refused with what differs. The soup is written as a ``best/`` directory, loadable wherever one is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..multitask import MultitaskModel
from ..output_dir import prepare_output_dir

log = logging.getLogger("mtbert")
SOUP_METHODS = ("uniform", "greedy")
SOUP_FILE = "soup.json"


def model_directory(path: str | Path) -> Path:
    """A run directory's ``best/``, or the model directory itself."""
    path = Path(path)
    if (path / "mtbert.json").exists():
        return path
    if (path / "best" / "mtbert.json").exists():
        return path / "best"
    raise FileNotFoundError(f"{path} is neither a model directory (no mtbert.json) nor a run directory with best/")


def shape_of(model: MultitaskModel) -> dict:
    """What must agree for two models' weights to be averaged, by name."""
    return {
        "tasks": [spec.to_dict() for spec in model.specs.values()],
        "heads": model.head_settings,
        "PEFT modules": {name: method.settings() for name, method in model.peft.items()},
        "maximum length": model.max_length,
        "shared hidden layer": model.shared_hidden_layer,
        "encoder architecture": model.encoder.config.to_dict(),
        "vocabulary size": model.tokenizer.vocab_size,
    }


def check_compatible(models: Sequence[MultitaskModel], names: Sequence[str]) -> None:
    """Raises ValueError naming the first ingredient that differs from the first and in what."""
    reference = shape_of(models[0])
    for model, name in zip(models[1:], names[1:]):
        shape = shape_of(model)
        differing = [what for what in reference if json.dumps(reference[what], sort_keys=True, default=str)
                     != json.dumps(shape[what], sort_keys=True, default=str)]
        if differing:
            raise ValueError(f"{name} cannot be averaged with {names[0]}: their {', '.join(differing)} differ")
        if model.tokenizer.vocab != models[0].tokenizer.vocab:
            raise ValueError(f"{name} cannot be averaged with {names[0]}: their vocabularies differ")


def average_weights(models: Sequence[MultitaskModel]) -> MultitaskModel:
    """The first model with every floating-point weight replaced by the mean over ``models``
    (other tensors, e.g. position ids, must be equal and are kept)."""
    states = [m.state_dict() for m in models]
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
        else:
            if any(not torch.equal(s[key], value) for s in states[1:]):
                raise ValueError(f"the ingredients' {key} differ and cannot be averaged")
            averaged[key] = value
    soup = models[0]
    soup.load_state_dict(averaged)
    return soup


def load_ingredients(paths: Sequence[str | Path]) -> tuple[list[MultitaskModel], list[str]]:
    if len(paths) < 2:
        raise ValueError("a soup needs at least two models")
    directories = [model_directory(p) for p in paths]
    names = [str(d) for d in directories]
    if len(set(d.resolve() for d in directories)) < len(directories):
        log.warning("the same model is named more than once: it weighs more in the average")
    models = [MultitaskModel.from_pretrained(d) for d in directories]
    check_compatible(models, names)
    return models, names


def uniform_soup(paths: Sequence[str | Path]) -> tuple[MultitaskModel, dict]:
    models, names = load_ingredients(paths)
    return average_weights(models), {"method": "uniform", "ingredients": names, "used": names}


def greedy_soup(paths: Sequence[str | Path], score: Callable[[MultitaskModel], float]) -> tuple[MultitaskModel, dict]:
    """Ingredients by their own ``score`` (best first); each joins when the soup's score does not drop."""
    models, names = load_ingredients(paths)
    own = [score(m) for m in models]
    order = sorted(range(len(models)), key=lambda i: -own[i])
    chosen = [order[0]]
    best = own[order[0]]
    history = [{"tried": names[order[0]], "score": best, "kept": True}]
    for i in order[1:]:
        trial = average_weights([clone(models[j]) for j in chosen + [i]])
        value = score(trial)
        kept = value >= best
        history.append({"tried": names[i], "score": value, "kept": kept})
        if kept:
            chosen.append(i)
            best = value
    soup = average_weights([models[j] for j in chosen])
    return soup, {"method": "greedy", "ingredients": names, "own_scores": dict(zip(names, own)),
                  "used": [names[j] for j in chosen], "steps": history, "score": best}


def clone(model: MultitaskModel) -> MultitaskModel:
    """A copy to average into, so the ingredients stay as they were loaded."""
    import copy

    return copy.deepcopy(model)


def write_soup(model: MultitaskModel, output: Path, record: dict, overwrite: bool = False) -> Path:
    """``output`` as a model directory, with ``soup.json`` saying how it was made."""
    output = Path(output)
    prepare_output_dir(output, overwrite, [Path(p) for p in record["ingredients"]], earlier=SOUP_FILE)
    (output / SOUP_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    model.save_mode = "full"  # the average is a new encoder, not a delta on any one ingredient's base
    model.save_pretrained(output)
    return output


def make_soup(paths: Sequence[str | Path], output: Path, method: str = "uniform",
              score: Optional[Callable[[MultitaskModel], float]] = None, overwrite: bool = False) -> dict:
    if method not in SOUP_METHODS:
        raise ValueError(f"soup method must be one of {', '.join(SOUP_METHODS)}, not {method!r}")
    if method == "greedy":
        if score is None:
            raise ValueError("a greedy soup needs a score (the dev composite)")
        soup, record = greedy_soup(paths, score)
    else:
        soup, record = uniform_soup(paths)
    if score is not None and "score" not in record:
        record["score"] = score(soup)
    write_soup(soup, output, record, overwrite)
    return record
