"""benchmarks/study.py at a tiny scale: a run's record and predictions are kept, its checkpoint is not, a
finished run is skipped on the next sitting, and the table and the dry-run plan are drawn from records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from lr_grid import GRID, WIDER, next_rates  # noqa: E402


def study(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "study.py"), *args], capture_output=True,
                          text=True, env=env, timeout=600, cwd=REPO)


def test_a_tiny_study_records_skips_and_tabulates(tmp_path, tiny_checkpoint, data_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "MTBERT_DATA_DIR": str(data_dir)}
    tiny = ["--set", f"model.name={tiny_checkpoint}", "--set", "data.limit=16", "--set", "train.epochs=1",
            "--set", "model.max_length=32", "--set", "train.device=cpu"]
    where = ["--root", str(tmp_path / "records"), "--runs", str(tmp_path / "runs")]
    first = study("--only", "quickstart", "--seeds", "1", *tiny, *where, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    record_dir = tmp_path / "records" / "quickstart" / "seed0"
    record = json.loads((record_dir / "record.json").read_text())
    assert record["smoke"] and record["seed"] == 0 and "composite" in record["best"]
    assert record["peak_mib"] > 0 and record["dev_per_evaluation"]
    assert record["code"] and record["code"] != "unknown"  # the commit the run came from (the checkout is a git one)
    assert record["code_per_sitting"] == [record["code"]]
    assert yaml.safe_load(record["config"])["train"]["seed"] == 0
    assert (record_dir / "predictions" / "sst-test-output.csv").exists()
    assert not (tmp_path / "runs" / "quickstart" / "seed0" / "checkpoint.pt").exists()
    again = study("--only", "quickstart", "--seeds", "1", *tiny, *where, env=env)
    assert again.returncode == 0 and "quickstart seed 0 ..." not in again.stdout  # finished: skipped
    shown = study("--table", *where, env=env)
    assert "| quickstart | 1 |" in shown.stdout and "smoke" in shown.stdout
    planned = study("--dry-run", "--only", "quickstart", "000-system", *where, env=env)
    assert "| quickstart | 0 |" not in planned.stdout and "| quickstart | 1 |" in planned.stdout  # seed 0 is done
    assert "| 000-system | 2 |" in planned.stdout and "5 runs left" in planned.stdout


def test_the_reference_and_the_final_stage_run_as_rows(tmp_path, tiny_checkpoint, data_dir):
    """The transformers reference: seed 0 tries the rate grid and later seeds reuse its choice; report 003's
    final stage starts from the system's best/ of the same seed and leaves no checkpoint behind."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "MTBERT_DATA_DIR": str(data_dir)}
    tiny = ["--set", f"model.name={tiny_checkpoint}", "--set", "train.epochs=1", "--set", "model.max_length=32",
            "--set", "train.device=cpu"]
    where = ["--root", str(tmp_path / "records"), "--runs", str(tmp_path / "runs")]
    reference = study("--only", "hf-reference", "--seeds", "2", "--set", "data.limit=48", *tiny, *where, env=env)
    assert reference.returncode == 0, reference.stderr[-3000:]
    # 200 examples hold STS pairs above 4.5, which 003's sentiment augmentation needs
    final = study("--only", "003-system", "003-final-stage", "--seeds", "1", "--set", "data.limit=200", *tiny, *where,
                  env=env)
    assert final.returncode == 0, final.stderr[-3000:]
    records = tmp_path / "records"
    first = json.loads((records / "hf-reference" / "seed0" / "record.json").read_text())
    second = json.loads((records / "hf-reference" / "seed1" / "record.json").read_text())
    assert all(len(first["tried"][task]) >= 3 and not next_rates(first["tried"][task]) for task in ("sst", "quora", "sts"))
    assert all(len(second["tried"][task]) == 1 for task in ("sst", "quora", "sts"))
    assert second["learning_rates"] == first["learning_rates"]
    for task, rate in first["learning_rates"].items():  # the chosen rate is the best one on dev
        assert rate == max(first["tried"][task], key=lambda r: r["dev"])["lr"]
    assert (records / "hf-reference" / "seed1" / "predictions" / "para-test-output.csv").exists()
    final = json.loads((records / "003-final-stage" / "seed0" / "record.json").read_text())
    config = yaml.safe_load(final["config"])
    assert config["model"]["trainable_heads"] == ["sts"]
    assert config["model"]["init_from"].endswith(os.path.join("003-final-stage", "seed0-quora", "best"))
    assert not list((tmp_path / "runs").glob("**/checkpoint.pt"))
    shown = [line for line in study("--table", *where, env=env).stdout.splitlines() if "| 003-final-stage | 1 |" in line]
    assert shown and "the stage alone" in shown[0]  # its time is not the whole system's


def test_twin_rows_train_their_twins_config():
    """study_report.TWINS names rows that train another row's config (a twin of the quickstart is kept out
    of the recipe decision): they must stay the same config (all but the name and how best/ is saved)."""
    from study import ROWS, row_config
    from study_report import FORMER_RECIPE, TRAINED_EMBEDDINGS, TWINS

    def config(name: str) -> dict:
        values = row_config(name)
        values.pop("model.save")
        return values

    assert FORMER_RECIPE in ROWS and TRAINED_EMBEDDINGS in ROWS
    for name, twin in TWINS.items():
        assert config(name) == config(twin), name
    assert config(FORMER_RECIPE) != config("quickstart")
    trained, quickstart = config(TRAINED_EMBEDDINGS), config("quickstart")
    assert (trained.pop("model.freeze"), quickstart.pop("model.freeze")) == ("none", "embeddings")
    assert trained == quickstart  # the embedding layer is all that differs


def test_every_claim_compares_rows_that_differ_only_in_the_method_it_is_about():
    """Like with like: the two rows of a claim differ in the config fields its method names and in
    nothing else (same epochs, learning rate, batch, length and data), and they do differ there."""
    from study import ROWS, row_config
    from study_report import CLAIMS

    for claim in CLAIMS:
        rows = [ROWS[claim.system], ROWS[claim.other]]
        if any(row.runner != "mtbert" for row in rows):
            assert claim.system == "003-final-stage", claim.text  # the one staged row, built on its system's run
            continue
        a, b = row_config(claim.system), row_config(claim.other)
        differ = sorted(key for key in set(a) | set(b) if a.get(key, "(unset)") != b.get(key, "(unset)"))
        assert differ, f"{claim.text}: {claim.system} and {claim.other} train the same config"
        outside = [key for key in differ if not key.startswith(claim.method)]
        assert not outside, f"{claim.text}: {claim.system} and {claim.other} also differ in {outside}"
        assert claim.quote and claim.report in ("000", "001", "002", "003", "004")


def test_every_record_ran_the_config_its_row_defines_now():
    """A recipe that changes (a report's form taken) must not leave records that measured something else
    under its rows: each recorded run's config is its row's current one, field by field."""
    import json

    from study import RESULTS, ROWS, config_drift

    checked = 0
    for name, row in ROWS.items():
        if row.runner not in ("mtbert", "final-stage"):
            continue
        for path in sorted((RESULTS / "study" / name).glob("seed*/record.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            assert config_drift(name, record) == [], f"{path}: the row's config is not what it ran"
            checked += 1
    assert checked >= 40


def test_config_drift_names_a_changed_field():
    import json

    from study import RESULTS, config_drift

    record = json.loads((RESULTS / "study" / "004-combined-steps" / "seed0" / "record.json").read_text())
    assert config_drift("004-combined-steps", record) == []
    assert config_drift("004-system", record) == ["train.step_mode: 'combined' -> 'separate'"]


def test_the_plan_estimates_a_row_from_the_rate_its_unfinished_run_logged(tmp_path):
    import study as plan

    root, runs = tmp_path / "records", tmp_path / "runs"
    guess = plan.estimate_hours("003-no-pcgrad", plan.ROWS["003-no-pcgrad"], 0, root, runs)
    log = runs / "003-system" / "seed0" / "train.log"
    log.parent.mkdir(parents=True)
    log.write_text("2026-12-02 19:13:29,583 INFO step 600/3624 epoch 1: mean loss 3.3746, 873 tokens/s\n"
                   "2026-12-02 19:15:27,376 INFO step 700/3624 epoch 1: mean loss 3.1899, 883 tokens/s\n")
    hours = 3 * 813_783 * 1.3 / 883 / 3600 + 0.05  # three epochs of augmented tokens at the last logged rate
    assert plan.estimate_hours("003-system", plan.ROWS["003-system"], 1, root, runs) == hours
    assert plan.estimate_hours("003-no-pcgrad", plan.ROWS["003-no-pcgrad"], 0, root, runs) == hours  # its system's
    assert guess < hours / 3  # before: the quickstart's rate, four times too fast for PCGrad's three backward passes
    smart = plan.estimate_hours("004-smart", plan.ROWS["004-smart"], 0, root, runs)
    assert plan.plain_twins(plan.ROWS["004-smart"]) == ["004-no-relational-layer"]
    (runs / "004-no-relational-layer" / "seed0").mkdir(parents=True)
    (runs / "004-no-relational-layer" / "seed0" / "train.log").write_text(
        "step 9/9 epoch 1: mean loss 1.0, 9000 tokens/s\n")
    ratio = plan.smart_step_cost()
    with_smart = 3 * 813_783 / 9000 * ratio / 3600 + 0.05  # its config without SMART, times SMART's step cost
    assert smart != with_smart
    assert plan.estimate_hours("004-smart", plan.ROWS["004-smart"], 0, root, runs) == pytest.approx(with_smart)


def test_the_plan_counts_the_tokens_an_epoch_of_the_same_recipe_took(tmp_path):
    """003's augmented epoch was 1.66x the plain data's, not the 1.3x guessed before it ran; 000's cycled
    schedule 1.48x. An unfinished row takes the largest epoch its recipe's finished rows measured."""
    import study as plan

    def record(name, tokens_per_second, seconds, epochs):
        path = tmp_path / name / "seed0" / "record.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"smoke": False, "runner": "mtbert", "wall_seconds": seconds + 60,
                                    "train_tokens_per_second": tokens_per_second, "train_seconds": seconds,
                                    "dev_per_evaluation": [{"epoch": e} for e in range(1, epochs + 1)]}))

    record("003-system", 900.0, 4500.0, 3)  # 1.35M tokens an epoch
    record("003-no-augmentation", 1000.0, 2700.0, 3)  # 0.9M
    guess = plan.estimate_hours("003-no-pcgrad", plan.ROWS["003-no-pcgrad"], 0, tmp_path, tmp_path / "runs")
    assert guess == pytest.approx(3 * 1_350_000 / 900 / 3600 + 0.05)  # the system's tokens at the system's rate
    record("000-no-smart", 5000.0, 720.0, 3)  # 1.2M tokens an epoch
    ratio = plan.smart_step_cost()
    guess = plan.estimate_hours("000-system", plan.ROWS["000-system"], 0, tmp_path, tmp_path / "runs")
    assert guess == pytest.approx(3 * 1_200_000 / 5000 * ratio / 3600 + 0.05)


def test_the_plan_prices_smart_at_the_cost_its_own_rows_measured(tmp_path):
    """A SMART row that has run (here 000-system's log, 400 against its twin's 5,000 tokens/s) sets
    SMART's cost for the rows that have not (004-smart, priced from its plain twin 004-no-relational-layer):
    12.5x, not the step-cost benchmark's guess."""
    import study as plan

    root, runs = tmp_path / "records", tmp_path / "runs"
    assert plan.smart_cost(root, runs) == plan.smart_step_cost()  # nothing has run: the benchmark's ratio
    record = root / "000-no-smart" / "seed0" / "record.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"smoke": False, "runner": "mtbert", "train_tokens_per_second": 5000.0,
                                  "train_seconds": 720.0, "wall_seconds": 780.0, "dev_per_evaluation": []}))
    assert plan.smart_cost(root, runs) == plan.smart_step_cost()  # a plain twin alone measures nothing
    for name, rate in (("000-system", 400), ("004-no-relational-layer", 9000)):
        (runs / name / "seed0").mkdir(parents=True)
        (runs / name / "seed0" / "train.log").write_text(f"step 100/1320 epoch 1: mean loss 8.2, {rate} tokens/s\n")
    assert plan.smart_cost(root, runs) == pytest.approx(12.5)
    assert plan.plain_twins(plan.ROWS["004-smart"]) == ["004-no-relational-layer"]
    guess = plan.estimate_hours("004-smart", plan.ROWS["004-smart"], 0, root, runs)
    assert guess == pytest.approx(3 * 813_783 / 9000 * 12.5 / 3600 + 0.05)


def test_the_plan_counts_only_the_steps_a_half_done_run_has_left(tmp_path):
    """000-system stopped at step 660 of 1,320 has half its time left, not all of it; a log without a
    checkpoint beside it (a run that never saved) counts whole."""
    import study as plan

    root, runs = tmp_path / "records", tmp_path / "runs"
    run = runs / "000-system" / "seed0"
    run.mkdir(parents=True)
    (run / "train.log").write_text(
        "2026-12-06 13:38:09,170 INFO step 600/1320 epoch 2: mean loss 3.4993, 400 tokens/s\n"
        "2026-12-06 13:45:08,803 INFO stopped at step 660; continue with: mtbert train --resume runs/a b\n")
    assert plan.share_left(run) == 1.0  # no checkpoint: it starts over
    (run / "checkpoint.pt").write_bytes(b"")
    assert plan.share_left(run) == pytest.approx(0.5)
    with (run / "train.log").open("a") as log:
        log.write("2026-12-06 14:19:18,672 INFO resumed runs/a b at step 990 (epoch 2, batch 110)\n")
    assert plan.share_left(run) == pytest.approx(0.25)
    left = plan.estimate_hours("000-system", plan.ROWS["000-system"], 0, root, runs)
    assert left == pytest.approx(3 * 813_783 / 400 * 0.25 / 3600 + 0.05)  # at the run's own logged rate
    early = runs / "000-system" / "seed2"  # stopped before its first progress line: the epoch line and config
    early.mkdir(parents=True)
    (early / "checkpoint.pt").write_bytes(b"")
    (early / "config.yaml").write_text("train:\n  epochs: 3\n  pretrain_epochs: 0\n")
    (early / "train.log").write_text("2026-12-06 15:08:55,793 INFO epoch 1 (cycled schedule): 440 steps; examples\n"
                                     "2026-12-06 15:14:37,415 INFO stopped at step 66; continue with: mtbert train\n")
    assert plan.share_left(early) == pytest.approx(1 - 66 / 1320)
    record = root / "000-system" / "seed1" / "record.json"  # another seed finished: it costs what that took
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"smoke": False, "runner": "mtbert", "train_tokens_per_second": 450.0,
                                  "train_seconds": 7000.0, "wall_seconds": 7200.0, "dev_per_evaluation": []}))
    assert plan.estimate_hours("000-system", plan.ROWS["000-system"], 0, root, runs) == pytest.approx(0.5)


def test_a_resumed_runs_time_counts_its_earlier_sittings(tmp_path):
    import study as plan

    assert plan.earlier_sittings_seconds(tmp_path) == 0.0  # nothing ran
    (tmp_path / "train.log").write_text(
        "2026-12-02 18:54:56,238 INFO sst train: ids-sst-train.csv: 8544 examples\n"
        "a traceback line without a time\n"
        "2026-12-02 19:21:22,874 INFO step 1000/3624 epoch 1: mean loss 2.8094, 901 tokens/s\n"
        "2026-12-02 20:00:00,000 INFO resumed runs/x at step 1000 (epoch 1, batch 1000)\n"
        "2026-12-02 20:10:00,500 INFO step 1500/3624 epoch 2: mean loss 2.1, 900 tokens/s\n")
    # 26 min 26.636 s in the first sitting, 10 min 0.5 s in the second; the 38-minute gap is not counted
    assert plan.earlier_sittings_seconds(tmp_path) == pytest.approx(1586.636 + 600.5)


def test_the_hours_between_sittings_do_not_count_though_a_sitting_logs_its_start_up_before_resuming(tmp_path):
    import study as plan

    (tmp_path / "train.log").write_text(
        "2026-12-06 15:08:52,736 INFO sst train: ids-sst-train.csv: 8544 examples\n"
        "2026-12-06 15:08:55,793 INFO epoch 1 (cycled schedule): 440 steps\n"
        "2026-12-06 15:14:37,415 INFO stopped at step 66; continue with: mtbert train --resume runs/x\n"
        # an hour and 44 minutes later, interrupted gracefully above: the next sitting loads its data first
        "2026-12-06 16:58:44,248 INFO sst train: ids-sst-train.csv: 8544 examples\n"
        "2026-12-06 16:58:48,163 INFO resumed runs/x at step 66 (epoch 0, batch 66)\n"
        "2026-12-06 17:02:05,707 INFO step 100/1320 epoch 1: mean loss 8.6022, 500 tokens/s\n"
        # killed hard after this line (no "stopped" line); the next sitting starts 20 minutes later
        "2026-12-06 17:22:09,791 INFO sst train: ids-sst-train.csv: 8544 examples\n"
        "2026-12-06 17:22:11,593 INFO sts test: sts-test-student.csv: 1725 examples\n"
        "2026-12-06 17:22:13,377 INFO resumed runs/x at step 100 (epoch 0, batch 100)\n"
        "2026-12-06 17:24:41,432 INFO step 200/1320 epoch 1: mean loss 7.0285, 518 tokens/s\n")
    first = 5 * 60 + 44.679  # 15:08:52.736 to 15:14:37.415
    second = 3 * 60 + 21.459  # 16:58:44.248 to 17:02:05.707
    third = 2 * 60 + 31.641  # 17:22:09.791 to 17:24:41.432
    assert plan.earlier_sittings_seconds(tmp_path) == pytest.approx(first + second + third)


def test_a_resumed_run_names_the_code_of_every_sitting(tmp_path):
    import study as plan

    run = tmp_path / "row" / "seed0"
    assert plan.code_per_sitting(run, "aaa1111", resume=False) == ["aaa1111"]
    assert plan.code_per_sitting(run, "bbb2222-modified", resume=True) == ["aaa1111", "bbb2222-modified"]
    assert plan.code_per_sitting(run, "ccc3333", resume=False) == ["ccc3333"]  # a fresh start forgets the old run


def test_the_plan_gives_three_seeds_to_an_ablation_within_noise(tmp_path):
    import study as plan

    for name, composites in (("004-system", (0.750, 0.752, 0.754)), ("004-no-relational-layer", (0.749,))):
        for seed, composite in enumerate(composites):
            record = tmp_path / name / f"seed{seed}" / "record.json"
            record.parent.mkdir(parents=True)
            record.write_text(json.dumps({"best": {k: composite for k in ("composite", "sst_acc", "quora_acc",
                                                                           "sts_pearson")}, "runner": "mtbert"}))
    assert plan.plan(["004-no-relational-layer"], None, tmp_path) == [("004-no-relational-layer", 1),
                                                                       ("004-no-relational-layer", 2)]
    assert plan.plan(["004-no-relational-layer"], 1, tmp_path) == []  # --seeds still says how many


def test_the_reference_runs_again_where_its_grid_widened(tmp_path):
    """A seed 0 recorded before the grid widened is not finished while its best rate is the top one; a later
    seed counts as finished only at seed 0's rates; the plan estimates seed 0 by the rates it lacks."""
    import study as plan

    def record(seed, rates, tried):
        path = tmp_path / "hf-reference" / f"seed{seed}" / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"learning_rates": rates, "tried": tried, "smoke": False, "wall_seconds": 3000.0,
                                    "best": {"composite": 0.7}, "runner": "transformers"}))

    edge = {"sst": [{"lr": lr, "dev": dev, "seconds": 600.0} for lr, dev in zip(GRID, (0.4, 0.45, 0.5))],
            "sts": [{"lr": lr, "dev": dev, "seconds": 300.0} for lr, dev in zip(GRID, (0.8, 0.85, 0.82))]}
    record(0, {"sst": GRID[-1], "sts": GRID[1]}, edge)
    record(1, {"sst": GRID[-1], "sts": GRID[1]}, {})
    row = plan.ROWS["hf-reference"]
    assert plan.plan(["hf-reference"], None, tmp_path) == [("hf-reference", 0), ("hf-reference", 1), ("hf-reference", 2)]
    assert plan.estimate_hours("hf-reference", row, 0, tmp_path, tmp_path) == pytest.approx(600 / 3600 + 0.05)  # sst only
    assert plan.finished("hf-reference", row, 1, tmp_path)  # seed 0 still at those rates
    assert plan.recorded_sittings(tmp_path / "hf-reference" / "seed0") == (3000.0, ["unknown"])  # what widening adds
    command = plan.transformers_commands("hf-reference", row, 0, tmp_path, tmp_path / "runs", [], False)[0]
    assert command[command.index("--previous") + 1] == str(tmp_path / "hf-reference" / "seed0")  # only new rates
    edge["sst"].append({"lr": WIDER[0], "dev": 0.55, "seconds": 600.0})
    edge["sst"].append({"lr": WIDER[1], "dev": 0.52, "seconds": 600.0})
    record(0, {"sst": WIDER[0], "sts": GRID[1]}, edge)  # the widened grid chose another rate for sst
    assert plan.finished("hf-reference", row, 0, tmp_path)
    assert not plan.finished("hf-reference", row, 1, tmp_path)  # seed 1 ran at the old rate: it runs again
    assert plan.plan(["hf-reference"], None, tmp_path) == [("hf-reference", 1), ("hf-reference", 2)]


def test_a_smart_claim_compares_rows_that_differ_in_smart_alone():
    """A claim about SMART must weigh a row with SMART against the same config without it: report 004's
    smart variant drops the relational layer (its rrobin-full+smart), so its twin is not 004-system."""
    from study import row_config, uses_smart
    from study_report import CLAIMS

    claims = [c for c in CLAIMS if uses_smart(c.system) != uses_smart(c.other)]
    assert {c.report for c in claims} >= {"000", "001", "004"}
    for claim in claims:
        with_smart, without = sorted((claim.system, claim.other), key=lambda n: not uses_smart(n))
        smart, plain = row_config(with_smart), row_config(without)
        assert smart.pop("train.smart.enabled") and not plain.pop("train.smart.enabled"), claim.text
        assert {k: v for k, v in smart.items() if not k.startswith("train.smart")} == {
            k: v for k, v in plain.items() if not k.startswith("train.smart")}, claim.text


def test_each_seed_of_a_soup_row_averages_its_own_three_runs(tmp_path):
    """Soup seeds must be independent draws: seed s takes seeds 3s..3s+2 of the row it averages, and
    says which of them are missing."""
    import study as plan

    row = plan.ROWS["distilled-soup"]
    for seed in (0, 1, 2):
        for s in plan.soup_ingredients(seed):
            (tmp_path / "runs" / row.after / f"seed{s}" / "best").mkdir(parents=True)
    command = plan.soup_commands("distilled-soup", row, 1, tmp_path / "records", tmp_path / "runs", [], False)[0]
    assert command[-3:] == [str(tmp_path / "runs" / row.after / f"seed{s}") for s in (3, 4, 5)]
    assert plan.ROWS[row.after].seeds >= plan.SOUP_SIZE * row.seeds  # the plan trains every ingredient
    (tmp_path / "runs" / row.after / "seed7" / "best").rmdir()
    with pytest.raises(RuntimeError, match="seeds 6-8; not found: .*seed7"):
        plan.soup_commands("distilled-soup", row, 2, tmp_path / "records", tmp_path / "runs", [], False)
