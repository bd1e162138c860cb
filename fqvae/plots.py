"""Matplotlib figures (Agg, no display): annotated latent-by-factor heatmaps and atomic saving."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fqvae.files import atomic_path


def figure(width: float, height: float, cols: int = 1, rows: int = 1) -> tuple[Any, list[Any]]:
    """A ``matplotlib.figure.Figure`` (no pyplot state) and its ``rows x cols`` axes, row by row."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(rows * cols)]


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Render ``fig`` to the PNG ``path`` through a temporary file (never a partial PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def heatmap(ax: Any, matrix: np.ndarray, factor_names: Sequence[str], title: str) -> None:
    """Draw ``matrix`` (latents x factors, values in [0, 1]) on ``ax``, each cell annotated."""
    matrix = np.asarray(matrix, dtype=np.float64)
    ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), list(factor_names), rotation=45, ha="right")
    ax.set_yticks(range(matrix.shape[0]), [f"z{i}" for i in range(matrix.shape[0])])
    ax.set_xlabel("factor")
    ax.set_ylabel("latent")
    ax.set_title(title)
    for (i, j), v in np.ndenumerate(matrix):
        colour = "black" if v > 0.6 else "white"
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=colour)


def save_heatmaps(
    matrices: Mapping[str, np.ndarray],
    factor_names: Sequence[str],
    path: str | os.PathLike,
    suptitle: str = "",
    per_row: int | None = None,
) -> Path:
    """One :func:`heatmap` per entry of ``matrices`` (titled by its key), side by side,
    ``per_row`` to a row (all in one row by default)."""
    rows = max(np.asarray(m).shape[0] for m in matrices.values())
    cols = min(len(matrices), per_row or len(matrices))
    lines = -(-len(matrices) // cols)
    fig, axes = figure(
        1.0 + 0.8 * len(factor_names) * cols, (1.5 + 0.35 * rows) * lines, cols, lines
    )
    for ax, (title, matrix) in zip(axes, matrices.items()):
        heatmap(ax, matrix, factor_names, title)
    for ax in axes[len(matrices) :]:
        ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle)
    return save_figure(fig, path, dpi=110)
