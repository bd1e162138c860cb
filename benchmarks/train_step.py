"""Time a full FactorQVAE training step (VAE update on one half of the batch, discriminator
update on the other) with the fused ops against the eager reference ops, in fp32 and bf16 AMP.

The fused run uses the device's default backend (C++ on CPU, Triton on CUDA, or ``--backend``);
the reference run pins ``fqvae.backend("reference")``. Everything else is the same trainer step
(``fqvae.training.step.train_step``). Reports images per second (both halves counted).

Usage: ``python benchmarks/train_step.py [--device cuda] [--arch dalle] [--batch 512]``.
On CPU the defaults are the small backbone at batch 64, since the paper's backbone at batch 512
takes minutes per step there.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

import fqvae  # noqa: E402
from fqvae.models import build_model  # noqa: E402
from fqvae.training.distributed import Dist  # noqa: E402
from fqvae.training.step import train_step  # noqa: E402


def make_step(args, device: torch.device, amp: bool):
    torch.manual_seed(0)
    model = build_model(
        "factorqvae", in_channels=3, image_size=64, num_latents=args.latents, arch=args.arch
    ).to(device)
    opt = model.configure_optimizers(1e-3, 50_000)
    x = torch.rand(args.batch, 3, 64, 64, device=device) - 0.5
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    )
    state = {"step": 0}

    def step():
        train_step(model, opt, x, state["step"], autocast, Dist())
        state["step"] += 1

    return step


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--arch", help="backbone: dalle (paper), qlae, small (default: dalle on CUDA)")
    p.add_argument("--batch", type=int, help="images per step, split in halves (512 on CUDA)")
    p.add_argument("--latents", type=int, default=12)
    p.add_argument("--backend", help="fused backend to compare (default: the device's)")
    p.add_argument("--precisions", default="fp32,bf16")
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.arch = args.arch or ("dalle" if cuda else "small")
    args.batch = args.batch or (512 if cuda else 64)
    fused = args.backend or fqvae.backends.DEFAULTS[device.type]
    rows: list[common.Row] = []
    case = f"factorqvae {args.arch} B={args.batch} L={args.latents} K=64"
    for precision in args.precisions.split(","):
        base = None
        for label, backend in (("reference ops", "reference"), (f"fused ops ({fused})", fused)):
            with fqvae.backend(backend):
                step = make_step(args, device, amp=precision == "bf16")
                seconds = common.median_seconds(step, device, args.min_time)
            base = base or seconds
            mode = f"train step {precision}"
            rows.append(common.step_row(case, label, mode, seconds, base, args.batch))
    meta = common.environment(device) | {"arch": args.arch, "batch": args.batch}
    common.report(meta, rows, args.json)
    print(
        "images/s: " + ", ".join(f"{r.mode} {r.impl} {r.extra['images_per_s']:.0f}" for r in rows)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
