"""``fqvae demo``: the command line of :mod:`fqvae.training.demo`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fqvae.files import check_output_file
from fqvae.metrics.report import write_json
from fqvae.training.config import ConfigError
from fqvae.training.demo import (
    MODELS,
    STEPS,
    demo_config,
    demo_data,
    format_comparison,
    recipe_note,
    run_demo,
)
from fqvae.training.run_folder import check_run_folder

#: what ``fqvae demo --help`` says
DESCRIPTION = (
    "Train FactorQVAE and a plain autoencoder the same way (small backbone, 32x32 images; "
    f"{recipe_note()}) on a 5,000-image Shapes3D replica rendered in memory (every floor, wall and "
    "object hue, five orientations of one cube), then print their disentanglement metrics, "
    "reconstruction error and latents in use side by side. OUT/MODEL/traversals.png holds each "
    "model's latent traversals, OUT/nmi.png their latent-factor NMI matrices. About 4-5 minutes on "
    "2 CPU cores at the default 2,500 steps (fused Adam, and bf16 matmuls on a CPU with AMX); "
    "more --steps separate the two models more clearly. README.md, section "
    "Results, has the numbers over ten seeds."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="FactorQVAE vs an autoencoder on the CPU in minutes",
        description=DESCRIPTION,
    )
    p.add_argument("--steps", type=int, default=STEPS, help=f"training steps per model ({STEPS})")
    p.add_argument("--out", default="runs/demo", help="output folder (runs/demo)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--num-train", type=int, default=2000, help="metric sample size (2000)")
    p.add_argument("--seed", type=int, default=1, help="seed of both runs (1)")
    p.add_argument("--json", type=Path, help="also write both results to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fqvae.plots import save_heatmaps

    start = time.perf_counter()
    try:
        if args.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {args.steps}")
        if args.num_train < 4:
            raise ConfigError(f"--num-train must be at least 4, got {args.num_train}")
        configs = {
            m: demo_config(
                m,
                args.steps,
                args.out,
                args.device,
                args.num_train,
                args.num_train // 2,
                args.seed,
            )
            for m in MODELS
        }
        for cfg in configs.values():
            check_run_folder(Path(cfg.out), resume=False, overwrite=args.overwrite)
        if args.json:
            check_output_file(args.json, "--json")
        dataset = demo_data()
        results = run_demo(configs, dataset, overwrite=args.overwrite)
    except (ConfigError, FileNotFoundError, OSError) as exc:
        print(f"fqvae demo: error: {exc}", file=sys.stderr)
        return 2
    cfg = configs[MODELS[0]]
    print(
        f"\n{len(MODELS)} models ({cfg.model.arch} backbone, {cfg.data.image_size}px, "
        f"{recipe_note()}), {cfg.train.iterations} steps each, "
        f"metrics on {cfg.eval.final_num_train} samples:"
    )
    print(format_comparison(results))
    out = Path(args.out)
    heatmap = save_heatmaps(
        {m: np.asarray(results[m]["infomec.nmi"]).T for m in MODELS},
        [dataset.factor_names[i] for i in dataset.latent_factor_indices],
        out / "nmi.png",
        "NMI between latents and factors",
    )
    print(f"traversals: {', '.join(str(out / m / 'traversals.png') for m in MODELS)}")
    print(f"NMI matrices: {heatmap}")
    if args.json:
        write_json(results, args.json)
        print(f"results: {args.json}")
    print(f"total time {time.perf_counter() - start:.0f} s")
    return 0
