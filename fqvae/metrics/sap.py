"""Separated attribute predictability (Kumar et al.; dlib ``sap_score.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.svm import LinearSVC

from fqvae.metrics._inputs import (
    as_matrix,
    check_not_constant,
    check_same_rows,
    metadata,
    split_inputs,
)
from fqvae.metrics._parallel import run_jobs


def _svm(seed: int | None) -> LinearSVC:
    # dual=True was LinearSVC's default when dlib was written (it is "auto" now).
    return LinearSVC(C=0.01, class_weight="balanced", dual=True, random_state=seed)


def _squared_correlations(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dlib's continuous-factor score: cov(z_d, y_k)^2 / (var z_d var y_k), 0 where var z_d ~ 0."""
    scores = np.zeros((z.shape[1], y.shape[1]))
    for d in range(z.shape[1]):
        for k in range(y.shape[1]):
            cov = np.cov(z[:, d], y[:, k], ddof=1)
            if cov[0, 0] > 1e-12:
                scores[d, k] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
    return scores


def sap(
    latents_train: Any,
    factors_train: Any,
    latents_test: Any = None,
    factors_test: Any = None,
    *,
    continuous_factors: bool = False,
    seed: int | None = 0,
    n_jobs: int | None = -1,
) -> dict[str, Any]:
    """SAP of codes ``latents_*`` (N, num_latents) for ``factors_*`` (N, num_factors).

    The score matrix S (num_latents, num_factors) holds, for discrete factors, the test accuracy
    of ``LinearSVC(C=0.01, class_weight="balanced")`` fitted on the single code d; with
    ``continuous_factors=True`` it holds the squared correlation on the training split (the
    raw factor values are used and the test split is ignored). SAP is the mean over factors of
    the gap between the two largest scores.
    """
    z_train = as_matrix(latents_train, "latents_train")
    if z_train.shape[1] < 2:
        raise ValueError(f"SAP needs at least 2 latents, got {z_train.shape[1]}")
    if continuous_factors:
        y_train = as_matrix(factors_train, "factors_train").astype(np.float64)
        check_not_constant(y_train, "factors_train")
        check_same_rows(z_train, y_train, "latents_train", "factors_train")
        scores = _squared_correlations(z_train.astype(np.float64), y_train)
        num_test, not_converged = 0, 0
    else:
        if latents_test is None or factors_test is None:
            raise ValueError("latents_test and factors_test are required for discrete factors")
        z_test, y_train, y_test = split_inputs(z_train, latents_test, factors_train, factors_test)
        num_latents, num_factors = z_train.shape[1], y_train.shape[1]
        pairs = [(d, k) for d in range(num_latents) for k in range(num_factors)]
        svms = run_jobs(
            [(_svm(seed).fit, (z_train[:, d : d + 1], y_train[:, k]), {}) for d, k in pairs],
            n_jobs,
        )
        scores = np.empty((num_latents, num_factors))
        for (d, k), svm in zip(pairs, svms):
            scores[d, k] = np.mean(svm.predict(z_test[:, d : d + 1]) == y_test[:, k])
        num_test = len(z_test)
        not_converged = sum(int(np.max(svm.n_iter_) >= svm.max_iter) for svm in svms)
    top = np.sort(scores, axis=0)
    return {
        "sap": float(np.mean(top[-1] - top[-2])),
        "score_matrix": scores,
        "svm_not_converged": not_converged,
        **metadata(
            continuous_factors=continuous_factors,
            seed=seed,
            num_train=len(z_train),
            num_test=num_test,
        ),
    }
