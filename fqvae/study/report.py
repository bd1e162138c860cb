"""The tables of a study: ``results.json``, ``results.csv`` and ``report.md``.

Reads every run folder of the spec's grid, complete or not. A row per finished run holds its
scalar final metrics; the report gives, per label, the mean and the 95% Student-t confidence
half-width over seeds, lists the runs that are missing or failed, and links the figures.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fqvae.metrics.report import write_json
from fqvae.study import layout
from fqvae.study.layout import Cell
from fqvae.study.spec import Spec

#: the metrics of the report's table and bar charts, in order (those the runs have)
HEADLINE = (
    "dci.disentanglement",
    "dci.completeness",
    "dci.informativeness",
    "infomec.infom",
    "infomec.infoc",
    "infomec.infoe",
    "mig.mig",
    "recon.mse",
    "recon.psnr",
)
FIRST = ("label", "model", "dataset", "seed")
#: the bookkeeping columns; ``cpu_threads`` (the trainer's torch threads) is what a time ran on
LAST = ("images_seen", "train_s", "wall_s", "cpu_threads")


@dataclass
class Run:
    """A finished run: its cell, folder, ``metrics.json``, resolved config, the study's wall
    seconds and the torch CPU threads it trained on (None in runs older than that record)."""

    cell: Cell
    folder: Path
    metrics: dict[str, Any]
    config: dict[str, Any]
    wall_s: float | None
    cpu_threads: int | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics["final"]


def scalars(final: dict[str, Any]) -> dict[str, int | float | None]:
    """The scalar metrics of a ``final`` dict: dotted keys holding a number (or None, a NaN
    in the JSON), without the ``*time_s`` bookkeeping."""
    return {
        k: v
        for k, v in final.items()
        if "." in k
        and not k.endswith("time_s")
        and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
    }


def collect(root: Path, spec: Spec) -> tuple[list[Run], list[tuple[Cell, str]]]:
    """The finished runs of the grid, and the others with the reason they are not."""
    status = layout.read_status(root)
    runs, missing = [], []
    for cell in layout.grid(spec):
        folder = layout.run_dir(root, cell)
        rec = status.get((cell.label, cell.seed), {})
        step, iterations, done = layout.progress(folder)
        if done:
            resolved = layout.read_json(folder / layout.CONFIG) or {}
            metrics = layout.read_json(folder / layout.METRICS) or {}
            config, threads = resolved.get("config", {}), resolved.get("cpu_threads")
            runs.append(Run(cell, folder, metrics, config, rec.get("wall_s"), threads))
        elif rec.get("state") == "failed" and rec.get("returncode") != layout.INTERRUPTED:
            last = (rec.get("log_tail") or ["(empty log)"])[-1]
            missing.append((cell, f"failed (exit {rec.get('returncode')}): {last}"))
        elif (folder / layout.CHECKPOINT).is_file():
            missing.append((cell, f"unfinished: step {step} of {iterations}"))
        else:
            missing.append((cell, "not run"))
    return runs, missing


def rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per run: label, model, dataset, seed, scalar metrics, images, seconds and
    CPU threads."""
    out = []
    for run in runs:
        cfg = run.config
        row = {
            "label": run.cell.label,
            "model": cfg.get("model", {}).get("name"),
            "dataset": cfg.get("data", {}).get("name"),
            "seed": cfg.get("train", {}).get("seed", run.cell.seed),
            **scalars(run.final),
            "images_seen": run.metrics.get("images_seen"),
            "train_s": run.metrics.get("train_s"),
            "wall_s": run.wall_s,
            "cpu_threads": run.cpu_threads,
        }
        out.append(row)
    return out


def columns(table: list[dict[str, Any]]) -> list[str]:
    """CSV columns: the run's identity, the headline metrics, the other metrics sorted, then
    images and seconds."""
    metrics = {k for row in table for k in row} - set(FIRST) - set(LAST)
    ordered = [m for m in HEADLINE if m in metrics] + sorted(metrics - set(HEADLINE))
    return [*FIRST, *ordered, *LAST]


def interval(values: list[float | None]) -> dict[str, Any]:
    """Mean and 95% Student-t half-width ``t(0.975, n-1) * std(ddof=1) / sqrt(n)`` of the
    values that are finite (None, NaN and inf dropped; ``ci95`` None when n < 2)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    mean = sum(xs) / n
    if n == 1:
        return {"mean": mean, "ci95": None, "n": 1}
    from scipy import stats

    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return {"mean": mean, "ci95": float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n), "n": n}


def summarize(table: list[dict[str, Any]], labels: list[str]) -> dict[str, dict[str, Any]]:
    """Per label with finished runs: :func:`interval` of every metric column, and of
    images seen and train seconds; ``cpu_threads`` as the ``min`` and ``max`` over the ``n`` runs
    that record it, of ``runs``."""
    keys = [c for c in columns(table) if c not in FIRST and c != "cpu_threads"]
    out = {}
    for label in labels:
        mine = [row for row in table if row["label"] == label]
        if mine:
            out[label] = {k: interval([row.get(k) for row in mine]) for k in keys}
            threads = [row["cpu_threads"] for row in mine if row.get("cpu_threads") is not None]
            out[label]["cpu_threads"] = {
                "min": min(threads, default=None),
                "max": max(threads, default=None),
                "n": len(threads),
                "runs": len(mine),
            }
    return out


def thread_range(stat: dict[str, Any]) -> str:
    """``"2"``, ``"1-2"`` where a label's runs differ, ``"2 (3 of 5 runs)"`` where only some
    recorded it (runs made before ``config.json`` did), ``"–"`` where none did."""
    lo, hi = stat["min"], stat["max"]
    if lo is None:
        return "–"
    shown = str(lo) if lo == hi else f"{lo}-{hi}"
    return shown if stat["n"] == stat["runs"] else f"{shown} ({stat['n']} of {stat['runs']} runs)"


def fmt(stat: dict[str, Any]) -> str:
    """``mean ± half-width`` (4 significant digits); ``value (n=1, no interval)``."""
    if stat["n"] == 0:
        return "–"
    if stat["ci95"] is None:
        return f"{stat['mean']:.4g} (n=1, no interval)"
    return f"{stat['mean']:.4g} ± {stat['ci95']:.4g}"


def _csv(table: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(table), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buf.getvalue()


def markdown(
    spec: Spec,
    summary: dict[str, dict[str, Any]],
    missing: list[tuple[Cell, str]],
    figures: dict[str, list[tuple[str, str]]],
    counts: dict[str, int],
) -> str:
    """The text of ``report.md`` (``counts``: finished runs per label)."""
    finished = sum(counts.values())
    metrics = [m for m in HEADLINE if any(m in s for s in summary.values())]
    lines = [f"# Study `{spec.name}`", ""]
    if spec.description.strip():
        lines += [spec.description.strip(), ""]
    lines += [
        f"- dataset: `{spec.data}`",
        f"- seeds: {', '.join(map(str, spec.seeds))}",
        f"- runs: {finished} of {finished + len(missing)} finished",
        "- recipe (every run):" + ("" if spec.recipe else " none"),
    ]
    lines += [f"  - `{k} = {v}`" for k, v in sorted(spec.recipe.items())]
    lines += ["", "| label | model | overrides |", "| --- | --- | --- |"]
    for e in spec.entries:
        keys = ", ".join(f"`{k} = {v}`" for k, v in sorted(e.overrides.items()))
        lines.append(f"| {e.label} | {e.model} | {keys or '–'} |")
    lines += [
        "",
        "## Results",
        "",
        "Mean ± 95% confidence half-width over seeds (Student t: "
        "t(0.975, n-1) · std / √n); final evaluation of each run.",
        "",
        "| label | n | " + " | ".join(metrics) + " | images seen | train s | CPU threads |",
        "| --- | ---: | " + " | ".join("---:" for _ in metrics) + " | ---: | ---: | ---: |",
    ]
    for label in spec.labels:
        if label not in summary:
            continue
        s = summary[label]
        cells = [fmt(s[m]) if m in s else "–" for m in metrics]
        images, seconds = s["images_seen"]["mean"], s["train_s"]["mean"]
        lines.append(
            f"| {label} | {counts[label]} | {' | '.join(cells)} | "
            f"{'–' if images is None else f'{images:,.0f}'} | "
            f"{'–' if seconds is None else f'{seconds:,.1f}'} | {thread_range(s['cpu_threads'])} |"
        )
    lines += ["", "## Missing and failed runs", ""]
    lines += [f"- `{c.label}` seed {c.seed}: {why}" for c, why in missing] or ["None."]
    for title, items in figures.items():
        if items:
            lines += ["", f"## {title}", ""]
            lines += [f"![{caption}]({path})" for caption, path in items]
    return "\n".join(lines) + "\n"


def write_report(root: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write ``results.json``, ``results.csv``, ``report.md`` and ``figures/`` for the study
    in ``root`` into ``out`` (default: ``root``); returns the files written."""
    from fqvae.study import figures

    root = Path(root)
    out = Path(out) if out is not None else root
    spec = layout.folder_spec(root)
    runs, missing = collect(root, spec)
    table = rows(runs)
    summary = summarize(table, spec.labels)
    written = [
        write_json(
            {
                "study": spec.name,
                "description": spec.description,
                "data": spec.data,
                "seeds": spec.seeds,
                "runs": table,
                "summary": summary,
                "missing": [
                    {"label": c.label, "seed": c.seed, "reason": why} for c, why in missing
                ],
            },
            out / "results.json",
        ),
        layout.write_text(out / "results.csv", _csv(table)),
    ]
    made = figures.write_figures(runs, spec.labels, summary, HEADLINE, out / figures.FOLDER)
    links = {
        title: [(caption, path.relative_to(out).as_posix()) for caption, path in items]
        for title, items in made.items()
    }
    written += [path for items in made.values() for _, path in items]
    counts = {label: sum(r.cell.label == label for r in runs) for label in spec.labels}
    text = markdown(spec, summary, missing, links, counts)
    written.append(layout.write_text(out / "report.md", text))
    return written
