"""Weight averaging of runs (``mtbert soup``): the soup of one model's copies is that model, the uniform
soup is the mean of the weights, greedy keeps only what helps, and models that cannot be averaged are
refused with what differs."""

from __future__ import annotations

import json

import pytest
import torch

from mtbert.cli import main
from mtbert.config import load_config
from mtbert.experiments.soup import greedy_soup, make_soup
from mtbert.multitask import MultitaskModel
from mtbert.train import Trainer

from test_train_cli import tiny_overrides


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoint, data_dir):
    """Two seeds of one tiny recipe, and one run with another head."""
    made = {}
    for name, extra in (("a", {"train.seed": 1}), ("b", {"train.seed": 2}),
                        ("other-head", {"train.seed": 1, "model.heads.sts": "{type: cosine, pooling: mean}"})):
        run = tmp_path_factory.mktemp(name)
        Trainer(load_config("recipes/quickstart.yaml", tiny_overrides(tiny_checkpoint, data_dir, **{
            "train.epochs": 1, **extra})), run).train()
        made[name] = run
    return made


def weights(directory):
    return MultitaskModel.from_pretrained(directory).state_dict()


def test_a_soup_of_two_copies_of_one_model_is_that_model(tmp_path, runs):
    assert main(["soup", str(runs["a"]), str(runs["a"] / "best"), "--output", str(tmp_path / "soup"),
                 "--no-eval"]) == 0
    ours, theirs = weights(tmp_path / "soup"), weights(runs["a"] / "best")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_uniform_soup_is_the_mean_of_the_weights_and_loads_as_a_model(tmp_path, runs, data_dir):
    assert main(["soup", str(runs["a"]), str(runs["b"]), "--output", str(tmp_path / "soup"),
                 "--data-dir", str(data_dir)]) == 0
    soup, a, b = weights(tmp_path / "soup"), weights(runs["a"] / "best"), weights(runs["b"] / "best")
    for key, value in soup.items():
        if value.is_floating_point():
            assert torch.allclose(value, (a[key] + b[key]) / 2, atol=1e-6), key
    record = json.loads((tmp_path / "soup" / "soup.json").read_text())
    assert record["method"] == "uniform" and len(record["used"]) == 2 and 0 < record["score"] < 1
    assert main(["evaluate", "--model", str(tmp_path / "soup"), "--data-dir", str(data_dir)]) == 0


def test_greedy_keeps_an_ingredient_only_when_the_score_does_not_drop(tmp_path, runs):
    order = iter([0.5, 0.4, 0.45])  # a's own, b's own, then the average of a and b: below a's, so b is left out
    soup, record = greedy_soup([runs["a"], runs["b"]], lambda model: next(order))
    assert record["used"] == [str(runs["a"] / "best")]
    assert [step["kept"] for step in record["steps"]] == [True, False]
    a = weights(runs["a"] / "best")
    assert all(torch.equal(v, a[k]) for k, v in soup.state_dict().items())


def test_models_with_other_heads_are_refused_saying_what_differs(tmp_path, runs, capsys):
    assert main(["soup", str(runs["a"]), str(runs["other-head"]), "--output", str(tmp_path / "soup"),
                 "--no-eval"]) == 2
    err = capsys.readouterr().err
    assert "cannot be averaged" in err and "heads differ" in err
    with pytest.raises(ValueError, match="their heads differ"):
        make_soup([runs["a"], runs["other-head"]], tmp_path / "soup2")


def test_the_soup_never_replaces_an_ingredient(tmp_path, runs):
    with pytest.raises(ValueError, match="which this command reads"):
        make_soup([runs["a"], runs["b"]], runs["a"] / "best", overwrite=True)
    assert (runs["a"] / "best" / "mtbert.json").exists()


def test_runs_that_share_model_init_seed_start_from_the_same_heads(tmp_path, tiny_checkpoint, data_dir):
    def heads(**extra):
        config = load_config("recipes/quickstart.yaml", tiny_overrides(tiny_checkpoint, data_dir, **extra))
        return Trainer(config, tmp_path / "unused").model.task_state()

    shared = [heads(**{"train.seed": seed, "model.init_seed": 5}) for seed in (1, 2)]
    assert all(torch.equal(shared[0][k], shared[1][k]) for k in shared[0])
    own = [heads(**{"train.seed": seed}) for seed in (1, 2)]
    assert not all(torch.equal(own[0][k], own[1][k]) for k in own[0])
