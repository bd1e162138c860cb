"""Is each factor in a trained model's code at all? One classifier per factor, on the codes.

DCI informativeness averages the factors; this keeps them apart. For each run, codes are
sampled like a metric's (a ``RandomState(0)`` draw of ``--num-train`` then ``--num-test``
points), read through the codebook value where the model has one (``--repr value``: ordered,
unlike the index), and a gradient-boosted classifier per factor (50 trees, seeded) reports its
held-out accuracy, beside the chance level of a uniform factor.

    python studies/factor_accuracy.py runs/quantizer/factorqvae/seed-101 \
        --data shapes3d --data-path data/shapes3d-32 --out factor-accuracy.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingClassifier

from fqvae.data import load, resize
from fqvae.files import check_output_file
from fqvae.metrics.sampling import sample_factor_code
from fqvae.models import hparam_defaults
from fqvae.training import checkpoint
from fqvae.training.evaluation import load_for_eval
from fqvae.training.run_folder import MANIFEST


def factor_accuracy(run: Path, dataset, num_train: int, num_test: int) -> dict[str, float]:
    """Held-out accuracy per factor name of one classifier per factor on ``run``'s codes."""
    # the name from the run manifest, so the checkpoint is read once
    name = json.loads((run / MANIFEST).read_text())["model_kwargs"]["name"]
    repr_ = "value" if "repr" in hparam_defaults(name) else None
    rep, _, _ = load_for_eval(run / checkpoint.CHECKPOINT, "cpu", repr=repr_)
    if rep.image_size is not None:  # the side the model was trained at
        dataset = resize(dataset, rep.image_size)
    rng = np.random.RandomState(0)
    draw = dict(batch_size=256, pixels=rep.pixels)
    z_train, y_train = sample_factor_code(dataset, rep, num_train, rng, **draw)
    z_test, y_test = sample_factor_code(dataset, rep, num_test, rng, **draw)
    names = [dataset.factor_names[i] for i in dataset.latent_factor_indices]
    out = {}
    for k, factor in enumerate(names):
        model = GradientBoostingClassifier(n_estimators=50, random_state=0)
        out[factor] = float(model.fit(z_train, y_train[:, k]).score(z_test, y_test[:, k]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders with a checkpoint.pt")
    parser.add_argument("--data", default="shapes3d")
    parser.add_argument("--data-path", help="dataset file or folder (procedural sets: none)")
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-test", type=int, default=2000)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    try:
        out = check_output_file(args.out, "--out", args.overwrite)
    except OSError as exc:
        print(f"factor_accuracy: error: {exc}", file=sys.stderr)
        return 2
    missing = [r for r in args.runs if not (Path(r) / checkpoint.CHECKPOINT).is_file()]
    if missing:
        print(f"factor_accuracy: error: no checkpoint.pt in {missing[0]}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    dataset = load(args.data, args.data_path)
    sizes = {
        dataset.factor_names[i]: dataset.factor_sizes[i] for i in dataset.latent_factor_indices
    }
    rows = {}
    for run in args.runs:
        rows[run] = factor_accuracy(Path(run), dataset, args.num_train, args.num_test)
        print(run, "  ".join(f"{k} {v:.2f}" for k, v in rows[run].items()), flush=True)
    chance = {k: 1.0 / v for k, v in sizes.items()}
    settings = {"num_train": args.num_train, "num_test": args.num_test, "chance": chance}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": settings, "runs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
