"""The ``prepare`` cache (spec §4): ``images.npy`` (memory-mappable uint8 NHWC), ``factors.npy``
(int64 classes) and ``meta.json``. ``meta.json`` is written last, so a cache without it is
incomplete and is rejected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fqvae.data.dataset import GroundTruthDataset
from fqvae.data.factors import FactorTable, check_order
from fqvae.files import atomic_path

META = "meta.json"


def is_cache(path: str | os.PathLike) -> bool:
    return (Path(path) / META).is_file()


def create_images(out: str | os.PathLike, n: int, image_shape: tuple[int, ...]) -> np.memmap:
    """A writable (n, *image_shape) uint8 ``.npy`` memmap at a temporary name in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(
        out / f".images.partial-{os.getpid()}.npy",
        mode="w+",
        dtype=np.uint8,
        shape=(n, *image_shape),
    )


def write_cache(
    out: str | os.PathLike,
    data: GroundTruthDataset,
    extra: dict[str, Any],
    images_file: np.memmap | None = None,
) -> None:
    """Write ``data`` as a cache directory.

    images_file: the memmap from :func:`create_images` that already holds ``data.images``;
    without it the images are copied block by block.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)
    if images_file is None:
        images_file = create_images(out, len(data), data.observation_shape)
        step = 4096
        for start in tqdm(range(0, len(data), step), desc="caching", unit="block"):
            images_file[start : start + step] = data.images[start : start + step]
    images_file.flush()
    os.replace(images_file.filename, out / "images.npy")
    with atomic_path(out / "factors.npy") as tmp:
        np.save(tmp, data.classes)
    meta = {
        "name": data.name,
        "factor_names": data.factor_names,
        "factor_sizes": data.factor_sizes,
        "factor_values": [v.tolist() for v in data.factor_values],
        "latent_factor_indices": data.latent_factor_indices,
        "image_shape": list(data.observation_shape),
        "max_value": data.max_value,
        "data_source": data.data_source,
        **extra,
    }
    with atomic_path(out / META) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def source_sizes(src: str | os.PathLike) -> dict[str, int]:
    """Byte sizes of a source file, or of the top-level files of a source folder."""
    src = Path(src)
    files = [src] if src.is_file() else sorted(p for p in src.iterdir() if p.is_file())
    return {p.name: p.stat().st_size for p in files}


def load_cache(path: str | os.PathLike, name: str | None = None) -> GroundTruthDataset:
    """Memory-map a cache directory; validates N, shape, dtype and the factor order."""
    path = Path(path)
    if not is_cache(path):
        raise FileNotFoundError(f"{path}: no {META}; not a complete prepared cache")
    try:
        meta = json.loads((path / META).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path / META} is not readable JSON ({exc})") from None
    keys = ("name", "factor_names", "factor_sizes", "factor_values", "latent_factor_indices",
            "image_shape", "max_value", "data_source")  # fmt: skip
    missing = [k for k in keys if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ValueError(
            f"{path / META} lacks {', '.join(missing)}; prepare the cache again "
            "(fqvae data prepare)"
        )
    if name is not None and meta["name"] != name:
        raise ValueError(f"{path}: cache holds {meta['name']!r}, not {name!r}")
    table = FactorTable(
        tuple(meta["factor_names"]),
        tuple(meta["factor_sizes"]),
        tuple(np.asarray(v, dtype=np.float64) for v in meta["factor_values"]),
        tuple(meta["latent_factor_indices"]),
    )
    images = np.load(path / "images.npy", mmap_mode="r")
    expected = (table.num_images, *meta["image_shape"])
    if images.shape != expected or images.dtype != np.uint8:
        raise ValueError(
            f"{path}/images.npy is {images.shape} {images.dtype}, expected {expected} uint8"
        )
    factors = np.load(path / "factors.npy")
    if factors.shape != (table.num_images, table.num_factors) or check_order(factors, table.sizes):
        raise ValueError(f"{path}/factors.npy does not match the factor grid {table.sizes}")
    return GroundTruthDataset(
        meta["name"], images, table, max_value=meta["max_value"], data_source=meta["data_source"]
    )
