"""Factor tables and mixed-radix index bookkeeping shared by every dataset.

Flat image indices are mixed radix in C order with the last factor varying fastest
(``index = sum_f class_f * base_f`` with ``base_f = prod_{g > f} size_g``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FactorTable:
    """Names, sizes and physical values of a dataset's factors, in storage order.

    ``values[f]`` is a float64 array of length ``sizes[f]``: the label value of each class.
    ``latent`` lists the factors the metrics sample; the others are observation-only factors.
    """

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    values: tuple[np.ndarray, ...]
    latent: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.sizes) == len(self.values)):
            raise ValueError("names, sizes and values must have one entry per factor")
        for name, size, vals in zip(self.names, self.sizes, self.values):
            if len(vals) != size:
                raise ValueError(f"factor {name!r}: {len(vals)} values for size {size}")
        if not self.latent:
            object.__setattr__(self, "latent", tuple(range(len(self.sizes))))

    @property
    def num_factors(self) -> int:
        return len(self.sizes)

    @property
    def num_images(self) -> int:
        return int(np.prod(self.sizes, dtype=np.int64))

    @property
    def bases(self) -> np.ndarray:
        """(F,) int64 multipliers of the flat index; the last one is 1."""
        return mixed_radix_bases(self.sizes)

    @property
    def observation_only(self) -> tuple[int, ...]:
        return tuple(f for f in range(self.num_factors) if f not in self.latent)

    def index_of(self, classes: np.ndarray) -> np.ndarray:
        """Flat indices (n,) int64 of class vectors (n, F); raises ValueError when out of range."""
        classes = np.asarray(classes, dtype=np.int64)
        if classes.ndim != 2 or classes.shape[1] != self.num_factors:
            raise ValueError(
                f"expected classes of shape (n, {self.num_factors}), got {classes.shape}"
            )
        return np.ravel_multi_index(tuple(classes.T), self.sizes).astype(np.int64)

    def classes_of(self, index: np.ndarray | int) -> np.ndarray:
        """Class vectors (n, F) int64 of flat indices (n,)."""
        index = np.atleast_1d(np.asarray(index, dtype=np.int64))
        return np.stack(np.unravel_index(index, self.sizes), axis=1).astype(np.int64)

    def values_of(self, classes: np.ndarray) -> np.ndarray:
        """Label values (n, F) float64 of class vectors (n, F)."""
        classes = np.asarray(classes, dtype=np.int64)
        return np.stack([self.values[f][classes[:, f]] for f in range(self.num_factors)], axis=1)

    def all_classes(self) -> np.ndarray:
        """Class vectors of every image in storage order, (N, F) int64."""
        return self.classes_of(np.arange(self.num_images))

    def subset(self, keep: dict[str, Sequence[int]]) -> tuple[FactorTable, tuple[np.ndarray, ...]]:
        """Reduced table keeping the listed classes of some factors (by name).

        Returns the new table, whose values are the kept real values, and for every factor the
        (k,) int64 array of kept original classes.
        """
        unknown = set(keep) - set(self.names)
        if unknown:
            raise ValueError(f"unknown factor(s) {sorted(unknown)}; known: {list(self.names)}")
        kept = []
        for name, size in zip(self.names, self.sizes):
            cls = np.asarray(keep.get(name, range(size)), dtype=np.int64)
            if cls.ndim != 1 or cls.size == 0 or cls.min() < 0 or cls.max() >= size:
                raise ValueError(
                    f"factor {name!r}: classes must be a non-empty subset of 0..{size - 1}"
                )
            kept.append(cls)
        table = FactorTable(
            names=self.names,
            sizes=tuple(len(c) for c in kept),
            values=tuple(v[c] for v, c in zip(self.values, kept)),
            latent=self.latent,
        )
        return table, tuple(kept)

    def sample_latent(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        """Latent classes (n, num_latent) int64, one ``rng.randint(size, size=n)`` per factor."""
        return (
            np.stack([rng.randint(self.sizes[f], size=n) for f in self.latent], axis=1)
            .astype(np.int64)
            .reshape(n, len(self.latent))
        )

    def complete(self, latent: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        """Full classes (n, F) from latent classes (n, num_latent), drawing the other factors.

        Each observation-only factor consumes ``rng.randint(size, size=n)`` in order.
        """
        latent = np.asarray(latent, dtype=np.int64)
        if latent.ndim != 2 or latent.shape[1] != len(self.latent):
            raise ValueError(
                f"expected factors of shape (n, {len(self.latent)}), got {latent.shape}"
            )
        n = latent.shape[0]
        full = np.zeros((n, self.num_factors), dtype=np.int64)
        full[:, list(self.latent)] = latent
        for f in self.observation_only:
            full[:, f] = rng.randint(self.sizes[f], size=n)
        return full


def mixed_radix_bases(sizes: Sequence[int]) -> np.ndarray:
    """(F,) int64 multipliers ``base_f = prod_{g > f} size_g`` of the flat index."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Label-encode each column of ``labels`` (N, F).

    Returns classes (N, F) int64 (rank of the value in its column) and the sorted distinct values
    of each column as float64 arrays.
    """
    labels = np.asarray(labels)
    classes = np.empty(labels.shape, dtype=np.int64)
    uniques = []
    for f in range(labels.shape[1]):
        uniq, inverse = np.unique(labels[:, f], return_inverse=True)
        classes[:, f] = inverse.reshape(-1)
        uniques.append(uniq.astype(np.float64))
    return classes, tuple(uniques)


def table_from_labels(
    codes: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    expected_sizes: Sequence[int],
    latent: Sequence[int] = (),
    allow_reduced: bool = False,
    where: str = "labels",
) -> FactorTable:
    """Factor table of a file from its per-image labels, checking the storage order.

    codes: (N, F) per-image class codes (integer classes, or label values when the file has no
    classes); values: (N, F) float label values. The grid sizes are the numbers of distinct codes;
    a grid other than ``expected_sizes`` raises ValueError unless ``allow_reduced``. Images must be
    in mixed-radix order (last factor fastest).
    """
    encoded, _ = encode_labels(codes)
    sizes = tuple(int(encoded[:, f].max(initial=0)) + 1 for f in range(encoded.shape[1]))
    if sizes != tuple(expected_sizes) and not allow_reduced:
        raise ValueError(
            f"{where}: factor sizes {sizes}, expected {tuple(expected_sizes)} "
            "(pass allow_reduced=True for a reduced grid)"
        )
    if np.prod(sizes, dtype=np.int64) != len(encoded) or check_order(encoded, sizes):
        raise ValueError(f"{where}: images are not in mixed-radix order of the grid {sizes}")
    bases = mixed_radix_bases(sizes)
    factor_values = tuple(
        np.asarray(values[np.arange(size) * bases[f], f], dtype=np.float64)
        for f, size in enumerate(sizes)
    )
    return FactorTable(tuple(names), sizes, factor_values, tuple(latent))


def check_order(classes: np.ndarray, sizes: Sequence[int]) -> int:
    """Number of rows of ``classes`` (N, F) whose mixed-radix index differs from the row number."""
    index = np.ravel_multi_index(tuple(np.asarray(classes, dtype=np.int64).T), tuple(sizes))
    return int(np.count_nonzero(index != np.arange(len(index))))


def linspace_values(*specs: tuple[float, float, int]) -> tuple[np.ndarray, ...]:
    """One ``np.linspace(lo, hi, n)`` float64 array per (lo, hi, n) spec."""
    return tuple(np.linspace(lo, hi, n, dtype=np.float64) for lo, hi, n in specs)


def class_values(sizes: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Class indices as float64 values, for factors whose physical values are unknown."""
    return tuple(np.arange(s, dtype=np.float64) for s in sizes)
