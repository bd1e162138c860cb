"""Probe a change to ``fqvae demo`` on chosen seeds: one JSON row per model and seed.

Each run is the demo's own (``fqvae.training.demo``: its data, the CPU recipe, its steps,
metrics on 2,000/1,000 points, ``DEMO_HPARAMS``) with the given overrides on top; ``--steps``
goes through the recipe, so the schedules follow it. Rows append to ``rows`` (JSON lines), so
an interrupted probe resumes: a (tag, model, seed) already there is skipped. Runs go to
``--work/TAG/seed-S`` and are replaced on a rerun.

    python studies/demo_probe.py rows.jsonl --tag lr3e-3 --seeds 101-110 \\
        --set train.lr=3e-3 --models factorqvae,ae

``--grid NAME=CLASSES`` replaces the classes the demo's set keeps of one Shapes3D factor
(``0-7``, ``0,3,7``; one class holds it fixed, and a fixed factor is not latent), so a probe
can train on another part of the grid.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fqvae.cli import flush_subnormals
from fqvae.models import MODELS as REGISTRY
from fqvae.training.config import Config, ConfigError, set_item
from fqvae.training.demo import GRID, MODELS, STEPS, demo_config, demo_data, run_demo
from fqvae.training.presets import check_hparams

#: the metrics each row keeps (4 decimals), beside the latents in use and the best NMIs
KEYS = ("dci.disentanglement", "dci.completeness", "infomec.infom", "infomec.infoc", "recon.mse")


def seed_list(text: str) -> list[int]:
    """``"101-103,7"`` -> ``[101, 102, 103, 7]``."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += range(int(lo), int(hi or lo) + 1)
    return seeds


def grid_item(text: str) -> tuple[str, list[int]]:
    """``"scale=0-7"`` -> ``("scale", [0, ..., 7])``; ``"shape=0,2"`` -> ``("shape", [0, 2])``."""
    name, sep, classes = text.partition("=")
    if not sep or not name.strip() or not classes.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=CLASSES (e.g. scale=0-7), got {text!r}")
    try:
        return name.strip(), seed_list(classes)
    except ValueError:
        message = f"classes must be ints or ranges, got {classes!r}"
        raise argparse.ArgumentTypeError(message) from None


def override(cfg: Config, item: str) -> None:
    """Apply ``KEY=VALUE`` to ``cfg`` as ``fqvae train --set`` does (:func:`set_item`); raises
    ``ConfigError`` for a malformed item, an unknown key, a hparam the model lacks, a bad value,
    and ``train.iterations``, whose schedules the recipe has already resolved (use ``--steps``)."""
    key = item.partition("=")[0].strip()
    if key == "train.iterations":
        raise ConfigError("set the steps with --steps, so the schedules follow them")
    if key.startswith("model.hparams."):
        check_hparams(cfg.model.name, [key.removeprefix("model.hparams.")])
    set_item(cfg, item)


def best_nmi(metrics: dict) -> list[float]:
    """Per factor, the highest NMI with any latent (2 decimals)."""
    return [round(max(row), 2) for row in metrics["infomec.nmi"]]  # factors x latents


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rows", type=Path)
    p.add_argument("--tag", required=True)
    p.add_argument("--seeds", type=seed_list, required=True)
    p.add_argument(
        "--models",
        type=lambda s: s.split(","),
        default=list(MODELS),
        help="default: the demo's factorqvae,ae; any fqvae model trains the same way",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=STEPS, help=f"training steps (the demo's {STEPS})")
    p.add_argument("--work", type=Path, default=Path("runs/demo-probe"))
    p.add_argument(
        "--grid",
        type=grid_item,
        action="append",
        default=[],
        metavar="NAME=CLASSES",
        help="the classes of one factor the data keeps (default: the demo's set)",
    )
    args = p.parse_args()
    flush_subnormals()  # as ``fqvae demo`` does, so a row equals the command's run
    grid = {**GRID, **dict(args.grid)}
    try:
        dataset = demo_data(grid)
    except ValueError as exc:
        p.error(f"--grid: {exc}")
    if set(args.models) - set(REGISTRY):
        p.error(f"--models: expected model names ({', '.join(REGISTRY)}), got {args.models}")
    for model in args.models:  # every override must fit every model before the first run
        cfg = demo_config(model, progress=False)
        for item in args.set:
            try:
                override(cfg, item)
            except ConfigError as exc:
                p.error(f"--set {item} ({model}): {exc}")
    done = set()
    if args.rows.exists():
        for line in args.rows.read_text().splitlines():
            row = json.loads(line)
            done.add((row["tag"], row["model"], row["seed"]))
    for seed in args.seeds:
        for model in args.models:
            if (args.tag, model, seed) in done:
                continue
            out = str(args.work / args.tag / f"seed-{seed}")
            cfg = demo_config(model, steps=args.steps, out=out, seed=seed)
            for item in args.set:
                override(cfg, item)
            start = time.perf_counter()
            metrics = run_demo({model: cfg}, dataset, overwrite=True)[model]
            row = {"tag": args.tag, "model": model, "seed": seed, "steps": args.steps}
            row["set"] = args.set
            if args.grid:
                row["grid"] = grid
            row["s"] = round(time.perf_counter() - start)
            row.update({key: round(metrics[key], 4) for key in KEYS})
            row["in_use"] = metrics["infomec.num_active"]
            row["best_nmi"] = best_nmi(metrics)
            with args.rows.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
