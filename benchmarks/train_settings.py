"""Time a model's full training step under the trainer's speed settings, side by side in one
process: the default, ``--fused-optim`` (fused Adam/AdamW), ``--matmul reduced`` (TF32 on CUDA,
bf16 inside oneDNN on a CPU with AMX), both, and on a CPU ``--amp bf16`` (bf16 autocast; CUDA's
default) with and without fused Adam. Ratios are against the default.

Each model is built and fed as ``fqvae demo`` trains it (the CPU recipe resolved for 32x32
Shapes3D: its backbone, batch, latents and hparams); the step is the trainer's
(``fqvae.training.step.train_step``) and the matmul setting goes through the trainer's own
``torch_flags``. Subnormals are flushed to zero, as the ``fqvae`` command does.

Usage: ``python benchmarks/train_settings.py [--models factorqvae,ae] [--device cuda]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from fqvae.cli import flush_subnormals  # noqa: E402
from fqvae.models import build_model  # noqa: E402
from fqvae.training.config import Config  # noqa: E402
from fqvae.training.demo import demo_config  # noqa: E402
from fqvae.training.distributed import Dist  # noqa: E402
from fqvae.training.model_build import build_kwargs  # noqa: E402
from fqvae.training.runtime import autocast_for, cpu_bf16_matmul, torch_flags  # noqa: E402
from fqvae.training.step import train_step  # noqa: E402

#: (label, system.fused_optim, system.matmul, system.amp)
SETTINGS = (
    ("default", False, "full", "auto"),
    ("--fused-optim", True, "full", "auto"),
    ("--matmul reduced", False, "reduced", "auto"),
    ("--fused-optim --matmul reduced", True, "reduced", "auto"),
)
#: the CPU's opt-in bf16 autocast (on CUDA the default already is)
CPU_AMP = (
    ("--amp bf16", False, "full", "bf16"),
    ("--fused-optim --amp bf16", True, "full", "bf16"),
)


def make_step(cfg: Config, device: torch.device):
    """One training step of ``cfg``'s model on a fixed batch of its size (32x32 RGB)."""
    torch.manual_seed(0)
    side = cfg.data.image_size
    model = build_model(**build_kwargs(cfg, (side, side, 3))).to(device)
    opt = model.configure_optimizers(cfg.train.lr, cfg.train.iterations, cfg.system.fused_optim)
    size = (cfg.train.batch, 3, side, side)
    x = torch.rand(size, device=device) - (0.5 if model.pixels == "centered" else 0.0)
    state = {"step": 0}

    def step():
        train_step(model, opt, x, state["step"], autocast_for(cfg, device), Dist())
        state["step"] += 1

    return step


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--models", default="factorqvae,ae", help="comma-separated model names")
    args = p.parse_args()
    flush_subnormals()  # as the fqvae command does, before torch's threads start
    device = torch.device(args.device)
    settings = SETTINGS + (CPU_AMP if device.type == "cpu" else ())
    if device.type == "cpu" and not cpu_bf16_matmul():
        print("this CPU keeps fp32 matmuls in full precision (no AMX): --matmul reduced left out")
        settings = tuple(s for s in settings if s[2] == "full")
    rows: list[common.Row] = []
    for name in args.models.split(","):
        cfg = demo_config(name, device=args.device, progress=False)
        batch = cfg.train.batch
        case = f"{name} {cfg.model.arch} 32px B={batch} L={cfg.model.latents}"
        base = None
        for label, fused, matmul, amp in settings:
            cfg.system.fused_optim, cfg.system.matmul, cfg.system.amp = fused, matmul, amp
            with torch_flags(cfg, device):
                seconds = common.median_seconds(make_step(cfg, device), device, args.min_time)
            base = base or seconds
            mode = "train step bf16 autocast" if amp == "bf16" else "train step fp32"
            rows.append(common.step_row(case, label, mode, seconds, base, batch))
    meta = common.environment(device)
    common.report(meta, rows, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
