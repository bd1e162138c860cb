"""Faults of ``fqvae train``: every bad setting or file gets one line naming it (exit 2) before
any work, a NaN stop exits 3, and no run a user made is lost or silently replaced."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from fault_cases import SMALL, copy_run, error_line
from test_train_tiny import single_thread  # noqa: F401

from fqvae.cli import main
from fqvae.locks import holder
from fqvae.training import checkpoint

# ----------------------------------------------------------------------------- settings

SETTINGS = [
    (["--seed", "-1"], "train.seed must be an int in [0, 2^63)"),
    (["--seed", str(2**64)], "train.seed must be an int in [0, 2^63)"),
    (["--device", "tpu"], "system.device must be auto, cpu, cuda or cuda:N"),
    (["--lr", "inf"], "train.lr must be finite"),
    (["--set", "eval.n_jobs=0"], "eval.n_jobs must be a non-zero int"),
    (["--set", "eval.final_num_train=1"], "eval.final_num_train must be 0 (no evaluation) or >= 2"),
    (["--set", "eval.final_num_train=10", "--set", "eval.final_num_test=1"], "eval.final_num_test"),
    (["--eval-every", "2", "--set", "eval.num_train=1"], "eval.num_train must be 0"),
    (["--resume", "--overwrite"], "pick one"),
    (["--matmul", "fast"], "system.matmul must be one of auto, full, reduced"),
]
if not torch.cuda.is_available():
    SETTINGS.append((["--device", "cuda"], "CUDA is not available"))


@pytest.mark.parametrize(("args", "message"), SETTINGS, ids=[" ".join(a) for a, _ in SETTINGS])
def test_train_settings_are_checked_before_work(capsys, tmp_path, args, message):
    line = error_line(
        capsys, ["train", *SMALL, "--steps", "4", "--out", str(tmp_path / "r"), *args]
    )
    assert message in line


DEMO_SETTINGS = [
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--num-train", "3"], "--num-train must be at least 4, got 3"),
]


@pytest.mark.parametrize(
    ("args", "message"), DEMO_SETTINGS, ids=[" ".join(a) for a, _ in DEMO_SETTINGS]
)
def test_demo_settings_are_checked_before_work(capsys, tmp_path, args, message):
    out = tmp_path / "demo"
    assert message in error_line(capsys, ["demo", "--out", str(out), *args])
    assert not out.exists()


def test_reduced_matmul_is_refused_on_a_cpu_without_bf16(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("fqvae.training.runtime.cpu_bf16_matmul", lambda: False)
    out = tmp_path / "r"
    argv = ["train", *SMALL, "--steps", "4", "--out", str(out), "--matmul", "reduced"]
    line = error_line(capsys, [*argv, "--device", "cpu"])
    assert "system.matmul=reduced on a CPU needs" in line and "--matmul full" in line
    assert not out.exists()


# ----------------------------------------------------------------------------- run folders


def test_a_finished_run_is_never_silently_replaced(capsys, tmp_path, finished_run):
    out = copy_run(finished_run, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    line = error_line(capsys, ["train", *SMALL, "--steps", "2", "--out", str(out)])
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # the demo checks its folders before rendering data or training
    (tmp_path / "demo" / "ae").mkdir(parents=True)
    shutil.copy(out / "config.json", tmp_path / "demo" / "ae" / "config.json")
    assert "already holds a run" in error_line(capsys, ["demo", "--out", str(tmp_path / "demo")])


def test_overwrite_replaces_the_run(capsys, tmp_path, finished_run):
    out = copy_run(finished_run, tmp_path)
    (out / "eval.csv").write_text("stale\n")
    assert main(["train", *SMALL, "--steps", "2", "--out", str(out), "--overwrite"]) == 0
    assert checkpoint.load(out / "checkpoint.pt")["step"] == 2
    assert not (out / "eval.csv").exists()
    assert json.loads((out / "metrics.json").read_text())["step"] == 2


def test_a_folder_in_training_is_refused_to_a_second_process(capsys, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fqvae", "train", *SMALL, "--steps", "100000", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    trainer = subprocess.Popen([*cmd, "--log-every", "1"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "log.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert holder(out) == trainer.pid
        line = error_line(capsys, ["train", *SMALL, "--out", str(out), "--overwrite"])
        assert f"{out} is in use by process {trainer.pid}" in line
        assert (out / "log.csv").exists() and (out / "config.json").exists()
        trainer.send_signal(signal.SIGTERM)  # it saves a checkpoint and lets go
        assert trainer.wait(timeout=120) == 130, trainer.stderr.read()
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
    assert holder(out) is None
    assert main(["train", *SMALL, "--steps", "2", "--out", str(out), "--overwrite"]) == 0


def test_out_that_is_a_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    assert "is a file" in error_line(capsys, ["train", *SMALL, "--out", str(blocker)])
    assert blocker.read_text() == "mine"


def test_partial_files_of_killed_writes_are_removed(tmp_path, finished_run):
    out = copy_run(finished_run, tmp_path)
    dead = 2**22 + 12345  # above the default pid_max, so no process has it
    stale = out / f".checkpoint.partial-{dead}.pt"
    stale.write_bytes(b"\0" * 1000)
    alive = out / f".checkpoint.partial-{os.getppid()}.pt"  # a write still in progress
    alive.write_bytes(b"\0")
    argv = ["train", "--resume", "--out", str(out), "--steps", "6", "--no-progress"]
    assert main(argv) == 0
    assert not stale.exists() and alive.exists()


def test_extending_a_run_says_what_it_means(capsys, tmp_path, finished_run):
    out = copy_run(finished_run, tmp_path)
    assert main(["train", "--resume", "--out", str(out), "--steps", "6", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "goes from 4 to 6 steps and keeps the schedules" in err and "tau_rate=0.25" in err
    stored = json.loads((out / "config.json").read_text())["config"]
    assert stored["model"]["hparams"]["tau_rate"] == 0.25 and stored["train"]["iterations"] == 6


# ----------------------------------------------------------------------------- corrupt files

CHECKPOINTS = {
    "empty": lambda p: p.write_bytes(b""),
    "zero-filled": lambda p: p.write_bytes(b"\0" * 4096),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "random bytes": lambda p: p.write_bytes(os.urandom(4096)),
    "a JSON file": lambda p: p.write_text('{"config": {}}'),
    "a foreign tensor": lambda p: torch.save(torch.ones(3), p),
}


@pytest.mark.parametrize("kind", list(CHECKPOINTS))
def test_corrupt_checkpoint_is_named_for_resume_and_eval(capsys, tmp_path, finished_run, kind):
    out = copy_run(finished_run, tmp_path)
    ckpt = out / "checkpoint.pt"
    CHECKPOINTS[kind](ckpt)
    line = error_line(capsys, ["train", "--resume", "--out", str(out), "--no-progress"])
    assert str(ckpt) in line and "checkpoint" in line
    assert "weights_only=False" not in line  # never advise an unsafe load of a foreign file
    line = error_line(capsys, ["eval", str(ckpt), "--num-train", "10", "--num-test", "10"])
    assert str(ckpt) in line


def test_broken_config_json_is_named(capsys, tmp_path, finished_run):
    out = copy_run(finished_run, tmp_path)
    (out / "config.json").write_text("{not json")
    line = error_line(capsys, ["train", "--resume", "--out", str(out), "--no-progress"])
    assert f"{out / 'config.json'} is not a readable run configuration" in line


def test_broken_logs_do_not_block_a_resume_and_are_kept(capsys, tmp_path, finished_run):
    out = copy_run(finished_run, tmp_path)
    (out / "metrics.json").write_text("[1, 2")
    (out / "log.csv").write_bytes(b"\xff\xfe garbage\nno,step,column\n1,2,3\n")
    with pytest.warns(UserWarning, match="log.csv is unreadable"):
        argv = ["train", "--resume", "--out", str(out), "--steps", "6", "--no-progress"]
        assert main(argv) == 0
    assert (out / "metrics.json.broken").read_text() == "[1, 2"
    assert (out / "log.csv.broken").exists()
    assert json.loads((out / "metrics.json").read_text())["step"] == 6


# ----------------------------------------------------------------------------- NaN stop


@pytest.mark.parametrize("setting", ["train.lr=1e6", "model.hparams.disc_lr=1e30"])
def test_factorqvae_divergence_is_the_documented_stop(capsys, tmp_path, setting):
    """Divergence of the main or of the discriminator half: exit 3, nothing non-finite saved."""
    out = tmp_path / "run"
    argv = ["train", *SMALL, "--steps", "30", "--out", str(out), "--set", setting]
    line = error_line(capsys, argv, code=3, within=0)
    assert "non-finite" in line and "step" in line and "last good weights" in line
    assert not (out / "checkpoint.pt").exists()  # nothing non-finite was saved


# ----------------------------------------------------------------------------- foreign data


def test_h5_whose_images_is_a_group(capsys, tmp_path):
    import h5py
    import numpy as np

    path = tmp_path / "3dshapes.h5"
    with h5py.File(path, "w") as f:
        f.create_group("images")
        f.create_dataset("labels", data=np.zeros((4, 6)))
    argv = ["train", "--model", "ae", "--data", "shapes3d", "--data-path", str(path), "--out",
            str(tmp_path / "r"), "--steps", "2", "--no-progress"]  # fmt: skip
    line = error_line(capsys, argv, within=0)
    assert str(path) in line and "'images' is a group, not a dataset" in line


@pytest.mark.parametrize("meta", ['{"name": "shapes3d"}', "{broken", "[]"])
def test_cache_with_bad_metadata(capsys, tmp_path, meta):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "meta.json").write_text(meta)
    argv = ["train", "--model", "ae", "--data", "shapes3d", "--data-path", str(cache), "--out",
            str(tmp_path / "r"), "--steps", "2", "--no-progress"]  # fmt: skip
    line = error_line(capsys, argv, within=0)
    assert str(cache / "meta.json") in line
