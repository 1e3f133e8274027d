"""The transformers reference's learning-rate grid, and the rule that widens it.

The tuned reference tries lr 2e-5, 3e-5 and 5e-5 per task (the values a user tuning a BERT baseline reaches
for first) and keeps the best on dev. When the best is the highest rate tried, the grid has not found the
top of the curve and the baseline may be weaker than it needs to be, so the next rate of ``WIDER`` is tried,
one at a time, until the best is no longer the highest tried or ``WIDER`` runs out. The rule lives here, on
its own, because two scripts ask it: benchmarks/hf_reference.py (which rates to train) and
benchmarks/study.py (whether a finished seed 0 still has rates to try), and the study must not import torch.
"""

from __future__ import annotations

GRID = (2e-5, 3e-5, 5e-5)
WIDER = (8e-5, 1.2e-4, 2e-4)


def next_rates(tried: list[dict], grid: tuple[float, ...] = GRID, wider: tuple[float, ...] = WIDER) -> list[float]:
    """The rates still to train for one task, given its results so far (dicts with ``lr`` and ``dev``):
    the grid's untried rates first; then, while the best dev is at the highest rate tried, the next wider
    rate above it; none when the best is inside the tried range or the wider rates are spent."""
    done = {r["lr"] for r in tried}
    missing = [lr for lr in grid if lr not in done]
    if missing:
        return missing
    if not tried or not wider:
        return []
    top = max(done)
    if max(tried, key=lambda r: r["dev"])["lr"] < top:
        return []
    return [lr for lr in wider if lr > top][:1]


def grid_finished(tried: dict[str, list[dict]]) -> bool:
    """Whether every task's rates are settled by the rule above (a seed-0 record's ``tried``)."""
    return all(not next_rates(results) for results in tried.values())
