"""Input checks shared by the metrics: array conversion, label encoding and result metadata."""

from __future__ import annotations

from typing import Any

import numpy as np
import sklearn


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor or nested list) as a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be array-like, got {type(x).__name__}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    return arr


def as_matrix(x: Any, name: str, *, min_rows: int = 2) -> np.ndarray:
    """Check that ``x`` is a finite (N, C) numeric matrix with N >= ``min_rows`` and C >= 1.

    Integer and float32/float64 inputs keep their dtype (dlib's histogram edges, for example,
    follow the code dtype); booleans become int64 and other floats float64.
    """
    arr = to_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_samples, num_columns), got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples, got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has no columns")
    if np.issubdtype(arr.dtype, np.bool_):
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"{name} contains NaN or inf ({int(bad.sum())} entries, first at row {row}, "
                f"column {col})"
            )
    return arr


def check_same_rows(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise unless ``a`` and ``b`` have the same number of rows."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of samples, "
            f"got {a.shape[0]} and {b.shape[0]}"
        )


def check_same_columns(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise unless ``a`` and ``b`` have the same number of columns."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of columns, "
            f"got {a.shape[1]} and {b.shape[1]}"
        )


def label_encode(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label-encode every column of an (N, C) array.

    Returns the codes, int64 (N, C) with values 0..K_c-1 in sorted value order, and the
    number of distinct values K_c per column, int64 (C,).
    """
    codes = np.empty(x.shape, dtype=np.int64)
    sizes = np.empty(x.shape[1], dtype=np.int64)
    for c in range(x.shape[1]):
        values, codes[:, c] = np.unique(x[:, c], return_inverse=True)
        sizes[c] = values.size
    return codes, sizes


def encode_factors(factors: Any, name: str, *, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Check and label-encode an (N, F) factor matrix; every factor needs two classes or more."""
    codes, sizes = label_encode(as_matrix(factors, name, min_rows=min_rows))
    _check_two_classes(sizes, name)
    return codes, sizes


def check_not_constant(x: np.ndarray, name: str) -> None:
    """Raise unless every column of ``x`` takes at least two values."""
    _check_two_classes(np.array([np.unique(col).size for col in x.T]), name)


def encode_factor_split(
    train: Any, test: Any, names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Label-encode train and test factors jointly so that class ids agree across the split.

    Returns int64 codes (N_train, F) and (N_test, F). Every training factor needs two classes.
    """
    a = as_matrix(train, names[0])
    b = as_matrix(test, names[1], min_rows=1)
    check_same_columns(a, b, *names)
    codes, _ = label_encode(np.concatenate([a, b]))
    check_not_constant(codes[: len(a)], names[0])
    return codes[: len(a)], codes[len(a) :]


def split_inputs(
    z_train: np.ndarray, latents_test: Any, factors_train: Any, factors_test: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test codes (N_test, D) checked against ``z_train`` (N_train, D), and both factor
    splits label-encoded jointly (:func:`encode_factor_split`), rows checked against the codes.
    Returns ``(z_test, y_train, y_test)``."""
    z_test = as_matrix(latents_test, "latents_test", min_rows=1)
    check_same_columns(z_train, z_test, "latents_train", "latents_test")
    y_train, y_test = encode_factor_split(
        factors_train, factors_test, ("factors_train", "factors_test")
    )
    check_same_rows(z_train, y_train, "latents_train", "factors_train")
    check_same_rows(z_test, y_test, "latents_test", "factors_test")
    return z_test, y_train, y_test


def _check_two_classes(sizes: np.ndarray, name: str) -> None:
    single = np.flatnonzero(sizes < 2)
    if single.size:
        raise ValueError(
            f"{name}[:, {int(single[0])}] has a single class in this sample; every factor needs "
            "at least 2 classes (drop constant factors, or draw more samples)"
        )


def metadata(**fields: Any) -> dict[str, Any]:
    """Bookkeeping entries stored with every metric result (plus the scikit-learn version)."""
    return {**fields, "sklearn_version": sklearn.__version__}
