"""Where each run of a study folder stands, read from its files without writing anything.

A run is *done* (finished, with final metrics), *running* (a process holds its folder's lock:
see :mod:`fqvae.locks`), *stopped* (a checkpoint or training log, no final metrics and nobody
training it: the runner resumes it, or starts it afresh without a checkpoint), *failed* (its
last attempt exited with an error) or *not started*. An attempt stopped by SIGINT or SIGTERM
(exit 130) counts as stopped, since the runner resumes it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fqvae.locks import holder
from fqvae.study import layout

LISTED = ("done", "running", "stopped", "failed", "not started")
#: the metrics shown beside a finished run, when it has them
SHOWN = (("dci.disentanglement", "DCI-D"), ("infomec.infom", "InfoM"), ("mig.mig", "MIG"))
#: the log rows whose training speed estimates a running run's time left
RATE_ROWS = 10


@dataclass(frozen=True)
class RunState:
    """One run of the grid: its state and a one-line detail."""

    label: str
    seed: int
    state: str
    detail: str


def _age(seconds: float) -> str:
    minutes = max(0, round(seconds / 60))
    return f"{minutes} min ago" if minutes < 120 else f"{minutes / 60:.0f} h ago"


def _time_left(folder: Path, step: int, iterations: int | None) -> str:
    """``", about N min of training left"`` at the mean ``images_per_s`` of the last
    :data:`RATE_ROWS` rows of ``log.csv`` (evaluations not counted); empty when unknown."""
    batch = (layout.read_json(folder / layout.CONFIG) or {}).get("config", {})
    batch = batch.get("train", {}).get("batch")
    try:
        rows = (folder / layout.TRAIN_LOG).read_text().split()
        column = rows[0].split(",").index("images_per_s")
        rates = [float(r.split(",")[column]) for r in rows[1:][-RATE_ROWS:]]
    except (OSError, ValueError, IndexError):
        return ""
    if not rates or not iterations or not isinstance(batch, int) or step >= iterations:
        return ""
    seconds = (iterations - step) * batch * len(rates) / max(sum(rates), 1e-9)
    return f", about {seconds / 60:.0f} min of training left"


def run_state(root: Path, cell: layout.Cell, record: dict, now: float) -> RunState:
    """The :class:`RunState` of ``cell`` from its folder and its ``status.json`` record."""
    folder = layout.run_dir(root, cell)
    step, iterations, done = layout.progress(folder)
    of = f"step {step:,} of {iterations:,}" if iterations else f"step {step:,}"
    of += " (final evaluation)" if iterations and step == iterations else ""
    if done:
        final = (layout.read_json(folder / layout.METRICS) or {}).get("final", {})
        shown = [f"{name} {final[k]:.3f}" for k, name in SHOWN if isinstance(final.get(k), float)]
        wall = record.get("wall_s")
        took = [f"{wall / 60:.0f} min"] if wall else []
        return RunState(cell.label, cell.seed, "done", ", ".join([*took, *shown]))
    code = record.get("returncode")
    if record.get("state") == "failed" and code != layout.INTERRUPTED:
        last = (record.get("log_tail") or ["(empty log)"])[-1]
        return RunState(cell.label, cell.seed, "failed", f"exit {code}: {last}")
    log, has_checkpoint = folder / layout.TRAIN_LOG, (folder / layout.CHECKPOINT).is_file()
    if has_checkpoint or log.is_file():
        age = f", last log row {_age(now - log.stat().st_mtime)}" if log.is_file() else ""
        pid = holder(folder)
        if pid is not None:
            by = f", process {pid}" if pid else ""
            left = _time_left(folder, step, iterations)
            return RunState(cell.label, cell.seed, "running", of + age + left + by)
        then = "resumes from its checkpoint" if has_checkpoint else "no checkpoint: starts afresh"
        return RunState(cell.label, cell.seed, "stopped", f"{of}{age}; {then}")
    return RunState(cell.label, cell.seed, "not started", "")


def study_status(root: str | Path, now: float | None = None) -> tuple[str, list[RunState]]:
    """The study's name and the :class:`RunState` of every run of its grid, in grid order."""
    root = Path(root)
    spec = layout.folder_spec(root)
    records = layout.read_status(root)
    now = time.time() if now is None else now
    states = [
        run_state(root, cell, records.get((cell.label, cell.seed), {}), now)
        for cell in layout.grid(spec)
    ]
    return spec.name, states


def format_status(name: str, states: list[RunState]) -> str:
    """A count line, then one line per run."""
    counts = Counter(s.state for s in states)
    head = f"{name}: {len(states)} runs: " + ", ".join(f"{counts[s]} {s}" for s in LISTED)
    width = max((len(s.label) for s in states), default=0)
    lines = [
        f"  {s.label:<{width}}  seed {s.seed:<4} {s.state:<12} {s.detail}".rstrip() for s in states
    ]
    return "\n".join([head, *lines])
