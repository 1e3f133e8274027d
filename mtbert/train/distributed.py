"""Data-parallel training across processes (and machines) with PyTorch's own engine.

Launch any training command with ``torchrun``::

    torchrun --nproc_per_node 2 -m mtbert train --config recipes/quickstart.yaml

Every rank builds the same epoch plan (it is a pure function of the seed), so the schedule, the
length buckets and the task order are the same everywhere; each step's batch is then cut into one
strided shard per rank (``indices[rank::world]``: the shards of a length-sorted batch have similar
lengths). ``train.batch_size`` stays the *global* batch, so a config trains the same model whatever
the number of processes. The model runs inside ``DistributedDataParallel`` (gloo on CPU, NCCL on
CUDA), which averages gradients during the backward pass.

Two things make the average equal to the single-process gradient of the whole batch:
- each rank's mean loss is scaled by ``world · n_rank / n_batch`` (shards may differ by one example;
  a rank whose shard is empty computes a zero-weighted loss on one example so it still joins the
  all-reduce);
- the loss *value* every rank sees is the batch's global mean (one scalar all-reduce per task batch),
  with the local gradient attached, so loss balancers that weight tasks by their loss values, the
  non-finite check and the logged loss agree on every rank.

Gradient surgery (PCGrad, GradVac, ...) needs each task's gradient of the whole batch: those steps run
under ``no_sync`` and all-reduce each task's flattened gradient before the surgery, which then sees
exactly what one process would. SMART computes its adversarial perturbation per example from the
rank's own shard (its ascent direction is normalised per token, so sharding does not change it) and
its teacher is an average of parameters that are identical on every rank. Dropout and SMART's noise
draw from per-rank random streams, so only dropout-free runs match a single process bit for bit.

Rank 0 alone writes metrics, TensorBoard, checkpoints, the best model and predictions and evaluates
on dev; a checkpoint holds every rank's random state, so a resumed run with the same number of
processes continues exactly (the run directory must be readable by every rank). A stop request
(Ctrl-C, which torchrun forwards) is agreed on by all ranks at the end of a step.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ----- sharding -----------------------------------------------------------------------
    def shard(self, indices: Sequence[int]) -> list[int]:
        """This rank's part of a global batch: every ``size``-th example from ``rank``."""
        return list(indices[self.rank:: self.size])

    def global_loss(self, local: torch.Tensor, local_count: int, global_count: int) -> torch.Tensor:
        """A loss whose value is the batch's global mean and whose gradient, once DDP averages it over
        the ranks, is the gradient of that mean."""
        if not self.distributed:
            return local
        scaled = local * (self.size * local_count / global_count)
        total = (local.detach() * local_count).reshape(1).clone()
        dist.all_reduce(total)
        return scaled + (total[0] / global_count - scaled.detach())

    # ----- collectives (no-ops for one process) -------------------------------------------
    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (a stop request seen by one rank stops all)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1 if flag else 0], dtype=torch.int64)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Counters summed over the ranks (examples and tokens seen)."""
        if not self.distributed:
            return dict(values)
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(tensor)
        return dict(zip(keys, tensor.tolist()))

    def average_gradients(self, parameters: Sequence[torch.Tensor]) -> None:
        """Average the ``.grad`` of these parameters (those that have one, the same on every rank)."""
        if not self.distributed:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if grads:
            flat = self.average(torch.cat([g.reshape(-1).float() for g in grads]))
            offset = 0
            for g in grads:
                g.copy_(flat[offset: offset + g.numel()].view_as(g))
                offset += g.numel()

    def average(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor)
            tensor /= self.size
        return tensor

    def broadcast(self, tensors: Sequence[torch.Tensor]) -> None:
        """Rank 0's values into the same tensors on every rank (bools travel as bytes)."""
        if not self.distributed:
            return
        for tensor in tensors:
            carrier = tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor
            dist.broadcast(carrier, 0)
            if carrier is not tensor:
                tensor.copy_(carrier.bool())

    def gather_states(self, state: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of a same-sized CPU tensor (the random-number generators' states); NCCL
        moves it through the rank's GPU."""
        if not self.distributed:
            return [state]
        carrier = state.cuda() if dist.get_backend() == "nccl" else state
        gathered = [torch.empty_like(carrier) for _ in range(self.size)]
        dist.all_gather(gathered, carrier)
        return [g.cpu() for g in gathered]

    def rank_rng_states(self) -> dict[str, list[torch.Tensor]]:
        """Every rank's generator states (CPU, and its own GPU's), for a checkpoint; empty for one process."""
        if not self.distributed:
            return {}
        states = {"cpu": self.gather_states(torch.get_rng_state())}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = self.gather_states(torch.cuda.get_rng_state())
        return states

    def restore_rank_rng_states(self, states: dict[str, list[torch.Tensor]]) -> None:
        """This rank's generator states from ``rank_rng_states`` of a run with as many processes."""
        torch.set_rng_state(states["cpu"][self.rank])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state(states["cuda"][self.rank])

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def current_world() -> World:
    """The world torchrun describes in the environment; one process when it describes none."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                 local_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def init_world(device: torch.device) -> World:
    """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA); a no-op for one process."""
    world = current_world()
    if world.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world


def close_world(finished: bool = True) -> None:
    """Leave the process group. After a finished run the ranks first meet at a barrier, so none tears
    down its connections while another still talks over them (gloo aborts the process then); after
    an error they leave at once, since a failed rank would never reach the barrier."""
    if dist.is_initialized():
        # Objects no longer referenced but kept by reference cycles (a finished Trainer, its hooks) can
        # hold gloo work and the group; collected in interpreter finalization instead, gloo's threads
        # abort the process ("terminate called without an active exception" after a finished run).
        gc.collect()
        if finished:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def threads_per_process(world: World) -> int:
    """CPU threads for one of ``local_size`` processes on this machine: the cores shared out (torchrun
    otherwise sets OMP_NUM_THREADS=1, which starves a CPU run)."""
    return max(1, (os.cpu_count() or 1) // world.local_size)


class TaskLoss(nn.Module):
    """The model and its objectives as one module, so DistributedDataParallel sees the forward that
    produces a task batch's loss (objectives call the model's encoder and heads in their own ways)."""

    def __init__(self, model: nn.Module, objectives: dict):
        super().__init__()
        self.model = model
        self.objectives = objectives  # a plain dict: the objectives hold no parameters of their own

    def forward(self, task: str, batch) -> torch.Tensor:
        return self.objectives[task](self.model, batch)


def wrap_for_data_parallel(model: nn.Module, objectives: dict, device: torch.device) -> nn.Module:
    """DistributedDataParallel over model+objectives. Unused parameters are expected: a step trains one
    task's head (and its adapters) while the other heads sit idle."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(TaskLoss(model, objectives), device_ids=[device.index] if device.type == "cuda"
                                   else None, find_unused_parameters=True)
