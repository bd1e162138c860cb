"""InfoMEC: InfoM (modularity), InfoE (explicitness), InfoC (compactness) (Hsu et al., 2023).

Two variants of the QLAE authors' code are available through ``path``:

- ``"standalone"`` (default): ``disentangle/metrics/infomec.py``;
- ``"training_loop"``: the metrics logged by their training loop (``mutual_information.py``,
  ``explicitness.py``), which also reports the MIG-like gaps and binned NMI matrices.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from fqvae.metrics._information import (
    entropies,
    histogram_discretize,
    mutual_info_matrix,
)
from fqvae.metrics._inputs import as_matrix, check_same_rows, encode_factors, label_encode, metadata
from fqvae.metrics._parallel import run_jobs

PATHS = ("standalone", "training_loop")
BINNED_NMI_BINS = (10, 20, 50, "auto")


def _lr(max_iter: int) -> LogisticRegression:
    """The reference's balanced multinomial logistic regression without penalty (``C=inf``;
    ``penalty=None`` is deprecated since scikit-learn 1.8)."""
    return LogisticRegression(
        C=np.inf,
        solver="lbfgs",
        max_iter=max_iter,
        tol=1e-4,
        class_weight="balanced",
        fit_intercept=True,
    )


def _explicitness(model: LogisticRegression, x: Any, s: np.ndarray) -> float:
    """(H0 - CE) / H0 for a model fitted on (x, s): CE its in-sample cross-entropy, H0 the null
    model's. With balanced class weights the null model (all-zero features) stops at its start
    point, the uniform prediction, so that prediction is evaluated instead of fitted."""
    ce = log_loss(s, model.predict_proba(x))
    k = model.classes_.size
    h0 = log_loss(s, np.full((len(s), k), 1.0 / k))
    return (h0 - ce) / h0


def _ksg_nmi(
    z: np.ndarray,
    s: np.ndarray,
    entropy: np.ndarray,
    n_neighbors: int,
    seed: int | None,
    standardize: bool,
    n_jobs: int | None,
) -> np.ndarray:
    """kNN (KSG-type) MI of every continuous code with every source, over the source entropy:
    (F, D). A constant code carries no information; its MI is 0 (the estimator is not run)."""
    num_sources, num_latents = s.shape[1], z.shape[1]
    for i in range(num_sources):
        if np.bincount(s[:, i]).max() < 2:
            raise ValueError(
                f"every class of factors[:, {i}] occurs once; the kNN MI estimator needs "
                "repeated classes (draw more samples)"
            )
    varying = [j for j in range(num_latents) if z[:, j].min() != z[:, j].max()]
    jobs = []
    for j in varying:
        x = z[:, j]
        x = (x - x.mean()) / x.std() if standardize else x
        kwargs = dict(discrete_features=False, n_neighbors=n_neighbors, random_state=seed)
        jobs += [(mutual_info_classif, (x[:, None], s[:, i]), kwargs) for i in range(num_sources)]
    estimates = run_jobs(jobs, n_jobs)
    mi = np.zeros((num_sources, num_latents))
    mi[:, varying] = np.reshape([e[0] for e in estimates], (len(varying), num_sources)).T
    return mi / entropy[:, None]


def _one_hot(codes: np.ndarray, sizes: np.ndarray) -> scipy.sparse.csr_matrix:
    """Sparse one-hot matrix of label-encoded codes, columns ordered as ``OneHotEncoder``'s."""
    n, d = codes.shape
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return scipy.sparse.csr_matrix(
        (np.ones(n * d), (np.repeat(np.arange(n), d), (codes + offsets).ravel())),
        shape=(n, int(sizes.sum())),
    )


def _ratio_mean(p: np.ndarray, axis: int) -> float:
    with np.errstate(invalid="ignore"):
        return float(np.mean(p.max(axis=axis) / p.sum(axis=axis)))


def _normalise(mean_ratio: float, count: int) -> float:
    """Map the mean max/sum ratio from [1/count, 1] to [0, 1]."""
    return (mean_ratio - 1.0 / count) / (1.0 - 1.0 / count)


def _infoc(p: np.ndarray, num_active: int) -> float:
    """InfoC from the NMI columns ``p`` (F, D') of ``num_active`` active latents."""
    if num_active == 1:
        warnings.warn(
            "InfoC is undefined with a single active latent; returning NaN",
            RuntimeWarning,
            stacklevel=4,
        )
        return float("nan")
    return _normalise(_ratio_mean(p, 1), num_active)


def _infom_infoc_standalone(nmi: np.ndarray, active: np.ndarray) -> tuple[float, float]:
    num_sources, p = nmi.shape[0], nmi[:, active]
    num_active = p.shape[1]
    if num_active == 0:
        return 0.0, 0.0
    empty = p.sum(axis=0) == 0
    if empty.any():
        warnings.warn(
            f"{int(empty.sum())} active latent(s) have zero NMI with every factor; "
            "they are left out of InfoM",
            RuntimeWarning,
            stacklevel=3,
        )
    infom = _normalise(_ratio_mean(p[:, ~empty], 0), num_sources) if (~empty).any() else 0.0
    return infom, _infoc(p, num_active)


def _infom_infoc_training_loop(nmi: np.ndarray, active: np.ndarray) -> tuple[float, float]:
    """Inactive columns of ``nmi`` are already zero; their NaN ratios are left out of InfoM."""
    num_sources, num_active = nmi.shape[0], int(active.sum())
    if num_active == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore"):
        ratios = nmi.max(axis=0) / nmi.sum(axis=0)
    return _normalise(float(np.nanmean(ratios)), num_sources), _infoc(nmi, num_active)


def _top_gap(x: np.ndarray, axis: int) -> np.ndarray:
    top = np.sort(x, axis=axis)
    return np.take(top, -1, axis=axis) - np.take(top, -2, axis=axis)


def _check_settings(discrete: Any, n_neighbors: Any, path: str, max_iter: Any) -> None:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    if not isinstance(discrete, (bool, np.bool_)):
        raise ValueError(f"discrete must be True or False, got {discrete!r}")
    if not isinstance(n_neighbors, int) or n_neighbors < 1:
        raise ValueError(f"n_neighbors must be a positive int, got {n_neighbors!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")


def _training_loop_extras(
    z: np.ndarray,
    s: np.ndarray,
    s_sizes: np.ndarray,
    entropy: np.ndarray,
    nmi: np.ndarray,
    active: np.ndarray,
) -> dict[str, Any]:
    """What the training-loop path reports besides InfoM/E/C: the modularity and compactness
    gaps and the NMI of histogram-binned codes."""
    extras: dict[str, Any] = {
        "modularity_gap": float(np.mean(_top_gap(nmi[:, active], 0))) if active.any() else 0.0,
        "compactness_gap": float(np.mean(_top_gap(nmi, 1))) if z.shape[1] >= 2 else float("nan"),
    }
    for bins in BINNED_NMI_BINS:
        b_codes, b_sizes = label_encode(histogram_discretize(z, bins))
        extras[f"nmi_binned_{bins}"] = (
            mutual_info_matrix(s, s_sizes, b_codes, b_sizes) / entropy[:, None]
        )
    return extras


def infomec(
    latents: Any,
    factors: Any,
    *,
    discrete: bool,
    n_neighbors: int = 10,
    seed: int | None = 0,
    path: str = "standalone",
    max_iter: int = 100,
    n_jobs: int | None = -1,
) -> dict[str, Any]:
    """InfoM, InfoE and InfoC of codes ``latents`` (N, num_latents) for ``factors`` (N, F).

    ``discrete`` selects the plug-in NMI and one-hot InfoE inputs (index or quantized codes)
    instead of the kNN NMI (``n_neighbors``, ``random_state=seed``) and standardised inputs.
    ``max_iter`` bounds the logistic regressions of InfoE; ``n_jobs`` workers run the kNN
    estimates and the regressions in parallel. ``nmi`` is (F, num_latents) and ``active`` the
    mask of latents kept for InfoM/InfoC.
    """
    _check_settings(discrete, n_neighbors, path, max_iter)
    z = as_matrix(latents, "latents")
    s, s_sizes = encode_factors(factors, "factors")
    check_same_rows(z, s, "latents", "factors")
    if s.shape[1] < 2:
        raise ValueError(f"InfoMEC needs at least 2 factors, got {s.shape[1]}")
    standalone = path == "standalone"
    entropy = entropies(s, s_sizes)

    if discrete:
        codes, code_sizes = label_encode(z)
        nmi = mutual_info_matrix(s, s_sizes, codes, code_sizes) / entropy[:, None]
    else:
        nmi = _ksg_nmi(z, s, entropy, n_neighbors, seed, standalone, n_jobs)

    ranges = (z.max(axis=0) - z.min(axis=0)).astype(np.float64)
    if standalone:
        active = ranges > 0 if discrete else ranges > ranges.max() / 20
        infom, infoc = _infom_infoc_standalone(nmi, active)
    else:
        active = ranges > ranges.max() / 8
        nmi = np.nan_to_num(np.where(active, nmi, 0.0), nan=0.0)
        infom, infoc = _infom_infoc_training_loop(nmi, active)

    one_hot = discrete and (standalone or np.issubdtype(z.dtype, np.integer))
    x = _one_hot(codes, code_sizes) if one_hot else StandardScaler().fit_transform(z)
    models = run_jobs(
        [(_lr(max_iter).fit, (x, s[:, i]), {}) for i in range(s.shape[1])],
        n_jobs,
        costs=list(s_sizes),
    )
    explicitness = np.array([_explicitness(m, x, s[:, i]) for i, m in enumerate(models)])
    result = {
        "infom": infom,
        "infoe": float(np.mean(explicitness)),
        "infoc": infoc,
        "nmi": nmi,
        "active": active,
        "infoe_per_factor": explicitness,
        "factor_entropy": entropy,
        "num_active": int(active.sum()),
    }
    if not standalone:
        result.update(_training_loop_extras(z, s, s_sizes, entropy, nmi, active))
    return {
        **result,
        **metadata(
            discrete=bool(discrete),
            path=path,
            n_neighbors=n_neighbors,
            max_iter=max_iter,
            seed=seed,
            num_samples=len(z),
        ),
    }
