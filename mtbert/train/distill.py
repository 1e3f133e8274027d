"""Distillation from teachers (``train.distill``): BAM! (Clark et al., ACL 2019) for mtbert.

Each distilled task learns from λ·loss(gold) + (1 − λ)·loss(teacher). Teachers are saved mtbert models
(single-task or multitask; several for one task make an ensemble whose probabilities, or scores, are
averaged), or teacher recipes that are trained first. Their targets on the student's training examples
are computed once, before the first step, and cached in ``<run>/distill/targets.safetensors`` with a
checksum beside it and, inside it, the fingerprint of the teachers' files and of the examples; a resumed
run reuses the cache, and refuses it when its checksum fails or the teachers or examples have changed.

Targets, per kind of task: classification, the teachers' softmax at temperature T (the loss is the soft
cross-entropy of the student's softmax at T, times T² so its gradient keeps the gold loss's scale);
binary, the sigmoid at T (binary cross-entropy, times T²); regression, the teachers' score, which the
student's own regression loss takes in place of the gold label. Pair tasks whose head sees both orders
of a pair (``pair_order: random``) get targets for both, and each example's target follows the order the
epoch shows it in. λ is ``gold_weight``, or with ``anneal`` rises linearly from 0 to 1 over the run's
updates (BAM!'s teacher annealing: the student first imitates, then learns from gold alone).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from ..bert import CheckpointError
from ..config import DistillConfig
from ..evaluate import predict_features
from ..integrity import file_sha256, replace_with_checksum, sidecar, verify_file
from ..multitask import Batch, MultitaskModel, TaskFeatures
from ..multitask.features import featurize
from ..precision import Precision
from ..tasks import HeadOutput, TaskSpec
from .objectives import LabelObjective

log = logging.getLogger("mtbert")
CACHE = Path("distill") / "targets.safetensors"
SWAPPED = ".swapped"
RECIPE_SUFFIXES = (".yaml", ".yml")


# ----- the teachers -------------------------------------------------------------------------------
def teacher_model_dir(entry: str, teacher_runs: Path, data_dir: Optional[Path] = None) -> Path:
    """A teacher as a model directory: a run's best/, a model directory, or a recipe trained (or resumed,
    or reused once finished) in ``teacher_runs/<recipe name>``."""
    path = Path(entry)
    if path.suffix in RECIPE_SUFFIXES:
        return train_teacher(path, teacher_runs / path.stem, data_dir)
    if (path / "mtbert.json").exists():
        return path
    if (path / "best" / "mtbert.json").exists():
        return path / "best"
    raise FileNotFoundError(f"train.distill.teachers: {path} is not a model directory (no mtbert.json), a run "
                            "directory with best/, or a teacher recipe (.yaml)")


def train_teacher(recipe: Path, run_dir: Path, data_dir: Optional[Path] = None) -> Path:
    """Train the teacher recipe into ``run_dir`` unless it finished there already; resume it if it stopped."""
    from ..config import load_config
    from .trainer import Trainer

    if (run_dir / "results.json").exists() and (run_dir / "best" / "mtbert.json").exists():
        log.info("teacher %s: reusing the finished run %s", recipe, run_dir)
        return run_dir / "best"
    resume = (run_dir / "checkpoint.pt").exists()
    log.info("teacher %s: %s %s", recipe, "resuming" if resume else "training", run_dir)
    config = load_config(run_dir / "config.yaml") if resume else load_config(recipe)
    results = Trainer(config, run_dir, data_dir=str(data_dir) if data_dir else None).train(resume=resume)
    if results.get("interrupted"):
        raise KeyboardInterrupt  # the student's own stop: rerun the same command to go on
    return run_dir / "best"


def model_fingerprint(directory: Path) -> str:
    """SHA-256 over a model directory's files (names and contents): a changed teacher is a new one."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def examples_fingerprint(features: TaskFeatures) -> str:
    digest = hashlib.sha256()
    for example in features.examples:
        digest.update(json.dumps([example.id, example.texts], ensure_ascii=False).encode())
    return digest.hexdigest()


def check_teacher(teacher: MultitaskModel, task: str, spec: TaskSpec, where: Path) -> None:
    if task not in teacher.specs:
        raise ValueError(f"train.distill: teacher {where} has no {task} head (its tasks: {', '.join(teacher.specs)})")
    theirs = teacher.specs[task]
    if (theirs.kind, theirs.num_labels) != (spec.kind, spec.num_labels):
        raise ValueError(f"train.distill: teacher {where}'s {task} is {theirs.kind} with {theirs.num_labels} "
                         f"label(s); the student's is {spec.kind} with {spec.num_labels}")


def targets_from_outputs(outputs: torch.Tensor, spec: TaskSpec, temperature: float) -> torch.Tensor:
    """What the student learns to match, from one teacher's raw outputs."""
    outputs = outputs.float()
    if spec.kind == "classification":
        return torch.softmax(outputs / temperature, dim=-1)
    if spec.kind == "binary":
        return torch.sigmoid(outputs / temperature)
    return outputs.clamp(*spec.label_range)


def teacher_targets(teacher: MultitaskModel, task: str, features: TaskFeatures, swapped: bool, temperature: float,
                    precision: Precision, batch_size: int, max_tokens: Optional[int]) -> dict[str, torch.Tensor]:
    """One teacher's targets on the student's training examples (and on each pair swapped, if asked)."""
    spec = features.spec
    mine = featurize(teacher.tokenizer, teacher.specs[task], features.examples, teacher.encoding(task),
                     teacher.max_length, both_orders=swapped or teacher.pair_order(task) != "fixed")
    orders = {task: mine}
    if swapped:
        orders[task + SWAPPED] = mine.oriented([True] * len(mine))
    return {key: targets_from_outputs(predict_features(teacher, part, batch_size, precision, max_tokens).outputs,
                                      spec, temperature) for key, part in orders.items()}


# ----- the cache ----------------------------------------------------------------------------------
def read_cache(path: Path, expected: dict) -> Optional[dict[str, torch.Tensor]]:
    """The cached targets if the cache was made for ``expected`` (teachers, examples, temperature); None
    when there is none; CheckpointError when it is damaged or was made for other teachers or data."""
    if not path.exists():
        return None
    if not sidecar(path).exists():
        raise CheckpointError(f"{path} has no checksum ({sidecar(path).name}): it cannot be trusted; delete "
                              f"{path.parent} to compute the teachers' targets again")
    verify_file(path, path.with_name(path.name + ".tmp"))
    with safe_open(str(path), framework="pt") as handle:
        made_for = json.loads((handle.metadata() or {}).get("made_for", "{}"))
        changed = sorted(key for key in set(made_for) | set(expected) if made_for.get(key) != expected.get(key))
        if changed:
            raise CheckpointError(f"{path} holds targets of other teachers or examples ({', '.join(changed)} changed "
                                  f"since it was written): start a new run, or delete {path.parent} to compute them "
                                  "again")
        return {key: handle.get_tensor(key) for key in handle.keys()}


def write_cache(path: Path, targets: dict[str, torch.Tensor], made_for: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in targets.items()}, str(tmp),
              metadata={"made_for": json.dumps(made_for, sort_keys=True)})
    replace_with_checksum(tmp, path)


# ----- the loss -----------------------------------------------------------------------------------
def teacher_loss(output: HeadOutput, targets: torch.Tensor, spec: TaskSpec, temperature: float,
                 regression_loss: Callable[[HeadOutput, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The student's loss against its teachers' targets (``regression_loss``: the task's own label loss)."""
    scores = output.scores.float()
    if spec.kind == "classification":
        log_probabilities = F.log_softmax(scores / temperature, dim=-1)
        return -(targets * log_probabilities).sum(-1).mean() * temperature ** 2
    if spec.kind == "binary":
        return F.binary_cross_entropy_with_logits(scores / temperature, targets) * temperature ** 2
    return regression_loss(output, targets)


def gold_weight(settings: DistillConfig, progress: float) -> float:
    """λ: fixed, or annealed linearly from 0 at the first update to 1 at the last."""
    return min(max(progress, 0.0), 1.0) if settings.anneal else settings.gold_weight


class DistilledObjective(LabelObjective):
    """A task's label objective mixed with its teachers' targets."""

    def __init__(self, inner: LabelObjective, distillation: "Distillation", task: str):
        super().__init__(inner.label_loss, inner.weight)
        self.distillation, self.task = distillation, task

    def loss(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        output = model(batch)
        gold = self.label_loss(output, batch.labels)
        weight = self.distillation.gold_weight()
        if weight >= 1.0:
            return gold
        targets = self.distillation.batch_targets(self.task, batch.indices).to(output.scores.device)
        taught = teacher_loss(output, targets, self.label_loss.spec, self.distillation.settings.temperature,
                              self.label_loss)
        return weight * gold + (1.0 - weight) * taught


class Distillation:
    """The teachers' cached targets of a run and its λ; ``progress`` says how far training is (0 to 1)."""

    def __init__(self, settings: DistillConfig, targets: dict[str, torch.Tensor],
                 orientation: Callable[[str], Optional[Sequence[bool]]]):
        self.settings, self.targets, self.orientation = settings, targets, orientation
        self.progress: Callable[[], float] = lambda: 0.0

    def gold_weight(self) -> float:
        return gold_weight(self.settings, self.progress())

    def batch_targets(self, task: str, indices: Sequence[int]) -> torch.Tensor:
        index = torch.tensor(list(indices))
        own = self.targets[task][index]
        swaps = self.orientation(task)
        if swaps is None or task + SWAPPED not in self.targets:
            return own
        flipped = torch.tensor([bool(swaps[i]) for i in indices])
        other = self.targets[task + SWAPPED][index]
        shape = (-1,) + (1,) * (own.dim() - 1)
        return torch.where(flipped.view(shape), other, own)


def build_distillation(settings: DistillConfig, model: MultitaskModel, train: dict[str, TaskFeatures],
                       run_dir: Path, precision: Precision, batch_size: int, max_tokens: Optional[int],
                       orientation: Callable[[str], Optional[Sequence[bool]]], data_dir: Optional[Path] = None,
                       use_cache: bool = True) -> Optional[Distillation]:
    """The run's distillation (None without teachers): the targets from the cache, or computed and cached
    (``use_cache`` False: computed and kept in memory only, as a data-parallel run's other ranks do)."""
    if not settings.teachers:
        return None
    unknown = sorted(set(settings.teachers) - set(train))
    if unknown:
        raise ValueError(f"train.distill.teachers names {', '.join(unknown)}, not a training task "
                         f"({', '.join(train)})")
    teacher_runs = Path(settings.teacher_runs) if settings.teacher_runs else run_dir / "teachers"
    directories = {task: [teacher_model_dir(entry, teacher_runs, data_dir) for entry in entries]
                   for task, entries in settings.teachers.items()}
    made_for = {"temperature": settings.temperature}
    for task, dirs in directories.items():
        made_for[f"{task} teachers"] = [model_fingerprint(d) for d in dirs]
        made_for[f"{task} examples"] = examples_fingerprint(train[task])
        made_for[f"{task} both orders"] = model.pair_order(task) != "fixed"
    path = run_dir / CACHE
    targets = read_cache(path, made_for) if use_cache else None
    if targets is not None:
        log.info("distillation: the teachers' targets from %s", path)
    else:
        targets = {}
        for task, dirs in directories.items():
            spec = model.specs[task]
            parts: list[dict[str, torch.Tensor]] = []
            for directory in dirs:
                teacher = MultitaskModel.from_pretrained(directory).to(precision.device)
                check_teacher(teacher, task, spec, directory)
                log.info("distillation: %s targets from %s on %d training examples", task, directory, len(train[task]))
                parts.append(teacher_targets(teacher, task, train[task], made_for[f"{task} both orders"],
                                             settings.temperature, precision, batch_size, max_tokens))
                del teacher
            for key in parts[0]:
                targets[key] = torch.stack([p[key] for p in parts]).mean(0)
        if use_cache:
            write_cache(path, targets, made_for)
    return Distillation(settings, targets, orientation)
