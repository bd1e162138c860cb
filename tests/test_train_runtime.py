"""The run's torch flags: TF32 and cuDNN autotuning inside ``train`` only, the caller's flags
restored afterwards (a notebook that trains and then evaluates keeps full fp32 matmuls);
``system.matmul`` (full or reduced fp32 matmuls) and ``system.fused_optim`` (fused Adam)."""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
from test_train_tiny import TinyModel, single_thread, tiny_config, tiny_dataset  # noqa: F401

from fqvae.models import build_model
from fqvae.training import checkpoint
from fqvae.training.config import Config
from fqvae.training.distributed import Dist
from fqvae.training.runtime import CUDA_FLAGS, autocast_for, cpu_bf16_matmul, torch_flags
from fqvae.training.step import train_step
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


def test_full_matmul_keeps_a_cuda_run_in_ieee_fp32(fp32_flags) -> None:
    cfg = Config()
    cfg.system.matmul = "full"
    with torch_flags(cfg, CUDA):
        assert _flags() == (False, False, True, False, None)
    assert _flags() == fp32_flags


def _matmul_error() -> float:
    """Largest relative error of a fixed fp32 matmul against its float64 product."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 256, generator=g), torch.randn(256, 64, generator=g)
    exact = a.double() @ b.double()
    return ((a @ b).double() - exact).abs().max().item() / exact.abs().max().item()


def test_the_bf16_probe_leaves_the_matmul_setting_as_it_found_it() -> None:
    mkldnn = torch.backends.mkldnn
    if not hasattr(getattr(mkldnn, "matmul", None), "fp32_precision"):
        pytest.skip("this torch has no oneDNN matmul precision setting")
    before = mkldnn.matmul.fp32_precision
    cpu_bf16_matmul.cache_clear()
    assert cpu_bf16_matmul() == (_matmul_error_with(mkldnn, "bf16") > 1e-4)
    assert mkldnn.matmul.fp32_precision == before


def _matmul_error_with(mkldnn, precision: str) -> float:
    before = mkldnn.matmul.fp32_precision
    mkldnn.matmul.fp32_precision = precision
    try:
        return _matmul_error()
    finally:
        mkldnn.matmul.fp32_precision = before


@pytest.mark.skipif(
    not cpu_bf16_matmul(), reason="needs a CPU whose oneDNN rounds fp32 matmuls through bf16 (AMX)"
)
def test_reduced_matmul_rounds_cpu_matmuls_through_bf16_inside_the_run_only() -> None:
    cfg = Config()
    cfg.system.matmul = "reduced"
    full = _matmul_error()
    with torch_flags(cfg, torch.device("cpu")):
        reduced = _matmul_error()
    assert full < 1e-5 < reduced < 1e-2  # fp32 against bf16 inputs (8 significant bits)
    assert _matmul_error() == full


def _three_steps(name: str, fused: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, image_size=32, num_latents=4, arch="small")
    opt = model.configure_optimizers(1e-3, 10, fused=fused)
    groups = [g for o in (*opt.main, opt.discriminator) if o is not None for g in o.param_groups]
    assert all(bool(g["fused"]) == fused for g in groups)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)) - 0.5
    for step in range(3):
        train_step(model, opt, x, step, contextlib.nullcontext(), Dist())
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("name", ["factorqvae", "qlae_hsu2023"])  # + discriminator; AdamW
def test_fused_optimizers_take_the_same_steps(name) -> None:
    plain, fused = _three_steps(name, False), _three_steps(name, True)
    moved = max((plain[k] - _three_steps(name, False)[k]).abs().max().item() for k in plain)
    assert moved == 0.0  # the comparison below is not blurred by run-to-run noise
    for key in plain:
        torch.testing.assert_close(fused[key], plain[key], rtol=1e-4, atol=1e-5, msg=key)


def _loss_and_grads(amp: str) -> tuple[float, torch.Tensor]:
    """FactorQVAE's main loss on a fixed batch under ``--amp amp`` on a CPU, and its gradient
    (flattened over the encoder, the decoder and the codebook)."""
    cfg = Config()
    cfg.system.amp = amp
    torch.manual_seed(0)
    model = build_model("factorqvae", in_channels=3, image_size=32, num_latents=4, arch="small")
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)) - 0.5
    with autocast_for(cfg, torch.device("cpu")):
        loss = model(x)["loss"]
    loss.backward()
    grads = [p.grad.flatten() for n, p in model.named_parameters() if p.grad is not None]
    return loss.item(), torch.cat(grads)


def test_amp_bf16_on_a_cpu_autocasts_the_step_and_auto_keeps_fp32() -> None:
    cfg = Config()
    with autocast_for(cfg, torch.device("cpu")):  # auto: fp32 on a CPU
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    cfg.system.amp = "bf16"
    with autocast_for(cfg, torch.device("cpu")):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16
    (loss32, grad32), (loss16, grad16) = _loss_and_grads("off"), _loss_and_grads("bf16")
    assert loss16 != loss32 and not torch.equal(grad16, grad32)  # the step ran in bf16
    assert abs(loss16 - loss32) < 1e-2 * abs(loss32)  # to bf16's 8 significant bits
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) > 0.99


def test_resume_takes_the_optimizer_kernel_of_its_config(tmp_path) -> None:
    cfg = tiny_config(tmp_path, 4)
    cfg.system.fused_optim = True
    train(cfg, dataset=tiny_dataset(), model=TinyModel())
    saved = checkpoint.load(tmp_path / checkpoint.CHECKPOINT)["optimizers"]
    assert all(g["fused"] for o in saved for g in o["param_groups"])
    cfg = tiny_config(tmp_path, 6)
    cfg.system.fused_optim = False
    assert train(cfg, dataset=tiny_dataset(), model=TinyModel(), resume=True).step == 6
    saved = checkpoint.load(tmp_path / checkpoint.CHECKPOINT)["optimizers"]
    assert not any(g["fused"] for o in saved for g in o["param_groups"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_leaves_the_callers_flags(tmp_path, fp32_flags) -> None:
    cfg = tiny_config(tmp_path / "run", 3)
    cfg.system.device = "cuda"
    train(cfg, dataset=tiny_dataset(), model=TinyModel())
    assert _flags() == fp32_flags
