"""``fqvae train`` / ``fqvae eval``: presets resolve to explicit values, bad input fails fast
with a clear message, and a short run trains, resumes and evaluates end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_train_tiny import single_thread  # noqa: F401

from fqvae.cli import main
from fqvae.training import checkpoint
from fqvae.training.config import Config
from fqvae.training.evaluation import load_for_eval

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--model",
    "factorqvae",
    "--data",
    "toy",
    "--arch",
    "small",
    "--batch-size",
    "8",
    "--no-progress",
    "--no-tensorboard",
    "--set",
    "eval.final_num_train=0",
]


def _dry(capsys, *args):
    assert main(["train", "--dry-run", *args]) == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def _fails(capsys, *args, match: str):
    start = time.perf_counter()
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert "fqvae train: error:" in err and match in err, err
    assert time.perf_counter() - start < 10  # before any data or training work


def test_model_dataset_preset_resolves_the_published_values(capsys):
    cfg, _ = _dry(capsys, "--preset", "factorqvae-shapes3d", "--recipe", "paper")
    assert (cfg["model"]["name"], cfg["data"]["name"]) == ("factorqvae", "shapes3d")
    assert (cfg["train"]["batch"], cfg["train"]["iterations"], cfg["model"]["latents"]) == (
        512,
        50000,
        12,
    )
    hp = cfg["model"]["hparams"]
    assert (hp["kl_weight"], hp["gamma"], hp["tau_rate"]) == (1e-3, 1e-4, 2e-5)
    assert (hp["lr_t_max"], hp["lr_cycle"], cfg["model"]["arch"]) == (50000, "periodic", "dalle")
    assert cfg["data"]["split"] == "train"


def test_the_old_fidelity_name_reads_as_executed(capsys):
    for args in (["--fidelity", "reference"], ["--preset", "reference"],
                 ["--set", "train.fidelity=reference"]):  # fmt: skip
        cfg, _ = _dry(capsys, "--preset", "vae-shapes3d", "--recipe", "paper", *args)
        assert cfg["train"]["fidelity"] == "executed"
    stored = Config().to_dict()
    stored["train"]["fidelity"] = "reference"  # a config.json written before the rename
    assert Config.from_dict(stored).train.fidelity == "executed"


def test_fidelity_variants_differ_for_the_single_optimizer_baselines(capsys):
    ref, _ = _dry(capsys, "--preset", "vae-shapes3d", "--recipe", "paper")
    clean, _ = _dry(capsys, "--preset", "vae-shapes3d", "--preset", "clean", "--recipe", "paper")
    assert ref["train"]["iterations"] == clean["train"]["iterations"] == 100000
    assert (ref["model"]["hparams"]["lr_t_max"], ref["model"]["hparams"]["lr_cycle"]) == (
        50000,
        "periodic",
    )
    assert (clean["model"]["hparams"]["lr_t_max"], clean["model"]["hparams"]["lr_cycle"]) == (
        100000,
        "single",
    )


def test_the_cpu_recipe_runs_the_clean_schedules_and_refuses_executed(capsys):
    cfg, _ = _dry(capsys, "--preset", "vae-shapes3d", "--recipe", "cpu")
    assert cfg["train"]["fidelity"] == "clean"
    assert cfg["model"]["hparams"]["lr_cycle"] == "single"
    paper, _ = _dry(capsys, "--preset", "vae-shapes3d", "--recipe", "paper")
    assert paper["train"]["fidelity"] == "executed"
    _fails(capsys, "--preset", "vae-shapes3d", "--recipe", "cpu", "--fidelity", "executed",
           match="train.fidelity=executed needs --recipe paper")  # fmt: skip


def test_changing_iterations_derives_tau_rate_with_a_note(capsys):
    cfg, err = _dry(capsys, "--preset", "factorqvae-shapes3d", "--steps", "1000")
    assert cfg["model"]["hparams"]["tau_rate"] == pytest.approx(1e-3)
    assert cfg["model"]["hparams"]["lr_t_max"] == 1000
    assert "tau_rate = 1/iterations" in err
    cfg, _ = _dry(
        capsys, "--preset", "factorqvae-shapes3d", "--steps", "1000", "--tau-rate", "2e-5"
    )
    assert cfg["model"]["hparams"]["tau_rate"] == 2e-5


def test_overrides_flags_and_set(capsys):
    cfg, _ = _dry(
        capsys,
        "--preset",
        "factorqvae-mpi3d",
        "--recipe",
        "paper",
        "--set",
        "model.hparams.gamma=0.01",
        "--set",
        "eval.metrics=dci,mig",
        "--lr",
        "3e-4",
        "--channels-last",
    )
    assert cfg["model"]["hparams"]["gamma"] == 0.01
    assert cfg["model"]["hparams"]["kl_weight"] == 5e-5
    assert cfg["eval"]["metrics"] == ["dci", "mig"]
    assert cfg["train"]["lr"] == 3e-4 and cfg["system"]["channels_last"] is True


def test_flags_named_after_their_keys_and_their_old_names_agree(capsys):
    base = ["--model", "ae", "--data", "toy"]
    new, _ = _dry(capsys, *base, "--iterations", "30", "--batch", "16")
    old, _ = _dry(capsys, *base, "--steps", "30", "--batch-size", "16")
    assert (new["train"]["iterations"], new["train"]["batch"]) == (30, 16)
    assert new == old


@pytest.mark.parametrize(
    "args, match",
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--data", "cifar"], "unknown dataset 'cifar'"),
        (["--preset", "factorqvae-cifar"], "unknown preset"),
        (["--set", "train.nope=1"], "unknown config key 'train.nope'"),
        (["--set", "train.lr"], "KEY=VALUE"),
        (["--set", "train.batch=big"], "train.batch must be int"),
        (["--set", "model.hparams.beta=3"], "has no hparams ['beta']"),
        (["--set", "model.hparams.arch=small"], "set the backbone with model.arch"),
        (["--steps", "0"], "train.iterations must be > 0"),
        (["--fidelity", "exact"], "train.fidelity must be one of executed, clean"),
        (["--preset", "factorqvae-shapes3d", "--model", "vae"], "conflicts with --preset"),
        (["--resume"], "--resume needs --out"),
        (["--set", "eval.metrics=dci,nope"], "eval.metrics must be a non-empty subset"),
    ],
)
def test_bad_command_lines_fail_fast(capsys, args, match):
    _fails(capsys, *args, match=match)


@pytest.mark.parametrize(
    "args, match",
    [
        (["--set", "model.hparams.gamma=abc"], "rejected its settings: gamma must be a number"),
        (["--set", "data.image_size=40"], "a positive multiple of 16, got 40"),
    ],
)
def test_dry_run_refuses_settings_the_model_rejects(capsys, args, match):
    """``--dry-run`` builds the model once, so it refuses what training would refuse."""
    _fails(capsys, "--model", "factorqvae", "--data", "shapes3d", "--dry-run", *args, match=match)


def test_resume_without_a_run_and_unwritable_out_fail_fast(capsys, tmp_path):
    _fails(capsys, "--resume", "--out", str(tmp_path), match="config.json not found")
    blocker = tmp_path / "file"
    blocker.write_text("")
    _fails(capsys, *SMALL, "--out", str(blocker / "run"), match="not writable")


def test_train_resume_and_eval_end_to_end(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--steps", "4", "--out", str(out), "--log-every", "2"]) == 0
    assert checkpoint.load(out / "checkpoint.pt")["step"] == 4
    manifest = json.loads((out / "config.json").read_text())
    assert manifest["config"]["model"]["latents"] == 8  # 2 x the toy set's 4 factors
    assert manifest["config"]["model"]["hparams"]["tau_rate"] == 0.25
    assert manifest["cpu_threads"] == torch.get_num_threads()  # part of what the run reproduces
    assert (out / "traversals.png").exists() and (out / "codebook_usage.png").exists()

    assert main(["train", "--resume", "--out", str(out), "--steps", "6", "--no-progress"]) == 0
    assert checkpoint.load(out / "checkpoint.pt")["step"] == 6
    assert [r.split(",")[0] for r in (out / "log.csv").read_text().split()[1:]] == ["2", "4", "6"]
    assert main(["train", "--resume", "--out", str(out), "--lr", "0.5"]) == 2
    assert "cannot change" in capsys.readouterr().err

    rep, discrete, data_name = load_for_eval(out / "checkpoint.pt", "cpu")
    assert (discrete, data_name, rep.pixels) == (True, "toy", "centered")
    from fqvae.data import load, resize

    x = resize(load("toy"), rep.model.image_size).batch(range(5), "cpu", pixels=rep.pixels)
    codes = rep(x)
    assert codes.shape == (5, 8) and not codes.dtype.is_floating_point

    report = tmp_path / "metrics.json"
    assert (
        main(
            [
                "eval",
                str(out / "checkpoint.pt"),
                "--num-train",
                "64",
                "--num-test",
                "32",
                "--metrics",
                "dci,infomec",
                "--n-jobs",
                "1",
                "--json",
                str(report),
                "--figures",
                str(tmp_path / "figures"),
            ]
        )
        == 0
    )
    result = json.loads(report.read_text())
    assert 0 <= result["dci.disentanglement"] <= 1 and result["representation"] == "discrete"
    assert "figures: " in capsys.readouterr().out
    for name in ("traversals.png", "codebook_usage.png"):
        with Image.open(tmp_path / "figures" / name) as image:
            image.verify()


def test_compile_trains_and_names_the_models_it_compiles_in_pieces(capsys, tmp_path):
    """``--compile`` (inductor, forward and backward) trains FactorQVAE and dVAE (whose Gumbel
    noise is a custom op seeded inside the graph) without a note; a model whose forward breaks
    the graph says so once, before training."""
    for name in ("factorqvae", "dvae"):
        args = [a if a != "factorqvae" else name for a in SMALL]
        out = tmp_path / name
        assert main(["train", *args, "--steps", "3", "--compile", "--out", str(out)]) == 0
        assert checkpoint.load(out / "checkpoint.pt")["step"] == 3
        assert "in pieces" not in capsys.readouterr().err
    small_gan = [a if a != "factorqvae" else "infowgan_gp" for a in SMALL]
    out = tmp_path / "gan"
    assert main(["train", *small_gan, "--steps", "1", "--compile", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("compiles infowgan_gp in pieces: the gradient penalty (a second") == 1, err


def test_sigterm_to_the_command_saves_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fqvae",
            "train",
            *SMALL,
            "--steps",
            "100000",
            "--log-every",
            "1",
            "--out",
            str(out),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "log.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (out / "log.csv").exists(), "training did not start"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "--resume" in err
    step = checkpoint.load(out / "checkpoint.pt")["step"]
    assert 1 <= step < 100000
