"""Time FactorQVAE's CPU-recipe training step with subnormal floats kept and flushed to zero
(what the ``fqvae`` command does, ``fqvae.cli.flush_subnormals``), side by side in one process.

The model first trains ``--warmup`` steps on the demo's procedural Shapes3D images with
subnormals kept, as a run would, so Adam's moments and the soft one-hots hold the subnormals a
run accumulates. The timed steps then alternate between the two modes, ``--rounds`` times; each
flushed row's speedup is against the kept row of its round. The flush-to-zero mode
belongs to a thread, and torch's worker threads take it from the thread that starts them, so
one process can switch it only at one thread: the comparison runs at ``torch.set_num_threads(1)``.

Usage: ``python benchmarks/subnormals.py [--warmup 500] [--json PATH]``.
"""

from __future__ import annotations

import contextlib
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from fqvae.models import build_model  # noqa: E402
from fqvae.training.demo import demo_data  # noqa: E402
from fqvae.training.distributed import Dist  # noqa: E402
from fqvae.training.published import cpu_recipe, published  # noqa: E402
from fqvae.training.step import train_step  # noqa: E402


def make_step(batch: int | None):
    """A closure that trains the CPU recipe's FactorQVAE one step on the next demo batch."""
    recipe = cpu_recipe(published("factorqvae", "shapes3d", "clean"), "factorqvae")
    batch = batch or recipe["batch_size"]
    data = demo_data()
    torch.manual_seed(0)
    model = build_model(
        "factorqvae",
        in_channels=3,
        image_size=recipe["image_size"],
        num_latents=recipe["num_latents"],
        arch=recipe["arch"],
        **recipe["hparams"],
    )
    opt = model.configure_optimizers(recipe["lr"], recipe["iterations"])
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    state = {"step": 0}

    def step():
        start = state["step"] * batch % (len(order) - batch)
        x = data.batch(order[start : start + batch].numpy())
        train_step(model, opt, x, state["step"], contextlib.nullcontext(), Dist())
        state["step"] += 1

    return step, batch


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--warmup", type=int, default=500, help="training steps before timing")
    p.add_argument("--batch", type=int, help="images per step (default: the CPU recipe's)")
    p.add_argument("--rounds", type=int, default=2, help="kept/flushed pairs timed in turn")
    args = p.parse_args()
    if args.device != "cpu":
        p.error("--device: subnormals are a CPU matter; this benchmark runs on the CPU only")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        p.error("flush-to-zero is an x86 mode; this CPU has none to compare")
    torch.set_num_threads(1)
    torch.set_flush_denormal(False)
    step, batch = make_step(args.batch)
    for _ in range(args.warmup):
        step()
    case = f"factorqvae CPU recipe B={batch}, after {args.warmup} steps, 1 thread"
    rows: list[common.Row] = []
    for rnd in range(1, args.rounds + 1):
        mode = f"train step fp32, round {rnd}"
        seconds = {}
        for label, flush in (("subnormals kept", False), ("subnormals flushed", True)):
            torch.set_flush_denormal(flush)
            seconds[flush] = common.median_seconds(step, torch.device("cpu"), args.min_time)
            rows.append(common.step_row(case, label, mode, seconds[flush], seconds[False], batch))
    torch.set_flush_denormal(False)
    meta = common.environment(torch.device("cpu")) | {"warmup": args.warmup, "batch": batch}
    common.report(meta, rows, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
