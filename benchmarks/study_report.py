"""The study's records turned into what a reader needs: the table (mean ± sd over seeds per row), the
quickstart against the tuned transformers reference per task, each report's claim with whether it holds
here, and the recipe decision. Everything is computed from ``record.json`` files and the dev predictions
kept beside them; nothing is typed.

A difference between two rows is judged by a paired bootstrap over the dev examples and the rows' seeds
(``mtbert.evaluate.bootstrap``): it is real when its 95% interval excludes zero. Where the predictions or
the dev labels are not at hand, the rule falls back to two standard deviations of seed noise (the pooled
sd of the two rows where both have 2+ seeds, else the sd of whichever has, else one pooled over the rows
with seeds). A claim that two rows come close holds when their difference is within ``CLOSE`` or its
interval holds zero.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import statistics
from pathlib import Path

from common import REPO, markdown_table
from mtbert.evaluate.bootstrap import Interval, compare_prediction_dirs

METRICS = {"sst_acc": "SST", "quora_acc": "Quora", "sts_pearson": "STS", "composite": "composite"}
BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"
# How near "close" is, at least: a judgement, said in every "close" line. With little seed spread two sds
# alone would make "close" mean "equal to the third digit"; 0.01 of composite is about what this study's
# single changes of a recipe move it by.
CLOSE = 0.01
# The row that holds the recipe the quickstart replaced when the study chose report 004's system, and the
# row of that system with the embedding layer trained, which the quickstart replaced because it scores the
# same in less time.
FORMER_RECIPE = "shuffled-cosine"
TRAINED_EMBEDDINGS = "quickstart-trained-embeddings"
# Rows that train another row's exact config under their own name (tests/test_study.py checks it): a twin of
# the quickstart is no candidate to replace it.
TWINS = {"004-system": TRAINED_EMBEDDINGS}


@dataclasses.dataclass(frozen=True)
class Claim:
    report: str
    text: str  # the claim as its report makes it
    quote: str  # the report's own words (or its table's numbers) behind the claim
    system: str  # the row the claim speaks for
    other: str  # the row it is compared with
    method: tuple[str, ...]  # the config fields (dotted prefixes) the two rows may differ in: the method judged
    metrics: tuple[str, ...] = ("composite",)
    expect: str = "higher"  # system above other ("higher"), not below ("not lower"), or near it ("close", CLOSE)
    premise: str = ""  # where the study's test differs from the report's setting, and why


HEADS = ("model.heads.quora", "model.heads.sts")
CLAIMS = (
    Claim("000", "SMART over-regularises: the system without it scores at least as high",
          "\"Our SMART model seems incapacitated in terms of expressive power\"", "000-no-smart", "000-system",
          ("train.smart",), expect="not lower"),
    Claim("000", "cycled batches beat sequential training",
          "Table 1, full model: cycled 0.525, sequential 0.371", "000-no-smart", "000-no-smart-sequential",
          ("train.schedule",), premise="without SMART (a SMART run costs about 11 plain ones here)"),
    Claim("000", "cycled batches beat zipped ones (which stop at the smallest task)",
          "Table 1, full model: cycled 0.525, zipped without cycling 0.430", "000-no-smart", "000-no-smart-zipped",
          ("train.schedule",), premise="without SMART"),
    Claim("000", "the bilinear u^T W v head beats the dot product of the sentence vectors",
          "Table 2: multiplicative dot product 0.472 / 0.511, base model 0.400 / 0.403", "000-no-smart",
          "000-no-smart-dot-product", HEADS, premise="without SMART"),
    Claim("000", "simply adding the task losses is at least as good as uncertainty weighting",
          "Table 3: simple add 0.523 / 0.528, uncertainty loss 0.506 / 0.457", "000-no-smart",
          "000-no-smart-uncertainty", ("train.balancer",), expect="not lower", premise="without SMART"),
    Claim("000", "simply adding the task losses is at least as good as dynamic loss balancing",
          "Table 3: simple add 0.523 / 0.528, dynamic loss balancing 0.508 / 0.473", "000-no-smart",
          "000-no-smart-dynamic-balancing", ("train.balancer",), expect="not lower", premise="without SMART"),
    Claim("001", "adapters in a frozen encoder surpass the fully fine-tuned baseline",
          "\"we were able to generate a compact model that surpasses the baseline\"", "001-adapters", "001-baseline",
          ("model.freeze", "model.peft"),
          premise="3 epochs for both (the report: 10), at the report's one lr for every model, 1e-3, high for "
                  "full fine-tuning (its baseline scored 0.293 / 0.586 / -0.047; the study's 001-full-fine-tuning "
                  "row ran at 1e-4)"),
    Claim("001", "SMART lifts STS", "\"a noticeably high correlation score for the SMART model\" (0.202 against "
          "the baseline's -0.047)", "001-smart", "001-baseline", ("train.smart",), ("sts_pearson",),
          premise="3 epochs, lr 1e-3 for both"),
    Claim("001", "adapters before the layer norm beat adapters after it",
          "Table 1: adaptbefore 0.312 / 0.584 / 0.195, adaptafter 0.301 / 0.563 / -0.087", "001-adapters",
          "001-adapters-after-layer-norm", ("model.peft.adapter.placement",), premise="3 epochs (the report: 10)"),
    Claim("001", "LHUC beside the adapters can only help",
          "\"We hypothesized that learnable units can only improve a network without significant downsides\"",
          "001-adapters", "001-no-lhuc", ("model.peft",), expect="not lower",
          premise="3 epochs; the report states it as a hypothesis and gives no result without LHUC"),
    Claim("002", "cross-encoding the pair tasks beats Siamese encoding",
          "\"cross-encoding performed much better than both of the Siamese network architectures\"", "002-system",
          "002-siamese", HEADS, ("quora_acc", "sts_pearson"),
          premise="both with SMART on paraphrase, as recorded (the report's own form gives paraphrase L2)"),
    Claim("002", "a linear layer shared by every head helps",
          "\"I found slight improvement from the parameter sharing\" (Table 4: 0.747 against 0.746)", "002-system",
          "002-no-shared-layer", ("model.shared_hidden_layer",), premise="both with SMART on paraphrase"),
    Claim("002", "one shuffled order of every task's batches beats task after task",
          "Table 4: sequential batches 0.539, shuffled 0.746", "002-system", "002-sequential", ("train.schedule",),
          premise="both with SMART on paraphrase"),
    Claim("002", "leaving sentiment unregularised helps in the multitask model",
          "Table 4: SST reg'd 0.731, SST unreg'd 0.746", "002-system", "002-sst-smart", ("train.smart",),
          premise="paraphrase with SMART in both"),
    Claim("003", "30% of the encoder chosen by SAM matches training all of it",
          "\"achieve accuracy that is very close to individual full vanilla and SAM fine-tuning\"", "003-system",
          "003-no-sam", ("model.selection",), expect="close",
          premise="with mtbert's defaults where the report differs, as recorded (SAM scored per task, symmetric "
                  "KL, STS unclamped, fixed task shares)"),
    Claim("003", "PCGrad helps", "\"The extra dedicated layers and the PCGrad Update Rule were crucial elements\"",
          "003-system", "003-no-pcgrad", ("train.surgery",), premise="with mtbert's defaults, as recorded"),
    Claim("003", "sentiment augmentation (CFIMDB, Quora, STS) does not significantly raise SST",
          "\"they did not significantly increase the model accuracy on that task\" (its benefit: stability)",
          "003-system", "003-no-augmentation", ("data.augment",), ("sst_acc",), expect="close",
          premise="with mtbert's defaults, as recorded"),
    Claim("003", "the final per-task stage improves the unified model",
          "\"We could improve the accuracies even further\" (0.896 / 0.887 / 0.518 -> 0.902 / 0.889 / 0.521)",
          "003-final-stage", "003-system", (), ("sst_acc", "quora_acc", "sts_pearson"),
          premise="one epoch per head (the report: up to 30)"),
    Claim("004", "the shared relational layer helps",
          "Table 2: rrobin-full 0.498 / 0.863 / 0.762, rrobin-full+rlayer 0.501 / 0.867 / 0.802", "004-system",
          "004-no-relational-layer", HEADS),
    Claim("004", "separate optimizer steps per task beat one combined step",
          "its first design, one update for the summed losses, was replaced by a step per task", "004-system",
          "004-combined-steps", ("train.step_mode",)),
    Claim("004", "SMART (dropout off) does not help STS once all the data is used: the model without it scores at "
          "least as high", "Table 2: rrobin-full 0.762 STS, rrobin-full+smart 0.714", "004-no-relational-layer",
          "004-smart", ("train.smart",), ("sts_pearson",), expect="not lower"),
    Claim("004", "SMART (dropout off) does not help STS once all the data is used, with cross-encoded pairs",
          "Table 2: rrobin-full 0.762 STS, rrobin-full+smart 0.714", "004-cross-encoders", "004-cross-encoders-smart",
          ("train.smart",), ("sts_pearson",), expect="not lower",
          premise="cross-encoder pair heads (the report's are S-BERT's) and the ascent normalised per token, "
                  "as recorded"),
    Claim("004", "SMART helps STS when little data is used",
          "Table 2: rrobin 0.583 STS, rrobin+smart 0.680", "004-round-robin-smart", "004-round-robin",
          ("train.smart",), ("sts_pearson",),
          premise="little data as the report's rrobin: equal batches to the smallest task, 6,040 examples of each "
                  "(the report's Quora had 283k pairs, ours 14,061)"),
)


def load(root: Path, rows) -> dict[str, list[dict]]:
    found = {}
    for name in rows:
        records = [{**json.loads(p.read_text(encoding="utf-8")), "record_dir": str(p.parent)}
                   for p in sorted((root / name).glob("seed*/record.json"))]
        if records:
            found[name] = records
    return found


def values(records: list[dict], key: str) -> list[float]:
    return [r["best"][key] for r in records if key in r["best"]]


def tried_a_grid(record: dict) -> bool:
    """Whether the run tried several learning rates for a task (the reference's seed 0): its wall time is
    not one run's."""
    return any(len(runs) > 1 for runs in record.get("tried", {}).values())


def rates_tried(record: dict) -> str:
    """How many learning rates a grid run tried per task: "3", or "3-5" where widening differed by task."""
    counts = sorted(len(runs) for runs in record["tried"].values())
    return str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]}"


def mean_sd(numbers: list[float]) -> tuple[float, float | None]:
    return statistics.mean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None


def cell(numbers: list[float]) -> str:
    mean, sd = mean_sd(numbers)
    return f"{mean:.3f}" if sd is None else f"{mean:.3f} ± {sd:.3f}"


def without_stale(found: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], dict[str, list[int]]]:
    """The records that still describe their row, and the seeds left out: a grid run's later seeds train
    at the rates its seed 0 chose, so once seed 0's widened grid chooses others they measure another
    configuration (benchmarks/study.py runs them again) and must not enter the mean."""
    kept, stale = {}, {}
    for name, records in found.items():
        first = next((r for r in records if r.get("seed") == 0 and "learning_rates" in r), None)
        old = [r for r in records if first is not None and r is not first and "learning_rates" in r
               and r["learning_rates"] != first["learning_rates"]]
        kept[name] = [r for r in records if r not in old]
        if old:
            stale[name] = sorted(r["seed"] for r in old)
    return kept, stale


def table(found: dict[str, list[dict]], stale: dict[str, list[int]] | None = None) -> str:
    rows = []
    for name, records in found.items():
        cells = [name, str(len(records))] + [cell(values(records, key)) for key in METRICS]
        grids = [r for r in records if tried_a_grid(r)]
        timed = [r for r in records if r not in grids] or records
        cells.append(f"{statistics.mean(r['wall_seconds'] for r in timed) / 60:.1f} min")
        cells.append(f"{statistics.mean(r['train_tokens_per_second'] for r in records):,.0f}")
        cells.append(f"{records[0]['parameters'].get('tunable', 0):,} / {records[0]['parameters'].get('stored', 0):,}")
        notes = ["smoke"] if any(r["smoke"] for r in records) else []
        if records[0].get("runner") == "final-stage":
            notes.append("time: the stage alone, on top of its system's run")
        notes += [f"seed {r['seed']} tried {rates_tried(r)} rates per task in {r['wall_seconds'] / 60:.0f} min"
                  for r in grids]
        if stale and name in stale:
            notes.append(f"seed(s) {', '.join(map(str, stale[name]))} left out: run at rates seed 0 no longer "
                         f"chooses, to be run again")
        cells.append("; ".join(notes))
        rows.append(cells)
    return markdown_table(["row", "seeds", "SST acc", "Quora acc", "STS r", "composite", "time per run", "tok/s",
                           "trainable / stored", "note"], rows)


def noise(found: dict, a: str, b: str, key: str) -> tuple[float | None, str]:
    """Two seed standard deviations for a difference between rows a and b, and where it came from."""
    sds = [(name, mean_sd(values(found[name], key))[1]) for name in (a, b)]
    known = [sd for _, sd in sds if sd is not None]
    if len(known) == 2:
        return 2 * math.sqrt((known[0] ** 2 + known[1] ** 2) / 2), "pooled sd of both rows"
    if known:
        return 2 * known[0], f"sd of {next(n for n, sd in sds if sd is not None)}"
    sd = seed_noise(found, key)
    if sd is not None:
        return 2 * sd, "one seed sd pooled over the rows with seeds"
    return None, "no seed spread measured"


TASKS = ("sst", "quora", "sts")
SAMPLES = 2000  # bootstrap replicates: the interval's ends move by about 0.001 between draws at this count


def dev_data_dir() -> Path | None:
    """The dev labels the bootstrap scores against: $MTBERT_DATA_DIR, else the data beside the checkout."""
    path = Path(os.environ.get("MTBERT_DATA_DIR") or REPO.parent / "shared" / "data")
    return path if (path / "sst-dev.csv").exists() or (path / "ids-sst-dev.csv").exists() else None


@functools.lru_cache(maxsize=None)
def _bootstrap(system: tuple[str, ...], other: tuple[str, ...], data_dir: str) -> dict[str, Interval]:
    return compare_prediction_dirs([Path(d) / "predictions" for d in system], [Path(d) / "predictions" for d in other],
                                   TASKS, Path(data_dir), SAMPLES)


def paired(found: dict, system: str, other: str) -> dict[str, Interval] | None:
    """The paired bootstrap of row ``system`` against row ``other`` over dev examples and seeds (metric key
    and "composite" -> interval of system minus other), or None where a record's predictions or the dev
    labels are missing."""
    data_dir = dev_data_dir()
    dirs = [tuple(r.get("record_dir", "") for r in found[name]) for name in (system, other)]
    if data_dir is None or any(not d or not (Path(d) / "predictions").is_dir() for group in dirs for d in group):
        return None
    try:
        return _bootstrap(dirs[0], dirs[1], str(data_dir))
    except (OSError, ValueError):
        return None


def interval_verdict(expect: str, interval: Interval) -> str:
    if expect == "close":
        return "holds" if abs(interval.difference) <= CLOSE or not interval.excludes_zero else "does not hold"
    if expect == "not lower":
        return "does not hold" if interval.high < 0 else "holds"
    if interval.low > 0:
        return "holds"
    return "does not hold" if interval.high < 0 else "within noise"


def verdict(expect: str, diff: float, margin: float | None) -> str:
    if margin is None:
        return "not judged"
    if expect == "close":
        return "holds" if abs(diff) <= max(margin, CLOSE) else "does not hold"
    if expect == "not lower":
        return "holds" if diff >= -margin else "does not hold"
    if diff > margin:
        return "holds"
    return "does not hold" if diff < -margin else "within noise"


def claim_verdicts(found: dict, claim: Claim) -> list[tuple[str, float, float, float | None, str, str]]:
    """Per metric of a claim whose rows have run: (metric, system mean, other mean, two sd, the bound's
    source, verdict). The verdict is the paired bootstrap's where it can be computed (its interval is then
    the source), else the seed-noise rule's."""
    out = []
    intervals = paired(found, claim.system, claim.other)
    for key in claim.metrics:
        a, b = statistics.mean(values(found[claim.system], key)), statistics.mean(values(found[claim.other], key))
        margin, source = noise(found, claim.system, claim.other, key)
        if intervals is not None:
            interval = intervals[key]
            out.append((key, a, b, margin, f"95% interval [{interval.low:+.3f}, {interval.high:+.3f}]",
                        interval_verdict(claim.expect, interval)))
        else:
            out.append((key, a, b, margin, source, verdict(claim.expect, a - b, margin)))
    return out


def short_of_seeds(found: dict, claim: Claim) -> list[str]:
    """The claim's rows with fewer than three seeds, where a verdict is "within noise": the study's rule
    runs three wherever a difference is within noise."""
    if not any(v[-1] == "within noise" for v in claim_verdicts(found, claim)):
        return []
    return sorted(name for name in (claim.system, claim.other) if len(found[name]) < 3)


def rows_needing_seeds(found: dict) -> set[str]:
    """Every row some claim's seed rule asks more seeds of (see ``short_of_seeds``)."""
    return {name for claim in CLAIMS if claim.system in found and claim.other in found
            for name in short_of_seeds(found, claim)}


def claim_head(claim: Claim) -> str:
    """The claim as its report makes it, the report's words, and where the study's test differs."""
    premise = f"; here: {claim.premise}" if claim.premise else ""
    return f"- **{claim.report}**, {claim.text} ({claim.quote}{premise})"


def claim_line(found: dict, claim: Claim) -> str:
    missing = [name for name in (claim.system, claim.other) if name not in found]
    if missing:
        return f"{claim_head(claim)}: not run yet ({', '.join(missing)})."
    parts, verdicts = [], []
    for key, a, b, margin, source, judged in claim_verdicts(found, claim):
        verdicts.append(judged)
        if source.startswith("95% interval"):
            bound = source + (f"; close: within {CLOSE} or an interval that holds zero" if claim.expect == "close" else "")
        else:
            bound = f"2 sd = {margin:.3f}, {source}" if margin is not None else source
            if claim.expect == "close" and margin is not None:
                bound = f"close: within {max(margin, CLOSE):.3f}, the larger of {CLOSE} and {bound}"
        parts.append(f"{METRICS[key]} {a:.3f} ({claim.system}) vs {b:.3f} ({claim.other}), {a - b:+.3f} ({bound})")
    overall = verdicts[0] if len(set(verdicts)) == 1 else "partly: " + ", ".join(
        f"{METRICS[k]} {v}" for k, v in zip(claim.metrics, verdicts))
    seeds = f"{len(found[claim.system])} + {len(found[claim.other])} seeds"
    more = short_of_seeds(found, claim)
    rule = f" Within noise: the plan runs 3 seeds of {', '.join(more)}." if more else ""
    return f"{claim_head(claim)}: **{overall}**. {'; '.join(parts)}; {seeds}.{rule}"


def welch_t(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return (statistics.mean(a) - statistics.mean(b)) / se if se > 0 else None


def per_task(found: dict, ours: str, theirs: str) -> tuple[list[str], list[str]]:
    """Each task and the composite, row ``ours`` against row ``theirs``: (the lines, the tasks behind)."""
    lines, behind = [], []
    intervals = paired(found, ours, theirs)
    for key in ("sst_acc", "quora_acc", "sts_pearson", "composite"):
        a, b = values(found[ours], key), values(found[theirs], key)
        diff = statistics.mean(a) - statistics.mean(b)
        if diff <= 0 and key != "composite":
            behind.append(METRICS[key])
        if intervals is not None:
            interval = intervals[key]
            lines.append(f"{METRICS[key]} {cell(a)} against {cell(b)} ({diff:+.3f}, 95% interval "
                         f"[{interval.low:+.3f}, {interval.high:+.3f}])")
            continue
        t = welch_t(a, b)
        lines.append(f"{METRICS[key]} {cell(a)} against {cell(b)} ({diff:+.3f}"
                     + (f", Welch's t {t:.1f})" if t is not None else ")"))
    return lines, behind


def against_reference(found: dict) -> str:
    if "quickstart" not in found or "hf-reference" not in found:
        return "The quickstart against the tuned transformers reference: not run yet."
    lines, behind = per_task(found, "quickstart", "hf-reference")
    rates = found["hf-reference"][0].get("learning_rates", {})
    tried = found["hf-reference"][0].get("tried", {})
    edge = [task for task, lr in rates.items() if len(tried.get(task, [])) > 1 and lr == max(r["lr"] for r in tried[task])]
    head = ("The quickstart's mean is ahead of the tuned transformers reference's on every task"
            if not behind else f"The quickstart's mean is **not** ahead of the tuned transformers reference on "
            f"{', '.join(behind)}")
    return (f"{head} ({len(found['quickstart'])} and {len(found['hf-reference'])} seeds): " + "; ".join(lines)
            + ". The reference's learning rates, chosen per task on seed 0's dev scores: "
            + ", ".join(f"{task} {lr:g}" for task, lr in rates.items()) + "."
            + (f" For {', '.join(edge)} that is the grid's highest rate: a wider grid might lift the reference."
               if edge else ""))


def against_former_recipe(found: dict) -> str:
    """The quickstart against the recipe it replaced, so the decision's gain stays in view."""
    if "quickstart" not in found or FORMER_RECIPE not in found:
        return f"The quickstart against the recipe it replaced ({FORMER_RECIPE}): not run yet."
    lines, _ = per_task(found, "quickstart", FORMER_RECIPE)
    return (f"The quickstart against the recipe it replaced ({FORMER_RECIPE}: one shuffled stream, a cosine STS "
            f"head; {len(found['quickstart'])} and {len(found[FORMER_RECIPE])} seeds): " + "; ".join(lines) + ".")


def against_trained_embeddings(found: dict) -> str:
    """The quickstart (embedding layer fixed) against the same recipe with it trained: its time, and whether
    it scores the same (no task lower, judged as the claims are: a 95% interval below zero, or a mean lower
    by more than two seed sds where the predictions are not at hand; the claims' rule for a real
    difference), the condition on which the study made the cheaper one the quickstart."""
    if "quickstart" not in found or TRAINED_EMBEDDINGS not in found:
        return f"The quickstart against the same recipe with the embedding layer trained ({TRAINED_EMBEDDINGS}): not run yet."
    parts, _ = per_task(found, "quickstart", TRAINED_EMBEDDINGS)
    same = Claim("", "scores the same", "", "quickstart", TRAINED_EMBEDDINGS, ("model.freeze",), tuple(METRICS),
                 expect="not lower")
    lower = [METRICS[key] + (" (not judged)" if judged == "not judged" else "")
             for key, *_, judged in claim_verdicts(found, same) if judged != "holds"]
    minutes = [statistics.mean(r["wall_seconds"] for r in found[row]) / 60 for row in ("quickstart", TRAINED_EMBEDDINGS)]
    judged = "is lower on no task" if not lower else f"scores lower on {', '.join(lower)}"
    return (f"The quickstart (the embedding layer fixed) against the same recipe with it trained ({TRAINED_EMBEDDINGS}, "
            f"report 004's system as published; {len(found['quickstart'])} and {len(found[TRAINED_EMBEDDINGS])} seeds): "
            f"{minutes[0]:.1f} min a run against {minutes[1]:.1f} ({minutes[0] / minutes[1] - 1:+.0%}); it {judged}: "
            + "; ".join(parts) + ".")


SEED_SD = "the composite's sd pooled over the mtbert rows with 2+ seeds"


def seed_noise(found: dict, key: str = "composite") -> float | None:
    """One seed sd of a metric at this budget, pooled over every mtbert row with 2+ seeds (None if no row
    has them): one row's three seeds can agree by chance (the quickstart's once did to 0.0002), which
    would make any single-seed row that lands a hair away from it look like a real difference."""
    variances = [statistics.variance(values(records, key)) for records in found.values()
                 if len(records) >= 2 and records[0].get("runner", "mtbert") == "mtbert"]
    return math.sqrt(statistics.mean(variances)) if variances else None


# Rows whose cost includes other rows' runs: a distilled student's teachers (trained once, seed 0), a
# soup's ingredients (SOUP_SIZE runs of the row it averages).
TEACHERS_ROW = "teachers"
SOUPS = {"distilled-soup": "distilled", "quickstart-soup": "quickstart-shared-init"}
SOUP_SIZE = 3  # the runs one soup averages
NOT_CANDIDATES = ("quickstart", "hf-reference", TEACHERS_ROW)


def run_minutes(found: dict, name: str) -> float:
    """What one run of a row costs from scratch, in minutes: its own wall time, plus its teachers' (seed 0)
    for a distilled row, plus its ingredients' (SOUP_SIZE runs at their mean time) for a soup."""
    minutes = statistics.mean(r["wall_seconds"] for r in found[name]) / 60
    if name in SOUPS and SOUPS[name] in found:
        minutes += SOUP_SIZE * statistics.mean(r["wall_seconds"] for r in found[SOUPS[name]]) / 60
        name = SOUPS[name]
    if name.startswith("distilled") and TEACHERS_ROW in found:
        minutes += sum(r["wall_seconds"] for r in found[TEACHERS_ROW] if r["seed"] == 0) / 60
    return minutes


def recipe_decision(found: dict) -> str:
    """A row replaces the quickstart only when the paired bootstrap's 95% interval of its composite gain
    lies above zero (the seed-noise rule where the predictions are not at hand), at 3 seeds."""
    if "quickstart" not in found or len(found["quickstart"]) < 2:
        return "The recipe decision waits for the quickstart's seeds."
    base, _ = mean_sd(values(found["quickstart"], "composite"))
    sd = seed_noise(found)
    base_time = run_minutes(found, "quickstart")
    better, judged_by_sd = [], []
    for name, records in found.items():
        if (name in NOT_CANDIDATES or TWINS.get(name) == "quickstart"
                or records[0].get("runner", "mtbert") not in ("mtbert", "soup")):
            continue
        mean = statistics.mean(values(records, "composite"))
        intervals = paired(found, name, "quickstart")
        if intervals is None:
            judged_by_sd.append(name)
            ahead, gain = mean > base + sd, f"{mean - base:+.3f}"
        else:
            ahead, gain = intervals["composite"].low > 0, str(intervals["composite"])
        if ahead:
            cost = run_minutes(found, name) / base_time
            better.append(f"{name} ({mean:.3f}, {gain}, {len(records)} seed(s), {cost:.1f}x the time)")
    same = [name for name, twin in TWINS.items() if twin == "quickstart" and name in found]
    note = (f" ({', '.join(same)} trains the quickstart's own config, so it is not a candidate.)" if same else "")
    rule = ("a composite gain over the quickstart whose paired-bootstrap 95% interval lies above zero"
            + (f" (where a row's dev predictions are not at hand: a mean above the quickstart's {base:.3f} + "
               f"{sd:.3f}, {SEED_SD})" if judged_by_sd else ""))
    if not better:
        return f"No row run so far has {rule}; the quickstart stays the recipe.{note}"
    return (f"Rows with {rule}: " + "; ".join(better)
            + f". A row with fewer than 3 seeds needs them before it replaces the quickstart.{note}")


# The rows built to beat one tuned single-task model per task, set against that reference one by one.
ONE_AGAINST_THREE = ("teachers", "distilled", "distilled-fixed-weight", "distilled-cosine-sts", "distilled-soup", "quickstart-shared-init",
                     "quickstart-soup", "quickstart-annealed-sampling", "quickstart-transformer-heads")
TARGET_GAIN = 0.01  # the composite gain over the reference a recipe must show, its interval above zero


def against_reference_rows(found: dict) -> str:
    """Each row of ONE_AGAINST_THREE that has run, against the tuned transformers reference: every task and
    the composite with its paired-bootstrap interval, whether it is one model, and its cost from scratch."""
    if "hf-reference" not in found:
        return ""
    lines = []
    for name in ONE_AGAINST_THREE:
        if name not in found:
            continue
        parts, behind = per_task(found, name, "hf-reference")
        intervals = paired(found, name, "hf-reference")
        gain = statistics.mean(values(found[name], "composite")) - statistics.mean(values(found["hf-reference"], "composite"))
        met = (intervals is not None and gain >= TARGET_GAIN and intervals["composite"].low > 0 and not behind)
        what = "three models, one per task" if name == TEACHERS_ROW else "one model"
        verdict_text = ("meets the target" if met else "does not meet the target") + (
            f" ({len(found[name])} seed(s); the target needs 3)" if met and len(found[name]) < 3 else "")
        lines.append(f"- **{name}** ({what}, {run_minutes(found, name):.1f} min from scratch; {verdict_text}): "
                     + "; ".join(parts) + (f"; behind the reference on {', '.join(behind)}" if behind else "") + ".")
    if not lines:
        return ""
    return (f"Against the tuned transformers reference (one model per task), the target being a composite gain of at "
            f"least {TARGET_GAIN} whose 95% interval lies above zero with no task's mean below the reference's:\n\n"
            + "\n".join(lines))


def report(found: dict) -> str:
    found, stale = without_stale(found)
    claims = "\n".join(claim_line(found, claim) for claim in CLAIMS)
    parts = [table(found, stale), against_reference(found), against_reference_rows(found), against_former_recipe(found),
             against_trained_embeddings(found), "Each report's main claims, here:", claims, recipe_decision(found)]
    return "\n\n".join(part for part in parts if part)


def write_section(path: Path, text: str) -> None:
    """Replaces what lies between the study markers in ``path`` (a docs page) with ``text``."""
    page = path.read_text(encoding="utf-8")
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} markers to write the study between")
    head, rest = page.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")
