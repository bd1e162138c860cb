"""``fqvae demo``: train a small FactorQVAE on CPU in a few minutes and compare it with the
same network untrained.

The model is FactorQVAE with the light ``small`` backbone, on the procedural ``toy`` set
(coloured squares, 4 factors) or on dSprites. The untrained baseline is the identical network
at its initial weights (same seed), evaluated the same way; the table shows DCI and InfoMEC on
both, plus the held-out reconstruction error. The latent traversals of the trained model are
written to ``OUT/traversals.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from fqvae import presets
from fqvae.config import Config, ConfigError
from fqvae.distributed import Dist
from fqvae.train import FIGURE_IMAGES, build, data_split, evaluate, load_data, pick_device, train

ROWS = (
    ("dci.disentanglement", "DCI disentanglement"),
    ("dci.completeness", "DCI completeness"),
    ("dci.informativeness", "DCI informativeness"),
    ("infomec.infom", "InfoM (modularity)"),
    ("infomec.infoc", "InfoC (compactness)"),
    ("infomec.infoe", "InfoE (explicitness)"),
    ("recon.mse", "reconstruction MSE"),
)


def demo_config(
    steps: int = 1000,
    out: str = "runs/demo",
    data: str = "toy",
    data_path: str | None = None,
    device: str = "auto",
    num_train: int = 1000,
    num_test: int = 500,
    seed: int = 1,
    progress: bool = True,
) -> Config:
    """The demo's resolved configuration: FactorQVAE, ``small`` backbone, batch 64, the
    ``clean`` fidelity (tau and the cosine learning rate span the run)."""
    cfg = Config(out=out)
    cfg.model.name, cfg.model.arch = "factorqvae", "small"
    cfg.data.name, cfg.data.path = data, data_path
    t = cfg.train
    t.fidelity, t.iterations, t.batch, t.seed = "clean", steps, 64, seed
    cfg.system.device = device
    cfg.log.every, cfg.log.ckpt_every, cfg.log.progress = 25, 0, progress
    cfg.log.tensorboard = False
    cfg.eval.metrics = ["dci", "infomec"]
    cfg.eval.final_num_train, cfg.eval.final_num_test = num_train, num_test
    presets.resolve(cfg)
    return cfg


def run_demo(cfg: Config) -> dict[str, dict[str, Any]]:
    """Evaluate the untrained network, train it, evaluate again; returns both results."""
    dataset = load_data(cfg.data.name, cfg.data.path)
    presets.finalize(cfg, dataset)
    torch.manual_seed(cfg.train.seed)  # exactly as train() seeds the model it builds
    untrained, _ = build(cfg, dataset)
    device = pick_device(cfg, Dist())
    untrained.to(device)
    held_out = dataset.batch(
        data_split(dataset, cfg)[1][:FIGURE_IMAGES], device, pixels=untrained.pixels
    )
    before = evaluate(
        untrained, dataset, held_out, cfg, cfg.eval.final_num_train, cfg.eval.final_num_test, device
    )
    after = train(cfg, dataset=dataset).metrics
    return {"untrained": before, "trained": after}


def format_comparison(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'':24}{'untrained':>11}{'trained':>11}"]
    for key, label in ROWS:
        a, b = results["untrained"].get(key), results["trained"].get(key)
        if a is not None and b is not None:
            lines.append(f"{label:24}{a:11.4f}{b:11.4f}")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo", help="train a small FactorQVAE on CPU in minutes", description=__doc__
    )
    p.add_argument("--steps", type=int, default=1000, help="training steps (1000)")
    p.add_argument("--out", default="runs/demo", help="output folder (runs/demo)")
    p.add_argument(
        "--data",
        default="toy",
        choices=("toy", "dsprites"),
        help="toy (generated in memory, default) or dsprites (needs --data-path)",
    )
    p.add_argument("--data-path", help="dataset file or folder for --data dsprites")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--num-train", type=int, default=1000, help="metric sample size (1000)")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        cfg = demo_config(
            args.steps,
            args.out,
            args.data,
            args.data_path,
            args.device,
            args.num_train,
            args.num_train // 2,
            args.seed,
        )
        results = run_demo(cfg)
    except (ConfigError, FileNotFoundError, OSError) as exc:
        print(f"fqvae demo: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"\nFactorQVAE ({cfg.model.arch} backbone) on {cfg.data.name}, {cfg.train.iterations} "
        f"steps of {cfg.train.batch} images, metrics on {cfg.eval.final_num_train} samples:"
    )
    print(format_comparison(results))
    print(f"traversals: {cfg.out}/traversals.png   codebook usage: {cfg.out}/codebook_usage.png")
    print(f"total time {time.perf_counter() - start:.0f} s")
    return 0
