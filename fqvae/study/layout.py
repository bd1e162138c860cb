"""Where a study keeps things, and what its folders say about each run.

``DIR/spec.toml`` (the spec used), ``DIR/LABEL/seed-S/`` (an ordinary ``fqvae train`` run
folder), ``DIR/logs/LABEL-seed-S.log`` (its output) and ``DIR/status.json`` (the runner's record
of each run: state, return code, log tail, wall seconds over all attempts).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fqvae.files import atomic_path
from fqvae.locks import exclusive
from fqvae.metrics.report import write_json
from fqvae.study.spec import Spec, StudyError
from fqvae.study.spec import load as load_spec

SPEC = "spec.toml"
STATUS = "status.json"
LOGS = "logs"
# the names ``fqvae train`` writes into a run folder
CONFIG = "config.json"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
TRAVERSALS = "traversals.png"
TRAIN_LOG = "log.csv"
STATES = ("done", "failed", "pending")
#: the exit code of a run stopped by SIGINT or SIGTERM with a checkpoint: resumable, not failed
INTERRUPTED = 130


@dataclass(frozen=True)
class Cell:
    """One run of the grid; ``index`` is its position in the full grid of the spec."""

    index: int
    label: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.label}-seed-{self.seed}"


def grid(spec: Spec) -> list[Cell]:
    """Every run of ``spec`` in the fixed order: labels as in the spec, then seeds."""
    pairs = [(label, seed) for label in spec.labels for seed in spec.seeds]
    return [Cell(k, label, seed) for k, (label, seed) in enumerate(pairs)]


def folder_spec(root: Path) -> Spec:
    """The spec a study folder was run with (``DIR/spec.toml``, unchecked); a StudyError names a
    folder without one."""
    if not (Path(root) / SPEC).is_file():
        raise StudyError(f"{Path(root) / SPEC}: not found; is {root} a study folder?")
    return load_spec(Path(root) / SPEC, checked=False)


def run_dir(root: Path, cell: Cell) -> Path:
    return Path(root) / cell.label / f"seed-{cell.seed}"


def log_path(root: Path, cell: Cell) -> Path:
    return Path(root) / LOGS / f"{cell.name}.log"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def progress(folder: Path, iterations: int | None = None) -> tuple[int, int | None, bool]:
    """``(step, iterations, finished)`` of a run folder: a run is finished when its
    ``metrics.json`` holds a non-empty ``final`` and its step equals ``iterations`` (default:
    the run's own ``train.iterations``)."""
    metrics = read_json(folder / METRICS) or {}
    if iterations is None:
        config = read_json(folder / CONFIG) or {}
        iterations = config.get("config", {}).get("train", {}).get("iterations")
    # a resumed run logs on before it rewrites metrics.json: the later of the two
    step = max(metrics.get("step") or 0, _last_logged_step(folder))
    final = metrics.get("final")
    done = isinstance(final, dict) and bool(final) and iterations is not None
    return step, iterations, done and step == iterations


def _last_logged_step(folder: Path) -> int:
    """The step of the last row of ``log.csv`` (0 without one)."""
    try:
        lines = (folder / TRAIN_LOG).read_text().split()
        return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0
    except (OSError, ValueError):
        return 0


def is_finished(folder: Path, iterations: int | None = None) -> bool:
    return progress(folder, iterations)[2]


def log_tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` non-empty lines of a log (progress-bar carriage returns split)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 65536))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    rows = [r.rstrip() for r in text.replace("\r", "\n").splitlines()]
    return [r for r in rows if r.strip()][-lines:]


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`fqvae.files.atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def read_status(root: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """The records of ``DIR/status.json`` by ``(label, seed)`` (empty when there is none)."""
    runs = (read_json(Path(root) / STATUS) or {}).get("runs", [])
    return {(r["label"], r["seed"]): r for r in runs if "label" in r and "seed" in r}


def write_status(root: Path, spec: Spec, updates: dict[tuple[str, int], dict[str, Any]]) -> None:
    """Merge ``updates`` into ``DIR/status.json`` (under a lock, atomically): one record per
    run of the spec's grid, in grid order. A run without a record, or recorded ``pending``, is
    ``done`` when its folder holds a finished run (copied in from another folder, say), else
    ``pending``."""
    with exclusive(Path(root) / ".status.lock"):
        records = {**read_status(root), **updates}
        runs = []
        for cell in grid(spec):
            key = (cell.label, cell.seed)
            if records.get(key, {}).get("state", "pending") == "pending":
                iterations = spec.configs[cell.label].train.iterations if spec.configs else None
                done = is_finished(run_dir(root, cell), iterations)
                stored = records.get(key) or record(cell, "pending")
                records[key] = {**stored, "state": "done" if done else "pending"}
            runs.append(records[key])
        write_json({"study": spec.name, "runs": runs}, Path(root) / STATUS)


def record(
    cell: Cell,
    state: str,
    returncode: int | None = None,
    tail: list[str] | None = None,
    wall_s: float = 0.0,
    attempts: int = 0,
) -> dict[str, Any]:
    """A status record of one run."""
    assert state in STATES
    return {
        "label": cell.label,
        "seed": cell.seed,
        "state": state,
        "returncode": returncode,
        "log_tail": tail or [],
        "wall_s": wall_s,
        "attempts": attempts,
    }
