"""Schedules, balancers, step modes and gradient surgery inside the trainer, on a tiny encoder:
exact resume for each, the surgery sees each task's own gradient, and pre-training / shrink phases."""

from __future__ import annotations

import copy

import pytest
import torch

from mtbert.config import load_config
from mtbert.multitask import MultitaskModel, build_surgery
from mtbert.train import Trainer
from mtbert.train.data import shrink_examples
from mtbert.train.step import StepRunner

from conftest import stop_at
from test_train_cli import tiny_overrides


def tiny_config(tiny_checkpoint, data_dir, **settings):
    values = {"train.checkpoint_every": 0, "data.limit": 20, **settings}
    return load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir, **values))


@pytest.mark.parametrize("schedule, balancer, extra", [
    ("zipped", "learned", {}),
    ("cycled", "dynamic", {"train.surgery": "pcgrad"}),
    ("proportional", "sum", {}),
    ("interleaved", "uncertainty", {"train.step_mode": "separate"}),
    ("mixed", "examples", {"train.surgery": "cagrad"}),
    ("round_robin", "mean", {}),
    ("zipped", "uncertainty", {"train.surgery": "pcgrad", "train.smart": "{enabled: true, tasks: [sts]}"}),
])
def test_each_schedule_resumes_mid_epoch_exactly(tmp_path, tiny_checkpoint, data_dir, schedule, balancer, extra):
    config = tiny_config(tiny_checkpoint, data_dir, **{"train.schedule": schedule, "train.balancer": balancer,
                                                       **extra})
    whole = Trainer(config, tmp_path / "whole").train()

    assert Trainer(config, tmp_path / "cut", callbacks=[stop_at(3)]).train()["interrupted"]
    resumed = Trainer(config, tmp_path / "cut").train(resume=True)
    assert resumed["best"] == whole["best"] and resumed["steps"] == whole["steps"]
    ours = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    theirs = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in theirs["model"])
    assert all(torch.equal(ours["balancer"][k], theirs["balancer"][k]) for k in theirs["balancer"])


def test_surgery_gets_each_tasks_own_gradient_and_its_result_is_applied(tmp_path, tiny_checkpoint, data_dir):
    config = tiny_config(tiny_checkpoint, data_dir, **{"train.schedule": "zipped", "train.surgery": "pcgrad",
                                                       "train.max_grad_norm": 0, "data.tasks": "[sst, sts]",
                                                       "model.heads": "{}"})
    trainer = Trainer(config, tmp_path / "run")
    reference_model = copy.deepcopy(trainer.model)
    runner = trainer.runner
    seen, applied = [], []
    pcgrad = build_surgery("pcgrad")

    def recording_surgery(rows, generator=None):
        seen.append(rows.clone())
        return pcgrad(rows, torch.Generator().manual_seed(0))

    runner.surgery = recording_surgery
    update = runner._update
    runner._update = lambda: (applied.append([p.grad.clone() for p in trainer.model.shared_parameters()]), update())[1]
    step = trainer.epoch_plan(0)[0]
    assert [task for task, _ in step] == ["sst", "sts"]
    torch.manual_seed(5)
    trainer.train_step(step)

    reference = StepRunner(reference_model, trainer.objectives, [], trainer.balancer, None, "combined", None, None, None,
                           trainer.precision, 0.0, runner.features, dict(runner.counters))
    reference_model.train()
    torch.manual_seed(5)  # same dropout masks: same forwards in the same order
    losses = [reference.task_loss(task, indices)[0] for task, indices in step]
    rows = []
    shared = reference_model.shared_parameters()
    for loss in losses:
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, p in zip(grads, shared)]))
    assert torch.allclose(seen[0], torch.stack(rows), atol=1e-6)
    expected = pcgrad(torch.stack(rows), torch.Generator().manual_seed(0))
    assert torch.allclose(torch.cat([g.reshape(-1) for g in applied[0]]), expected, atol=1e-6)


def test_separate_steps_make_one_update_per_task_batch(tmp_path, tiny_checkpoint, data_dir):
    config = tiny_config(tiny_checkpoint, data_dir, **{"train.schedule": "zipped", "train.step_mode": "separate",
                                                       "train.epochs": 1})
    trainer = Trainer(config, tmp_path / "run")
    plan = trainer.epoch_plan(0)
    trainer.train()
    updates = sum(len(step) for step in plan)
    assert trainer.lr_scheduler.last_epoch == updates
    state = trainer.optimizer.state_dict()["state"]
    assert max(int(s["step"]) for s in state.values()) == updates


def test_interleaved_steps_combined_and_separate_differ(tmp_path, tiny_checkpoint, data_dir):
    """Report 004's comparison: one update for the summed losses of a round (one batch of every task at
    its interleaved size) against one update per task in turn, on the same plan."""
    weights, updates = {}, {}
    for mode in ("combined", "separate"):
        config = tiny_config(tiny_checkpoint, data_dir, **{"train.schedule": "interleaved", "train.step_mode": mode,
                                                           "train.max_steps": 3})
        trainer = Trainer(config, tmp_path / mode)
        plan = trainer.epoch_plan(0)[:3]
        assert all([task for task, _ in step] == ["sst", "quora", "sts"] for step in plan)
        for step in plan:
            trainer.train_step(step)
        weights[mode] = trainer.model.encoder.layers[0].attention.qkv.weight.detach().clone()
        updates[mode] = trainer.lr_scheduler.last_epoch
    assert updates == {"combined": 3, "separate": 9}
    assert not torch.allclose(weights["combined"], weights["separate"])


@pytest.mark.parametrize("schedule", ["shuffled", "sequential", "proportional", "temperature"])
def test_separate_steps_with_one_task_per_step_are_refused(tmp_path, tiny_checkpoint, data_dir, schedule):
    config = tiny_config(tiny_checkpoint, data_dir, **{"train.schedule": schedule, "train.step_mode": "separate"})
    with pytest.raises(ValueError, match=f"has no effect with train.schedule: {schedule}, whose steps hold one task"):
        Trainer(config, tmp_path / "run")


def test_pretraining_phase_trains_one_task_first(tmp_path, tiny_checkpoint, data_dir):
    config = tiny_config(tiny_checkpoint, data_dir, **{"train.pretrain_task": "quora", "train.pretrain_epochs": 1,
                                                       "train.epochs": 1})
    trainer = Trainer(config, tmp_path / "run")
    assert {task for step in trainer.epoch_plan(0) for task, _ in step} == {"quora"}
    assert {task for step in trainer.epoch_plan(1) for task, _ in step} == {"sst", "quora", "sts"}
    results = trainer.train()
    assert trainer.epoch == 2 and results["steps"] == trainer.total_steps
    bad = tiny_config(tiny_checkpoint, data_dir, **{"train.pretrain_task": "cfimdb", "train.pretrain_epochs": 1})
    with pytest.raises(ValueError, match="pretrain_task 'cfimdb' is not one of data.tasks"):
        Trainer(bad, tmp_path / "bad")


def test_shrink_keeps_a_seeded_one_in_m(tmp_path, tiny_checkpoint, data_dir):
    examples = list(range(1000))
    kept = shrink_examples(examples, 4, seed=7)
    assert len(kept) == 250 and kept == sorted(kept) and kept == shrink_examples(examples, 4, seed=7)
    assert kept != shrink_examples(examples, 4, seed=8)
    with pytest.raises(ValueError, match="data.shrink must be a whole number >= 1"):
        shrink_examples(examples, 0, seed=7)
    config = tiny_config(tiny_checkpoint, data_dir, **{"data.shrink": 4})
    trainer = Trainer(config, tmp_path / "run")
    assert len(trainer.data["sst"].get("train")) == 5 and len(trainer.data["sst"].get("dev")) == 20
    limited = Trainer(tiny_config(tiny_checkpoint, data_dir, **{"data.eval_limit": 7}), tmp_path / "eval")
    assert len(limited.data["sst"].get("train")) == 20 and len(limited.data["sst"].get("test")) == 7


def test_bad_step_settings_are_named(tmp_path, tiny_checkpoint, data_dir):
    with pytest.raises(ValueError, match="train.step_mode must be one of combined, separate"):
        Trainer(tiny_config(tiny_checkpoint, data_dir, **{"train.step_mode": "parallel"}), tmp_path / "a")
    with pytest.raises(ValueError, match="does not apply with train.step_mode: separate"):
        Trainer(tiny_config(tiny_checkpoint, data_dir, **{"train.step_mode": "separate", "train.surgery": "pcgrad",
                                                          "train.schedule": "zipped"}),
                tmp_path / "b")
    with pytest.raises(ValueError, match="unknown loss balancer 'nash'"):
        Trainer(tiny_config(tiny_checkpoint, data_dir, **{"train.balancer": "nash"}), tmp_path / "c")


def test_final_stage_tunes_one_head_of_a_saved_model(tmp_path, tiny_checkpoint, data_dir):
    first = Trainer(tiny_config(tiny_checkpoint, data_dir, **{"train.epochs": 1}), tmp_path / "first")
    first.train()
    best = tmp_path / "first" / "best"
    stage = tiny_config(tiny_checkpoint, data_dir, **{"model.init_from": str(best), "model.heads": "{}",
                                                      "model.trainable_heads": "[sst]", "train.epochs": 1})
    trainer = Trainer(stage, tmp_path / "final")
    assert {task for step in trainer.epoch_plan(0) for task, _ in step} == {"sst"}
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    results = trainer.train()
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("heads.sst.") for k in changed)
    assert {"sst_acc", "quora_acc", "sts_pearson"} <= set(results["best"])
    assert results["delta_checkpoint"]  # only the head trained: saved on top of the first stage's model
    reloaded = MultitaskModel.from_pretrained(tmp_path / "final" / "best")
    assert all(torch.equal(v, after[k]) for k, v in reloaded.state_dict().items())
    with pytest.raises(ValueError, match="model.heads and model.peft do not apply with model.init_from"):
        Trainer(tiny_config(tiny_checkpoint, data_dir, **{"model.init_from": str(best)}), tmp_path / "bad")
    with pytest.raises(ValueError, match="trainable_heads names nli, not in data.tasks"):
        Trainer(tiny_config(tiny_checkpoint, data_dir, **{"model.init_from": str(best), "model.heads": "{}",
                                                          "model.trainable_heads": "[nli]"}), tmp_path / "bad2")
