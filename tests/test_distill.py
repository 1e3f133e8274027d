"""Distillation: the teacher losses and λ against hand computations, the mixed objective, and in the
trainer: targets cached with a checksum, reused on resume, refused when damaged or when a teacher changed,
teacher recipes trained first from one command."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mtbert.bert import CheckpointError
from mtbert.cli import main
from mtbert.config import DistillConfig, load_config
from mtbert.multitask import MultitaskModel
from mtbert.tasks import HeadOutput, get_task
from mtbert.tasks.losses import build_task_loss
from mtbert.train import Trainer
from mtbert.train.distill import CACHE, Distillation, gold_weight, targets_from_outputs, teacher_loss

from conftest import stop_at
from test_train_cli import tiny_overrides

SST, QUORA, STS = get_task("sst"), get_task("quora"), get_task("sts")


def test_soft_cross_entropy_at_a_temperature_is_the_hand_computed_one():
    student = torch.tensor([[1.0, 2.0, 0.0, -1.0, 0.5]])
    teacher = torch.tensor([[0.0, 3.0, 1.0, -2.0, 0.0]])
    targets = targets_from_outputs(teacher, SST, temperature=2.0)
    p = [math.exp(t / 2) for t in teacher[0].tolist()]
    p = [v / sum(p) for v in p]
    assert targets[0].tolist() == pytest.approx(p, rel=1e-6)
    z = [s / 2 for s in student[0].tolist()]
    log_q = [v - math.log(sum(math.exp(u) for u in z)) for v in z]
    expected = -sum(pi * lq for pi, lq in zip(p, log_q)) * 4  # times T²
    assert float(teacher_loss(HeadOutput(student), targets, SST, 2.0, None)) == pytest.approx(expected, rel=1e-6)


def test_binary_and_regression_targets_and_losses():
    student, teacher = torch.tensor([0.3, -1.0]), torch.tensor([2.0, -0.5])
    targets = targets_from_outputs(teacher, QUORA, temperature=1.0)
    assert targets.tolist() == pytest.approx([1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(0.5))], rel=1e-6)
    expected = sum(-(t * math.log(1 / (1 + math.exp(-s))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-s))))
                   for s, t in zip(student.tolist(), targets.tolist())) / 2
    assert float(teacher_loss(HeadOutput(student), targets, QUORA, 1.0, None)) == pytest.approx(expected, rel=1e-6)
    # regression: the teacher's score, clamped to the task's range, taken by the task's own loss (MSE)
    scores = targets_from_outputs(torch.tensor([5.7, 2.0]), STS, temperature=3.0)
    assert scores.tolist() == [5.0, 2.0]
    mse = build_task_loss(STS, "", {})
    value = teacher_loss(HeadOutput(torch.tensor([4.0, 2.5])), scores, STS, 3.0, mse)
    assert float(value) == pytest.approx(((4.0 - 5.0) ** 2 + (2.5 - 2.0) ** 2) / 2)


def test_gold_weight_fixed_and_annealed():
    assert gold_weight(DistillConfig(gold_weight=0.3), 0.7) == 0.3
    annealed = DistillConfig(anneal=True)
    assert [gold_weight(annealed, p) for p in (0.0, 0.25, 1.0, 1.5)] == [0.0, 0.25, 1.0, 1.0]


def test_targets_follow_the_order_the_epoch_shows_each_pair_in():
    own, swapped = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.9, 0.8, 0.7])
    flags = {"quora": [False, True, False]}
    distillation = Distillation(DistillConfig(), {"quora": own, "quora.swapped": swapped}, flags.get)
    assert distillation.batch_targets("quora", [2, 1]).tolist() == pytest.approx([0.3, 0.8])
    flags.clear()  # a fixed-order epoch
    assert distillation.batch_targets("quora", [2, 1]).tolist() == pytest.approx([0.3, 0.2])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_checkpoint, data_dir) -> Path:
    """A tiny SST-and-STS model trained for a few steps: the teacher of the runs below."""
    run = tmp_path_factory.mktemp("teacher")
    config = load_config("recipes/quickstart.yaml", tiny_overrides(tiny_checkpoint, data_dir, **{
        "data.tasks": "[sst, sts]", "model.heads": "{}", "train.epochs": 1}))
    Trainer(config, run).train()
    return run / "best"


def student_config(tiny_checkpoint, data_dir, teacher: Path, **extra):
    return load_config("recipes/quickstart.yaml", tiny_overrides(tiny_checkpoint, data_dir, **{
        "model.heads": "{}", "train.distill.teachers": f"{{sst: [{teacher}], sts: [{teacher}, {teacher}]}}",
        "train.distill.anneal": "true", "train.distill.temperature": 2.0, **extra}))


def test_distilled_loss_mixes_gold_and_teacher_as_lambda_says(tmp_path, tiny_checkpoint, data_dir, teacher):
    config = student_config(tiny_checkpoint, data_dir, teacher, **{"train.distill.anneal": "false",
                                                                    "train.distill.gold_weight": 0.25})
    trainer = Trainer(config, tmp_path / "run")
    model, objective = trainer.model, trainer.objectives["sst"]
    indices = [0, 1, 2, 3]
    batch = trainer.runner._batch("sst", indices)
    model.eval()  # no dropout: the hand computation sees the same outputs
    with torch.no_grad():
        scores = model(batch).scores.float()
        gold = F.cross_entropy(scores, batch.labels)
        targets = trainer.distillation.targets["sst"][indices]
        soft = -(targets * F.log_softmax(scores / 2, -1)).sum(-1).mean() * 4
        assert float(objective(model, batch)) == pytest.approx(float(0.25 * gold + 0.75 * soft), rel=1e-4)
    # an ensemble's targets are the mean of its teachers' (here one teacher twice: the same)
    assert trainer.distillation.targets["sts"].shape == (len(trainer.data["sts"].get("train")),)


def test_teacher_targets_equal_the_teachers_own_outputs(tmp_path, tiny_checkpoint, data_dir, teacher):
    from mtbert.evaluate import predict_features
    from mtbert.precision import resolve_precision

    trainer = Trainer(student_config(tiny_checkpoint, data_dir, teacher), tmp_path / "run")
    teacher_model = MultitaskModel.from_pretrained(teacher)
    examples = trainer.data["sts"].get("train").examples
    outputs = predict_features(teacher_model, teacher_model.featurize("sts", examples), 128,
                               resolve_precision("auto", torch.device("cpu"))).outputs
    assert torch.allclose(trainer.distillation.targets["sts"], outputs.clamp(0, 5))


def test_targets_are_cached_reused_on_resume_and_refused_when_damaged_or_the_teacher_changed(
        tmp_path, tiny_checkpoint, data_dir, teacher, monkeypatch):
    config = student_config(tiny_checkpoint, data_dir, teacher)
    run = tmp_path / "run"
    Trainer(config, run, callbacks=[stop_at(2)]).train()
    cache = run / CACHE
    assert cache.exists() and cache.with_name(cache.name + ".sha256").exists()
    first = cache.read_bytes()

    import mtbert.train.distill as distill
    calls = []
    original = distill.teacher_targets
    monkeypatch.setattr(distill, "teacher_targets", lambda *a, **k: calls.append(1) or original(*a, **k))
    results = Trainer(config, run).train(resume=True)
    assert not calls, "a resumed run computed the targets again instead of reading its cache"
    assert cache.read_bytes() == first and results["steps"] > 2

    damaged = bytearray(first)
    damaged[-3] ^= 0xFF
    cache.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="damaged|SHA-256"):
        Trainer(config, run)
    cache.write_bytes(first)

    changed = tmp_path / "changed-teacher"
    model = MultitaskModel.from_pretrained(teacher)
    with torch.no_grad():
        next(model.heads["sst"].parameters()).add_(1.0)
    model.save_pretrained(changed)
    other = student_config(tiny_checkpoint, data_dir, changed)
    # the same run directory, its cache made for the first teacher
    with pytest.raises(CheckpointError, match="other teachers or examples"):
        Trainer(other, run)


def test_a_teacher_without_the_task_or_of_another_kind_is_refused(tmp_path, tiny_checkpoint, data_dir, teacher):
    config = student_config(tiny_checkpoint, data_dir, teacher, **{
        "train.distill.teachers": f"{{quora: [{teacher}]}}"})
    with pytest.raises(ValueError, match="has no quora head"):
        Trainer(config, tmp_path / "run")


def test_one_command_trains_the_teacher_recipe_then_the_student(tmp_path, tiny_checkpoint, data_dir):
    recipe = tmp_path / "teachers" / "sst.yaml"
    recipe.parent.mkdir()
    recipe.write_text(f"""name: teacher-sst
model: {{name: {tiny_checkpoint}, max_length: 64}}
data: {{dir: {data_dir}, tasks: [sst], limit: 24}}
train: {{epochs: 1, batch_size: 8, lr: 1.0e-3, progress: false, device: cpu}}
""", encoding="utf-8")
    runs = tmp_path / "teacher-runs"
    args = ["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(tmp_path / "student")]
    for item in tiny_overrides(tiny_checkpoint, data_dir, **{
            "model.heads": "{}", "train.distill.teachers": f"{{sst: [{recipe}]}}",
            "train.distill.teacher_runs": str(runs), "train.epochs": 1}):
        args += ["--set", item]
    assert main(args) == 0
    assert (runs / "sst" / "best" / "mtbert.json").exists()
    assert (tmp_path / "student" / "best" / "mtbert.json").exists()
    stamp = (runs / "sst" / "results.json").stat().st_mtime_ns
    args[args.index(str(tmp_path / "student"))] = str(tmp_path / "student2")
    assert main(args) == 0  # the finished teacher is reused, not trained again
    assert (runs / "sst" / "results.json").stat().st_mtime_ns == stamp
