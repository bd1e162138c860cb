"""Re-read finished FactorQVAE or QVAE runs: DCI on the codebook index (the reference's code, what
the runs report) and on the codebook value, the latents held at one code, and how much of each
other latent's spread one factor explains.

    python studies/codes.py runs/demo-seeds/seed-{1..10}/factorqvae --out demo.json
    python studies/codes.py runs/long/factorqvae/seed-101 --data shapes3d \
        --data-path data/shapes3d-32 --num-train 3000 --out long.json

Without ``--data`` the runs are demo runs, read on the demo's set. Codes are sampled with the
``factorqvae`` preset on ``--num-train``/half as many test points; at the run's own sizes the
index row reproduces its ``metrics.json``. A latent is *held* when every sampled image
gets the same code; *outside* counts the held latents whose encoder outputs all lie beyond the
codebook's smallest or largest value, where the Gumbel-softmax is saturated and passes no
gradient back. ``shares`` gives, for each latent that is not held, the share of its encoder
output's variance explained by each factor's class means (eta squared, factors in ``factors``
order): a latent that holds one factor alone reads 1.0 for it, a mixture splits.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fqvae.data import load, resize
from fqvae.metrics import evaluate
from fqvae.metrics.sampling import sample_factor_code
from fqvae.training.demo import demo_data
from fqvae.training.evaluation import load_for_eval

KEYS = ("dci.disentanglement", "dci.completeness", "dci.informativeness")
KINDS = ("index", "value")


def factor_shares(z: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Shares (latents, factors) float64 of each column of ``z`` (n, latents) explained by the
    class means of each column of ``s`` (n, factors) int: between-class over total variance,
    0 for a column that does not vary."""
    z = np.asarray(z, dtype=np.float64)
    shares = np.zeros((z.shape[1], s.shape[1]))
    total = z.var(0)
    for f in range(s.shape[1]):
        _, cls = np.unique(s[:, f], return_inverse=True)
        counts = np.bincount(cls)
        means = np.stack([np.bincount(cls, weights=z[:, d]) / counts for d in range(z.shape[1])])
        between = means[:, cls].var(1)
        shares[:, f] = np.divide(between, total, out=np.zeros_like(total), where=total > 0)
    return shares


def read_latents(rep, dataset, n: int) -> tuple[int, int, dict[str, list[float]]]:
    """(held, outside, shares) of the QVAE-family model behind ``rep`` over ``n`` sampled
    images; ``shares`` maps each latent that is not held (``z3``) to :func:`factor_shares`."""
    model = rep.model
    with torch.no_grad():
        z, s = sample_factor_code(dataset, model.encoder, n, np.random.RandomState(0),
                                  batch_size=256, pixels=rep.pixels)  # fmt: skip
    codebook = model.latent.codebook.detach().numpy().ravel()
    index = np.abs(z[:, :, None] - codebook).argmin(-1)
    held = np.array([len(np.unique(index[:, d])) == 1 for d in range(z.shape[1])])
    outside = held & ((z.min(0) > codebook.max()) | (z.max(0) < codebook.min()))
    shares = factor_shares(z, s)
    used = {f"z{d}": [round(float(v), 3) for v in shares[d]] for d in np.flatnonzero(~held)}
    return int(held.sum()), int(outside.sum()), used


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with a checkpoint.pt")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--data", help="dataset name (default: the demo's set)")
    parser.add_argument("--data-path", help="dataset file or folder")
    parser.add_argument("--num-train", type=int, default=2000, help="points (2000, the demo's)")
    args = parser.parse_args(argv)
    data = load(args.data, args.data_path) if args.data else demo_data()
    n = args.num_train
    rows = []
    for run in args.runs:
        row: dict = {"run": str(run)}
        reps = {kind: load_for_eval(run / "checkpoint.pt", "cpu", kind)[0] for kind in KINDS}
        dataset = resize(data, reps["index"].model.image_size)
        for kind, rep in reps.items():
            m = evaluate(rep, dataset, metrics=["dci"], num_train=n, num_test=n // 2,
                         discrete=True, preset="factorqvae", n_jobs=1, progress=False)  # fmt: skip
            row[kind] = {k: round(m[k], 4) for k in KEYS}
        row["held"], row["outside"], row["shares"] = read_latents(reps["index"], dataset, n)
        row["factors"] = [dataset.factor_names[f] for f in dataset.latent_factor_indices]
        print(json.dumps(row), flush=True)
        rows.append(row)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
