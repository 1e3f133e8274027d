"""The five reports' recipes (recipes/papers/): every variant builds, and every report's CPU-scale
system trains end to end (shrunk to a tiny encoder and 24 examples per split here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtbert.config import ConfigError, load_config, recipe_variants
from mtbert.train import Trainer
from mtbert.train.builder import build_model
from test_train_cli import PREDICTION_FILES, tiny_overrides

PAPERS = Path(__file__).resolve().parents[1] / "recipes" / "papers"
RECIPES = sorted(PAPERS.glob("*.yaml"))


def test_there_is_a_recipe_per_report_each_with_a_cpu_variant():
    assert [p.name[:3] for p in RECIPES] == ["000", "001", "002", "003", "004"]
    for recipe in RECIPES:
        config = load_config(recipe)
        assert config.model.name == "bert-base-uncased", recipe.name  # the reports' encoder, as published
        assert "cpu" in recipe_variants(recipe), recipe.name
        assert load_config(recipe, variants=["cpu"]).model.name == "all-MiniLM-L6-v2"


@pytest.mark.parametrize("recipe, variant", [(r.name, v) for r in RECIPES for v in recipe_variants(r) if v != "cpu"])
def test_every_ablation_builds_its_model(recipe, variant, tiny_checkpoint):
    config = load_config(PAPERS / recipe, [f"model.name={tiny_checkpoint}"], ["cpu", variant])
    assert config.name == f"{Path(recipe).stem}+cpu+{variant}"
    if config.model.init_from:
        return
    model = build_model(config)
    assert set(model.specs) == set(config.data.tasks)


@pytest.mark.parametrize("recipe", [r.name for r in RECIPES])
def test_each_reports_system_trains_end_to_end(recipe, tmp_path, tiny_checkpoint, data_dir):
    limit = 80 if recipe.startswith("003") else 24  # 003's STS augmentation needs pairs scored above 4.5
    overrides = tiny_overrides(tiny_checkpoint, data_dir, **{"train.epochs": 1, "train.tensorboard": False,
                                                            "data.shrink": 1, "data.limit": limit})
    config = load_config(PAPERS / recipe, overrides, ["cpu"])
    results = Trainer(config, tmp_path / "run").train()
    assert results["steps"] > 0 and 0 <= results["best"]["composite"] <= 1
    for name in PREDICTION_FILES:
        assert (tmp_path / "run" / "predictions" / name).exists(), name
    if recipe.startswith("003"):  # the report's final per-task stage, from the run's best model
        final = load_config(PAPERS / recipe, overrides + [f"model.init_from={tmp_path / 'run' / 'best'}"],
                            ["cpu", "final-sts"])
        stage = Trainer(final, tmp_path / "final")
        assert stage.train_tasks == ["sts"]
        assert stage.train()["steps"] > 0
        assert json.loads((tmp_path / "final" / "results.json").read_text())["best"]


def test_unknown_variants_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown variant 'gpu'; this recipe has: .*cpu"):
        load_config(RECIPES[0], variants=["gpu"])
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: plain\n")
    with pytest.raises(ConfigError, match="unknown variant 'cpu'; this recipe has: none"):
        load_config(plain, variants=["cpu"])
    with pytest.raises(ConfigError, match="variants need a recipe"):
        load_config(None, variants=["cpu"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: {cpu: 3}\n")
    with pytest.raises(ConfigError, match="variants must map names"):
        load_config(bad, variants=["cpu"])


def test_variants_apply_in_order_and_the_command_line_wins(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ntrain: {lr: 1.0e-5}\nvariants:\n  a: {train.lr: 2.0e-5, train.epochs: 7}\n"
                      "  b: {train.lr: 3.0e-5}\n")
    config = load_config(recipe, ["train.epochs=9"], ["a", "b"])
    assert (config.train.lr, config.train.epochs, config.name) == (3.0e-5, 9, "r+a+b")
    assert "variants" not in config.to_dict()
