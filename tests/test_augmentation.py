"""Sentiment augmentation (report 003): the CFIMDB fold, the consistency pairs and term, the weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtbert.config import load_config
from mtbert.multitask import collate
from mtbert.multitask.augmentation import AUGMENTATIONS, build_augmentation, fold_five_to_two
from mtbert.tasks import TASKS, read_examples
from mtbert.train import Trainer

from test_train_cli import tiny_overrides

AUGMENT = "[cfimdb_to_sst, quora_sentiment_consistency, sts_sentiment_consistency]"


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, tiny_checkpoint, data_dir):
    overrides = tiny_overrides(tiny_checkpoint, data_dir, **{"data.augment": AUGMENT, "data.limit": 60,
                                                             "train.epochs": 1})
    return Trainer(load_config("recipes/multitask-base.yaml", overrides), tmp_path_factory.mktemp("aug"))


def test_fold_five_to_two_matches_the_report():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    assert torch.equal(fold_five_to_two(logits), torch.tensor([[6.0, 12.0]]))


def test_consistency_pairs_are_duplicates_and_near_identical_scores(trainer, data_dir):
    quora = [e for e in read_examples(TASKS["quora"], data_dir / "quora-train.csv", limit=60).examples]
    sts = [e for e in read_examples(TASKS["sts"], data_dir / "sts-train.csv", limit=60).examples]
    kept_quora = trainer.data["quora_sentiment_consistency"].get("train").examples
    kept_sts = trainer.data["sts_sentiment_consistency"].get("train").examples
    assert [e.id for e in kept_quora] == [e.id for e in quora if e.label == 1]
    assert [e.id for e in kept_sts] == [e.id for e in sts if e.label > 4.5]
    assert kept_quora and kept_sts and len(trainer.data["cfimdb_to_sst"].get("train")) == 60


def test_augmentation_losses_match_their_formulas(trainer):
    model = trainer.model.eval()
    cfimdb = trainer.data["cfimdb_to_sst"].get("train")
    batch = collate(cfimdb, list(range(6)))
    aug = build_augmentation("cfimdb_to_sst")
    logits = model.heads["sst"](*model.encode(batch)).scores
    expected = F.cross_entropy(torch.stack([logits[:, :3].sum(1), logits[:, 2:].sum(1)], 1), batch.labels.long())
    assert aug.loss(model, batch).item() == pytest.approx(expected.item(), rel=1e-5)

    pairs = trainer.data["sts_sentiment_consistency"].get("train")
    batch = collate(pairs, list(range(len(pairs))))
    assert batch.num_segments == 2
    outputs, masks = model.encode(batch)
    p = model.heads["sst"]([outputs[0]], [masks[0]]).scores.softmax(-1)
    q = model.heads["sst"]([outputs[1]], [masks[1]]).scores.softmax(-1)
    symmetric_kl = ((p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)).mean()
    loss = build_augmentation("sts_sentiment_consistency").loss(model, batch)
    assert loss.item() == pytest.approx(symmetric_kl.item(), rel=1e-4)
    one_way = (p * (p / q).log()).sum(-1).mean()  # the report's KL(p‖q)
    loss = build_augmentation("sts_sentiment_consistency", {"divergence": "kl"}).loss(model, batch)
    assert loss.item() == pytest.approx(one_way.item(), rel=1e-4)
    with pytest.raises(ValueError, match="is a label; choose symmetric_kl or kl"):
        build_augmentation("quora_sentiment_consistency", {"divergence": "mse"})


def test_report_weights_are_the_defaults_and_can_be_overridden(trainer, tiny_checkpoint, data_dir, tmp_path):
    weights = {task: objective.weight for task, objective in trainer.objectives.items()}
    assert weights == pytest.approx({"sst": 0.5, "quora": 1.0, "sts": 1.0, "cfimdb_to_sst": 1 / 6,
                                     "quora_sentiment_consistency": 1 / 6, "sts_sentiment_consistency": 1 / 6})
    overrides = tiny_overrides(tiny_checkpoint, data_dir, **{"data.augment": "[cfimdb_to_sst]",
                                                             "train.task_weights": "{sst: 1.0, cfimdb_to_sst: 0.25}"})
    other = Trainer(load_config("recipes/multitask-base.yaml", overrides), tmp_path / "w")
    assert other.objectives["sst"].weight == 1.0 and other.objectives["cfimdb_to_sst"].weight == 0.25


def test_augmented_run_trains_and_scores_only_the_real_tasks(trainer):
    plan_tasks = {task for step in trainer.epoch_plan(0) for task, _ in step}
    assert set(AUGMENTATIONS) <= plan_tasks
    results = trainer.train()
    assert {"sst_acc", "quora_acc", "sts_pearson"} <= set(results["best"])
    assert not any(name in key for key in results["best"] for name in AUGMENTATIONS)


def test_augmentation_errors_are_named(tmp_path, tiny_checkpoint, data_dir):
    def build(**settings):
        return Trainer(load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir, **settings)),
                       tmp_path / "x")
    with pytest.raises(ValueError, match="trains the 'sst' head; add 'sst' to data.tasks"):
        build(**{"data.tasks": "[quora, sts]", "model.heads": "{}", "data.augment": "[cfimdb_to_sst]"})
    with pytest.raises(ValueError, match="unknown augmentation 'backtranslate'"):
        build(**{"data.augment": "[backtranslate]"})
    with pytest.raises(ValueError, match="train.task_weights names nli"):
        build(**{"train.task_weights": "{nli: 2}"})
