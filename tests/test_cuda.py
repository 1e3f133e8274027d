"""The CUDA path: the encoder, the optimizer, training in each precision, exact resume and moving a
model between GPU and CPU. Every test here skips on a machine without a GPU (CI has none); on one,
run ``python -m pytest tests/test_cuda.py``."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import TINY, stop_at
from test_train_cli import tiny_overrides

from mtbert import AdamW, BertModel
from mtbert.cli import main
from mtbert.config import load_config
from mtbert.evaluate import read_predictions
from mtbert.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.double() - reference.double()).norm() / reference.double().norm()).item()


def padded_batch(vocab_size: int, device: torch.device, seed: int = 0) -> dict:
    """Eight random sequences of lengths 5..40, right-padded: SDPA's masked path, not only full rows."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, 41, (8,), generator=generator)
    ids = torch.randint(1000, vocab_size, (8, 40), generator=generator)
    mask = (torch.arange(40)[None, :] < lengths[:, None]).long()
    segments = (torch.arange(40)[None, :] >= lengths[:, None] // 2).long() * mask
    return {"input_ids": (ids * mask).to(device), "attention_mask": mask.to(device),
            "token_type_ids": segments.to(device)}


def wider_tiny_model(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(dataclasses.replace(TINY, hidden_size=128, num_attention_heads=4, intermediate_size=256)).eval()


def test_encoder_on_cuda_computes_what_it_computes_on_cpu():
    model = wider_tiny_model()
    batch = padded_batch(model.config.vocab_size, torch.device("cpu"))
    with torch.no_grad():
        reference = model(**batch)
        ours = model.to(CUDA)(**{k: v.to(CUDA) for k, v in batch.items()})
    real = batch["attention_mask"].bool()
    assert relative_error(ours.last_hidden_state.cpu()[real], reference.last_hidden_state[real]) < 1e-4
    assert relative_error(ours.pooler_output.cpu(), reference.pooler_output) < 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_on_cuda_stays_near_fp32(dtype):
    model = wider_tiny_model().to(CUDA)
    batch = padded_batch(model.config.vocab_size, CUDA, seed=1)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        reference = model(**batch).last_hidden_state[real]
        with torch.autocast("cuda", dtype=dtype):
            ours = model(**batch).last_hidden_state[real]
    assert ours.isfinite().all()
    assert relative_error(ours, reference) < 2e-2


def test_our_adamw_on_cuda_matches_torch_adamw():
    torch.manual_seed(0)
    start = [torch.randn(64, 32, device=CUDA), torch.randn(32, device=CUDA)]
    ours = [p.clone().requires_grad_() for p in start]
    theirs = [p.clone().requires_grad_() for p in start]
    optimizers = [AdamW(ours, lr=1e-3, eps=1e-8, weight_decay=0.01),
                  torch.optim.AdamW(theirs, lr=1e-3, eps=1e-8, weight_decay=0.01)]
    for step in range(20):
        gradients = [torch.randn_like(p) for p in start]
        for params, optimizer in zip((ours, theirs), optimizers):
            for p, g in zip(params, gradients):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(ours, theirs):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module", params=["bf16", "fp16", "fp32"])
def cuda_run(request, tmp_path_factory, tiny_checkpoint, data_dir):
    """A whole `mtbert train` on the GPU in one precision (fp16 steps through the gradient scaler)."""
    run = tmp_path_factory.mktemp(f"cuda-{request.param}")
    args = ["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(run)]
    for item in tiny_overrides(tiny_checkpoint, data_dir, **{"train.device": "cuda",
                                                             "train.precision": request.param}):
        args += ["--set", item]
    assert main(args) == 0
    return request.param, run


def test_training_on_cuda_runs_in_the_precision_asked_for(cuda_run):
    precision, run = cuda_run
    results = json.loads((run / "results.json").read_text())
    assert results["device"].startswith("cuda") and results["precision"] == precision
    assert results["skipped_nonfinite_batches"] == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in records)
    checkpoint = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert bool(checkpoint.get("scaler")) == (precision == "fp16")


def test_a_model_trained_on_cuda_predicts_the_same_on_cpu(cuda_run, data_dir, tmp_path):
    """The saved best/ model is device-free: fp32 inference on CPU and on the GPU agree."""
    _, run = cuda_run
    outputs = {}
    for device in ("cpu", "cuda"):
        outputs[device] = tmp_path / f"sts-{device}.csv"
        assert main(["predict", "--model", str(run / "best"), "--task", "sts", "--input",
                     str(data_dir / "sts-dev.csv"), "--output", str(outputs[device]), "--device", device,
                     "--precision", "fp32"]) == 0
    cpu, cuda = read_predictions(outputs["cpu"]), read_predictions(outputs["cuda"])
    assert cpu.keys() == cuda.keys() and len(cpu) > 800
    assert max(abs(float(cpu[k]) - float(cuda[k])) for k in cpu) < 1e-3


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_stopped_cuda_run_resumes_to_the_same_end(tmp_path, tiny_checkpoint, data_dir, precision):
    """The checkpoint carries the GPU's RNG state (dropout masks) and, for fp16, the loss scale."""
    config = load_config("recipes/multitask-base.yaml", tiny_overrides(
        tiny_checkpoint, data_dir, **{"train.checkpoint_every": 0, "data.limit": 20, "train.device": "cuda",
                                      "train.precision": precision}))
    whole = Trainer(config, tmp_path / "whole").train()

    assert Trainer(config, tmp_path / "cut", callbacks=[stop_at(3)]).train()["interrupted"]
    resumed = Trainer(config, tmp_path / "cut").train(resume=True)
    assert resumed["steps"] == whole["steps"]
    ours = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    theirs = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    for key in theirs["model"]:
        torch.testing.assert_close(ours["model"][key], theirs["model"][key], rtol=1e-4, atol=1e-5)
    assert resumed["best"]["composite"] == pytest.approx(whole["best"]["composite"], abs=1e-3)


def test_a_run_stopped_on_cuda_resumes_on_cpu(tmp_path, tiny_checkpoint, data_dir):
    """Moving a half-done run to a machine without a GPU: optimizer state maps to the CPU."""
    overrides = tiny_overrides(tiny_checkpoint, data_dir, **{"train.checkpoint_every": 0, "data.limit": 20,
                                                               "train.precision": "fp32"})
    on_gpu = load_config("recipes/multitask-base.yaml", [*overrides, "train.device=cuda"])

    assert Trainer(on_gpu, tmp_path / "run", callbacks=[stop_at(3)]).train()["interrupted"]
    on_cpu = load_config("recipes/multitask-base.yaml", [*overrides, "train.device=cpu"])
    resumed = Trainer(on_cpu, tmp_path / "run").train(resume=True)
    assert resumed["device"] == "cpu" and resumed["steps"] > 3 and not resumed.get("interrupted")


@pytest.mark.parametrize("settings", [
    {"train.schedule": "zipped", "train.surgery": "pcgrad"},
    {"train.schedule": "zipped", "train.surgery": "cagrad", "train.balancer": "uncertainty"},
    {"train.smart": "{enabled: true, tasks: [sst, sts]}"},
    {"data.augment": "[cfimdb_to_sst, quora_sentiment_consistency, sts_sentiment_consistency]"},
])
def test_multitask_methods_run_on_cuda(tmp_path, tiny_checkpoint, data_dir, settings):
    """Gradient surgery, balancers, SMART and augmentation keep their tensors on the model's device."""
    config = load_config("recipes/multitask-base.yaml", tiny_overrides(
        tiny_checkpoint, data_dir, **{"train.checkpoint_every": 0, "data.limit": 60, "train.device": "cuda",
                                      **settings}))
    results = Trainer(config, tmp_path / "run").train()
    assert results["device"].startswith("cuda") and results["skipped_nonfinite_batches"] == 0
    assert torch.isfinite(torch.tensor(results["best"]["composite"]))
