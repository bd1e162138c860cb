"""The figures of a study report (matplotlib, Agg): bar charts with confidence intervals,
seed-averaged NMI and DCI-importance heatmaps, traversal copies and metric curves."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fqvae.plots import figure, heatmap, save_figure
from fqvae.study.layout import TRAVERSALS

FOLDER = "figures"
#: heatmap name -> (key in "final", stored as (factors, latents)?, title)
MATRICES = {
    "nmi": ("infomec.nmi", True, "normalised mutual information"),
    "dci": ("dci.importance_matrix", False, "DCI importance"),
}
PREFIXES = ("bar_", "curve_", "traversals_", *(f"{name}_" for name in MATRICES))


def bars(
    summary: dict[str, dict[str, Any]], labels: list[str], metrics: list[str], folder: Path
) -> list[tuple[str, Path]]:
    """One bar per label with its 95% interval, for each metric."""
    out = []
    for metric in metrics:
        shown = [lb for lb in labels if summary.get(lb, {}).get(metric, {}).get("n")]
        if not shown:
            continue
        means = [summary[lb][metric]["mean"] for lb in shown]
        errors = [summary[lb][metric]["ci95"] or 0.0 for lb in shown]
        fig, (ax,) = figure(max(4.0, 0.9 * len(shown) + 2), 3.5)
        ax.bar(range(len(shown)), means, yerr=errors, capsize=4, color="tab:blue")
        ax.set_xticks(range(len(shown)), shown, rotation=30 if len(shown) > 4 else 0, ha="right")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (mean, 95% CI over seeds)")
        out.append((metric, save_figure(fig, folder / f"bar_{metric}.png")))
    return out


def _matrix(runs: list[Any], key: str, transpose: bool) -> np.ndarray | None:
    """The seed average of the ``(latents, factors)`` matrix ``key`` (None if absent)."""
    mats = [np.array(r.final[key], dtype=float) for r in runs if r.final.get(key) is not None]
    mats = [m.T if transpose else m for m in mats if m.ndim == 2]
    mats = [m for m in mats if mats and m.shape == mats[0].shape]
    return np.nanmean(np.stack(mats), axis=0) if mats else None


def heatmaps(runs: list[Any], labels: list[str], folder: Path) -> dict[str, list[tuple[str, Path]]]:
    """For each label and matrix of :data:`MATRICES`: rows latents, columns factors, the
    seed-averaged value written in each cell."""
    out: dict[str, list[tuple[str, Path]]] = {name: [] for name in MATRICES}
    for label in labels:
        mine = [r for r in runs if r.cell.label == label]
        for name, (key, transpose, title) in MATRICES.items():
            m = _matrix(mine, key, transpose)
            if m is None:
                continue
            factors = list(mine[0].metrics.get("factor_names") or [])
            if len(factors) != m.shape[1]:
                factors = [f"factor {j}" for j in range(m.shape[1])]
            fig, (ax,) = figure(0.9 * m.shape[1] + 2.5, 0.42 * m.shape[0] + 1.5)
            heatmap(ax, m, factors, f"{label}: {title} (mean of {len(mine)} seed(s))")
            out[name].append((f"{label} {name}", save_figure(fig, folder / f"{name}_{label}.png")))
    return out


def traversals(runs: list[Any], labels: list[str], folder: Path) -> list[tuple[str, Path]]:
    """A copy of the first seed's ``traversals.png`` of each label, where it exists."""
    out = []
    for label in labels:
        found = [r for r in runs if r.cell.label == label and (r.folder / TRAVERSALS).is_file()]
        if found:
            path = folder / f"traversals_{label}.png"
            shutil.copyfile(found[0].folder / TRAVERSALS, path)
            out.append((f"{label} traversals (seed {found[0].cell.seed})", path))
    return out


def curves(
    runs: list[Any], labels: list[str], metrics: list[str], folder: Path
) -> list[tuple[str, Path]]:
    """Each metric of the periodic evaluations against images seen (step x batch), one line
    per label (mean over seeds at each step)."""
    out = []
    for metric in metrics:
        lines = {}
        for label in labels:
            points: dict[int, list[float]] = {}
            for r in runs:
                if r.cell.label != label:
                    continue
                batch = r.config.get("train", {}).get("batch") or 0
                for row in r.metrics.get("periodic") or []:
                    if row.get(metric) is not None:
                        points.setdefault(row["step"] * batch, []).append(row[metric])
            if points:
                xs = sorted(points)
                lines[label] = (xs, [float(np.mean(points[x])) for x in xs])
        if not lines:
            continue
        fig, (ax,) = figure(5.5, 3.5)
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_xlabel("images seen")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} during training (mean over seeds)")
        ax.legend(fontsize=8)
        out.append((metric, save_figure(fig, folder / f"curve_{metric}.png")))
    return out


def write_figures(
    runs: list[Any],
    labels: list[str],
    summary: dict[str, dict[str, Any]],
    metrics: tuple[str, ...],
    folder: Path,
) -> dict[str, list[tuple[str, Path]]]:
    """Every figure, by report section; figures of earlier reports that this one no longer
    makes are removed from ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = [m for m in metrics if any(m in s for s in summary.values())]
    maps = heatmaps(runs, labels, folder)
    made = {
        "Metrics": bars(summary, labels, metrics, folder),
        "Normalised mutual information (InfoMEC)": maps["nmi"],
        "DCI importance": maps["dci"],
        "Latent traversals": traversals(runs, labels, folder),
        "During training": curves(runs, labels, list(metrics), folder),
    }
    keep = {path.name for items in made.values() for _, path in items}
    for old in folder.glob("*.png"):
        if old.name.startswith(PREFIXES) and old.name not in keep:
            old.unlink()
    return made
