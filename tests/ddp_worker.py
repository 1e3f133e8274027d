"""A training process for tests/test_distributed.py, started by torchrun: trains a config (optionally
asking to stop at a step on rank 0 only, as a Ctrl-C seen by one process would) and records whether
every rank ended with the same parameters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.distributed as dist

from mtbert.config import load_config
from mtbert.train import Trainer
from mtbert.train.distributed import close_world


def poisoned(objective, trainer, step: int):
    def loss(model, batch):
        value = objective(model, batch)
        return value * float("nan") if trainer.step == step else value
    return loss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--stop-at", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--poison-step", type=int, help="rank 1's loss is NaN at this step (a diverged batch)")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    config = load_config(run_dir / "config.yaml" if args.resume else "recipes/multitask-base.yaml", args.set)

    def stop_on_rank_0(trainer):
        if trainer.world.is_main and trainer.step == args.stop_at:
            trainer.stop.requested = True

    trainer = Trainer(config, run_dir, callbacks=[stop_on_rank_0] if args.stop_at else [])
    if args.poison_step is not None and trainer.world.rank == 1:
        for task, objective in list(trainer.objectives.items()):  # the DDP module reads this same dict
            trainer.objectives[task] = poisoned(objective, trainer, args.poison_step)
    results = trainer.train(resume=args.resume)
    flat = torch.cat([p.detach().reshape(-1).float() for p in trainer.model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    if trainer.world.is_main:
        spread = max(float((g - flat).abs().max()) for g in gathered)
        (run_dir / "worker.json").write_text(json.dumps({"results": results, "rank_spread": spread,
                                                         "world": dist.get_world_size()}))
    del trainer  # as the CLI does: close_world frees it before the group goes
    close_world()


if __name__ == "__main__":
    main()
