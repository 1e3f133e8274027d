"""The report's figures, one function each, drawn with matplotlib (Agg: no display needed). Each
returns a matplotlib Figure; ``report.py`` saves them as PNGs and embeds them in the HTML page."""

from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(train: list[dict], dev: list[dict], metric_keys: list[str], log_every=None):
    """Training loss over steps (each logged step and the epoch's running mean) beside the dev metrics."""
    plt = _pyplot()
    figure, (loss_axis, dev_axis) = plt.subplots(1, 2, figsize=(11, 3.8))
    if train:
        steps = [r["step"] for r in train]
        loss_axis.plot(steps, [r["loss"] for r in train], lw=0.8, alpha=0.5, label="step loss")
        loss_axis.plot(steps, [r["mean_loss"] for r in train], lw=1.8, label="epoch mean so far")
        loss_axis.legend()
    else:
        loss_axis.text(0.5, 0.5, f"no training records (train.log_every: {log_every})", ha="center",
                       transform=loss_axis.transAxes)
    loss_axis.set(title="training loss", xlabel="step", ylabel="loss")
    for key in metric_keys + ["composite"]:
        points = [(r["step"], r[key]) for r in dev if key in r]
        if points:
            dev_axis.plot(*zip(*points), marker="o", label=key)
    dev_axis.set(title="dev metrics", xlabel="step")
    dev_axis.legend()
    for axis in (loss_axis, dev_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def confusion_matrix(gold: list[int], predicted: list[int], labels: list[str], title: str):
    plt = _pyplot()
    size = len(labels)
    counts = np.zeros((size, size), dtype=int)
    for g, p in zip(gold, predicted):
        counts[int(g), int(p)] += 1
    figure, axis = plt.subplots(figsize=(1.1 * size + 2.2, 1.1 * size + 1.6))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(size):
        for j in range(size):
            axis.text(j, i, f"{counts[i, j]}\n{100 * shares[i, j]:.0f}%", ha="center", va="center",
                      color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    axis.set_xticks(range(size), labels)
    axis.set_yticks(range(size), labels)
    axis.set(title=title, xlabel="predicted", ylabel="gold")
    figure.tight_layout()
    return figure


def per_class_scores(table: list[dict], title: str):
    """Grouped bars of precision, recall and F1 per class."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.6))
    positions = np.arange(len(table))
    for offset, key in zip((-0.25, 0.0, 0.25), ("precision", "recall", "f1")):
        axis.bar(positions + offset, [row[key] for row in table], width=0.25, label=key)
    axis.set_xticks(positions, [row["label"] for row in table])
    axis.set(title=title, ylim=(0, 1))
    axis.legend()
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def regression_scatter(gold: list[float], predicted: list[float], title: str):
    """Predicted against gold (with the identity line), and the two score distributions."""
    plt = _pyplot()
    figure, (scatter, histogram) = plt.subplots(1, 2, figsize=(11, 4))
    scatter.scatter(gold, predicted, s=6, alpha=0.4)
    low, high = min(min(gold), min(predicted)), max(max(gold), max(predicted))
    scatter.plot([low, high], [low, high], color="gray", lw=1, ls="--")
    scatter.set(title=title, xlabel="gold", ylabel="predicted")
    width = (high - low) / 25 or 1.0
    bins = np.linspace(low - width / 2, high + width / 2, 27)  # centred on round scores (STS: steps of 0.2)
    histogram.hist(gold, bins=bins, alpha=0.6, label="gold")
    histogram.hist(predicted, bins=bins, alpha=0.6, label="predicted")
    histogram.set(title="score distributions", xlabel="score", ylabel="pairs")
    histogram.legend()
    for axis in (scatter, histogram):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure
