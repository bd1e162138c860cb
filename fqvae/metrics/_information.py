"""Plug-in (contingency-table) mutual information and histogram discretisation, in nats."""

from __future__ import annotations

import math

import numpy as np


def mutual_info(a: np.ndarray, size_a: int, b: np.ndarray, size_b: int) -> float:
    """Plug-in MI of two label-encoded vectors (values 0..size-1, every value present).

    Same arithmetic, in the same order, as ``sklearn.metrics.mutual_info_score``, so the two
    agree to the last bit; this version skips the input validation and sparse matrix.
    """
    if size_a == 1 or size_b == 1:
        return 0.0
    table = np.bincount(a * size_b + b, minlength=size_a * size_b).reshape(size_a, size_b)
    nzx, nzy = np.nonzero(table)
    nz_val = table[nzx, nzy]
    total = int(table.sum())
    pi = table.sum(axis=1)
    pj = table.sum(axis=0)
    log_nz = np.log(nz_val)
    nz = nz_val / total
    outer = pi.take(nzx).astype(np.int64) * pj.take(nzy).astype(np.int64)
    log_outer = -np.log(outer) + math.log(pi.sum()) + math.log(pj.sum())
    mi = nz * (log_nz - math.log(total)) + nz * log_outer
    mi = np.where(np.abs(mi) < np.finfo(mi.dtype).eps, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


def mutual_info_matrix(
    a: np.ndarray, sizes_a: np.ndarray, b: np.ndarray, sizes_b: np.ndarray
) -> np.ndarray:
    """MI between every column of ``a`` (N, Ca) and every column of ``b`` (N, Cb): (Ca, Cb)."""
    out = np.empty((a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            out[i, j] = mutual_info(a[:, i], int(sizes_a[i]), b[:, j], int(sizes_b[j]))
    return out


def entropies(codes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Empirical entropy of every column, as ``mutual_info_score(y, y)``: float64 (C,)."""
    return np.array(
        [
            mutual_info(codes[:, c], int(sizes[c]), codes[:, c], int(sizes[c]))
            for c in range(codes.shape[1])
        ]
    )


def histogram_discretize(x: np.ndarray, num_bins: int | str = 20) -> np.ndarray:
    """dlib's ``_histogram_discretize``: per column, equal-width bins over [min, max].

    ``b = np.digitize(x, np.histogram(x, num_bins)[1][:-1])``: int64 (N, C), values 1..num_bins.
    ``num_bins`` may also be any string rule that ``np.histogram`` accepts (e.g. ``"auto"``).
    """
    out = np.empty(x.shape, dtype=np.int64)
    for c in range(x.shape[1]):
        edges = np.histogram_bin_edges(x[:, c], bins=num_bins)
        out[:, c] = np.digitize(x[:, c], edges[:-1])
    return out
