"""Run a study's grid: each (label, seed) is an ordinary ``fqvae train`` subprocess.

Finished runs are skipped, interrupted ones (a checkpoint, not finished) resumed with
``--resume``, the others started in a clean folder. A failed run is recorded in
``DIR/status.json`` and the grid goes on. A run whose folder another process holds (a second
runner on the same folder) is left to that process. ``jobs`` subprocesses run at a time; on
Ctrl-C or SIGTERM the children are asked once to stop (they save a checkpoint) and awaited.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from fqvae.locks import holder
from fqvae.study import layout
from fqvae.study.layout import Cell
from fqvae.study.spec import Spec, StudyError, parse

#: the metrics printed when a run finishes
SHOWN = ("dci.disentanglement", "infomec.infom")
POLL_S = 0.2


@dataclass
class Task:
    """A cell and what the runner does with it: ``skip``, ``resume`` or ``start``."""

    cell: Cell
    action: str
    command: list[str]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``1 <= i <= n``."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise StudyError(f"--shard expects i/n (e.g. 1/4), got {text!r}") from None
    if not 1 <= i <= n:
        raise StudyError(f"--shard {text}: need 1 <= i <= n")
    return i, n


def select(
    spec: Spec,
    models: list[str] | None = None,
    seeds: list[int] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[Cell]:
    """The cells of the spec's grid with a label in ``models`` and a seed in ``seeds`` (None:
    all) and, with ``shard=(i, n)``, a grid index ``k`` with ``k % n == i - 1``."""
    for label in models or []:
        if label not in spec.labels:
            raise StudyError(
                f"{spec.path}: --models {label}: no such label; labels: {', '.join(spec.labels)}"
            )
    for seed in seeds or []:
        if seed not in spec.seeds:
            raise StudyError(
                f"{spec.path}: --seeds {seed}: not a seed of the spec "
                f"({', '.join(map(str, spec.seeds))})"
            )
    cells = layout.grid(spec)
    cells = [c for c in cells if (models is None or c.label in models)]
    cells = [c for c in cells if (seeds is None or c.seed in seeds)]
    if shard is not None:
        i, n = shard
        cells = [c for c in cells if c.index % n == i - 1]
    return cells


def command(
    spec: Spec, root: Path, cell: Cell, resume: bool, data_path: str | None = None
) -> list[str]:
    """The ``fqvae train`` command line of ``cell``."""
    entry = spec.entry(cell.label)
    cmd = [sys.executable, "-m", "fqvae", "train", "--model", entry.model, "--data", spec.data]
    cmd += ["--seed", str(cell.seed), "--out", str(layout.run_dir(root, cell)), "--no-progress"]
    if data_path is not None:
        cmd += ["--data-path", data_path]
    # the study owns its run folders: a start replaces what a run that failed before its first
    # checkpoint left behind
    cmd.append("--resume" if resume else "--overwrite")
    for item in spec.sets(cell.label):
        cmd += ["--set", item]
    return cmd


def plan(spec: Spec, root: Path, cells: list[Cell], data_path: str | None = None) -> list[Task]:
    """What to do with each cell, from what its run folder holds."""
    tasks = []
    for cell in cells:
        folder = layout.run_dir(root, cell)
        if layout.is_finished(folder, spec.configs[cell.label].train.iterations):
            action = "skip"
        elif (folder / layout.CHECKPOINT).is_file():
            action = "resume"
        else:
            action = "start"
        tasks.append(Task(cell, action, command(spec, root, cell, action == "resume", data_path)))
    return tasks


def check_folder(spec: Spec, root: Path, force: bool) -> bool:
    """Raise StudyError when ``DIR/spec.toml`` holds a different spec (unless ``force``);
    returns whether the spec must be (re)written."""
    copy = Path(root) / layout.SPEC
    if not copy.exists():
        return True
    try:
        same = parse(copy.read_text(encoding="utf-8"), copy).raw == spec.raw
    except (OSError, UnicodeDecodeError, StudyError):
        same = False
    if not same and not force:
        raise StudyError(
            f"{copy}: {root} holds a different spec; use another --out, or --force to run "
            f"{spec.path} there (finished runs are kept)"
        )
    return not same


def check_data(name: str, data_path: str | None) -> None:
    """Raise StudyError when the dataset cannot be located (``toy`` without a path is
    generated in memory)."""
    from fqvae.data import registry

    if name == "toy" and data_path is None and registry.ENV_ROOT not in os.environ:
        return
    try:
        registry.resolve(name, data_path)
    except (FileNotFoundError, ValueError) as exc:
        raise StudyError(str(exc)) from None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def child_env(jobs: int) -> dict[str, str]:
    """The children's environment: with several jobs, ``OMP_NUM_THREADS`` = cores // jobs
    (at least 1) unless the user set it."""
    env = dict(os.environ)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, _cores() // jobs))
    return env


def _headline(folder: Path) -> str:
    final = (layout.read_json(folder / layout.METRICS) or {}).get("final", {})
    shown = [f"{k} {final[k]:.4f}" for k in SHOWN if isinstance(final.get(k), (int, float))]
    return ", ".join(shown)


class _Stop(Exception):
    """SIGTERM to the runner, handled like Ctrl-C."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop


class Runner:
    """Runs ``tasks`` (those not skipped) ``jobs`` at a time and keeps ``status.json``."""

    def __init__(self, spec: Spec, root: Path, jobs: int, say: Any) -> None:
        self.spec, self.root, self.jobs, self.say = spec, Path(root), jobs, say
        self.env = child_env(jobs)
        self.status = layout.read_status(self.root)
        self.running: dict[subprocess.Popen, tuple[Task, float, TextIO]] = {}
        self.failed = 0
        self.busy = 0  # runs left to another process that holds their folder

    def _previous(self, task: Task) -> tuple[float, int]:
        """The earlier attempts' wall seconds and count. A run started afresh threw their work
        away, so its wall time is its own; a resumed run's adds to theirs."""
        old = self.status.get((task.cell.label, task.cell.seed), {})
        wall = float(old.get("wall_s") or 0.0) if task.action == "resume" else 0.0
        return wall, int(old.get("attempts") or 0)

    def _launch(self, task: Task) -> str | None:
        """Start ``task``'s training; or, when another process holds its run folder (a
        second runner on the same folder, a user's ``fqvae train``), leave it alone and
        return a line that says so."""
        folder = layout.run_dir(self.root, task.cell)
        pid = holder(folder)
        if pid is not None:
            self.busy += 1
            by = f"process {pid}" if pid else "another process"
            cell = task.cell
            return f"in use   {cell.label} seed {cell.seed}: {by} holds {folder}; left to it"
        if task.action == "start" and folder.exists():
            shutil.rmtree(folder)  # leftovers of a run that never saved a checkpoint
        log = layout.log_path(self.root, task.cell)
        log.parent.mkdir(parents=True, exist_ok=True)
        f = open(log, "a", encoding="utf-8")
        f.write(f"### fqvae study: {task.action} {time.ctime()}\n### {shlex.join(task.command)}\n")
        f.flush()
        proc = subprocess.Popen(
            task.command,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            # its own session: a terminal's Ctrl-C reaches the runner only, which then asks
            # each child once to stop (a second signal would abort it without a checkpoint)
            start_new_session=os.name == "posix",
        )
        self.running[proc] = (task, time.perf_counter(), f)
        return None

    def _finish(self, proc: subprocess.Popen, interrupted: bool = False) -> str:
        task, t0, f = self.running.pop(proc)
        f.close()
        cell, rc = task.cell, proc.returncode
        wall, attempts = self._previous(task)
        elapsed = time.perf_counter() - t0
        folder = layout.run_dir(self.root, cell)
        log = layout.log_path(self.root, cell)
        tail = layout.log_tail(log)
        step, iterations, done = layout.progress(
            folder, self.spec.configs[cell.label].train.iterations
        )
        if rc == 0 and done:
            state = "done"
            msg = f"done     {cell.label} seed {cell.seed} in {elapsed:.1f} s"
            shown = _headline(folder)
            msg += f": {shown}" if shown else ""
        elif interrupted:
            state = "pending"
            msg = f"stopped  {cell.label} seed {cell.seed} at step {step} (exit {rc})"
        else:
            state = "failed"
            self.failed += 1
            if rc == 0:
                tail.append(
                    f"fqvae study: exited 0 but the run is not finished (step {step} of "
                    f"{iterations}, or no final metrics)"
                )
            last = tail[-1] if tail else "(empty log)"
            msg = f"FAILED   {cell.label} seed {cell.seed} (exit {rc}, {elapsed:.1f} s): {last}"
            msg += f" [log: {log}]"
        rec = layout.record(cell, state, rc, tail, wall + elapsed, attempts + 1)
        self.status[(cell.label, cell.seed)] = rec
        layout.write_status(self.root, self.spec, {(cell.label, cell.seed): rec})
        return msg

    def _stop_children(self) -> None:
        """Ask each child once to stop (it saves a checkpoint) and wait; a second Ctrl-C
        kills them."""
        self.say(f"fqvae study: stopping {len(self.running)} run(s); they save a checkpoint")
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        try:
            for proc in list(self.running):
                proc.wait()
        except (KeyboardInterrupt, _Stop):
            for proc in self.running:
                proc.kill()
                proc.wait()
        for proc in list(self.running):
            self.say(self._finish(proc, interrupted=True))

    def run(self, tasks: list[Task]) -> int:
        """Run the tasks that are not skipped; returns 0, 1 (a run failed) or 130."""
        queue = deque(t for t in tasks if t.action != "skip")
        skipped = len(tasks) - len(queue)
        bar = tqdm(total=len(tasks), initial=skipped, unit="run", file=sys.stderr, leave=True)
        main = threading.current_thread() is threading.main_thread()
        # SIGINT explicitly too: a script's background job inherits it ignored, and the
        # trainings install their own handlers, so the runner must not be the one deaf to it
        handlers = {signal.SIGTERM: _raise_stop, signal.SIGINT: signal.default_int_handler}
        previous = {sig: signal.signal(sig, h) for sig, h in handlers.items()} if main else {}
        try:
            while queue or self.running:
                while queue and len(self.running) < self.jobs:
                    busy = self._launch(queue.popleft())
                    if busy:
                        bar.write(busy, file=sys.stdout)
                        bar.update(1)
                time.sleep(POLL_S)
                for proc in [p for p in self.running if p.poll() is not None]:
                    bar.write(self._finish(proc), file=sys.stdout)
                    bar.update(1)
        except (KeyboardInterrupt, _Stop):
            bar.close()
            self._stop_children()
            return layout.INTERRUPTED
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            bar.close()
        return 1 if self.failed else 0


def run_study(
    spec: Spec,
    root: str | Path,
    cells: list[Cell],
    *,
    jobs: int = 1,
    data_path: str | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> int:
    """Run ``cells`` of the (checked) ``spec`` in the study folder ``root``; returns the exit
    code: 0 all ran, 1 some run failed, 130 interrupted."""
    root = Path(root)
    if jobs < 1:
        raise StudyError(f"--jobs must be >= 1, got {jobs}")
    write_spec = check_folder(spec, root, force)
    tasks = plan(spec, root, cells, data_path)
    counts = {a: sum(t.action == a for t in tasks) for a in ("skip", "resume", "start")}
    if counts["resume"] + counts["start"]:
        check_data(spec.data, data_path)

    def say(msg: str) -> None:
        print(msg, flush=True)

    for task in tasks:
        c = task.cell
        what = {"skip": "finished", "resume": "from its checkpoint", "start": "from scratch"}
        say(f"{task.action:<8} {c.label} seed {c.seed} ({what[task.action]})")
        if dry_run and task.action != "skip":
            say(f"         {shlex.join(task.command)}")
    threads = child_env(jobs).get("OMP_NUM_THREADS")  # unset: each run takes every core
    each = f", {threads} CPU thread(s) each" if threads else ""
    say(
        f"fqvae study: {len(tasks)} run(s): {counts['skip']} skipped, {counts['resume']} "
        f"resumed, {counts['start']} started ({jobs} at a time{each})"
    )
    if dry_run:
        return 0
    root.mkdir(parents=True, exist_ok=True)
    if write_spec:
        layout.write_text(root / layout.SPEC, spec.path.read_text(encoding="utf-8"))
    layout.write_status(root, spec, {})
    runner = Runner(spec, root, jobs, say)
    code = runner.run(tasks)
    ran = counts["resume"] + counts["start"] - runner.busy
    if code == layout.INTERRUPTED:
        say(f"fqvae study: interrupted; run the same command again to resume ({root})")
    elif ran or runner.busy:
        busy = f", {runner.busy} left to the other process that holds it" if runner.busy else ""
        say(
            f"fqvae study: {ran - runner.failed} of {ran} run(s) finished, {runner.failed} "
            f"failed{busy}; status in {root / layout.STATUS}; report: fqvae study report {root}"
        )
    return code
