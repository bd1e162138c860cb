"""Mutual information gap (Chen et al.; dlib ``mig.py`` with the histogram discretiser)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fqvae.metrics._information import entropies, histogram_discretize, mutual_info_matrix
from fqvae.metrics._inputs import as_matrix, check_same_rows, encode_factors, label_encode, metadata


def mig(
    latents: Any, factors: Any, *, num_bins: int = 20, discretize: bool = True
) -> dict[str, Any]:
    """MIG of codes ``latents`` (N, num_latents) for ``factors`` (N, num_factors).

    Each code is cut into ``num_bins`` equal-width bins (dlib does this to every code, discrete
    or not); ``discretize=False`` uses the code values as labels instead (for index codes).
    ``mi`` is the plug-in MI matrix in nats, (num_latents, num_factors); ``mig`` is the mean
    over factors of (largest MI - second largest MI) / factor entropy.
    """
    z = as_matrix(latents, "latents")
    y, y_sizes = encode_factors(factors, "factors")
    check_same_rows(z, y, "latents", "factors")
    if z.shape[1] < 2:
        raise ValueError(f"MIG needs at least 2 latents, got {z.shape[1]}")
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    codes, code_sizes = label_encode(histogram_discretize(z, num_bins) if discretize else z)
    # Factor first, as dlib calls mutual_info_score(ys[j], mus[i]): identical to the last bit.
    mi = mutual_info_matrix(y, y_sizes, codes, code_sizes).T
    entropy = entropies(y, y_sizes)
    top = np.sort(mi, axis=0)[::-1]
    gaps = (top[0] - top[1]) / entropy
    return {
        "mig": float(np.mean(gaps)),
        "mi": mi,
        "mig_per_factor": gaps,
        "factor_entropy": entropy,
        **metadata(num_bins=num_bins if discretize else None, num_samples=len(z)),
    }
