"""Colour helpers shared by the generators."""

from __future__ import annotations

import numpy as np


def hsv_rgb(hue: np.ndarray) -> np.ndarray:
    """Fully saturated, full value RGB (..., 3) float64 in [0, 1] of hues in [0, 1)."""
    h6 = (np.asarray(hue, dtype=np.float64) % 1.0) * 6.0
    return np.clip(np.abs(((h6[..., None] + np.array([0.0, 4.0, 2.0])) % 6.0) - 3.0) - 1.0, 0, 1)
