"""Each loss against a direct formula on small tensors, and the errors of building a task's loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtbert.tasks import LOSSES, TASKS, HeadOutput, L2Penalty, SymmetricKL, build_task_loss

SST, QUORA, STS = TASKS["sst"], TASKS["quora"], TASKS["sts"]


def test_every_loss_is_covered_here():
    assert set(LOSSES) == {"cross_entropy", "bce", "mse", "mnr", "cosine_embedding", "symmetric_kl", "kl", "l2"}


def test_cross_entropy_with_class_weights_and_label_smoothing_matches_the_formula():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 5), torch.tensor([0, 1, 4, 4, 2, 3])
    weights, smoothing = [1.0, 2.0, 0.5, 1.5, 3.0], 0.1
    loss = build_task_loss(SST, "cross_entropy", {"cross_entropy": {"class_weights": weights,
                                                                     "label_smoothing": smoothing}})
    w = torch.tensor(weights)
    log_p = logits.log_softmax(-1)
    target = torch.full((6, 5), smoothing / 5) + (1 - smoothing) * F.one_hot(labels, 5)
    per_example = -(w * target * log_p).sum(-1)  # torch weights the smoothed target by class
    expected = per_example.sum() / w[labels].sum()
    assert loss(HeadOutput(logits), labels).item() == pytest.approx(expected.item(), rel=1e-5)
    plain = build_task_loss(SST, "", None)
    assert plain(HeadOutput(logits), labels).item() == pytest.approx(-log_p[range(6), labels].mean().item(), rel=1e-6)


def test_balanced_class_weights_are_inverse_frequencies():
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2, 3, 4])
    loss = build_task_loss(SST, "cross_entropy", {"cross_entropy": {"class_weights": "balanced"}}, train_labels=labels)
    assert torch.allclose(loss.weights, 10 / (5 * torch.tensor([3.0, 1.0, 4.0, 1.0, 1.0])))
    with pytest.raises(ValueError, match="'balanced' needs the training labels"):
        build_task_loss(SST, "cross_entropy", {"cross_entropy": {"class_weights": "balanced"}})
    with pytest.raises(ValueError, match="class_weights has 2 values for 5 classes"):
        build_task_loss(SST, "cross_entropy", {"cross_entropy": {"class_weights": [1, 2]}})


def test_bce_with_class_weights_matches_the_formula():
    logits, labels = torch.tensor([2.0, -1.0, 0.5, -0.3]), torch.tensor([1.0, 0.0, 0.0, 1.0])
    loss = build_task_loss(QUORA, "bce", {"bce": {"class_weights": [1.0, 3.0]}})
    p = torch.sigmoid(logits)
    per = -(labels * p.log() + (1 - labels) * (1 - p).log())
    w = torch.tensor([3.0, 1.0, 1.0, 3.0])
    assert loss(HeadOutput(logits), labels).item() == pytest.approx(((w * per).sum() / w.sum()).item(), rel=1e-5)
    assert build_task_loss(QUORA, "", None)(HeadOutput(logits), labels).item() == pytest.approx(per.mean().item(), rel=1e-5)


def test_mse_matches_the_formula():
    scores, labels = torch.tensor([1.0, 2.5, 4.0]), torch.tensor([0.0, 3.0, 5.0])
    assert build_task_loss(STS, "", None)(HeadOutput(scores), labels).item() == pytest.approx((1 + 0.25 + 1) / 3)


def test_multiple_negatives_ranking_uses_positive_pairs_and_in_batch_negatives():
    torch.manual_seed(0)
    u, v = torch.randn(5, 8), torch.randn(5, 8)
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    loss = build_task_loss(QUORA, "mnr", {"mnr": {"scale": 7.0}}, provides_vectors=True)
    positives = [0, 2, 3]
    expected = 0.0
    for row, i in enumerate(positives):
        scores = [7.0 * F.cosine_similarity(u[i], v[j], dim=0) for j in positives]
        expected += -(scores[row] - torch.logsumexp(torch.stack(scores), 0))
    expected /= len(positives)
    output = HeadOutput(torch.zeros(5), (u, v))
    assert loss(output, labels).item() == pytest.approx(expected.item(), rel=1e-5)
    one_positive = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    assert loss(output, one_positive).item() == 0.0
    sts_loss = build_task_loss(STS, "mnr", {"mnr": {"scale": 7.0, "threshold": 3.0}}, provides_vectors=True)
    assert sts_loss(output, torch.tensor([4.0, 1.0, 3.0, 5.0, 2.9])).item() == pytest.approx(expected.item(), rel=1e-5)


def test_cosine_embedding_matches_torch_with_plus_minus_one_targets():
    torch.manual_seed(0)
    u, v = torch.randn(6, 8), torch.randn(6, 8)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    loss = build_task_loss(QUORA, "cosine_embedding", {"cosine_embedding": {"margin": 0.2}}, provides_vectors=True)
    reference = torch.nn.CosineEmbeddingLoss(margin=0.2)(u, v, labels * 2 - 1)
    assert loss(HeadOutput(torch.zeros(6), (u, v)), labels).item() == pytest.approx(reference.item(), rel=1e-5)
    sts = build_task_loss(STS, "cosine_embedding", {"cosine_embedding": {"margin": 0.2}}, provides_vectors=True)
    assert sts(HeadOutput(torch.zeros(6), (u, v)), labels * 5).item() == pytest.approx(reference.item(), rel=1e-5)


def test_symmetric_kl_per_kind():
    torch.manual_seed(0)
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    p, q = a.softmax(-1), b.softmax(-1)
    kl = lambda x, y: (x * (x / y).log()).sum(-1)  # noqa: E731
    divergence = SymmetricKL(SST)
    assert divergence(a, b).item() == pytest.approx((kl(p, q) + kl(q, p)).mean().item(), rel=1e-5)
    assert divergence(a, a).item() == pytest.approx(0.0, abs=1e-7)
    x, y = torch.randn(4), torch.randn(4)
    two = lambda t: torch.stack([torch.sigmoid(-t), torch.sigmoid(t)], -1)  # noqa: E731
    expected = (kl(two(x), two(y)) + kl(two(y), two(x))).mean()
    assert SymmetricKL(QUORA)(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert SymmetricKL(STS)(x, y).item() == pytest.approx(((x - y) ** 2).mean().item(), rel=1e-6)
    assert SymmetricKL()(x, y, kind="binary").item() == pytest.approx(expected.item(), rel=1e-5)


def test_l2_penalty_is_the_sum_of_squares():
    weights = [torch.tensor([[1.0, -2.0]]), torch.tensor([3.0])]
    assert L2Penalty()(weights).item() == pytest.approx(1 + 4 + 9)


def test_summed_losses_add_up():
    torch.manual_seed(0)
    u, v, logits = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4)
    labels = torch.tensor([1.0, 1.0, 0.0, 1.0])
    output = HeadOutput(logits, (u, v))
    both = build_task_loss(QUORA, "bce+mnr", {"mnr": {"scale": 5.0}}, provides_vectors=True)
    parts = [build_task_loss(QUORA, "bce", None), build_task_loss(QUORA, "mnr", {"mnr": {"scale": 5.0}},
                                                                   provides_vectors=True)]
    assert both(output, labels).item() == pytest.approx(sum(p(output, labels) for p in parts).item())
    assert math.isfinite(both(output, labels).item())


@pytest.mark.parametrize("names, options, vectors, message", [
    ("symmetric_kl", None, False, "a divergence compares two outputs"),
    ("l2", None, False, "a penalty compares parameters"),
    ("mnr", None, False, "needs the two sentence vectors of a Siamese head"),
    ("cross_entropy", None, False, "serves classification tasks; 'quora' is binary"),
    ("bce", {"bce": {"smoothing": 0.1}}, False, r"no option\(s\) smoothing; its options: class_weights"),
    ("bce", {"mse": {}}, False, "loss_options for mse, which the loss 'bce' does not use"),
    ("nope", None, False, "unknown loss 'nope'"),
])
def test_building_a_wrong_loss_names_the_problem(names, options, vectors, message):
    with pytest.raises(ValueError, match=message):
        build_task_loss(QUORA, names, options, provides_vectors=vectors)


def test_a_clamped_mse_scores_inside_the_range_and_passes_no_gradient_beyond_it():
    spec = TASKS["sts"]
    scores = torch.tensor([[-1.0], [2.0], [6.5]], requires_grad=True)
    labels = torch.tensor([[0.0], [3.0], [5.0]])
    clamped = build_task_loss(spec, "mse", {"mse": {"clamp": True}})
    loss = clamped(HeadOutput(scores), labels)
    assert loss.item() == pytest.approx((0.0 + 1.0 + 0.0) / 3)  # -1 -> 0 and 6.5 -> 5 hit their labels
    loss.backward()
    assert scores.grad[0].item() == 0 and scores.grad[2].item() == 0 and scores.grad[1].item() != 0
    plain = build_task_loss(spec, "mse", None)(HeadOutput(scores.detach()), labels)
    assert plain.item() == pytest.approx((1.0 + 1.0 + 2.25) / 3)
    with pytest.raises(ValueError, match="clamp applies to a regression task"):
        build_task_loss(TASKS["quora"], "mse", {"mse": {"clamp": True}})


def test_kl_is_one_way_and_half_of_the_symmetric_kl_summed_both_ways():
    from mtbert.tasks.losses.divergence import KL

    torch.manual_seed(0)
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    p, q = a.softmax(-1), b.softmax(-1)
    assert KL(SST)(a, b).item() == pytest.approx((p * (p / q).log()).sum(-1).mean().item(), rel=1e-5)
    assert (KL(SST)(a, b) + KL(SST)(b, a)).item() == pytest.approx(SymmetricKL(SST)(a, b).item(), rel=1e-5)
    x, y = torch.randn(4), torch.randn(4)
    assert (KL(QUORA)(x, y) + KL(QUORA)(y, x)).item() == pytest.approx(SymmetricKL(QUORA)(x, y).item(), rel=1e-5)
