"""Parameter-efficient fine-tuning: adapters, PALs, LHUC, LoRA, parameter selection, accounting and
delta checkpoints, on the tiny random encoder."""

from __future__ import annotations

import copy
import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from mtbert import BertModel, BertTokenizer
from mtbert.bert import CheckpointError
from mtbert.cli import main
from mtbert.multitask import MultitaskModel
from mtbert.optim import AdamW
from mtbert.peft import PEFT_METHODS, parameter_accounting
from mtbert.peft.selection import pack_mask, top_mask, unpack_mask
from mtbert.tasks import TASKS
from mtbert.train import Trainer

from test_heads import batch_for
from test_multitask_training import tiny_config
from test_train_cli import tiny_overrides

TASK_NAMES = ("sst", "quora", "sts")
METHODS = {
    "adapter_feed_forward": {"adapter": {"size": 8, "placement": "feed_forward"}},
    "adapter_layer_norm": {"adapter": {"size": 8, "placement": "layer_norm"}},
    "adapter_houlsby": {"adapter": {"size": 8, "placement": "houlsby", "per_task": False}},
    "pals": {"pals": {"size": 8, "heads": 2}},
    "pals_unshared": {"pals": {"size": 8, "heads": 2, "share_projections": False}},
    "lhuc": {"lhuc": {}},
    "lora": {"lora": {"rank": 4, "targets": ["query", "value", "ffn_out"]}},
    "lora_shared": {"lora": {"rank": 2, "targets": ["key", "attention_output", "ffn_in"], "per_task": False}},
    "all": {"adapter": {"size": 4}, "lhuc": {}, "lora": {"rank": 2}, "pals": {"size": 4, "heads": 2}},
}


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return BertTokenizer.from_pretrained(tiny_checkpoint)


def make(tiny_checkpoint, tokenizer, peft=None) -> MultitaskModel:
    torch.manual_seed(0)
    model = MultitaskModel(BertModel.from_pretrained(tiny_checkpoint), tokenizer, [TASKS[t] for t in TASK_NAMES],
                           max_length=32, peft=peft)
    return model.eval()


def scores(model, task):
    with torch.no_grad():
        return model(batch_for(model, task)).scores


def randomize(modules):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in modules.parameters():
            p.normal_(0, 0.5)


def test_every_method_is_covered_here():
    assert set(PEFT_METHODS) == {name for peft in METHODS.values() for name in peft}


@pytest.mark.parametrize("setting", METHODS)
def test_methods_leave_outputs_unchanged_at_initialisation_and_act_once_trained(tiny_checkpoint, tokenizer, setting):
    plain = make(tiny_checkpoint, tokenizer)
    model = make(tiny_checkpoint, tokenizer, METHODS[setting])
    assert sum(p.numel() for p in model.peft.parameters()) > 0
    for task in TASK_NAMES:
        assert torch.equal(scores(plain, task), scores(model, task)), task
    randomize(model.peft)
    assert all(not torch.allclose(scores(plain, task), scores(model, task)) for task in TASK_NAMES)


@pytest.mark.parametrize("setting", ["adapter_feed_forward", "pals", "lhuc", "lora"])
def test_each_task_uses_its_own_set(tiny_checkpoint, tokenizer, setting):
    model = make(tiny_checkpoint, tokenizer, METHODS[setting])
    (method,) = model.peft.values()
    before = {task: scores(model, task) for task in TASK_NAMES}
    randomize(method.sets["sst"])
    assert not torch.allclose(scores(model, "sst"), before["sst"])
    assert torch.equal(scores(model, "quora"), before["quora"]) and torch.equal(scores(model, "sts"), before["sts"])
    model.train()
    model(batch_for(model, "quora")).scores.float().pow(2).sum().backward()
    touched = {key for key, modules in method.sets.items()
               if any(p.grad is not None and p.grad.abs().sum() > 0 for p in modules.parameters())}
    assert touched == {"quora"}


def test_augmentation_batches_use_the_set_of_the_head_they_train(tiny_checkpoint, tokenizer):
    model = make(tiny_checkpoint, tokenizer, METHODS["lhuc"])
    batch = batch_for(model, "sst")
    batch.task = "cfimdb_to_sst"
    with pytest.raises(RuntimeError, match="no module set for task 'cfimdb_to_sst'"):
        model.encode(batch)
    model.encode(batch, task="sst")
    assert model.active_task.task == "sst"


def test_a_copy_of_the_model_uses_its_own_modules(tiny_checkpoint, tokenizer):
    """SMART's teacher is a deep copy: its hooks must call the copy's modules, not the original's."""
    model = make(tiny_checkpoint, tokenizer, METHODS["all"])
    teacher = copy.deepcopy(model)
    before = scores(model, "sts")
    randomize(model.peft)
    assert not torch.allclose(scores(model, "sts"), before)
    assert torch.equal(scores(teacher, "sts"), before)


def test_bad_method_options_are_clear(tiny_checkpoint, tokenizer):
    cases = [({"dora": {}}, "unknown parameter-efficient method 'dora'"),
             ({"lora": {"rnk": 4}}, r"model.peft.lora has no option\(s\) rnk"),
             ({"lora": {"targets": ["qkv"]}}, "lora targets qkv unknown"),
             ({"adapter": {"placement": "middle"}}, "adapter placement middle unknown"),
             ({"pals": {"size": 10, "heads": 4}}, "must be a positive multiple of heads"),
             ({"lhuc": {"layers": [5]}}, "layer 5 does not exist; the encoder has 2 layers"),
             ({"adapter": {"up_init": "ones"}}, "adapter up_init 'ones' unknown; choose from zero, trunc_normal")]
    for peft, message in cases:
        with pytest.raises(ValueError, match=message):
            make(tiny_checkpoint, tokenizer, peft)


def test_layers_option_puts_a_method_in_chosen_layers_only(tiny_checkpoint, tokenizer):
    model = make(tiny_checkpoint, tokenizer, {"lhuc": {"layers": [-1]}})
    assert list(model.peft["lhuc"].sets["sst"]) == ["layer1"]
    assert model.peft["lhuc"].settings()["layers"] == [1]


# ----- training ---------------------------------------------------------------------------
def train(tiny_checkpoint, data_dir, run_dir, **settings):
    values = {"train.epochs": 1, "model.heads": "{}", **settings}
    trainer = Trainer(tiny_config(tiny_checkpoint, data_dir, **values), run_dir)
    encoder = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}
    peft = {k: v.clone() for k, v in trainer.model.peft.state_dict().items()}
    results = trainer.train()
    return trainer, results, encoder, peft


@pytest.mark.parametrize("setting, extra", [
    ("adapter_houlsby", {}), ("pals", {}), ("lhuc", {}), ("lora", {}), ("all", {}),
    ("lora_shared", {"train.schedule": "zipped", "train.surgery": "pcgrad", "train.smart": "{enabled: true}"}),
])
def test_a_frozen_encoder_stays_bit_identical_while_the_modules_train(tmp_path, tiny_checkpoint, data_dir, setting,
                                                                       extra):
    trainer, results, encoder, peft = train(tiny_checkpoint, data_dir, tmp_path / "run", **{
        "model.freeze": "encoder", "model.peft": json.dumps(METHODS[setting]), "train.weight_decay": 0.01, **extra})
    model = trainer.model
    assert all(torch.equal(v, encoder[k]) for k, v in model.encoder.state_dict().items())
    after = model.peft.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in peft.items())
    # a delta checkpoint: no encoder weights, only the modules and heads; reloads to the same outputs
    best = tmp_path / "run" / "best"
    assert results["delta_checkpoint"] and not (best / "model.safetensors").exists()
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    reloaded = MultitaskModel.from_pretrained(saved).eval()
    model.eval()
    for task in TASK_NAMES:
        assert torch.equal(scores(model, task), scores(reloaded, task))
    accounting = json.loads((tmp_path / "run" / "parameters.json").read_text())
    assert accounting["model"]["tunable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert accounting["model"]["tunable"] < 0.5 * accounting["model"]["stored"]


def test_delta_is_smaller_than_the_full_model_and_needs_its_own_base(tmp_path, tiny_checkpoint, data_dir):
    base = tmp_path / "base"
    shutil.copytree(tiny_checkpoint, base)
    trainer, _, _, _ = train(base, data_dir, tmp_path / "run", **{
        "model.freeze": "encoder", "model.peft": "{lora: {rank: 2}}"})
    model = trainer.model
    model.save_pretrained(tmp_path / "delta")
    model.save_mode = "full"
    model.save_pretrained(tmp_path / "full")
    size = lambda d: sum(f.stat().st_size for f in d.iterdir())  # noqa: E731
    assert size(tmp_path / "delta") < size(tmp_path / "full") - 0.5 * (base / "model.safetensors").stat().st_size
    full = MultitaskModel.from_pretrained(tmp_path / "full").eval()
    delta = MultitaskModel.from_pretrained(tmp_path / "delta").eval()
    for task in TASK_NAMES:
        assert torch.equal(scores(full, task), scores(delta, task))
    moved = tmp_path / "moved-base"
    shutil.copytree(base, moved)
    state = load_file(str(base / "model.safetensors"))  # the base changes: the delta must refuse it
    name = next(iter(state))
    state[name] = state[name] + 1
    save_file(state, str(base / "model.safetensors"))
    with pytest.raises(CheckpointError, match="is a delta on a base whose weights file has SHA-256"):
        MultitaskModel.from_pretrained(tmp_path / "delta")
    elsewhere = MultitaskModel.from_pretrained(tmp_path / "delta", base=str(moved)).eval()  # the same base, moved
    assert torch.equal(scores(elsewhere, "sts"), scores(full, "sts"))


@pytest.mark.parametrize("per", ["global", "tensor"])
def test_sam_trains_exactly_the_selected_fraction(tmp_path, tiny_checkpoint, data_dir, per):
    fraction = 0.25
    trainer, results, encoder, _ = train(tiny_checkpoint, data_dir, tmp_path / "run", **{
        "model.selection": "sam", "model.selection_options": f"{{fraction: {fraction}, per: {per}}}",
        "train.weight_decay": 0.01})
    masks = trainer.model.selection
    sizes = {name: p.numel() for name, p in trainer.model.encoder.named_parameters()}
    assert set(masks) == set(sizes)
    if per == "tensor":
        assert all(int(m.sum()) == round(fraction * sizes[n]) for n, m in masks.items())
    else:
        assert sum(int(m.sum()) for m in masks.values()) == round(fraction * sum(sizes.values()))
    moved = 0
    for name, value in trainer.model.encoder.state_dict().items():
        mask = masks[name]
        assert torch.equal(value[~mask], encoder[name][~mask]), name  # unselected: bit-identical
        moved += int((value[mask] != encoder[name][mask]).sum())
    assert moved > 0.5 * sum(int(m.sum()) for m in masks.values())
    assert results["parameter_selection"]["selected"] == sum(int(m.sum()) for m in masks.values())
    # saved with the run; resuming reuses it instead of a new gradient pass
    (tmp_path / "run" / "results.json").unlink()  # as if stopped while finishing (a finished run is not reloaded)
    again = Trainer(trainer.config, tmp_path / "run")
    again.selection.select = lambda *args: pytest.fail("resume must reuse the saved selection")
    again.train(resume=True)
    assert all(torch.equal(again.model.selection[n], m) for n, m in masks.items())
    # the delta holds only the selected entries and reloads exactly
    saved = tmp_path / "saved"
    trainer.model.save_pretrained(saved)
    assert not (saved / "model.safetensors").exists()
    reloaded = MultitaskModel.from_pretrained(saved)
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in reloaded.state_dict().items())


def test_sam_with_the_training_pass_scores_the_first_epochs_balanced_steps_with_dropout_on(tmp_path, tiny_checkpoint,
                                                                                            data_dir):
    """gradient_pass: training (report 003's first epoch): each loss of the pass is one step of the run's
    own first-epoch plan, its tasks' losses combined by the run's balancer, taken in training mode."""
    config = tiny_config(tiny_checkpoint, data_dir, **{
        "train.epochs": 1, "model.heads": "{}", "train.schedule": "random_mixed", "train.balancer": "mean",
        "model.selection": "sam", "model.selection_options": "{fraction: 0.25, gradient_pass: training}"})
    trainer = Trainer(config, tmp_path / "run")
    seen, passes = [], []
    task_loss = trainer.runner.task_loss

    def recording(task, indices, regularized=True):
        loss, batch = task_loss(task, indices, regularized)
        seen.append((task, list(indices), trainer.model.training, regularized, float(loss.detach())))
        return loss, batch

    trainer.runner.task_loss = recording
    select = trainer.selection.select

    def checking(candidates, losses):
        passes.extend(float(loss.detach()) for loss in losses(None))
        return select(candidates, losses)

    trainer.selection.select = checking
    trainer.train()
    plan = trainer.epoch_plan(0)
    calls = [(task, list(indices)) for step in plan for task, indices in step]
    assert [(task, indices) for task, indices, *_ in seen[:len(calls)]] == calls
    assert all(training and not regularized for _, _, training, regularized, _ in seen[:len(calls)])
    assert any(len({task for task, _ in step}) > 1 for step in plan)  # mixed steps: several tasks in one loss
    # each pass loss is the mean of its step's task losses (the balancer "mean"), step by step
    position = 0
    for step, value in zip(plan, passes):
        losses = [loss for *_, loss in seen[position:position + len(step)]]
        position += len(step)
        assert value == pytest.approx(sum(losses) / len({task for task, _ in step}), rel=1e-5)
    with pytest.raises(ValueError, match="gradient_pass must be one of tasks, training"):
        from mtbert.peft import build_selection
        build_selection("sam", {"gradient_pass": "epoch"})


def test_sam_scores_the_squared_gradient_of_the_whole_pass_fisher_the_sum_of_squares():
    """Two batches whose gradients of w are x₁ = (1, −1, 2) and x₂ = (1, 1, −2), by hand:
    sam: (x₁ + x₂)² = (4, 0, 0), the first weight; fisher: x₁² + x₂² = (2, 2, 8), the third."""
    from mtbert.peft import build_selection
    w = torch.nn.Parameter(torch.zeros(3))
    xs = [torch.tensor([1.0, -1.0, 2.0]), torch.tensor([1.0, 1.0, -2.0])]
    losses = lambda limit: (w @ x for x in xs)  # noqa: E731
    sam = build_selection("sam", {"fraction": 1 / 3})
    assert torch.equal(sam.scores({"w": w}, losses)["w"], torch.tensor([4.0, 0.0, 0.0]))
    assert sam.select({"w": w}, losses)["w"].tolist() == [True, False, False]
    fisher = build_selection("fisher", {"fraction": 1 / 3})
    assert torch.equal(fisher.scores({"w": w}, losses)["w"], torch.tensor([2.0, 2.0, 8.0]))
    assert fisher.select({"w": w}, losses)["w"].tolist() == [False, False, True]


def test_sam_picks_the_largest_squared_gradients(tiny_checkpoint, tokenizer):
    from mtbert.peft import build_selection
    model = make(tiny_checkpoint, tokenizer)
    candidates = dict(model.encoder.named_parameters())
    batch = batch_for(model, "sts")
    losses = lambda limit: (model(batch).scores.pow(2).mean() for _ in range(2))  # noqa: E731
    masks = build_selection("sam", {"fraction": 0.1}).select(candidates, losses)
    grads = torch.autograd.grad(model(batch).scores.pow(2).mean(), list(candidates.values()), allow_unused=True)
    squared = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).square()
                         for g, p in zip(grads, candidates.values())])
    chosen = torch.cat([m.reshape(-1) for m in masks.values()])
    assert int(chosen.sum()) == round(0.1 * squared.numel())
    assert squared[chosen].min() >= squared[~chosen].max()


def test_bitfit_and_random_selections(tiny_checkpoint, tokenizer):
    from mtbert.peft import build_selection
    model = make(tiny_checkpoint, tokenizer)
    candidates = dict(model.encoder.named_parameters())
    bitfit = build_selection("bitfit").select(candidates, None)
    assert all(bool(m.all()) == n.endswith("bias") and bool(m.any()) == n.endswith("bias") for n, m in bitfit.items())
    first = build_selection("random", {"fraction": 0.3, "seed": 4}).select(candidates, None)
    second = build_selection("random", {"fraction": 0.3, "seed": 4}).select(candidates, None)
    assert all(torch.equal(first[n], second[n]) for n in first)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        build_selection("sam", {"fraction": 1.5})


def test_masks_pack_to_one_bit_per_weight():
    torch.manual_seed(0)
    for shape in [(3, 5), (8,), (1,), (7, 3, 2)]:
        mask = torch.rand(shape) > 0.5
        packed = pack_mask(mask)
        assert packed.dtype == torch.uint8 and packed.numel() == -(-mask.numel() // 8)
        assert torch.equal(unpack_mask(packed, list(shape)), mask)
    assert int(top_mask(torch.tensor([1.0, 1.0, 1.0, 0.0]), 2).sum()) == 2


def test_adamw_masks_weight_decay():
    param = torch.nn.Parameter(torch.ones(4))
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    optimizer = AdamW([param], lr=0.1, weight_decay=0.5)
    optimizer.set_update_masks({param: mask})
    param.grad = torch.tensor([1.0, 0.0, -1.0, 0.0])  # what the gradient hook leaves
    optimizer.step()
    assert torch.equal(param.detach()[mask == 0], torch.ones(2))
    assert (param.detach()[mask == 1] != 1).all()


def test_accounting_counts_per_task_modules(tiny_checkpoint, tokenizer):
    model = make(tiny_checkpoint, tokenizer, {"lhuc": {}})
    model.freeze_encoder()
    counts = parameter_accounting(model)
    encoder = sum(p.numel() for p in model.encoder.parameters())
    for task in TASK_NAMES:
        head = sum(p.numel() for p in model.heads[task].parameters())
        assert counts["tasks"][task] == {"stored": encoder + head + 2 * 32, "tunable": head + 2 * 32,
                                         "tunable_share": (head + 64) / (encoder + head + 64),
                                         "task_specific": head + 64}
    assert counts["model"]["stored"] == sum(p.numel() for p in model.parameters())
    assert counts["separate_models"]["stored"] == sum(t["stored"] for t in counts["tasks"].values())


@pytest.mark.parametrize("setting, message", [
    ("model.peft={adapter: {sise: 8}}", r"model.peft.adapter has no option\(s\) sise"),
    ("model.selection=magnitude", "unknown parameter selection 'magnitude'"),
    ("model.save=partial", "model.save must be one of auto, full, delta"),
    ("model.selection_options={fraction: 0}", r"fraction must be in \(0, 1\]"),
])
def test_wrong_peft_settings_are_one_clear_line(tmp_path, tiny_checkpoint, data_dir, setting, message, capsys):
    args = ["train", "--config", "recipes/multitask-base.yaml", "--output-dir", str(tmp_path / "bad")]
    for item in tiny_overrides(tiny_checkpoint, data_dir) + [setting] + (
            ["model.selection=sam"] if "selection_options" in setting else []):
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(message, err), err


def test_frozen_embeddings_stay_fixed_and_only_the_layers_are_saved(tmp_path, tiny_checkpoint, data_dir):
    trainer, results, encoder, _ = train(tiny_checkpoint, data_dir, tmp_path / "run", **{
        "model.freeze": "embeddings", "train.weight_decay": 0.01})
    after = trainer.model.encoder.state_dict()
    embeddings = [k for k in after if k.startswith("embeddings.")]
    assert embeddings and all(torch.equal(after[k], encoder[k]) for k in embeddings)
    assert all(not torch.equal(after[k], encoder[k]) for k in after if k.endswith("ffn_in.weight"))
    delta = load_file(str(tmp_path / "run" / "best" / "encoder_delta.safetensors"))
    assert set(delta) == {k for k, p in trainer.model.encoder.named_parameters() if not k.startswith("embeddings.")}
    assert results["delta_checkpoint"]


def test_a_delta_model_without_its_base_says_how_to_point_at_it(tmp_path, tiny_checkpoint, data_dir, capsys):
    base = tmp_path / "base"
    shutil.copytree(tiny_checkpoint, base)
    train(base, data_dir, tmp_path / "run", **{"model.freeze": "encoder", "model.peft": "{lhuc: {}}"})
    moved = tmp_path / "moved"
    base.rename(moved)
    best = str(tmp_path / "run" / "best")
    assert main(["evaluate", "--model", best, "--data-dir", str(data_dir), "--limit", "8"]) == 2
    assert "is a delta model and needs its base encoder" in capsys.readouterr().err
    assert main(["evaluate", "--model", best, "--base", str(moved), "--data-dir", str(data_dir), "--limit", "8"]) == 0
    assert '"composite"' in capsys.readouterr().out


def test_report_001s_adapter_start_draws_both_projections_near_the_identity(tiny_checkpoint, tokenizer):
    """up_init trunc_normal: W_up from the truncated normal (std init_std, cut at 2 sd) like W_down, so the
    model starts near its base outputs but not at them; the default starts exactly at them."""
    base = scores(make(tiny_checkpoint, tokenizer), "sst")
    model = make(tiny_checkpoint, tokenizer, {"adapter": {"size": 8, "up_init": "trunc_normal", "init_std": 0.01}})
    ups = [m.up.weight for m in model.peft["adapter"].modules() if hasattr(m, "up")]
    assert ups and all(w.abs().max() <= 0.02 + 1e-7 and w.abs().max() > 0 for w in ups)
    assert 0.004 < float(torch.cat([w.flatten() for w in ups]).std()) < 0.012
    moved = scores(model, "sst")
    assert not torch.equal(moved, base) and torch.allclose(moved, base, atol=0.05)
    default = make(tiny_checkpoint, tokenizer, {"adapter": {"size": 8, "init_std": 0.01}})
    assert torch.equal(scores(default, "sst"), base)
