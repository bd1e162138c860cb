"""Procedural dSprites replica (spec ``datasets.md`` §5).

A sprite is rasterised with 4x4 sub-samples per pixel; a pixel is on when at least 8 of its 16
samples are inside the shape. Rendering is scanline based: for every sub-sample row we compute
the interval(s) of x inside the shape (closed form for the square and the ellipse, polygon edge
crossings for the heart) and count the sub-sample columns of each pixel that fall inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 64
_BIG = 1.0e6  # stands for an unbounded interval end, in pixels
_BATCH = 1024  # images rendered per vectorised pass (bounds the temporary arrays)


@dataclass(frozen=True)
class SpriteGeometry:
    """Calibration constants, in pixels at scale 1 (every length is proportional to the scale)."""

    square_side: float = 19.2
    ellipse_semi_x: float = 13.0
    ellipse_semi_y: float = 7.0
    heart_box: float = 19.0
    heart_vertices: int = 256
    position_offset: float = 16.0
    position_span: float = 32.0
    subsamples: int = 4
    threshold: int = 8

    def radius(self, shape: int) -> float:
        """Upper bound of the distance from the centre to any point of ``shape`` at scale 1."""
        return {
            1: self.square_side / np.sqrt(2.0),
            2: max(self.ellipse_semi_x, self.ellipse_semi_y),
            3: self.heart_box / np.sqrt(2.0),
        }[shape]


def heart_polygon(geometry: SpriteGeometry) -> np.ndarray:
    """Heart vertices (V, 2) float64 at scale 1, y up, lobes up, bounding box centred on 0."""
    t = np.linspace(0.0, 2 * np.pi, geometry.heart_vertices, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    pts = np.stack([x, y], axis=1)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (pts - (lo + hi) / 2) / (hi - lo) * geometry.heart_box


def _linear_interval(alpha: np.ndarray, beta: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Interval of t with |alpha*t + beta| <= half, as (..., 2); empty when lo > hi."""
    steep = np.abs(alpha) > 1e-12
    safe = np.where(steep, alpha, 1.0)
    a, b = (-half - beta) / safe, (half - beta) / safe
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    flat_inside = np.abs(beta) <= half
    lo = np.where(steep, lo, np.where(flat_inside, -_BIG, _BIG))
    hi = np.where(steep, hi, np.where(flat_inside, _BIG, -_BIG))
    return np.stack([lo, hi], axis=-1)


def _square_intervals(uy: np.ndarray, c: np.ndarray, s: np.ndarray, half: np.ndarray) -> np.ndarray:
    # v = R(-theta) u with u = (t, uy): v_x = c t + s uy, v_y = -s t + c uy.
    ix = _linear_interval(c, s * uy, half)
    iy = _linear_interval(-s, c * uy, half)
    lo = np.maximum(ix[..., 0], iy[..., 0])
    hi = np.minimum(ix[..., 1], iy[..., 1])
    return np.stack([lo, hi], axis=-1)[..., None, :]


def _ellipse_intervals(
    uy: np.ndarray, c: np.ndarray, s: np.ndarray, ax: np.ndarray, ay: np.ndarray
) -> np.ndarray:
    # (c t + s uy)^2 / ax^2 + (-s t + c uy)^2 / ay^2 <= 1, a quadratic in t.
    qa = c * c / ax**2 + s * s / ay**2
    qb = 2 * uy * c * s * (1 / ax**2 - 1 / ay**2)
    qc = uy * uy * (s * s / ax**2 + c * c / ay**2) - 1
    disc = qb * qb - 4 * qa * qc
    root = np.sqrt(np.maximum(disc, 0.0))
    lo = np.where(disc >= 0, (-qb - root) / (2 * qa), _BIG)
    hi = np.where(disc >= 0, (-qb + root) / (2 * qa), -_BIG)
    return np.stack([lo, hi], axis=-1)[..., None, :]


def _polygon_intervals(uy: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Inside intervals of rows ``uy`` (k, r) for polygons ``poly`` (k, V, 2) -> (k, r, 2, 2)."""
    x0, y0 = poly[:, None, :, 0], poly[:, None, :, 1]
    x1, y1 = np.roll(x0, -1, axis=2), np.roll(y0, -1, axis=2)
    row = uy[:, :, None]
    crosses = (y0 <= row) != (y1 <= row)
    dy = np.where(crosses, y1 - y0, 1.0)
    x = np.where(crosses, x0 + (row - y0) * (x1 - x0) / dy, np.inf)
    x = np.sort(np.partition(x, 3, axis=2)[:, :, :4], axis=2)
    x = np.where(np.isfinite(x), x, _BIG)
    return np.stack([x[..., 0:4:2], x[..., 1:4:2]], axis=-1)


def render_sprites(values: np.ndarray, geometry: SpriteGeometry | None = None) -> np.ndarray:
    """Render dSprites images from label values.

    values: (n, 6) float, columns (color, shape 1..3, scale, orientation rad, posX, posY).
    Returns (n, 64, 64) uint8 in {0, 1}.
    """
    geometry = geometry or SpriteGeometry()
    values = np.asarray(values, dtype=np.float64).reshape(-1, 6)
    n = len(values)
    if n > _BATCH:
        return np.concatenate(
            [render_sprites(values[i : i + _BATCH], geometry) for i in range(0, n, _BATCH)]
        )
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    if n == 0:
        return out
    shape = np.rint(values[:, 1]).astype(np.int64)
    if not np.isin(shape, (1, 2, 3)).all():
        raise ValueError("shape values must be 1 (square), 2 (ellipse) or 3 (heart)")
    scale, theta = values[:, 2], values[:, 3]
    cx = geometry.position_offset + geometry.position_span * values[:, 4]
    cy = geometry.position_offset + geometry.position_span * values[:, 5]
    radius = max(geometry.radius(int(k)) for k in np.unique(shape)) * scale.max()
    win = min(int(np.ceil(2 * radius)) + 2, IMAGE_SIZE)
    sub = geometry.subsamples

    row0 = np.clip(np.floor(cy - radius).astype(np.int64), 0, IMAGE_SIZE - win)
    col0 = np.clip(np.floor(cx - radius).astype(np.int64), 0, IMAGE_SIZE - win)
    # The inside intervals of a sub-sample row depend on (shape, scale, theta, cy) only.
    keys, inverse = np.unique(
        np.stack([shape, scale, theta, cy], axis=1), axis=0, return_inverse=True
    )
    inverse = inverse.reshape(-1)
    key_row0 = np.zeros(len(keys), dtype=np.int64)
    key_row0[inverse] = row0
    sample_y = key_row0[:, None] + (np.arange(win * sub) + 0.5) / sub
    uy = -(sample_y - keys[:, 3:4])  # y up, relative to the centre
    intervals = np.full((len(keys), win * sub, 2, 2), [_BIG, -_BIG])
    k_shape, k_scale = keys[:, 0].astype(np.int64), keys[:, 1:2]
    c, s = np.cos(keys[:, 2:3]), np.sin(keys[:, 2:3])
    sel = k_shape == 1
    intervals[sel, :, :1] = _square_intervals(
        uy[sel], c[sel], s[sel], geometry.square_side / 2 * k_scale[sel]
    )
    sel = k_shape == 2
    intervals[sel, :, :1] = _ellipse_intervals(
        uy[sel],
        c[sel],
        s[sel],
        geometry.ellipse_semi_x * k_scale[sel],
        geometry.ellipse_semi_y * k_scale[sel],
    )
    sel = k_shape == 3
    if sel.any():
        rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], axis=-2)[sel, 0]
        poly = np.einsum("kij,vj->kvi", rot, heart_polygon(geometry)) * k_scale[sel, :, None]
        intervals[sel] = _polygon_intervals(uy[sel], poly)

    # Count the sub-sample columns q (at x = (q + 0.5) / sub) inside each interval, per pixel.
    iv = intervals[inverse] + cx[:, None, None, None]  # (n, rows, 2, 2) absolute x
    first = np.ceil(sub * iv[..., 0] - 0.5) - sub * col0[:, None, None]
    stop = np.floor(sub * iv[..., 1] - 0.5) + 1 - sub * col0[:, None, None]
    edges = sub * np.arange(win)
    hi = np.clip(stop[..., None] - edges, 0, sub)
    lo = np.clip(first[..., None] - edges, 0, sub)
    counts = np.maximum(hi - lo, 0).sum(axis=2)  # (n, rows, win)
    counts = counts.reshape(n, win, sub, win).sum(axis=2)
    mask = (counts >= geometry.threshold).astype(np.uint8)

    rows = row0[:, None, None] + np.arange(win)[None, :, None]
    cols = col0[:, None, None] + np.arange(win)[None, None, :]
    out[np.arange(n)[:, None, None], rows, cols] = mask
    return out
