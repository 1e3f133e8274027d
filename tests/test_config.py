"""The typed config: YAML recipes, --set overrides, clear errors for unknown or ill-typed options."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtbert.config import ConfigError, load_config

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_defaults_and_overrides():
    config = load_config(None, ["train.lr=3e-5", "data.limit=10", "model.heads={sst: {pooling: mean}}",
                                "train.betas=[0.9, 0.98]"])
    assert config.train.lr == 3e-5 and isinstance(config.train.lr, float)
    assert config.data.limit == 10
    assert config.model.heads["sst"].pooling == "mean" and config.model.heads["sst"].dropout == 0.1
    assert config.train.betas == (0.9, 0.98)


def test_quickstart_recipe_loads_and_round_trips(tmp_path):
    config = load_config(RECIPES / "quickstart.yaml")
    assert config.model.name == "all-MiniLM-L6-v2" and config.data.tasks == ["sst", "quora", "sts"]
    config.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


@pytest.mark.parametrize("override,message", [
    (["train.foo=1"], "train: unknown option(s) foo"),
    (["train.lr=abc"], "train.lr: expected float"),
    (["train.epochs=2.5"], "train.epochs: expected int"),
    (["model.heads={sst: {typo: 1}}"], "model.heads.sst: unknown option(s) typo"),
    (["nonsense"], "expected key=value"),
    (["data.tasks=sst"], "data.tasks: expected a list"),
    (["train.eval_max_tokens=-1"], "train.eval_max_tokens: must be 0 (no cap) or more, got -1"),
    (["train.batch_size=0"], "train.batch_size: must be 1 or more, got 0"),
])
def test_bad_options_are_named(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(None, override)
    assert message in str(caught.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "unknown.yaml").write_text("trian:\n  lr: 1\n")
    with pytest.raises(ConfigError, match=r"unknown.yaml: : unknown option\(s\) trian|unknown option\(s\) trian"):
        load_config(tmp_path / "unknown.yaml")


def test_data_dir_precedence_flag_then_set_then_environment_then_file_then_default(monkeypatch, tmp_path):
    from mtbert.config import DATA_DIR_ENV, describe_data_dirs, resolve_data_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    (tmp_path / "r.yaml").write_text("data: {dir: from-file}\n")
    assert load_config(None).resolved_data_dir() == tmp_path / "data"
    assert load_config(tmp_path / "r.yaml").resolved_data_dir() == tmp_path / "from-file"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert load_config(tmp_path / "r.yaml").resolved_data_dir() == tmp_path / "env"
    assert load_config(None).resolved_data_dir() == tmp_path / "env"
    assert load_config(tmp_path / "r.yaml", ["data.dir=explicit"]).resolved_data_dir() == tmp_path / "explicit"
    assert load_config(tmp_path / "r.yaml", ["data.dir=explicit"]).resolved_data_dir("flag") == tmp_path / "flag"
    assert resolve_data_dir(None, "/saved/model/data") == tmp_path / "env"  # a saved model's place: env first
    described = describe_data_dirs(None, "/somewhere")
    assert described == (f"--data-dir unset; ${DATA_DIR_ENV} {tmp_path / 'env'} (used); "
                         "data.dir /somewhere; the default data")


def test_relative_paths_in_a_config_file_are_its_folders_and_in_set_the_working_directorys(monkeypatch, tmp_path):
    monkeypatch.delenv("MTBERT_DATA_DIR", raising=False)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "r.yaml").write_text("data: {dir: ../data}\nmodel: {init_from: ../runs/a/best}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(tmp_path / "recipes" / "r.yaml")
    assert config.data.dir == str(tmp_path / "data") and config.model.init_from == str(tmp_path / "runs/a/best")
    assert config.model.name == "all-MiniLM-L6-v2"  # a name, not a path: left alone
    assert load_config(tmp_path / "recipes" / "r.yaml", ["data.dir=mine"]).data.dir == str(elsewhere / "mine")


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_recipe_builds_its_model(recipe):
    from mtbert.train.builder import build_model

    config = load_config(RECIPES / recipe)
    model = build_model(config)
    assert set(model.specs) == set(config.data.tasks)
    assert set(model.peft) == set(config.model.peft)
