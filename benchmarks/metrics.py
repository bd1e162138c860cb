"""Time the disentanglement metrics at the standard sizes (10,000 train / 5,000 test points) on
Shapes3D-shaped synthetic codes: 6 factors of sizes [10, 10, 10, 8, 4, 15], 12 latents (six
noisy factor read-outs, three two-factor mixtures, two noise codes, one dead code), used as
continuous values or as 16-level index codes. No dataset file is needed.

Rows with ``workers = 1`` run in-process on one core; the others use ``--n-jobs`` worker
processes. Both give the same values (checked). Each row records the 1-minute load average, and
``parallel_probe`` in the metadata is the speed-up of pure-Python work spread over the workers
(how many cores were actually free). The ``reference loop`` rows compute InfoMEC the
way the QLAE authors' code does (pair-by-pair scikit-learn calls, dense one-hot features,
fitted null models) for comparison.

Usage: ``python benchmarks/metrics.py [--n-jobs -1] [--metrics dci,infomec] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import sklearn
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, mutual_info_score
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from fqvae.metrics import dci, factorvae_score, infomec, mig, sap
from fqvae.metrics.report import write_json

SIZES = (10, 10, 10, 8, 4, 15)
# Latent j reads sum_k MIXING[k, j] * u_k (u_k: factor k scaled into (0, 1)) plus NOISE[j].
MIXING = np.zeros((6, 12))
MIXING[np.arange(6), np.arange(6)] = 1.0
MIXING[[0, 1], 6] = (0.6, 0.4)
MIXING[[2, 3], 7] = (0.6, 0.4)
MIXING[[4, 5], 8] = (0.5, 0.5)
NOISE = np.array([0.05] * 9 + [0.3, 0.3, 0.01])
CASES = ("dci", "mig", "sap", "infomec", "factorvae")


def codes_of(classes: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Continuous codes (n, 12) float32 of factor classes (n, 6)."""
    u = (classes + 0.5) / np.array(SIZES)
    return (u @ MIXING + NOISE * rng.randn(len(classes), 12)).astype(np.float32)


def to_index_codes(z: np.ndarray, levels: int = 16) -> np.ndarray:
    """16-level index codes (n, 12) int64: each latent quantised over its own range."""
    lo, hi = z.min(axis=0), z.max(axis=0)
    return np.clip(((z - lo) / (hi - lo) * levels).astype(np.int64), 0, levels - 1)


def synthetic(num_train: int, num_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    y = np.stack([rng.randint(s, size=num_train + num_test) for s in SIZES], axis=1)
    z = codes_of(y, rng)
    return {
        "y": y[:num_train],
        "y_test": y[num_train:],
        "z": z[:num_train],
        "z_test": z[num_train:],
        "idx": to_index_codes(z)[:num_train],
    }


class SyntheticShapes:
    """Shapes3D-shaped ground-truth data whose "image" of a factor vector is the vector itself
    (for the FactorVAE score, which samples its own batches)."""

    factor_sizes = list(SIZES)
    latent_factor_indices = list(range(6))

    def sample_factors(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        return np.stack([rng.randint(s, size=n) for s in SIZES], axis=1)

    def factors_to_index(self, classes: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(tuple(classes.T), SIZES)

    def batch(self, indices: np.ndarray, device: Any, pixels: str = "unit") -> torch.Tensor:
        classes = np.stack(np.unravel_index(indices, SIZES), axis=1)
        return torch.tensor(classes, dtype=torch.float32, device=device)[:, :, None, None]


def synthetic_encoder(seed: int = 0) -> Callable[[torch.Tensor], np.ndarray]:
    rng = np.random.RandomState(seed)
    return lambda x: codes_of(x.flatten(1).numpy(), rng)


def reference_infomec(z: np.ndarray, y: np.ndarray, discrete: bool, k: int = 10) -> dict:
    """InfoMEC as the reference code computes it (spec metrics.md §7.1), for timing."""
    h = np.array([mutual_info_score(s, s) for s in y.T])
    nmi = np.zeros((y.shape[1], z.shape[1]))
    for i in range(y.shape[1]):
        for j in range(z.shape[1]):
            if discrete:
                nmi[i, j] = mutual_info_score(y[:, i], z[:, j]) / h[i]
            elif z[:, j].std() > 0:
                x = (z[:, j] - z[:, j].mean()) / z[:, j].std()
                nmi[i, j] = (
                    mutual_info_classif(x[:, None], y[:, i], n_neighbors=k, random_state=0)[0]
                    / h[i]
                )
    r = z.max(axis=0) - z.min(axis=0)
    p = nmi[:, r > 0 if discrete else r > r.max() / 20]
    infom = (np.mean(p.max(0) / p.sum(0)) - 1 / p.shape[0]) / (1 - 1 / p.shape[0])
    infoc = (np.mean(p.max(1) / p.sum(1)) - 1 / p.shape[1]) / (1 - 1 / p.shape[1])
    x = (
        OneHotEncoder(sparse_output=False).fit_transform(z)
        if discrete
        else (StandardScaler().fit_transform(z))
    )

    def cross_entropy(features: np.ndarray, s: np.ndarray) -> float:
        model = LogisticRegression(C=np.inf, max_iter=100, class_weight="balanced")
        return log_loss(s, model.fit(features, s).predict_proba(features))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = [1 - cross_entropy(x, s) / cross_entropy(0 * x, s) for s in y.T]
    return {"infom": infom, "infoe": float(np.mean(e)), "infoc": infoc}


def _spin() -> int:
    total = 0
    for i in range(20_000_000):
        total += i
    return total


def parallel_probe(n_jobs: int) -> float:
    """How many cores this process can use right now: the time of ``workers`` pure-Python
    spins run one after another, over their time in ``workers`` parallel processes."""
    workers = effective_n_jobs(n_jobs)
    Parallel(n_jobs=workers)(delayed(_spin)() for _ in range(workers))  # start the workers
    start = time.perf_counter()
    for _ in range(workers):
        _spin()
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    Parallel(n_jobs=workers)(delayed(_spin)() for _ in range(workers))
    return round(sequential / (time.perf_counter() - start), 2)


def measure(fn: Callable[..., dict], *args: Any, **kwargs: Any) -> tuple[float, dict]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def same_values(a: dict, b: dict, keys: tuple[str, ...], atol: float = 0.0) -> bool:
    return all(np.allclose(a[k], b[k], rtol=0.0, atol=atol) for k in keys)


class Recorder:
    """Times metric calls and collects one row per call."""

    def __init__(self, n_jobs: int) -> None:
        self.n_jobs, self.workers, self.rows = n_jobs, effective_n_jobs(n_jobs), []

    def add(
        self,
        metric: str,
        variant: str,
        workers: int,
        seconds: float,
        out: dict,
        keys: tuple[str, ...],
        same: bool | None = None,
    ) -> None:
        values = {k: round(float(out[k]), 4) for k in keys}
        self.rows.append(
            {
                "metric": metric,
                "variant": variant,
                "workers": workers,
                "seconds": round(seconds, 2),
                "values": values,
                "same_values": same,
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        )
        print(
            f"  {metric:<9} {variant:<28} workers={workers:<3} {seconds:8.2f} s  {values}",
            flush=True,
        )

    def one_and_many(
        self,
        metric: str,
        variant: str,
        fn: Callable[..., dict],
        args: tuple,
        kwargs: dict,
        keys: tuple[str, ...],
        compare: tuple[str, ...],
    ) -> dict:
        """Time ``fn`` in-process (n_jobs=1), then with the worker pool; check equal values."""
        seconds, one = measure(fn, *args, n_jobs=1, **kwargs)
        self.add(metric, variant, 1, seconds, one, keys)
        if self.workers > 1:
            seconds, many = measure(fn, *args, n_jobs=self.n_jobs, **kwargs)
            self.add(
                metric, variant, self.workers, seconds, many, keys, same_values(one, many, compare)
            )
        return one


def run(cases: tuple[str, ...], n_jobs: int, num_train: int, num_test: int) -> list[dict]:
    d = synthetic(num_train, num_test)
    rec = Recorder(n_jobs)
    split = (d["z"], d["y"], d["z_test"], d["y_test"])
    # Start the worker pool once, outside the timings (a one-off cost per process).
    dci(*(a[:200] for a in split), estimator="linear", n_jobs=n_jobs)
    if "dci" in cases:
        keys = ("disentanglement", "completeness", "informativeness")
        for estimator in ("gbt", "random_forest", "linear"):
            rec.one_and_many(
                "dci",
                estimator,
                dci,
                split,
                {"estimator": estimator},
                keys,
                keys + ("importance_matrix",),
            )
    if "mig" in cases:
        seconds, out = measure(mig, d["z"], d["y"])
        rec.add("mig", "20 bins", 1, seconds, out, ("mig",))
    if "sap" in cases:
        rec.one_and_many("sap", "LinearSVC", sap, split, {}, ("sap",), ("score_matrix",))
    if "infomec" in cases:
        keys = ("infom", "infoe", "infoc")
        for kind, z, discrete in (("discrete", d["idx"], True), ("continuous", d["z"], False)):
            ours = rec.one_and_many(
                "infomec", kind, infomec, (z, d["y"]), {"discrete": discrete}, keys, keys + ("nmi",)
            )
            seconds, ref = measure(reference_infomec, z, d["y"], discrete)
            rec.add(
                "infomec",
                f"{kind} reference loop",
                1,
                seconds,
                ref,
                keys,
                # InfoE's lbfgs fits stop at tol=1e-4, on dense vs sparse features here
                same_values(ours, ref, keys, atol=1e-5),
            )
    if "factorvae" in cases:
        seconds, out = measure(factorvae_score, synthetic_encoder(), SyntheticShapes())
        rec.add("factorvae", "64-point votes", 1, seconds, out, ("train_accuracy", "eval_accuracy"))
    return rec.rows


def print_table(rows: list[dict]) -> None:
    headers = ("metric", "variant", "workers", "seconds", "same values", "load")
    table = [
        (
            r["metric"],
            r["variant"],
            str(r["workers"]),
            f"{r['seconds']:.2f}",
            "" if r["same_values"] is None else ("yes" if r["same_values"] else "NO"),
            f"{r['load_average_1min']:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    p.add_argument("--metrics", default=",".join(CASES), help=f"subset of {','.join(CASES)}")
    p.add_argument("--num-train", type=int, default=10000)
    p.add_argument("--num-test", type=int, default=5000)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args()
    cases = tuple(m.strip() for m in args.metrics.split(","))
    unknown = set(cases) - set(CASES)
    if unknown:
        p.error(f"unknown metrics {sorted(unknown)}")
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "n_jobs": args.n_jobs,
        "workers": effective_n_jobs(args.n_jobs),
        "num_train": args.num_train,
        "num_test": args.num_test,
        "load_average_before": os.getloadavg(),
        "numpy": np.__version__,
        "sklearn_version": sklearn.__version__,
        "torch": torch.__version__,
    }
    meta["parallel_probe_before"] = parallel_probe(args.n_jobs)
    print(f"metrics benchmark: {meta}")
    rows = run(cases, args.n_jobs, args.num_train, args.num_test)
    meta["load_average_after"] = os.getloadavg()
    meta["parallel_probe_after"] = parallel_probe(args.n_jobs)
    print()
    print_table(rows)
    if args.json:
        print(f"wrote {write_json({'meta': meta, 'rows': rows}, args.json)}")


if __name__ == "__main__":
    main()
