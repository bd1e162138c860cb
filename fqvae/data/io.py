"""File helpers: atomic output, ordered parallel map, streaming HDF5 and npz writers, readers."""

from __future__ import annotations

import os
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np
from tqdm import tqdm

from fqvae.files import atomic_path

T = TypeVar("T")
R = TypeVar("R")

GZIP_LEVEL = 4


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int = 2, prefetch: int = 4
) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, yielding results in order with bounded look-ahead.

    Useful for numpy and zlib work, which release the GIL.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _compress_blocks(block: tuple[int, np.ndarray], chunk: int) -> list[tuple[int, bytes]]:
    start, images = block
    return [
        (
            start + i,
            zlib.compress(np.ascontiguousarray(images[i : i + chunk]).tobytes(), GZIP_LEVEL),
        )
        for i in range(0, len(images), chunk)
    ]


def write_images_h5(
    path: str | os.PathLike,
    blocks: Iterable[tuple[int, np.ndarray]],
    image_shape: tuple[int, ...],
    labels: np.ndarray,
    chunk: int,
    attrs: dict[str, Any] | None = None,
    desc: str = "images",
) -> None:
    """Write the ``images`` / ``labels`` HDF5 layout of Shapes3D, atomically.

    blocks: (start, uint8 (n, *image_shape)) in increasing order, every n a multiple of ``chunk``;
    together they cover all ``len(labels)`` images. ``images`` is stored gzip-compressed in
    chunks of ``chunk`` images (compressed on worker threads), ``labels`` as float64.
    """
    n = len(labels)
    if n % chunk:
        raise ValueError(f"chunk length {chunk} does not divide the {n} images")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        images = f.create_dataset(
            "images",
            shape=(n, *image_shape),
            dtype=np.uint8,
            chunks=(chunk, *image_shape),
            compression="gzip",
            compression_opts=GZIP_LEVEL,
        )
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.float64))
        f.attrs.update(attrs or {})
        written = 0
        with tqdm(total=n, desc=desc, unit="img", smoothing=0.05) as bar:
            for pieces in ordered_map(lambda b: _compress_blocks(b, chunk), blocks):
                for start, data in pieces:
                    images.id.write_direct_chunk((start, *([0] * len(image_shape))), data)
                    written += chunk
                    bar.update(chunk)
        if written != n:
            raise RuntimeError(f"wrote {written} of {n} images")


def read_images_h5(
    path: str | os.PathLike, image_shape: tuple[int, ...], num_factors: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read the ``images`` / ``labels`` layout fully into memory.

    Returns images (N, *image_shape) uint8, labels (N, num_factors) float64 and the file attrs.
    Raises ValueError naming the expected key and shape when the file does not match.
    """
    expected = (
        f"expected keys 'images' (N, {', '.join(map(str, image_shape))}) uint8 and "
        f"'labels' (N, {num_factors}) float"
    )
    try:
        with h5py.File(path, "r") as f:
            for key in ("images", "labels"):
                if key not in f:
                    raise ValueError(f"{path}: missing key {key!r}; {expected}")
                if not isinstance(f[key], h5py.Dataset):
                    raise ValueError(f"{path}: {key!r} is a group, not a dataset; {expected}")
            images, labels = f["images"], f["labels"]
            if (
                images.ndim != 1 + len(image_shape)
                or images.shape[1:] != tuple(image_shape)
                or images.dtype != np.uint8
            ):
                raise ValueError(f"{path}: 'images' is {images.shape} {images.dtype}; {expected}")
            if labels.shape != (images.shape[0], num_factors):
                raise ValueError(f"{path}: 'labels' is {labels.shape}; {expected}")
            out = np.empty(images.shape, dtype=np.uint8)
            step = max(1, (64 << 20) // max(1, int(np.prod(image_shape))))
            for start in tqdm(
                range(0, len(out), step),
                desc=f"reading {Path(path).name}",
                unit="block",
                disable=len(out) <= step,
            ):
                images.read_direct(out, np.s_[start : start + step], np.s_[start : start + step])
            return out, np.asarray(labels, dtype=np.float64), dict(f.attrs)
    except (OSError, KeyError) as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc}); {expected}") from exc


def write_npz_stream(
    path: str | os.PathLike,
    arrays: dict[str, np.ndarray],
    streamed: tuple[str, tuple[int, ...], np.dtype, Iterable[np.ndarray]],
    total: int,
    desc: str = "images",
) -> None:
    """Write a compressed ``.npz`` atomically, streaming one large member.

    arrays: small members written whole (object arrays are pickled, as ``np.savez`` does);
    streamed: (name, shape, dtype, blocks) where the blocks, concatenated along axis 0, form the
    array of ``shape``; ``total`` is ``shape[0]`` and drives the progress bar.
    """
    name, shape, dtype, blocks = streamed
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(shape),
    }
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            with (
                zf.open(f"{name}.npy", "w", force_zip64=True) as member,
                tqdm(total=total, desc=desc, unit="img", smoothing=0.05) as bar,
            ):
                np.lib.format.write_array_header_1_0(member, header)
                done = 0
                for block in blocks:
                    block = np.ascontiguousarray(block, dtype=dtype)
                    member.write(block.tobytes())
                    done += len(block)
                    bar.update(len(block))
                if done != shape[0]:
                    raise RuntimeError(f"streamed {done} of {shape[0]} rows of {name!r}")
            for key, value in arrays.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=True)


def open_npz(
    path: str | os.PathLike, keys: Iterable[str], expected: str, optional: Iterable[str] = ()
) -> dict[str, np.ndarray]:
    """Load the given members of an ``.npz`` (pickles allowed, latin1 as for dSprites).

    Members named in ``optional`` are included when present. Raises ValueError with
    ``expected`` (a description of the layout) on a missing key or a corrupt or truncated archive.
    """
    keys = list(keys)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz (zip) archive; {expected}")
    try:
        with np.load(path, allow_pickle=True, encoding="latin1") as npz:
            missing = [k for k in keys if k not in npz.files]
            if not missing:
                return {k: npz[k] for k in [*keys, *optional] if k in npz.files}
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError) as exc:
        raise ValueError(f"{path}: corrupt or truncated .npz ({exc}); {expected}") from exc
    raise ValueError(f"{path}: missing key(s) {missing}; {expected}")
