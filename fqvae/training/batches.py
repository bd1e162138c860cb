"""The data of a run: the dataset a config names, the train/held-out split, and deterministic
batches (a pure function of ``(seed, step)``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fqvae.data import GroundTruthDataset
from fqvae.training.config import Config, ConfigError


def load_data(name: str, path: str | None, image_size: int | None = None) -> Any:
    """The dataset ``name`` from the data package (``path``: file or folder, else its lookup),
    area-averaged to ``image_size`` when given."""
    from fqvae import data

    try:
        dataset = data.load(name, path)
        return dataset if image_size is None else data.resize(dataset, image_size)
    except ValueError as exc:
        raise ConfigError(f"dataset {name!r}: {exc}") from exc


# model


def data_split(dataset: GroundTruthDataset, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Train indices and held-out indices (validation slice; every image for split "all")."""
    if cfg.data.split == "all":
        everything = np.arange(len(dataset), dtype=np.int64)
        held_out = np.random.default_rng(cfg.data.split_seed).permutation(everything)
        return everything, held_out
    train_idx, val_idx, _ = dataset.split(cfg.data.split_seed)
    return train_idx, val_idx


class Batches:
    """Global batch ``step`` = positions ``[step*B, (step+1)*B)`` of an endless stream that
    walks the train indices in a fresh permutation per epoch (seeded by ``(seed, epoch)``)."""

    def __init__(self, indices: np.ndarray, batch: int, seed: int) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch = batch
        self.seed = seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            rng = np.random.default_rng([self.seed, epoch])
            self._perms[epoch] = self.indices[rng.permutation(len(self.indices))]
        return self._perms[epoch]

    def __call__(self, step: int) -> np.ndarray:
        pos = np.arange(step * self.batch, (step + 1) * self.batch, dtype=np.int64)
        epochs, offsets = np.divmod(pos, len(self.indices))
        out = np.empty_like(pos)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            out[mask] = self._perm(int(epoch))[offsets[mask]]
        return out
