"""The study's report from records: the noise rule, the verdicts, the claims, the reference comparison and
the recipe decision are computed from the numbers given, and the docs section is replaced in place."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import study_report  # noqa: E402
from study_report import CLAIMS, Claim, claim_line, recipe_decision, verdict, write_section  # noqa: E402


def records(*composites, sst=None, minutes=10.0, runner="mtbert"):
    return [{"best": {"composite": c, "sst_acc": sst[i] if sst else c, "quora_acc": c, "sts_pearson": c}, "seed": i,
             "wall_seconds": minutes * 60, "train_tokens_per_second": 1000.0, "runner": runner,
             "parameters": {"tunable": 1, "stored": 2}, "smoke": False, "learning_rates": {"sst": 2e-5}}
            for i, c in enumerate(composites)]


def test_verdicts_follow_the_two_sd_rule():
    assert verdict("higher", 0.03, 0.02) == "holds"
    assert verdict("higher", 0.01, 0.02) == "within noise"
    assert verdict("higher", -0.03, 0.02) == "does not hold"
    assert verdict("close", 0.008, 0.002) == "holds"  # within the 0.01 floor
    assert verdict("close", 0.03, 0.02) == "does not hold"
    assert verdict("not lower", -0.01, 0.02) == "holds"
    assert verdict("higher", 0.5, None) == "not judged"


def test_a_claim_uses_pooled_noise_and_names_its_numbers():
    found = {"a": records(0.80, 0.81, 0.82), "b": records(0.70, 0.71, 0.72)}
    line = claim_line(found, Claim("9", "a beats b", "", "a", "b", ()))
    assert "**holds**" in line and "0.810 (a) vs 0.710 (b), +0.100 (2 sd = 0.020, pooled sd of both rows)" in line
    close = claim_line({"a": records(0.80, 0.81, 0.82), "b": records(0.805)}, Claim("9", "t", "", "a", "b", (), expect="close"))
    assert "**holds**" in close and "(close: within 0.020, the larger of 0.01 and 2 sd = 0.020, sd of a)" in close
    floor = claim_line({"a": records(0.750, 0.751, 0.752), "b": records(0.758)}, Claim("9", "t", "", "a", "b", (), expect="close"))
    assert "**holds**" in floor and "-0.007 (close: within 0.010, the larger of 0.01 and 2 sd = 0.002, sd of a)" in floor
    missing = claim_line(found, Claim("9", "t", "", "a", "c", ()))
    assert "not run yet (c)" in missing


def test_one_seed_rows_borrow_noise_pooled_over_the_rows_with_seeds():
    found = {"quickstart": records(0.751, 0.751, 0.751), "spread": records(0.74, 0.75, 0.76),
             "a": records(0.80), "b": records(0.79)}
    line = claim_line(found, Claim("9", "t", "", "a", "b", ()))
    # 0.01 < 2 x 0.0071 (pooled); the quickstart's own sd of 0 would have called it a holding claim
    assert "within noise" in line and "pooled over the rows with seeds" in line
    assert "not judged" in claim_line({"a": records(0.80), "b": records(0.79)}, Claim("9", "t", "", "a", "b", ()))


def test_the_reference_comparison_names_the_tasks_behind():
    found = {"quickstart": records(0.75, 0.76, sst=[0.40, 0.41]),
             "hf-reference": records(0.70, 0.71, sst=[0.50, 0.51], runner="transformers")}
    text = study_report.against_reference(found)
    assert "**not** ahead of the tuned transformers reference on SST" in text and "sst 2e-05" in text
    found["hf-reference"][0]["tried"] = {"sst": [{"lr": 2e-5}, {"lr": 1e-5}]}
    assert "For sst that is the grid's highest rate" in study_report.against_reference(found)


def test_a_learning_rate_grid_is_not_counted_as_one_runs_time():
    grid = records(0.70, 0.71, runner="transformers")
    for seed, record in enumerate(grid):
        record["seed"] = seed
        record["tried"] = {"sst": [{}] * (3 if seed == 0 else 1)}
    grid[0]["wall_seconds"] = 48 * 60
    row = study_report.table({"hf-reference": grid}).splitlines()[-1]
    assert "| 10.0 min |" in row and "seed 0 tried 3 rates per task in 48 min" in row
    grid[0]["tried"]["sts"] = [{}] * 5  # widened for one task
    assert "seed 0 tried 3-5 rates per task" in study_report.table({"hf-reference": grid}).splitlines()[-1]


def test_the_recipe_decision_takes_only_rows_beyond_one_sd(monkeypatch):
    found = {"quickstart": records(0.74, 0.75, 0.76), "close": records(0.755), "better": records(0.78, minutes=25),
             "hf-reference": records(0.9, runner="transformers")}
    decision = recipe_decision(found)
    assert "better (0.780, +0.030, 1 seed(s), 2.5x the time)" in decision
    assert "close" not in decision and "hf-reference" not in decision
    assert "stays the recipe" in recipe_decision({"quickstart": records(0.74, 0.75, 0.76)})
    monkeypatch.setattr(study_report, "TWINS", {"twin": "quickstart", "other": "another-row"})
    twin = recipe_decision({"quickstart": records(0.74, 0.75, 0.76), "twin": records(0.77, 0.78, 0.79),
                            "other": records(0.74)})
    assert "stays the recipe" in twin and "twin trains the quickstart's own config" in twin and "other" not in twin


def test_the_decision_reads_seed_noise_pooled_over_rows_not_the_quickstarts_alone():
    found = {"quickstart": records(0.751, 0.751, 0.751), "spread": records(0.74, 0.75, 0.76),
             "hair": records(0.752), "hf-reference": records(0.7, 0.8, runner="transformers")}
    assert study_report.seed_noise(found) == pytest.approx(0.01 / 2 ** 0.5)  # both variances, the reference's not
    assert "stays the recipe" in recipe_decision(found)  # +0.001 is not a seed sd above


def test_the_quickstart_is_set_against_the_recipe_it_replaced():
    found = {"quickstart": records(0.75, 0.76, sst=[0.49, 0.50])}
    assert "not run yet" in study_report.against_former_recipe(found)
    found["shuffled-cosine"] = records(0.74, 0.75, sst=[0.47, 0.48])
    text = study_report.against_former_recipe(found)
    assert "(shuffled-cosine: one shuffled stream" in text and "SST 0.495 ± 0.007 against 0.475 ± 0.007 (+0.020" in text


def test_every_claim_names_rows_of_the_study():
    sys.path.insert(0, str(Path(study_report.__file__).parent))
    from study import ROWS

    assert {name for claim in CLAIMS for name in (claim.system, claim.other)} <= set(ROWS)


def test_the_docs_section_is_replaced_between_its_markers(tmp_path):
    page = tmp_path / "results.md"
    page.write_text(f"# R\n\n{study_report.BEGIN}\nold\n{study_report.END}\n\n## Next\n", encoding="utf-8")
    write_section(page, "new table")
    assert page.read_text() == f"# R\n\n{study_report.BEGIN}\nnew table\n{study_report.END}\n\n## Next\n"
    page.write_text("no markers", encoding="utf-8")
    with pytest.raises(SystemExit, match="markers"):
        write_section(page, "x")


def test_a_claim_within_noise_asks_three_seeds_of_its_short_rows():
    found = {"004-system": records(0.750, 0.752, 0.754), "004-no-relational-layer": records(0.749)}
    claim = next(c for c in CLAIMS if c.other == "004-no-relational-layer")
    assert "**within noise**" in claim_line(found, claim)  # +0.003 against 2 sd = 0.004
    assert "the plan runs 3 seeds of 004-no-relational-layer." in claim_line(found, claim)
    assert study_report.rows_needing_seeds(found) == {"004-no-relational-layer"}
    found["004-no-relational-layer"] = records(0.70)
    assert study_report.rows_needing_seeds(found) == set()  # a clear difference: one seed stands


def test_later_seeds_at_rates_seed_0_no_longer_chooses_stay_out_of_the_mean():
    grid = records(0.70, 0.60, 0.71, runner="transformers")
    for seed, record in enumerate(grid):
        record["seed"], record["tried"] = seed, {"sst": [{}]}
        record["learning_rates"] = {"sst": 8e-5 if seed in (0, 2) else 5e-5}  # seed 0 widened, seed 2 reran
    found, stale = study_report.without_stale({"hf-reference": grid})
    assert [r["seed"] for r in found["hf-reference"]] == [0, 2] and stale == {"hf-reference": [1]}
    row = study_report.report({"hf-reference": grid}).splitlines()[2]
    assert "| hf-reference | 2 | 0.705 ± 0.007 |" in row and "seed(s) 1 left out" in row
    assert study_report.without_stale({"quickstart": records(0.7, 0.8)})[1] == {}  # no learning_rates: nothing to judge


def test_the_quickstart_is_judged_on_scoring_as_its_trained_embeddings_version_does_and_on_time():
    found = {"quickstart": records(0.749, 0.751, 0.753, minutes=8.0)}
    assert "(quickstart-trained-embeddings): not run yet" in study_report.against_trained_embeddings(found)
    found["quickstart-trained-embeddings"] = records(0.750, 0.752, 0.754)
    text = study_report.against_trained_embeddings(found)
    assert "8.0 min a run against 10.0 (-20%)" in text and "is lower on no task" in text
    found["quickstart"] = records(0.730, 0.732, 0.734, minutes=8.0)
    assert "scores lower on SST, Quora, STS, composite" in study_report.against_trained_embeddings(found)


def test_with_dev_predictions_the_decision_and_verdicts_take_the_paired_bootstrap(tmp_path, data_dir, monkeypatch):
    """A row right on 8% more dev examples of every task than the quickstart has an interval above zero and
    becomes a candidate; one that predicts as the quickstart does is not, and its claim is within noise."""
    from mtbert.evaluate import prediction_file_name, write_predictions
    from mtbert.evaluate.bootstrap import dev_gold
    from mtbert.tasks import get_task

    monkeypatch.setenv("MTBERT_DATA_DIR", str(data_dir))
    specs = [get_task(t) for t in ("sst", "quora", "sts")]
    gold = dev_gold(specs, data_dir)

    def row(name, wrong_share, seeds=3):
        made = records(*([0.75] * seeds))
        for seed, record in enumerate(made):
            folder = tmp_path / name / f"seed{seed}"
            for spec in specs:
                ids, labels = gold[spec.name]
                values = labels.copy()
                cut = int(wrong_share * len(values)) + seed  # seeds differ a little
                if spec.kind == "regression":
                    values[:cut] = 5.0 - values[:cut]
                else:
                    values[:cut] = (values[:cut] + 1) % spec.num_labels
                write_predictions(folder / "predictions" / prediction_file_name(spec, "dev"), spec, ids, values.tolist())
            record["record_dir"] = str(folder)
        return made

    found = {"quickstart": row("quickstart", 0.5), "better": row("better", 0.42), "same": row("same", 0.5)}
    decision = recipe_decision(found)
    assert "better (" in decision and "same (" not in decision and "95% interval lies above zero" in decision
    claim = Claim("x", "the same helps", "", "same", "quickstart", ())
    assert "**within noise**" in claim_line(found, claim) and "95% interval [" in claim_line(found, claim)


def test_rows_built_to_beat_the_reference_are_set_against_it_with_their_whole_cost():
    found = {"hf-reference": records(0.746, 0.745, 0.747, runner="transformers"),
             "teachers": records(0.755, minutes=18.0), "distilled": records(0.757, 0.756, 0.758, minutes=10.0)}
    text = study_report.against_reference_rows(found)
    assert "**teachers** (three models, one per task, 18.0 min from scratch" in text
    # a distilled run costs its own time and its teachers' (seed 0, trained once)
    assert "**distilled** (one model, 28.0 min from scratch" in text
    assert "does not meet the target" in text  # no predictions here: no interval, so no claim of a gain
    assert study_report.against_reference_rows({"distilled": records(0.75)}) == ""
    # a soup costs its own minute, three ingredient runs (of however many the averaged row has) and the teachers
    found["distilled"] = records(*[0.756] * 9, minutes=10.0)
    found["distilled-soup"] = records(0.758, 0.757, 0.759, minutes=1.0)
    assert study_report.run_minutes(found, "distilled-soup") == pytest.approx(1.0 + 3 * 10.0 + 18.0)
