"""One call that samples codes like dlib and runs several metrics on them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fqvae.metrics._inputs import metadata
from fqvae.metrics.dci import dci
from fqvae.metrics.factorvae import factorvae_score
from fqvae.metrics.infomec import infomec
from fqvae.metrics.mig import mig
from fqvae.metrics.sampling import (
    PIXELS,
    GroundTruth,
    RepresentationFn,
    resolve_device,
    sample_factor_code,
)
from fqvae.metrics.sap import sap

METRICS = ("dci", "infomec", "mig", "sap", "factorvae")

# Reference settings (spec metrics.md §11): the sampling seed and per-metric options.
PRESETS: dict[str, dict[str, Any]] = {
    "dlib": {"seed": 0, "options": {}},
    "factorqvae": {"seed": 1, "options": {"infomec": {"n_neighbors": 3, "max_iter": 500}}},
    "qlae_training_loop": {
        "seed": 0,
        "options": {"infomec": {"path": "training_loop", "n_neighbors": 3}},
    },
}


def infer_discrete(codes: np.ndarray) -> bool:
    """True when every code is integer-valued (index codes); quantized float values such as
    QLAE's ``z_hat`` are not recognised and need ``discrete=True``."""
    if np.issubdtype(codes.dtype, np.integer) or np.issubdtype(codes.dtype, np.bool_):
        return True
    return bool(np.all(np.isfinite(codes)) and np.all(codes == np.round(codes)))


def _options(
    preset: str | None, options: dict[str, dict[str, Any]] | None, seed: int | None
) -> tuple[int, dict[str, dict[str, Any]]]:
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)} or None, got {preset!r}")
    base = PRESETS[preset] if preset else {"seed": 0, "options": {}}
    unknown = set(options or {}) - set(METRICS)
    if unknown:
        raise ValueError(f"options has unknown metric(s) {sorted(unknown)}; known: {METRICS}")
    merged = {m: {**base["options"].get(m, {}), **(options or {}).get(m, {})} for m in METRICS}
    return (base["seed"] if seed is None else seed), merged


def _check_settings(metrics: tuple[str, ...], num_train: Any, num_test: Any, n_jobs: Any) -> None:
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {METRICS}, got {metrics}")
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if not isinstance(value, int) or value < 2:
            raise ValueError(f"{name} must be an int >= 2, got {value!r}")
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or not n_jobs
    ):
        raise ValueError(f"n_jobs must be a non-zero int (-1: all cores), got {n_jobs!r}")


def evaluate(
    representation_fn: RepresentationFn,
    dataset: GroundTruth,
    *,
    metrics: Sequence[str] = ("dci", "infomec", "mig"),
    num_train: int = 10000,
    num_test: int = 5000,
    batch_size: int = 16,
    seed: int | None = None,
    discrete: bool | None = None,
    device: Any = None,
    pixels: str | None = None,
    n_jobs: int | None = -1,
    preset: str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``metrics`` on ``representation_fn`` over ``dataset``; returns one flat dict.

    Codes are drawn once, as every dlib metric draws them from its own
    ``RandomState(seed)``: ``num_train`` points, then ``num_test`` more (DCI and SAP only), in
    batches of ``batch_size`` through ``representation_fn`` on ``device`` (default: the
    device of its parameters). MIG and InfoMEC use the ``num_train`` points; the FactorVAE
    score samples its own batches. Keys are ``"<metric>.<name>"`` (e.g.
    ``"dci.disentanglement"``) plus the run's bookkeeping. ``discrete=None`` treats
    integer-valued codes as discrete. ``preset`` (``dlib``, ``factorqvae``,
    ``qlae_training_loop``) sets the seed and metric options; ``options`` maps a metric name to
    extra keyword arguments for it (e.g. ``{"dci": {"estimator": "linear"}}``).
    """
    metrics = tuple(metrics)
    _check_settings(metrics, num_train, num_test, n_jobs)
    seed, opts = _options(preset, options, seed)
    pixels = pixels if pixels is not None else getattr(representation_fn, "pixels", "unit")
    if pixels not in PIXELS:
        raise ValueError(f"pixels must be one of {PIXELS}, got {pixels!r}")
    device = resolve_device(representation_fn, device)
    sampled = [m for m in metrics if m != "factorvae"]
    needs_test = any(m in ("dci", "sap") for m in metrics)
    result: dict[str, Any] = metadata(
        seed=seed,
        num_train=num_train,
        num_test=num_test if needs_test else 0,
        preset=preset,
        pixels=pixels,
    )
    if sampled:
        rng = np.random.RandomState(seed)
        draw = dict(batch_size=batch_size, device=device, pixels=pixels, progress=progress)
        z_train, y_train = sample_factor_code(dataset, representation_fn, num_train, rng, **draw)
        if needs_test:
            z_test, y_test = sample_factor_code(dataset, representation_fn, num_test, rng, **draw)
        if discrete is None:
            discrete = infer_discrete(z_train)
        result["representation"] = "discrete" if discrete else "continuous"
    for name in tqdm(metrics, desc="metrics", disable=not progress):
        start = time.perf_counter()
        if name == "dci":
            out = dci(z_train, y_train, z_test, y_test, seed=seed, n_jobs=n_jobs, **opts[name])
        elif name == "sap":
            out = sap(z_train, y_train, z_test, y_test, seed=seed, n_jobs=n_jobs, **opts[name])
        elif name == "mig":
            out = mig(z_train, y_train, **opts[name])
        elif name == "infomec":
            out = infomec(
                z_train, y_train, discrete=discrete, seed=seed, n_jobs=n_jobs, **opts[name]
            )
        else:
            out = factorvae_score(
                representation_fn,
                dataset,
                seed=seed,
                device=device,
                pixels=pixels,
                progress=progress,
                **opts[name],
            )
        out.pop("sklearn_version")
        result.update({f"{name}.{key}": value for key, value in out.items()})
        result[f"{name}.time_s"] = time.perf_counter() - start
    return result
