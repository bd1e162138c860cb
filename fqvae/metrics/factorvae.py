"""FactorVAE score (Kim & Mnih; dlib ``factor_vae.py``), majority-vote classifier."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fqvae.metrics._inputs import metadata
from fqvae.metrics.sampling import (
    PIXELS,
    GroundTruth,
    RepresentationFn,
    check_dataset,
    complete_factors,
    encode,
    images,
    resolve_device,
)

_ENCODE_CHUNK = 64  # dlib's eval_batch_size for the global variance estimate


def _votes(
    dataset: GroundTruth,
    representation_fn: RepresentationFn,
    rng: np.random.RandomState,
    num_votes: int,
    batch_size: int,
    scale: np.ndarray,
    active: np.ndarray,
    device: torch.device,
    pixels: str,
    bar: tqdm,
) -> np.ndarray:
    """Vote counts (num_factors, num_latents): for each vote, fix one random factor across a
    batch and vote for the active code with the smallest variance relative to ``scale``."""
    num_factors = len(dataset.latent_factor_indices)
    votes = np.zeros((num_factors, len(scale)), dtype=np.int64)
    for _ in range(num_votes):
        k = rng.randint(num_factors)
        factors = np.asarray(dataset.sample_factors(batch_size, rng), dtype=np.int64)
        factors[:, k] = factors[0, k]
        x = images(dataset, complete_factors(dataset, factors, rng), device, pixels)
        codes = encode(representation_fn, x)
        local = np.var(codes, axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            # 0/0 is NaN and argmin returns the first NaN, as in dlib.
            votes[k, np.argmin(local[active] / scale[active])] += 1
        bar.update()
    return votes


def factorvae_score(
    representation_fn: RepresentationFn,
    dataset: GroundTruth,
    *,
    seed: int = 0,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    threshold: float = 0.05,
    device: Any = None,
    pixels: str = "unit",
    progress: bool = False,
) -> dict[str, Any]:
    """FactorVAE score of ``representation_fn`` on ``dataset`` (sampled from ``RandomState(seed)``).

    Codes whose global standard deviation is below ``threshold`` are pruned (dlib's study
    config uses 0.05, its code default 0). ``num_active_dims_dlib`` repeats dlib's
    ``num_active_dims``, which is the mask length rather than the count.
    """
    for name, value in (
        ("batch_size", batch_size),
        ("num_train", num_train),
        ("num_eval", num_eval),
        ("num_variance_estimate", num_variance_estimate),
    ):
        if not isinstance(value, int) or value < 2:
            raise ValueError(f"{name} must be an int >= 2, got {value!r}")
    if pixels not in PIXELS:
        raise ValueError(f"pixels must be one of {PIXELS}, got {pixels!r}")
    check_dataset(dataset)
    device = resolve_device(representation_fn, device)
    rng = np.random.RandomState(seed)
    factors = np.asarray(dataset.sample_factors(num_variance_estimate, rng), dtype=np.int64)
    classes = complete_factors(dataset, factors, rng)
    codes = np.concatenate(
        [
            encode(representation_fn, images(dataset, chunk, device, pixels))
            for chunk in np.array_split(classes, range(_ENCODE_CHUNK, len(classes), _ENCODE_CHUNK))
        ]
    )
    if not np.all(np.isfinite(codes)):
        raise ValueError("representation_fn returned NaN or inf codes")
    global_var = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_var) >= threshold
    meta = metadata(
        seed=seed,
        num_train=num_train,
        num_eval=num_eval,
        batch_size=batch_size,
        num_variance_estimate=num_variance_estimate,
        threshold=threshold,
    )
    if not active.any():
        return {
            "train_accuracy": 0.0,
            "eval_accuracy": 0.0,
            "num_active_dims": 0,
            "num_active_dims_dlib": 0,
            **meta,
        }
    with tqdm(total=num_train + num_eval, desc="factorvae votes", disable=not progress) as bar:
        args = (batch_size, global_var, active, device, pixels, bar)
        train_votes = _votes(dataset, representation_fn, rng, num_train, *args)
        eval_votes = _votes(dataset, representation_fn, rng, num_eval, *args)
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(train_votes.shape[1])
    return {
        "train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
        "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
        "num_active_dims": int(active.sum()),
        "num_active_dims_dlib": len(active),
        **meta,
    }
