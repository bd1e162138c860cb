"""The CPU recipe: what `fqvae train` picks without a GPU, the reduced image size it trains at,
and the codebook learning rate it may set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fqvae import data
from fqvae.cli import main
from fqvae.models import build_model
from fqvae.training.demo import demo_config, recipe_note
from fqvae.training.published import CPU_COMMON, CPU_MODELS
from fqvae.training.runtime import cpu_bf16_matmul


def _dry(capsys, *args):
    assert main(["train", "--dry-run", "--device", "cpu", *args]) == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_a_cpu_run_gets_the_cpu_recipe_and_says_so_in_one_line(capsys):
    cfg, err = _dry(capsys, "--model", "factorqvae", "--data", "shapes3d")
    assert cfg["train"]["recipe"] == "cpu"
    assert cfg["model"]["arch"] == CPU_COMMON["arch"]
    assert cfg["data"]["image_size"] == CPU_COMMON["image_size"]
    assert cfg["train"]["batch"] == CPU_MODELS["factorqvae"]["batch_size"]
    assert cfg["train"]["iterations"] == CPU_COMMON["iterations"]
    assert cfg["model"]["hparams"]["gamma"] == CPU_MODELS["factorqvae"]["hparams"]["gamma"]
    # the schedules span the recipe's run (tau ends at e^-1, one cosine decay)
    hp = cfg["model"]["hparams"]
    assert hp["tau_rate"] == pytest.approx(1 / CPU_COMMON["iterations"])
    assert (hp["lr_t_max"], hp["lr_cycle"]) == (CPU_COMMON["iterations"], "single")
    notes = [line for line in err.splitlines() if "CPU recipe" in line]
    assert len(notes) == 1 and "small backbone" in notes[0] and "--recipe paper" in notes[0]
    assert "--fused-optim" in notes[0]
    assert ("--matmul reduced" in notes[0]) == cpu_bf16_matmul()


def test_the_cpu_note_names_only_the_speed_settings_left_off(capsys):
    args = ("--model", "factorqvae", "--data", "shapes3d", "--fused-optim", "--matmul", "full")
    _, err = _dry(capsys, *args, "--amp", "off")
    notes = [line for line in err.splitlines() if "CPU recipe" in line]
    assert len(notes) == 1 and "--fused-optim" not in notes[0] and "--matmul" not in notes[0]
    assert "--amp" not in notes[0]


@pytest.mark.parametrize("bf16", [False, True])
def test_bf16_matmuls_are_suggested_and_used_by_the_demo_only_where_they_round(
    capsys, monkeypatch, bf16
):
    for module in ("runtime", "presets", "demo"):
        monkeypatch.setattr(f"fqvae.training.{module}.cpu_bf16_matmul", lambda: bf16)
    _, err = _dry(capsys, "--model", "factorqvae", "--data", "shapes3d")
    assert ("--matmul reduced" in err) == bf16 and "--fused-optim" in err
    assert demo_config("factorqvae", progress=False).system.matmul == (
        "reduced" if bf16 else "auto"
    )
    assert ("--matmul reduced" in recipe_note()) == bf16


@pytest.mark.parametrize("native", [False, True])
def test_amp_bf16_is_suggested_where_the_cpu_computes_bf16_natively(capsys, monkeypatch, native):
    monkeypatch.setattr("fqvae.training.presets.cpu_native_bf16", lambda: native)
    _, err = _dry(capsys, "--model", "factorqvae", "--data", "shapes3d")
    assert ("--amp bf16" in err) == native
    _, err = _dry(capsys, "--model", "factorqvae", "--data", "shapes3d", "--amp", "bf16")
    assert "--amp bf16 train faster" not in err and "--amp" not in err.split("docs/recipes.md")[-1]


def test_what_the_user_sets_wins_over_the_cpu_recipe(capsys):
    cfg, _ = _dry(
        capsys, "--model", "vae", "--data", "shapes3d", "--arch", "dalle", "--batch-size", "32"
    )
    assert (cfg["model"]["arch"], cfg["train"]["batch"]) == ("dalle", 32)
    cfg, err = _dry(capsys, "--model", "vae", "--data", "shapes3d", "--recipe", "paper")
    assert (cfg["model"]["arch"], cfg["train"]["batch"], cfg["data"]["image_size"]) == (
        "dalle",
        256,
        None,
    )
    assert "CPU recipe" not in err


def test_an_unknown_recipe_is_one_clear_error(capsys):
    assert main(["train", "--dry-run", "--model", "vae", "--recipe", "fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.recipe must be one of auto, paper, cpu" in err[0]


def test_resize_averages_pixel_blocks_and_keeps_the_factors():
    toy = data.toy()
    small = data.resize(toy, 32)
    assert small.observation_shape == (32, 32, 3) and small.images.dtype == np.uint8
    block = toy.images[100].astype(np.float64).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    assert np.abs(small.images[100] - block).max() <= 0.5
    np.testing.assert_array_equal(small.classes, toy.classes)
    assert data.resize(toy, 64) is toy
    with pytest.raises(ValueError, match="must divide the native 64x64"):
        data.resize(toy, 24)


def test_codebook_lr_moves_the_codebook_faster_on_the_same_schedule():
    def trained(codebook_lr):
        torch.manual_seed(0)
        model = build_model(
            name="qvae", in_channels=3, image_size=32, num_latents=4, arch="small",
            codebook_lr=codebook_lr,
        )  # fmt: skip
        start = model.latent.codebook.detach().clone()
        opt = model.configure_optimizers(1e-3, 10)
        groups = opt.main[0].param_groups
        x = torch.rand(8, 3, 32, 32) - 0.5
        for step in range(5):
            model.set_step(step)
            opt.main[0].zero_grad()
            model(x)["loss"].backward()
            opt.main[0].step()
            opt.schedulers[0].step()
        moved = (model.latent.codebook.detach() - start).abs().max().item()
        return moved, [g["lr"] for g in groups]

    base_moved, base_lrs = trained(None)
    fast_moved, fast_lrs = trained(2e-2)
    assert len(base_lrs) == 1 and len(fast_lrs) == 2
    # the cosine scales both groups by the same factor
    assert fast_lrs[1] / 2e-2 == pytest.approx(fast_lrs[0] / 1e-3)
    assert fast_moved > 5 * base_moved
    with pytest.raises(ValueError, match="codebook_lr must be a finite number > 0"):
        build_model(
            name="qvae",
            in_channels=3,
            num_latents=4,
            arch="small",
            image_size=32,
            codebook_lr=0.0,
        )


def test_a_large_backbone_on_a_cpu_is_timed_before_step_one(capsys, tmp_path):
    args = ["train", "--model", "ae", "--data", "toy", "--arch", "dalle", "--device", "cpu"]
    args += ["--steps", "1", "--batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress"]
    args += ["--set", "eval.final_num_train=0", "--set", "eval.images=false"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "the dalle backbone on a CPU: about" in err and "s a step here" in err
