"""Data parallel: two gloo processes train the same weights as one process on the same batches."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from test_train_tiny import TinyModel, single_thread, tiny_config, tiny_dataset  # noqa: F401

from fqvae.training import checkpoint
from fqvae.training.config import ConfigError
from fqvae.training.distributed import Dist
from fqvae.training.runtime import pick_device
from fqvae.training.trainer import train

STEPS = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    torch.manual_seed(100 + rank)  # different initial weights: rank 0's are broadcast
    model = TinyModel(noise=False)
    cfg = tiny_config(out, STEPS)
    train(cfg, dataset=tiny_dataset(), model=model)
    torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))


def test_two_processes_match_one(tmp_path):
    torch.manual_seed(100)
    single = TinyModel(noise=False)
    initial = {k: v.clone() for k, v in single.state_dict().items()}
    train(tiny_config(tmp_path / "one", STEPS), dataset=tiny_dataset(), model=single)

    out = tmp_path / "two"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)

    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    saved = checkpoint.load(out / checkpoint.CHECKPOINT)
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2
    for name, expected in single.state_dict().items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        assert torch.equal(saved["model"][name], ranks[0][name]), name
        torch.testing.assert_close(ranks[0][name], expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ranks[0]["encoder.weight"], initial["encoder.weight"])


def test_more_processes_than_gpus_is_named(tmp_path, monkeypatch):
    """torchrun with two processes on a one-GPU machine: rank 1 is told why, not 'invalid
    device ordinal'. The GPU count is patched: this machine has none."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = tiny_config(tmp_path, 1)
    cfg.system.device = "auto"
    assert pick_device(cfg, Dist(rank=0, world_size=2, local_rank=0)) == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"LOCAL_RANK=1 needs cuda:1.*1 GPU"):
        pick_device(cfg, Dist(rank=1, world_size=2, local_rank=1))
