"""The run's torch flags: TF32 and cuDNN autotuning inside ``train`` only, the caller's flags
restored afterwards (a notebook that trains and then evaluates keeps full fp32 matmuls)."""

from __future__ import annotations

import os

import pytest
import torch
from test_train_tiny import TinyModel, tiny_config, tiny_dataset

from fqvae.training.config import Config
from fqvae.training.runtime import CUDA_FLAGS, torch_flags
from fqvae.training.trainer import train

CUDA = torch.device("cuda")  # the flags are plain settings: no GPU is needed to set them


def _flags() -> tuple:
    return (
        *(getattr(module, name) for module, name in CUDA_FLAGS),
        torch.are_deterministic_algorithms_enabled(),
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )


@pytest.fixture
def fp32_flags(monkeypatch: pytest.MonkeyPatch):
    """The caller's flags set to plain fp32 (put back after the test); yields what _flags reads."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = [getattr(module, name) for module, name in CUDA_FLAGS]
    for module, name in CUDA_FLAGS:
        setattr(module, name, False)
    yield (False, False, False, False, None)
    for (module, name), value in zip(CUDA_FLAGS, before):
        setattr(module, name, value)


def test_a_cuda_run_sets_tf32_and_autotuning_and_gives_them_back(fp32_flags) -> None:
    with torch_flags(Config(), CUDA):
        assert _flags() == (True, True, True, False, None)
    assert _flags() == fp32_flags


def test_a_deterministic_run_gives_its_flags_back_after_an_error(fp32_flags) -> None:
    cfg = Config()
    cfg.train.deterministic = True
    with pytest.raises(RuntimeError, match="crashed"), torch_flags(cfg, CUDA):
        assert _flags() == (True, True, False, True, ":4096:8")
        raise RuntimeError("crashed")
    assert _flags() == fp32_flags


def test_a_cpu_run_changes_no_flag(fp32_flags) -> None:
    cfg = Config()
    cfg.train.deterministic = True
    with torch_flags(cfg, torch.device("cpu")):
        assert _flags() == fp32_flags


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_leaves_the_callers_flags(tmp_path, fp32_flags) -> None:
    cfg = tiny_config(tmp_path / "run", 3)
    cfg.system.device = "cuda"
    train(cfg, dataset=tiny_dataset(), model=TinyModel())
    assert _flags() == fp32_flags
