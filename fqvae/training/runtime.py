"""Where and how a run executes: device, autocast, matmul precision and the other torch flags,
per-rank noise seeds, and the signal handler that turns Ctrl-C / SIGTERM into a checkpoint."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from fqvae.training.config import Config, ConfigError
from fqvae.training.distributed import Dist


def pick_device(cfg: Config, dist_info: Dist) -> torch.device:
    name = cfg.system.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"system.device={cfg.system.device!r} but CUDA is not available")
        if dist_info.enabled:
            if dist_info.local_rank >= torch.cuda.device_count():
                raise ConfigError(
                    f"process LOCAL_RANK={dist_info.local_rank} needs cuda:{dist_info.local_rank},"
                    f" but this machine has {torch.cuda.device_count()} GPU(s): start at most one"
                    " process per GPU (torchrun --nproc-per-node), or train on the CPU"
                    " (--device cpu)"
                )
            device = torch.device("cuda", dist_info.local_rank)
    elif device.type != "cpu":
        raise ConfigError(f"system.device must be auto, cpu or cuda[:N], got {name!r}")
    return device


def autocast_for(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager:
    """The training step's autocast: bf16 where ``system.amp`` asks for it (``"auto"``: on CUDA
    only; a CPU runs bf16 only when asked, since it pays off only with native bf16 matmuls)."""
    amp = cfg.system.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


#: the process-wide torch settings a CUDA run changes, as (module, attribute); each is restored
CUDA_FLAGS = (
    (torch.backends.cuda.matmul, "allow_tf32"),
    (torch.backends.cudnn, "allow_tf32"),
    (torch.backends.cudnn, "benchmark"),
)


def cpu_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), where ``--amp bf16``
    pays (docs/training.md); torch's own capability checks, False where torch lacks them."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@functools.cache
def cpu_bf16_matmul() -> bool:
    """Whether oneDNN rounds fp32 matmuls through bf16 here when asked
    (``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``, torch >= 2.9): tried on one
    64x256x64 product, whose error must rise from fp32's (~1e-6) to bf16's (~3e-3). On the CPUs
    measured that means AMX: an AMD EPYC with AVX512-BF16 alone kept fp32's error, so the
    setting changed kernels there but not the rounding (docs/training.md)."""
    mkldnn = torch.backends.mkldnn
    if not mkldnn.is_available() or not hasattr(getattr(mkldnn, "matmul", None), "fp32_precision"):
        return False
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 256, generator=g), torch.randn(256, 64, generator=g)
    exact = a.double() @ b.double()
    before = mkldnn.matmul.fp32_precision
    try:
        mkldnn.matmul.fp32_precision = "bf16"
        error = ((a @ b).double() - exact).abs().max() / exact.abs().max()
    finally:
        mkldnn.matmul.fp32_precision = before
    return error.item() > 1e-4


def matmul_mode(cfg: Config, device: torch.device) -> str:
    """What ``system.matmul`` means on ``device``: ``"full"`` or ``"reduced"`` (``"auto"`` is
    reduced on CUDA, full on CPU). Raises ConfigError for reduced on a CPU without bf16."""
    mode = cfg.system.matmul
    if mode == "auto":
        return "reduced" if device.type == "cuda" else "full"
    if mode == "reduced" and device.type == "cpu" and not cpu_bf16_matmul():
        raise ConfigError(
            "system.matmul=reduced on a CPU needs oneDNN bf16 matmuls (AMX and torch >= 2.9); "
            f"this machine (torch {torch.__version__}) keeps fp32 matmuls in full precision: use "
            "--matmul full"
        )
    return mode


@contextlib.contextmanager
def torch_flags(cfg: Config, device: torch.device) -> Iterator[None]:
    """torch's flags for the run: on CUDA, TF32 matmuls (unless ``system.matmul`` is full),
    cuDNN autotuning, or deterministic algorithms with ``train.deterministic``; on a CPU, bf16
    inside oneDNN's fp32 matmuls when ``system.matmul`` is reduced. The caller's flags come back
    on exit, so code that runs after :func:`fqvae.train` in the same process keeps full fp32."""
    reduced = matmul_mode(cfg, device) == "reduced"
    if device.type == "cuda":
        with _cuda_flags(reduced, cfg.train.deterministic):
            yield
    elif reduced:
        matmul = torch.backends.mkldnn.matmul
        saved = matmul.fp32_precision
        matmul.fp32_precision = "bf16"
        try:
            yield
        finally:
            matmul.fp32_precision = saved
    else:
        yield


@contextlib.contextmanager
def _cuda_flags(tf32: bool, deterministic: bool) -> Iterator[None]:
    saved = [getattr(module, name) for module, name in CUDA_FLAGS]
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    for (module, name), value in zip(CUDA_FLAGS, (tf32, tf32, not deterministic)):
        setattr(module, name, value)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        for (module, name), value in zip(CUDA_FLAGS, saved):
            setattr(module, name, value)
        torch.use_deterministic_algorithms(was_deterministic, warn_only=warn_only)
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


def noise_seed(seed: int, rank: int) -> int:
    """The seed of a rank's training noise stream (Gumbel noise, permutations)."""
    return int(np.random.SeedSequence([seed, rank, 1]).generate_state(1)[0])


class StopSignal:
    """Turns the first SIGINT/SIGTERM into a request to save and stop after the current step;
    a second one interrupts at once (the atomic writes keep the previous checkpoint)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        print(
            f"\n{signal.Signals(signum).name}: saving a checkpoint after this step "
            "(send again to abort)",
            file=sys.stderr,
        )

    def __enter__(self) -> StopSignal:
        if _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
