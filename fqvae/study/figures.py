"""The figures of a study report (matplotlib, Agg): bar charts with confidence intervals,
NMI and DCI-importance heatmaps (a panel per seed), traversal copies and metric curves."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fqvae.metrics.report import write_json
from fqvae.plots import figure, save_figure, save_heatmaps
from fqvae.study.layout import TRAIN_LOG, TRAVERSALS, read_json

FOLDER = "figures"
#: heatmap name -> (key in "final", stored as (factors, latents)?, title)
MATRICES = {
    "nmi": ("infomec.nmi", True, "normalised mutual information"),
    "dci": ("dci.importance_matrix", False, "DCI importance"),
}
#: seeds drawn side by side in a heatmap figure; more seeds wrap to further rows
PANELS_PER_ROW = 5
#: label -> the seed its traversal copy is from
TRAVERSAL_SEEDS = "traversals.json"
PREFIXES = ("bar_", "curve_", "traversals_", *(f"{name}_" for name in MATRICES))
#: label -> (images seen, values): the data of one line chart
Lines = dict[str, tuple[list[int], list[float]]]


def bar_data(
    runs: list[Any], summary: dict[str, dict[str, Any]], labels: list[str], metric: str
) -> list[tuple[str, float, float | None, list[float]]]:
    """Per label with a value of ``metric``: ``(label, mean, 95% half-width or None, each
    seed's value in seed order)``, in ``labels`` order."""
    rows = []
    for label in labels:
        stat = summary.get(label, {}).get(metric, {})
        if not stat.get("n"):
            continue
        mine = sorted((r for r in runs if r.cell.label == label), key=lambda r: r.cell.seed)
        seeds = [float(r.final[metric]) for r in mine if _number(r.final.get(metric))]
        rows.append((label, stat["mean"], stat["ci95"], seeds))
    return rows


def _number(value: Any) -> bool:
    """A finite int or float, as :func:`fqvae.study.report.scalars` counts them (not a bool)."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))
    )


def bars(
    runs: list[Any],
    summary: dict[str, dict[str, Any]],
    labels: list[str],
    metrics: list[str],
    folder: Path,
) -> list[tuple[str, Path]]:
    """For each metric, one bar per label at its mean with its 95% interval, and a dot per
    seed (:func:`bar_data`); a label's seed count follows its name when the counts differ."""
    out = []
    for metric in metrics:
        rows = bar_data(runs, summary, labels, metric)
        if not rows:
            continue
        counts = {len(seeds) for *_, seeds in rows}
        names = [lb if len(counts) == 1 else f"{lb} (n={len(sd)})" for lb, *_, sd in rows]
        fig, (ax,) = figure(max(4.0, 0.9 * len(rows) + 2), 3.8)
        x = np.arange(len(rows))
        errors = [ci or 0.0 for _, _, ci, _ in rows]
        ax.bar(x, [mean for _, mean, _, _ in rows], yerr=errors, capsize=4, color="tab:blue",
               alpha=0.75)  # fmt: skip
        for i, (*_, seeds) in enumerate(rows):
            offsets = np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else [0.0]
            ax.scatter(i + np.asarray(offsets), seeds, s=14, color="black", zorder=3)
        tilt = len(rows) > 4 or max(len(n) for n in names) > 10
        ax.set_xticks(x, names, rotation=30 if tilt else 0, ha="right" if tilt else "center",
                      rotation_mode="anchor")  # fmt: skip
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: mean, 95% CI and each seed")
        out.append((metric, save_figure(fig, folder / f"bar_{metric}.png")))
    return out


def seed_matrices(runs: list[Any], key: str, transpose: bool) -> list[tuple[int, np.ndarray]]:
    """``(seed, (latents, factors) matrix)`` of each run that stores ``key``, in seed order.

    Seeds are never averaged cell by cell: each run orders its latents its own way, so latent
    ``z3`` of one seed has nothing to do with ``z3`` of another."""
    out = []
    for r in sorted(runs, key=lambda r: r.cell.seed):
        if r.final.get(key) is None:
            continue
        m = np.array(r.final[key], dtype=float)
        if m.ndim == 2:
            out.append((r.cell.seed, m.T if transpose else m))
    return [(seed, m) for seed, m in out if m.shape == out[0][1].shape]


def heatmaps(runs: list[Any], labels: list[str], folder: Path) -> dict[str, list[tuple[str, Path]]]:
    """For each label and matrix of :data:`MATRICES`: one panel per seed, rows latents,
    columns factors, each cell's value written in it."""
    out: dict[str, list[tuple[str, Path]]] = {name: [] for name in MATRICES}
    for label in labels:
        mine = [r for r in runs if r.cell.label == label]
        for name, (key, transpose, title) in MATRICES.items():
            panels = seed_matrices(mine, key, transpose)
            if not panels:
                continue
            width = panels[0][1].shape[1]
            factors = list(mine[0].metrics.get("factor_names") or [])
            if len(factors) != width:
                factors = [f"factor {j}" for j in range(width)]
            path = save_heatmaps(
                {f"seed {seed}": m for seed, m in panels},
                factors,
                folder / f"{name}_{label}.png",
                suptitle=f"{label}: {title}, one panel per seed",
                per_row=PANELS_PER_ROW,
            )
            out[name].append((f"{label} {name}", path))
    return out


def traversals(runs: list[Any], labels: list[str], folder: Path) -> list[tuple[str, Path]]:
    """A copy of the first seed's ``traversals.png`` of each label, where it exists. Where no
    run folder holds one (a study kept as its configs and metrics alone), an earlier report's
    copy in ``folder`` is kept: it cannot be drawn again from what is left. ``folder /
    traversals.json`` records which seed each copy is from, so its caption keeps it."""
    seeds_file = folder / TRAVERSAL_SEEDS
    earlier = read_json(seeds_file) or {}  # damaged: the captions leave the seed out
    out, seeds = [], {}
    for label in labels:
        found = [r for r in runs if r.cell.label == label and (r.folder / TRAVERSALS).is_file()]
        path = folder / f"traversals_{label}.png"
        if found:
            shutil.copyfile(found[0].folder / TRAVERSALS, path)
            seeds[label] = found[0].cell.seed
            out.append((f"{label} traversals (seed {seeds[label]})", path))
        elif path.is_file():
            if isinstance(earlier.get(label), int):
                seeds[label] = earlier[label]
            of = f"seed {seeds[label]}, " if label in seeds else ""
            out.append((f"{label} traversals ({of}from an earlier report)", path))
    if seeds:
        write_json(seeds, seeds_file)
    else:
        seeds_file.unlink(missing_ok=True)
    return out


def _line_figure(lines: Lines, ylabel: str, title: str, path: Path) -> Path:
    """One line per label against images seen."""
    fig, (ax,) = figure(5.5, 3.5)
    for label, (xs, ys) in lines.items():
        ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=label)
    ax.set_xlabel("images seen")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _label_lines(
    runs: list[Any], labels: list[str], series: Callable[[Any], list[tuple[int, float]]]
) -> Lines:
    """Per label, images seen (step x batch) and the mean over seeds at each of them of the
    ``(step, value)`` pairs ``series`` reads from a run; labels without any are left out."""
    lines = {}
    for label in labels:
        points: dict[int, list[float]] = {}
        for r in runs:
            if r.cell.label == label:
                batch = r.config.get("train", {}).get("batch") or 0
                for step, value in series(r):
                    points.setdefault(step * batch, []).append(value)
        if points:
            xs = sorted(points)
            lines[label] = (xs, [float(np.mean(points[x])) for x in xs])
    return lines


def curves(
    runs: list[Any], labels: list[str], metrics: list[str], folder: Path
) -> list[tuple[str, Path]]:
    """Each metric of the periodic evaluations against images seen (step x batch), one line
    per label (mean over seeds at each step)."""
    out = []
    for metric in metrics:

        def periodic(r: Any, metric: str = metric) -> list[tuple[int, float]]:
            rows = r.metrics.get("periodic") or []
            return [(row["step"], row[metric]) for row in rows if row.get(metric) is not None]

        lines = _label_lines(runs, labels, periodic)
        if lines:
            title = f"{metric} during training (mean over seeds)"
            path = _line_figure(lines, metric, title, folder / f"curve_{metric}.png")
            out.append((metric, path))
    return out


def _logged(folder: Path, column: str) -> list[tuple[int, float]]:
    """``(step, value)`` of ``column`` in a run's ``log.csv`` (none if absent or unreadable)."""
    try:
        with open(folder / TRAIN_LOG, newline="") as f:
            return [
                (int(row["step"]), float(row[column]))
                for row in csv.DictReader(f)
                if row.get(column) not in (None, "")
            ]
    except (OSError, KeyError, ValueError, csv.Error):
        return []


def in_use_lines(runs: list[Any], labels: list[str]) -> Lines:
    """Per label, images seen and the seed mean of the ``in_use`` column of ``log.csv`` (the
    codebook models' latents whose code varies over the batch); labels without it are left out."""
    return _label_lines(runs, labels, lambda r: _logged(r.folder, "in_use"))


def in_use_curve(runs: list[Any], labels: list[str], folder: Path) -> list[tuple[str, Path]]:
    """``curve_in_use.png``: :func:`in_use_lines` against images seen. Where no run keeps its
    ``log.csv`` (a study kept as its configs and metrics alone), an earlier report's curve in
    ``folder`` is kept, as :func:`traversals` keeps its copies; none without either."""
    lines = in_use_lines(runs, labels)
    path = folder / "curve_in_use.png"
    if lines:
        title = "latents in use during training (mean over seeds)"
        return [("latents in use", _line_figure(lines, "in_use", title, path))]
    return [("latents in use (from an earlier report)", path)] if path.is_file() else []


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
        "Metrics": bars(runs, summary, labels, metrics, folder),
        "Normalised mutual information (InfoMEC)": maps["nmi"],
        "DCI importance": maps["dci"],
        "Latent traversals": traversals(runs, labels, folder),
        "During training": [
            *curves(runs, labels, list(metrics), folder),
            *in_use_curve(runs, labels, folder),
        ],
    }
    keep = {path.name for items in made.values() for _, path in items}
    for old in folder.glob("*.png"):
        if old.name.startswith(PREFIXES) and old.name not in keep:
            old.unlink()
    return made
