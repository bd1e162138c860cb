"""DCI disentanglement, completeness and informativeness (Eastwood & Williams; dlib ``dci.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.stats
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from fqvae.metrics._inputs import (
    as_matrix,
    metadata,
    split_inputs,
)
from fqvae.metrics._parallel import run_jobs

ESTIMATORS = ("gbt", "random_forest", "linear")


def make_estimator(estimator: str | BaseEstimator, seed: int | None) -> BaseEstimator:
    """The per-factor classifier for a DCI ``estimator`` name (or a clone of a given estimator).

    - ``gbt``: ``GradientBoostingClassifier()`` with all defaults (dlib); ``random_state=seed``.
    - ``random_forest``: Tripod's ``RandomForestClassifier(100 trees, entropy, max_depth=10)``.
    - ``linear``: standardise, then multinomial ``LogisticRegression``; importance is the sum
      over classes of ``|coef|``. Fast but not comparable with published DCI numbers.
    """
    if isinstance(estimator, BaseEstimator):
        return clone(estimator)
    if estimator == "gbt":
        return GradientBoostingClassifier(random_state=seed)
    if estimator == "random_forest":
        return RandomForestClassifier(
            n_estimators=100, criterion="entropy", max_depth=10, random_state=seed
        )
    if estimator == "linear":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    raise ValueError(
        f"estimator must be one of {ESTIMATORS} or a scikit-learn classifier, got {estimator!r}"
    )


def _importances(model: BaseEstimator, num_latents: int) -> np.ndarray:
    """Non-negative importance of each input for a fitted model: float64 (num_latents,)."""
    final = model[-1] if isinstance(model, Pipeline) else model
    if hasattr(final, "feature_importances_"):
        return np.abs(np.asarray(final.feature_importances_, dtype=np.float64))
    if hasattr(final, "coef_"):
        weights = np.abs(np.asarray(final.coef_, dtype=np.float64)).reshape(-1, num_latents)
        weights = weights.sum(axis=0)
        total = weights.sum()
        return weights / total if total > 0 else weights
    raise ValueError(
        f"estimator {type(final).__name__} exposes neither feature_importances_ nor coef_"
    )


def disentanglement(importance_matrix: np.ndarray) -> float:
    """D from an importance matrix R (num_latents, num_factors), as dlib computes it."""
    r = np.asarray(importance_matrix, dtype=np.float64)
    per_code = 1.0 - scipy.stats.entropy(r.T + 1e-11, base=r.shape[1])
    if r.sum() == 0.0:
        r = np.ones_like(r)
    weights = r.sum(axis=1) / r.sum()
    return float(np.sum(per_code * weights))


def completeness(importance_matrix: np.ndarray) -> float:
    """C from an importance matrix R (num_latents, num_factors), as dlib computes it."""
    r = np.asarray(importance_matrix, dtype=np.float64)
    per_factor = 1.0 - scipy.stats.entropy(r + 1e-11, base=r.shape[0])
    if r.sum() == 0.0:
        r = np.ones_like(r)
    weights = r.sum(axis=0) / r.sum()
    return float(np.sum(per_factor * weights))


def dci(
    latents_train: Any,
    factors_train: Any,
    latents_test: Any,
    factors_test: Any,
    *,
    estimator: str | BaseEstimator = "gbt",
    seed: int | None = 0,
    n_jobs: int | None = -1,
) -> dict[str, Any]:
    """DCI scores of codes ``latents_*`` (N, num_latents) for ``factors_*`` (N, num_factors).

    One classifier per factor predicts its class from all codes (fitted in parallel with
    joblib, ``n_jobs`` workers). The importance matrix R (num_latents, num_factors) gives
    disentanglement and completeness; informativeness is the mean test accuracy.
    ``seed=None`` leaves the classifiers unseeded, as dlib does.
    """
    z_train = as_matrix(latents_train, "latents_train")
    z_test, y_train, y_test = split_inputs(z_train, latents_test, factors_train, factors_test)
    num_latents, num_factors = z_train.shape[1], y_train.shape[1]
    if num_latents < 2 or num_factors < 2:
        raise ValueError(
            "DCI needs at least 2 latents and 2 factors (its entropies use log base "
            f"num_factors and num_latents); got {num_latents} latents and {num_factors} factors"
        )
    model = make_estimator(estimator, seed)
    if isinstance(estimator, str) and estimator in ("gbt", "random_forest"):
        # sklearn trees cast their input to float32 anyway; do it once, not once per fit.
        z_train, z_test = z_train.astype(np.float32), z_test.astype(np.float32)
    classes = [np.unique(y_train[:, k]).size for k in range(num_factors)]
    models = run_jobs(
        [(clone(model).fit, (z_train, y_train[:, k]), {}) for k in range(num_factors)],
        n_jobs,
        costs=[1 if c == 2 else c for c in classes],
    )
    importance = np.stack([_importances(m, num_latents) for m in models], axis=1)
    train_acc = [np.mean(m.predict(z_train) == y_train[:, k]) for k, m in enumerate(models)]
    test_acc = [np.mean(m.predict(z_test) == y_test[:, k]) for k, m in enumerate(models)]
    return {
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
        "informativeness": float(np.mean(test_acc)),
        "informativeness_train": float(np.mean(train_acc)),
        "importance_matrix": importance,
        **metadata(
            estimator=estimator if isinstance(estimator, str) else type(estimator).__name__,
            seed=seed,
            num_train=len(z_train),
            num_test=len(z_test),
        ),
    }
