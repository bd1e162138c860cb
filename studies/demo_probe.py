"""Probe a change to ``fqvae demo`` on chosen seeds: one JSON row per model and seed.

Each run is the demo's own (``fqvae.training.demo``: its data, the CPU recipe, 1,500 steps,
metrics on 2,000/1,000 points, ``DEMO_HPARAMS``) with the given overrides on top; ``--steps``
goes through the recipe, so the schedules follow it. Rows append to ``rows`` (JSON lines), so
an interrupted probe resumes: a (tag, model, seed) already there is skipped. Runs go to
``--work/TAG/seed-S`` and are replaced on a rerun.

    python studies/demo_probe.py rows.jsonl --tag lr3e-3 --seeds 101-110 \\
        --set train.lr=3e-3 --models factorqvae,ae
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from fqvae.models import MODELS as REGISTRY
from fqvae.training.config import Config
from fqvae.training.demo import MODELS, demo_config, demo_data, run_demo

#: the metrics each row keeps (4 decimals), beside the latents in use and the best NMIs
KEYS = ("dci.disentanglement", "dci.completeness", "infomec.infom", "infomec.infoc", "recon.mse")


def seed_list(text: str) -> list[int]:
    """``"101-103,7"`` -> ``[101, 102, 103, 7]``."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += range(int(lo), int(hi or lo) + 1)
    return seeds


def setting(text: str) -> tuple[str, Any]:
    """``"train.lr=3e-3"`` -> ``("train.lr", 0.003)``; the value is parsed as JSON."""
    key, sep, value = text.partition("=")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        sep = ""
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a JSON value, got {text!r}")
    return key, parsed


def override(cfg: Config, key: str, value: Any) -> None:
    """Set ``train.lr`` or ``model.hparams.gamma`` style keys on ``cfg``; ``KeyError`` names an
    unknown one, ``ValueError`` ``train.iterations`` (the schedules are already resolved from
    it: use ``--steps``)."""
    if key == "train.iterations":
        raise ValueError("set the steps with --steps, so the schedules follow them")
    if key.startswith("model.hparams."):
        cfg.model.hparams[key.removeprefix("model.hparams.")] = value
        return
    section, _, name = key.partition(".")
    target = getattr(cfg, section, None)
    if target is None or not name or not hasattr(target, name):
        raise KeyError(key)
    setattr(target, name, value)


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
    p.add_argument("--set", type=setting, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=1500, help="training steps (the demo's 1500)")
    p.add_argument("--work", type=Path, default=Path("runs/demo-probe"))
    args = p.parse_args()
    if set(args.models) - set(REGISTRY):
        p.error(f"--models: expected model names ({', '.join(REGISTRY)}), got {args.models}")
    for key, value in args.set:
        try:
            override(demo_config(MODELS[0], progress=False), key, value)
        except KeyError:
            p.error(f"--set {key}: no such setting (train.*, model.hparams.*, ...)")
        except ValueError as exc:
            p.error(f"--set {key}: {exc}")
    done = set()
    if args.rows.exists():
        for line in args.rows.read_text().splitlines():
            row = json.loads(line)
            done.add((row["tag"], row["model"], row["seed"]))
    dataset = demo_data()
    for seed in args.seeds:
        for model in args.models:
            if (args.tag, model, seed) in done:
                continue
            out = str(args.work / args.tag / f"seed-{seed}")
            cfg = demo_config(model, steps=args.steps, out=out, seed=seed)
            for key, value in args.set:
                override(cfg, key, value)
            start = time.perf_counter()
            metrics = run_demo({model: cfg}, dataset, overwrite=True)[model]
            row = {"tag": args.tag, "model": model, "seed": seed, "steps": args.steps}
            row["set"] = [f"{key}={json.dumps(value)}" for key, value in args.set]
            row["s"] = round(time.perf_counter() - start)
            row.update({key: round(metrics[key], 4) for key in KEYS})
            row["in_use"] = metrics["infomec.num_active"]
            row["best_nmi"] = best_nmi(metrics)
            with args.rows.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
