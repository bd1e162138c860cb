"""A run's folder: what it holds, the manifest, the checkpoint state and its restore, and the
previous ``metrics.json`` on resume."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fqvae.models.base import Optimizers
from fqvae.training import checkpoint
from fqvae.training.checks import check_resume
from fqvae.training.config import Config, ConfigError
from fqvae.training.distributed import Dist
from fqvae.training.logs import set_aside
from fqvae.training.runtime import (
    noise_seed,
)
from fqvae.training.step import (
    NonFiniteLoss,
    all_optimizers,
)

MANIFEST = "config.json"
METRICS = "metrics.json"
# what a run writes into its folder (``--overwrite`` removes exactly these)
RUN_FILES = (
    MANIFEST,
    METRICS,
    checkpoint.CHECKPOINT,
    "log.csv",
    "eval.csv",
    "traversals.png",
    "codebook_usage.png",
)


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> list[str]:
    """The run files ``out`` holds; raises ConfigError when ``out`` is a file, or holds a run
    that is neither resumed nor to be overwritten."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a run folder")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held and not resume and not overwrite:
        raise ConfigError(
            f"--out {out} already holds a run ({', '.join(held[:3])}); continue it with "
            "--resume, or replace it with --overwrite"
        )
    return held


def manifest(cfg: Config, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "config": cfg.to_dict(),
        **info,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "command": sys.argv,
    }


# the loop


def checkpoint_state(
    step: int,
    model: nn.Module,
    opt: Optimizers,
    rngs: list[dict[str, Tensor]],
    cfg: Config,
    model_kwargs: dict[str, Any],
    train_s: float,
) -> dict[str, Any]:
    """Everything a resume needs, as tensors and primitive containers (``train_s``: seconds
    of training up to ``step``). Raises NonFiniteLoss rather than store non-finite weights."""
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteLoss(
            f"non-finite weights at step {step} ({', '.join(bad[:3])}); "
            "the last checkpoint was kept"
        )
    return {
        "step": step,
        "model": {
            k: v.detach().cpu() if isinstance(v, Tensor) else v
            for k, v in model.state_dict().items()
        },
        "model_kwargs": model_kwargs,
        "optimizers": [o.state_dict() for o in all_optimizers(opt)],
        "schedulers": [s.state_dict() for s in opt.schedulers],
        "rng": [{k: v.cpu() for k, v in r.items()} for r in rngs],
        "config": cfg.to_dict(),
        "world_size": len(rngs),
        "train_s": train_s,
    }


#: optimizer group options that pick kernels, not the update: a resumed run takes its config's
#: (``system.fused_optim`` may change on resume), and torch places the state to match
KERNEL_OPTIONS = ("fused", "foreach")


def restore(
    cfg: Config,
    path: Path,
    model: nn.Module,
    opt: Optimizers,
    dist_info: Dist,
    device: torch.device,
) -> tuple[int, float | None]:
    """Load the checkpoint at ``path`` into the model, optimizers, schedulers and this rank's
    RNG; returns its step and its seconds of training (None in a checkpoint from before they
    were kept). Raises ConfigError if ``cfg`` changes what the run trains."""
    state = checkpoint.load(path, map_location=device)
    check_resume(cfg, Config.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    for o, s in zip(all_optimizers(opt), state["optimizers"]):
        kernels = [{k: g[k] for k in KERNEL_OPTIONS if k in g} for g in o.param_groups]
        groups = [{**g, **kept} for g, kept in zip(s["param_groups"], kernels)]
        o.load_state_dict({**s, "param_groups": groups})  # torch places the state for them
    for sched, s in zip(opt.schedulers, state["schedulers"]):
        sched.load_state_dict(s)
    step = int(state["step"])
    if len(state["rng"]) == dist_info.world_size:
        checkpoint.set_rng_state(state["rng"][dist_info.rank], device)
    else:  # a different number of ranks: a fresh noise stream (not bitwise reproducible)
        torch.manual_seed(noise_seed(cfg.train.seed + step, dist_info.rank))
    train_s = state.get("train_s")
    return step, float(train_s) if isinstance(train_s, (int, float)) else None


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's ``metrics.json`` on resume; an unreadable one is set aside (``.broken``) with a
    warning and read as empty, so it cannot block the resume."""
    import json

    try:
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, dict):
            return data
        reason = f"a JSON {type(data).__name__}, not an object"
    except (ValueError, UnicodeDecodeError) as exc:
        reason = str(exc)
    broken = set_aside(path)
    print(
        f"fqvae train: warning: {path} is unreadable ({reason}); kept as {broken.name}",
        file=sys.stderr,
    )
    return {}
