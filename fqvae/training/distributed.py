"""Data parallelism across processes (``torchrun``): set-up, batch shards, gradient averaging.

We average gradients with an explicit all-reduce instead of wrapping the model in
``DistributedDataParallel``. DDP's reducer is armed by ``DDP.forward`` and expects one backward
per forward over a fixed set of parameters. The split-batch step (``fqvae.models.base``) runs two
backwards per batch over disjoint parameter sets, the second one through
``model.discriminator_loss`` (not ``forward``), with the discriminator frozen inside ``forward``;
DDP supports that only through ``find_unused_parameters`` and double forwards. One flat
all-reduce per optimizer group after each backward is simple and exact: every rank then steps
with the mean of the per-rank gradients, which equals the single-process gradient of the global
batch because every loss term is a mean over equal-sized shards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from einops import rearrange
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device_type: str) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``); a single process otherwise. Uses NCCL
    on CUDA and gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        # generous timeout: the other ranks wait while rank 0 runs a periodic evaluation
        dist.init_process_group(
            backend="nccl" if device_type == "cuda" else "gloo", timeout=timedelta(hours=1)
        )
    return info


def shutdown(info: Dist) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(global_batch: np.ndarray, info: Dist) -> np.ndarray:
    """This rank's part of a global batch, laid out so that ``local.chunk(2)`` on every rank
    reassembles the single-process ``global.chunk(2)``: rank r takes the r-th slice of each half
    (the split-batch models update the VAE on the first half and the discriminator on the
    second)."""
    if not info.enabled:
        return global_batch
    halves = rearrange(global_batch, "(half rank n) -> half rank n", half=2, rank=info.world_size)
    return rearrange(halves[:, info.rank], "half n -> (half n)")


def broadcast_state(module: nn.Module, info: Dist) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not info.enabled:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def average_gradients(params: list[nn.Parameter], info: Dist) -> None:
    """Replace every gradient by its mean across ranks (one flat all-reduce)."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(info.world_size)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def any_rank(flag: bool, info: Dist, device: torch.device) -> bool:
    """True when ``flag`` is set on at least one rank (so every rank stops at the same step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj: object, info: Dist) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()
