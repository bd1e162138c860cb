"""``fqvae study``: a grid of real ``fqvae train`` runs (tiny settings on the in-memory ``toy``
set) is sharded, skipped when finished, resumed when interrupted, survives a failing run and
Ctrl-C, and is reported with the right numbers; bad specs fail before anything starts."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from fqvae.cli import main
from fqvae.locks import FolderLock
from fqvae.study.figures import bar_data, in_use_curve, in_use_lines, seed_matrices
from fqvae.study.layout import Cell
from fqvae.study.report import Run, collect, rows, summarize, thread_range
from fqvae.study.spec import load as load_spec
from fqvae.study.status import run_state

RECIPE = """
[recipe]
"model.arch" = "small"
"train.iterations" = 3
"train.batch" = 8
"eval.final_num_train" = 20
"eval.final_num_test" = 10
"eval.metrics" = ["dci", "infomec"]
"eval.n_jobs" = 1
"log.tensorboard" = false
"data.image_size" = 32
"system.device" = "cpu"
"""
# ``diverge`` fails in its process only (the loss turns NaN at step 2: exit 3), which no
# static check can see; ``vae`` also evaluates periodically, for the report's curves
SPEC = (
    """
name = "tiny"
description = "Two models, one diverging, two seeds."
data = "toy"
seeds = [1, 2]
"""
    + RECIPE
    + """
[models.ae]

[models.diverge]
model = "ae"
"train.lr" = 1e30

[models.vae]
"eval.every" = 2
"eval.num_train" = 20
"eval.num_test" = 10
"""
)
GRID = [(label, seed) for label in ("ae", "diverge", "vae") for seed in (1, 2)]
FINISHED = [(label, seed) for label, seed in GRID if label != "diverge"]
HEADLINE = [
    "dci.disentanglement",
    "dci.completeness",
    "dci.informativeness",
    "infomec.infom",
    "infomec.infoc",
    "infomec.infoe",
    "recon.mse",
    "recon.psnr",
]
PLAN = re.compile(r"^(start|resume|skip)\s+(\S+) seed (\d+)", re.M)


def study(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "fqvae", "study", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def planned(stdout: str) -> dict[tuple[str, int], str]:
    """(label, seed) -> skip/resume/start, from the runner's plan lines."""
    return {(m[2], int(m[3])): m[1] for m in PLAN.finditer(stdout)}


def load(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def finished_runs(out: Path) -> set[tuple[str, int]]:
    done = set()
    for label, seed in GRID:
        metrics = out / label / f"seed-{seed}" / "metrics.json"
        if metrics.exists() and load(metrics).get("final"):
            done.add((label, seed))
    return done


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The grid run as two shards (the second two runs at a time), with a report of the
    partial grid taken between them."""
    root = tmp_path_factory.mktemp("study")
    spec = root / "tiny.toml"
    spec.write_text(SPEC)
    out = root / "out"
    first = study("run", str(spec), "--out", str(out), "--shard", "1/2", cwd=root)
    after_first = finished_runs(out)
    partial = root / "partial"
    assert main(["study", "report", str(out), "--out", str(partial)]) == 0
    second = study("run", str(spec), "--out", str(out), "--shard", "2/2", "--jobs", "2", cwd=root)
    return SimpleNamespace(
        root=root,
        spec=spec,
        out=out,
        first=first,
        second=second,
        after_first=after_first,
        partial=partial,
    )


def test_shards_partition_the_grid(grid):
    # cells in spec order (labels, then seeds): shard 1/2 takes k = 0, 2, 4, shard 2/2 the rest
    assert planned(grid.first.stdout) == {
        ("ae", 1): "start",
        ("diverge", 1): "start",
        ("vae", 1): "start",
    }
    assert planned(grid.second.stdout) == {
        ("ae", 2): "start",
        ("diverge", 2): "start",
        ("vae", 2): "start",
    }
    assert grid.after_first == {("ae", 1), ("vae", 1)}
    assert finished_runs(grid.out) == set(FINISHED)
    # the threads the run announces are those each run of it trained on (config.json)
    threads = load(grid.out / "ae" / "seed-2" / "config.json")["cpu_threads"]
    assert f"(2 at a time, {threads} CPU thread(s) each)" in grid.second.stdout
    for label, seed in FINISHED:
        cfg = load(grid.out / label / f"seed-{seed}" / "config.json")["config"]
        assert (cfg["model"]["name"], cfg["train"]["seed"]) == (label, seed)
        assert (cfg["train"]["iterations"], cfg["data"]["image_size"]) == (3, 32)


def test_a_failing_run_is_recorded_and_the_grid_goes_on(grid):
    # diverge seed 1 failed before vae seed 1 started (one job at a time); both shards exit 1
    assert grid.first.returncode == 1 and grid.second.returncode == 1, grid.first.stderr
    assert re.search(r"FAILED\s+diverge seed 1 \(exit 3", grid.first.stdout)
    assert re.search(r"done\s+vae seed 1 in [\d.]+ s: dci.disentanglement", grid.first.stdout)
    status = {(r["label"], r["seed"]): r for r in load(grid.out / "status.json")["runs"]}
    assert list(status) == GRID
    for label, seed in GRID:
        rec = status[(label, seed)]
        assert rec["wall_s"] > 0 and rec["attempts"] == 1
        if label == "diverge":
            assert (rec["state"], rec["returncode"]) == ("failed", 3)
            assert "non-finite loss" in rec["log_tail"][-1]
            cfg = load(grid.out / label / f"seed-{seed}" / "config.json")["config"]
            assert cfg["model"]["name"] == "ae" and cfg["train"]["lr"] == 1e30  # override won
        else:
            assert (rec["state"], rec["returncode"]) == ("done", 0)
    log = (grid.out / "logs" / "diverge-seed-1.log").read_text()
    assert "--set train.lr=1e+30" in log and "non-finite loss" in log


def test_a_second_run_skips_finished_runs(grid):
    metrics = {k: grid.out / k[0] / f"seed-{k[1]}" / "metrics.json" for k in FINISHED}
    before = {k: p.stat().st_mtime_ns for k, p in metrics.items()}
    logs = {p: p.stat().st_size for p in (grid.out / "logs").iterdir()}
    r = study("run", str(grid.spec), "--out", str(grid.out), "--models", "ae,vae", cwd=grid.root)
    assert r.returncode == 0, r.stderr
    assert planned(r.stdout) == {k: "skip" for k in FINISHED}
    assert "4 skipped, 0 resumed, 0 started" in r.stdout
    assert {k: p.stat().st_mtime_ns for k, p in metrics.items()} == before
    assert {p: p.stat().st_size for p in (grid.out / "logs").iterdir()} == logs


def test_an_interrupted_run_is_resumed_from_its_checkpoint(grid, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(grid.out, out)
    run = out / "ae" / "seed-2"
    final = load(run / "metrics.json")["final"]
    # a run killed after its last checkpoint, during the final evaluation
    (run / "metrics.json").unlink()
    r = study("run", str(grid.spec), "--out", str(out), "--models", "ae", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert planned(r.stdout) == {("ae", 1): "skip", ("ae", 2): "resume"}
    assert load(run / "config.json")["resumed_from_step"] == 3
    resumed = load(run / "metrics.json")["final"]
    assert {k: resumed[k] for k in HEADLINE} == {k: final[k] for k in HEADLINE}
    rec = next(r for r in load(out / "status.json")["runs"] if (r["label"], r["seed"]) == ("ae", 2))
    assert rec["state"] == "done" and rec["attempts"] == 2
    # the resumed run's wall time adds to the first attempt's
    runs = load(grid.out / "status.json")["runs"]
    first = next(r for r in runs if (r["label"], r["seed"]) == ("ae", 2))
    assert rec["wall_s"] > first["wall_s"] > 0


def test_a_run_leftover_without_checkpoint_is_started_afresh(grid, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(grid.out, out)
    r = study(
        "run", str(grid.spec), "--out", str(out), "--models", "diverge", "--dry-run", cwd=tmp_path
    )
    assert r.returncode == 0
    # the failed runs left a folder (config.json, log.csv) but no checkpoint
    assert (out / "diverge" / "seed-1" / "config.json").exists()
    assert planned(r.stdout) == {("diverge", 1): "start", ("diverge", 2): "start"}
    assert "--resume" not in r.stdout


def test_a_run_started_afresh_counts_only_its_own_wall_time(grid, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(grid.out, out)
    status = load(out / "status.json")
    for rec in status["runs"]:
        if rec["label"] == "diverge":
            rec["wall_s"] = 1e6  # a long first attempt
    (out / "status.json").write_text(json.dumps(status))
    r = study(
        "run",
        str(grid.spec),
        "--out",
        str(out),
        "--models",
        "diverge",
        "--seeds",
        "1",
        cwd=tmp_path,
    )
    assert r.returncode == 1 and planned(r.stdout) == {("diverge", 1): "start"}
    rec = next(r for r in load(out / "status.json")["runs"] if r["label"] == "diverge")
    assert rec["attempts"] == 2 and 0 < rec["wall_s"] < 1e6


def test_a_run_copied_in_from_another_folder_is_recorded_done(grid, tmp_path):
    # shards run in folders of their own: ae seed 1 was pending here when its finished folder
    # was copied in from the other shard's
    out = tmp_path / "out"
    shutil.copytree(grid.out, out)
    status = load(out / "status.json")
    for rec in status["runs"]:
        if (rec["label"], rec["seed"]) == ("ae", 1):
            rec.update(state="pending", returncode=None)
    (out / "status.json").write_text(json.dumps(status))
    r = study("run", str(grid.spec), "--out", str(out), "--models", "vae", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = {(r["label"], r["seed"]): r for r in load(out / "status.json")["runs"]}
    assert runs[("ae", 1)]["state"] == "done" and runs[("ae", 1)]["wall_s"] > 0
    assert runs[("diverge", 1)]["state"] == "failed"  # a failed record is left as it was


def test_ctrl_c_stops_the_runs_with_a_checkpoint(tmp_path):
    spec = tmp_path / "long.toml"
    # log.every = 1: log.csv appears after the first step, once the run handles signals
    spec.write_text(
        SPEC.replace('"train.iterations" = 3', '"train.iterations" = 100000').replace(
            "[models.ae]", '[models.ae]\n"log.every" = 1'
        )
    )
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "fqvae", "study", "run", str(spec), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--models", "ae", "--jobs", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # started as a script's background job is: with SIGINT ignored, which it must undo
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        logs = [out / "ae" / f"seed-{s}" / "log.csv" for s in (1, 2)]
        deadline = time.monotonic() + 120
        while not all(p.exists() for p in logs) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the runner
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # stop the runner and, through it, its trainings
            proc.terminate()
            proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout
    status = {(r["label"], r["seed"]): r for r in load(out / "status.json")["runs"]}
    for seed in (1, 2):
        run = out / "ae" / f"seed-{seed}"
        assert (run / "checkpoint.pt").exists(), stdout
        assert 0 < load(run / "metrics.json")["step"] < 100000
        assert re.search(rf"stopped\s+ae seed {seed} at step \d+ \(exit 130\)", stdout)
        assert status[("ae", seed)]["state"] == "pending"
    r = study("run", str(spec), "--out", str(out), "--models", "ae", "--dry-run", cwd=tmp_path)
    assert planned(r.stdout) == {("ae", 1): "resume", ("ae", 2): "resume"}


def test_dry_run_shards_cover_the_grid_once(grid, tmp_path, capsys):
    out = tmp_path / "fresh"
    seen = []
    for i in (1, 2, 3, 4):
        argv = ["study", "run", str(grid.spec), "--out", str(out), "--shard", f"{i}/4"]
        assert main([*argv, "--dry-run"]) == 0
        cells = planned(capsys.readouterr().out)
        assert set(cells.values()) <= {"start"}
        seen += list(cells)
    assert sorted(seen) == sorted(GRID) and not out.exists()


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda s: s.replace("[models.ae]", '[models.ae]\n"train.nope" = 1'),
            "[models.ae] train.nope: unknown config key",
        ),
        (
            lambda s: s.replace('"eval.n_jobs" = 1', '"eval.n_jobs" = "many"'),
            "[recipe] eval.n_jobs: eval.n_jobs must be int",
        ),
        (
            lambda s: s.replace('model = "ae"', 'model = "nope"'),
            "[models.diverge]: unknown model 'nope'",
        ),
        (
            lambda s: s.replace("[models.ae]", '[models.ae]\n"model.hparams.beta" = 4'),
            "model 'ae' has no hparams ['beta']",
        ),
        (
            lambda s: s.replace("[models.vae]", '[models.vae]\n"model.hparams.kl_weight" = -1'),
            "[models.vae]: model 'vae' rejected its settings: kl_weight",
        ),
        (
            lambda s: s.replace("[models.ae]", '[models.ae]\n"data.image_size" = 40'),
            "needs an image_size that is a positive multiple of 16, got 40",
        ),
        (
            lambda s: s.replace("[models.ae]", '[models.ae]\n"train.seed" = 4'),
            "train.seed is set by the top-level `seeds`",
        ),
        (lambda s: s.replace("seeds = [1, 2]", "seeds = []"), "`seeds` must be a non-empty list"),
        (lambda s: s.replace('data = "toy"', 'data = "cifar"'), "unknown dataset 'cifar'"),
        (lambda s: s.replace("[models.ae]", '[models."a/b"]'), "a label is a folder name"),
        (lambda s: s.replace("seeds = [1, 2]", "seeds = [1, 2"), "invalid TOML"),
        (lambda s: "steps = 3\n" + s, "unknown top-level key(s) steps"),
    ],
)
def test_invalid_specs_fail_before_anything_starts(tmp_path, capsys, edit, match):
    spec = tmp_path / "bad.toml"
    spec.write_text(edit(SPEC))
    out = tmp_path / "out"
    assert main(["study", "run", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fqvae study: error: {spec}: ") and match in err, err
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.toml")),
    ids=lambda p: p.name,
)
def test_every_committed_spec_resolves_to_valid_runs(path):
    """The README's studies start as written: every label of every committed spec resolves
    to a configuration the trainer accepts (a typo there would fail only when its run starts)."""
    spec = load_spec(path)
    assert sorted(spec.configs) == sorted(e.label for e in spec.entries) and spec.seeds


@pytest.mark.parametrize(
    "args, match",
    [
        (["--shard", "3/2"], "--shard 3/2: need 1 <= i <= n"),
        (["--shard", "0/2"], "need 1 <= i <= n"),
        (["--shard", "half"], "--shard expects i/n"),
        (["--models", "ae,nope"], "--models nope: no such label"),
        (["--seeds", "3"], "--seeds 3: not a seed of the spec"),
        (["--jobs", "0"], "--jobs must be >= 1"),
    ],
)
def test_invalid_options_fail_with_one_line(grid, tmp_path, capsys, args, match):
    out = tmp_path / "out"
    assert main(["study", "run", str(grid.spec), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and not out.exists(), err


def test_a_folder_with_another_spec_is_refused_unless_forced(grid, tmp_path, capsys):
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace('"train.lr" = 1e30', '"train.lr" = 1e29'))
    copy = (grid.out / "spec.toml").read_text()
    assert main(["study", "run", str(other), "--out", str(grid.out), "--dry-run"]) == 2
    assert "holds a different spec" in capsys.readouterr().err
    forced = ["study", "run", str(other), "--out", str(grid.out), "--force", "--dry-run"]
    assert main([*forced, "--models", "ae"]) == 0
    assert planned(capsys.readouterr().out) == {("ae", 1): "skip", ("ae", 2): "skip"}
    assert (grid.out / "spec.toml").read_text() == copy == SPEC


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _row(report: str, label: str) -> str:
    """The label's row of the results table."""
    table = report.split("## Results")[1].split("## Missing")[0]
    return next(line for line in table.splitlines() if line.startswith(f"| {label} | "))


def test_report_tables_match_the_runs(grid, tmp_path):
    rep = tmp_path / "report"
    assert main(["study", "report", str(grid.out), "--out", str(rep)]) == 0
    rows = _read_csv(rep / "results.csv")
    assert [(r["label"], int(r["seed"])) for r in rows] == FINISHED
    status = {(r["label"], r["seed"]): r for r in load(grid.out / "status.json")["runs"]}
    for row in rows:
        label, seed = row["label"], int(row["seed"])
        metrics = load(grid.out / label / f"seed-{seed}" / "metrics.json")
        assert (row["model"], row["dataset"]) == (label, "toy")
        for key in HEADLINE:  # an undefined metric (None in metrics.json) is an empty cell
            want = metrics["final"][key]
            assert row[key] == "" if want is None else float(row[key]) == want
        assert not any(k.endswith("time_s") or "matrix" in k or k == "infomec.nmi" for k in row)
        assert int(row["images_seen"]) == 24 == metrics["images_seen"]
        assert float(row["train_s"]) == metrics["train_s"]
        assert float(row["wall_s"]) == status[(label, seed)]["wall_s"]
        config = load(grid.out / label / f"seed-{seed}" / "config.json")
        assert int(row["cpu_threads"]) == config["cpu_threads"] >= 1
    results = load(rep / "results.json")
    assert [(r["label"], r["seed"]) for r in results["runs"]] == FINISHED

    report = (rep / "report.md").read_text()
    for label in ("ae", "vae"):
        values = [
            load(grid.out / label / f"seed-{s}" / "metrics.json")["final"]["dci.disentanglement"]
            for s in (1, 2)
        ]
        mean = float(np.mean(values))
        half = stats.t.ppf(0.975, 1) * float(np.std(values, ddof=1)) / math.sqrt(2)
        assert f"| {mean:.4g} ± {half:.4g} |" in _row(report, label)
        assert _row(report, label).startswith(f"| {label} | 2 | ")
        threads = {
            load(grid.out / label / f"seed-{s}" / "config.json")["cpu_threads"] for s in (1, 2)
        }
        shown = "-".join(map(str, sorted(threads)))  # "2", or "1-2" where the runs differ
        assert _row(report, label).endswith(f" | {shown} |")
    table = report.split("## Results")[1].split("## Missing")[0]
    assert "| ae |" in table and "| vae |" in table and "| diverge |" not in table
    for seed in (1, 2):
        assert re.search(rf"`diverge` seed {seed}: failed \(exit 3\): .*non-finite loss", report)
    assert "Two models, one diverging, two seeds." in report and "`train.iterations = 3`" in report


def test_report_threads_say_which_runs_recorded_them(grid):
    # runs made before config.json recorded cpu_threads: the report says how many did
    runs, _ = collect(grid.out, load_spec(grid.out / "spec.toml", checked=False))
    table = rows(runs)
    for row in table:
        if (row["label"], row["seed"]) == ("ae", 1):
            row["cpu_threads"] = None
    recorded = next(r["cpu_threads"] for r in table if (r["label"], r["seed"]) == ("ae", 2))
    stat = summarize(table, ["ae"])["ae"]["cpu_threads"]
    assert stat == {"min": recorded, "max": recorded, "n": 1, "runs": 2}
    assert thread_range(stat) == f"{recorded} (1 of 2 runs)"


def test_report_figures(grid, tmp_path):
    rep = tmp_path / "report"
    assert main(["study", "report", str(grid.out), "--out", str(rep)]) == 0
    expected = {f"bar_{m}.png" for m in HEADLINE}  # no mig: the recipe computes dci, infomec
    expected |= {
        f"{kind}_{label}.png" for kind in ("nmi", "dci", "traversals") for label in ("ae", "vae")
    }
    expected |= {f"curve_{m}.png" for m in HEADLINE}  # vae evaluated periodically
    figures = rep / "figures"
    assert {p.name for p in figures.iterdir()} == expected | {"traversals.json"}
    assert load(figures / "traversals.json") == {"ae": 1, "vae": 1}
    report = (rep / "report.md").read_text()
    for name in expected:
        with Image.open(figures / name) as image:
            image.verify()
            assert image.format == "PNG"
        assert f"(figures/{name})" in report
    assert (figures / "traversals_ae.png").read_bytes() == (
        grid.out / "ae" / "seed-1" / "traversals.png"
    ).read_bytes()


def test_a_report_keeps_traversals_its_runs_no_longer_hold(grid, tmp_path):
    study_copy, rep = tmp_path / "study", tmp_path / "report"
    shutil.copytree(grid.out, study_copy)
    assert main(["study", "report", str(study_copy), "--out", str(rep)]) == 0
    drawn = (rep / "figures" / "traversals_ae.png").read_bytes()
    for path in study_copy.glob("*/seed-*/traversals.png"):  # kept as configs and metrics
        path.unlink()
    assert main(["study", "report", str(study_copy), "--out", str(rep)]) == 0
    assert (rep / "figures" / "traversals_ae.png").read_bytes() == drawn
    report = (rep / "report.md").read_text()
    assert "ae traversals (seed 1, from an earlier report)" in report
    assert "(figures/traversals_ae.png)" in report
    # a damaged record of the seeds costs the captions their seed, not the report
    (rep / "figures" / "traversals.json").write_text('{"ae": 1')
    assert main(["study", "report", str(study_copy), "--out", str(rep)]) == 0
    assert "ae traversals (from an earlier report)" in (rep / "report.md").read_text()


def test_bar_charts_show_each_seed_beside_the_mean(grid, tmp_path):
    rep = tmp_path / "report"
    assert main(["study", "report", str(grid.out), "--out", str(rep)]) == 0
    summary = load(rep / "results.json")["summary"]
    runs, _ = collect(grid.out, load_spec(grid.out / "spec.toml", checked=False))
    rows = bar_data(runs, summary, ["ae", "diverge", "vae"], "dci.disentanglement")
    assert [label for label, *_ in rows] == ["ae", "vae"]  # diverge finished no run
    for label, mean, ci, seeds in rows:
        finals = [load(grid.out / label / f"seed-{s}" / "metrics.json")["final"] for s in (1, 2)]
        assert seeds == [f["dci.disentanglement"] for f in finals]
        assert (
            mean == pytest.approx(np.mean(seeds))
            and ci == summary[label]["dci.disentanglement"]["ci95"]
        )


def test_in_use_curve_averages_the_logged_column_over_seeds(tmp_path):
    runs = []
    logs = {("factorqvae", 1): [(10, 12), (20, 6)], ("factorqvae", 2): [(10, 10), (20, 4)]}
    logs[("ae", 1)] = []  # no in_use column: left out
    for i, ((label, seed), values) in enumerate(logs.items()):
        folder = tmp_path / label / f"seed-{seed}"
        folder.mkdir(parents=True)
        rows = [{"step": st, "loss": 0.1, "in_use": v} for st, v in values]
        fields = ["step", "loss", "in_use"] if values else ["step", "loss"]
        with open(folder / "log.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows or [{"step": 10, "loss": 0.1}])
        runs.append(Run(Cell(i, label, seed), folder, {}, {"train": {"batch": 64}}, None))
    assert in_use_lines(runs, ["factorqvae", "ae"]) == {"factorqvae": ([640, 1280], [11.0, 5.0])}
    ((title, path),) = in_use_curve(runs, ["factorqvae", "ae"], tmp_path)
    assert title == "latents in use" and path.name == "curve_in_use.png"
    with Image.open(path) as image:
        image.verify()
    assert in_use_curve(runs[2:], ["ae"], tmp_path / "none") == []
    drawn = path.read_bytes()
    for run in runs:  # a study kept as its configs and metrics: the earlier curve stays
        (run.folder / "log.csv").unlink()
    kept = in_use_curve(runs, ["factorqvae", "ae"], tmp_path)
    assert kept == [("latents in use (from an earlier report)", path)]
    assert path.read_bytes() == drawn


def test_report_of_a_partial_grid_lists_missing_runs(grid):
    report = (grid.partial / "report.md").read_text()
    for label in ("ae", "vae"):
        assert "(n=1, no interval)" in _row(report, label)
        assert f"`{label}` seed 2: not run" in report
    assert "- runs: 2 of 6 finished" in report
    assert len(_read_csv(grid.partial / "results.csv")) == 2


STATUS_LINE = re.compile(
    r"^  (\S+)\s+seed (\d+)\s+(done|running|stopped|failed|not started) *(.*)$", re.M
)


def status_lines(text: str) -> dict[tuple[str, int], tuple[str, str]]:
    """(label, seed) -> (state, detail), from ``fqvae study status``."""
    return {(m[1], int(m[2])): (m[3], m[4]) for m in STATUS_LINE.finditer(text)}


def test_status_names_each_runs_state(grid, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(grid.out, out)
    # ae seed 2 was stopped by SIGTERM (exit 130) and resumed: its metrics.json still holds the
    # step it stopped at, while its log has gone on; vae seed 2 never started
    run = out / "ae" / "seed-2"
    metrics = load(run / "metrics.json")
    del metrics["final"]
    metrics["step"] = 1
    (run / "metrics.json").write_text(json.dumps(metrics))
    shutil.rmtree(out / "vae" / "seed-2")
    status = load(out / "status.json")
    status["runs"] = [r for r in status["runs"] if (r["label"], r["seed"]) != ("vae", 2)]
    for rec in status["runs"]:
        if (rec["label"], rec["seed"]) == ("ae", 2):
            rec.update(state="failed", returncode=130)
    (out / "status.json").write_text(json.dumps(status))

    assert main(["study", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == (
        "tiny: 6 runs: 2 done, 0 running, 1 stopped, 2 failed, 1 not started"
    )
    state = status_lines(text)
    assert len(state) == 6
    assert state[("ae", 2)][0] == "stopped"
    last_step = (
        r"step 3 of 3 \(final evaluation\), last log row \d+ min ago; resumes from its checkpoint"
    )
    assert re.fullmatch(last_step, state[("ae", 2)][1])
    assert state[("vae", 2)] == ("not started", "")
    for seed in (1, 2):
        assert state[("diverge", seed)][0] == "failed"
        assert state[("diverge", seed)][1].startswith("exit 3: ")
    final = load(out / "ae" / "seed-1" / "metrics.json")["final"]
    assert state[("ae", 1)][0] == "done"
    assert (
        f"DCI-D {final['dci.disentanglement']:.3f}, InfoM {final['infomec.infom']:.3f}"
        in (state[("ae", 1)][1])
    )
    _, missing = collect(out, load_spec(out / "spec.toml", checked=False))
    assert dict(((c.label, c.seed), why) for c, why in missing)[("ae", 2)] == (
        "unfinished: step 3 of 3"
    )
    assert main(["study", "status", str(tmp_path)]) == 2
    assert "is " + str(tmp_path) + " a study folder?" in capsys.readouterr().err


def test_parallel_jobs_share_the_cores(monkeypatch):
    from fqvae.study.runner import _cores, child_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert child_env(2)["OMP_NUM_THREADS"] == str(max(1, _cores() // 2))
    assert child_env(4 * _cores())["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in child_env(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert child_env(2)["OMP_NUM_THREADS"] == "3"  # the user's setting wins


def test_a_run_another_process_holds_is_left_to_it(grid, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(grid.out, out)
    run = out / "ae" / "seed-2"
    (run / "metrics.json").unlink()  # resumable: a checkpoint at the last step
    attempts = {(r["label"], r["seed"]): r["attempts"] for r in load(out / "status.json")["runs"]}
    with FolderLock(run):  # as a second runner's training of it would
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        assert main(["study", "status", str(out)]) == 0
        line = status_lines(capsys.readouterr().out)
        assert line[("ae", 2)][0] == "running"
        assert line[("ae", 2)][1].endswith(f"process {os.getpid()}")
        r = study("run", str(grid.spec), "--out", str(out), "--models", "ae", cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert planned(r.stdout) == {("ae", 1): "skip", ("ae", 2): "resume"}
        assert f"in use   ae seed 2: process {os.getpid()} holds {run}; left to it" in r.stdout
        assert "0 failed, 1 left to the other process that holds it" in r.stdout
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    status = {(r["label"], r["seed"]): r for r in load(out / "status.json")["runs"]}
    assert status[("ae", 2)]["attempts"] == attempts[("ae", 2)]
    # let go, it is resumable again
    assert main(["study", "status", str(out)]) == 0
    assert status_lines(capsys.readouterr().out)[("ae", 2)][0] == "stopped"


def test_a_running_runs_time_left_follows_its_logged_speed(tmp_path):
    root = tmp_path / "study"
    cell = Cell(0, "ae", 1)
    run = root / "ae" / "seed-1"
    run.mkdir(parents=True)
    config = {"config": {"train": {"iterations": 10000, "batch": 64}}}
    (run / "config.json").write_text(json.dumps(config))
    # the early rows ran slower; the last ten, at 100 and 300 images/s, set the pace
    rows = [f"{s},0.1,{20 if s < 1000 else (100 if s % 100 else 300)}" for s in range(50, 4001, 50)]
    (run / "log.csv").write_text("step,loss,images_per_s\n" + "\n".join(rows) + "\n")
    with FolderLock(run):
        state = run_state(root, cell, {}, now=time.time())
    assert state.state == "running"
    # 6,000 steps x 64 images at the mean of the last ten rows (5 x 100 + 5 x 300, 200/s)
    assert f"about {6000 * 64 / 200 / 60:.0f} min of training left" in state.detail
    assert state.detail.startswith("step 4,000 of 10,000")


def test_heatmaps_draw_each_seed_as_stored(grid):
    """Each panel is one seed's own matrix (NMI stored as factors x latents, drawn transposed):
    latent order differs between runs, so seeds are never averaged cell by cell."""
    runs, _ = collect(grid.out, load_spec(grid.out / "spec.toml", checked=False))
    mine = [r for r in runs if r.cell.label == "ae"]
    panels = seed_matrices(mine, "infomec.nmi", transpose=True)
    assert [seed for seed, _ in panels] == [1, 2]
    for seed, m in panels:
        final = load(grid.out / "ae" / f"seed-{seed}" / "metrics.json")["final"]
        np.testing.assert_array_equal(m, np.array(final["infomec.nmi"]).T)
    dci = seed_matrices(mine, "dci.importance_matrix", transpose=False)
    assert [m.shape for _, m in dci] == [m.shape for _, m in panels]
