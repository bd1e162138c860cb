"""Careless users and crashes: every bad input or file gets one line naming it (exit 2) before
any work, a NaN stop exits 3, and nothing a user made is lost or silently replaced."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from test_train_tiny import single_thread  # noqa: F401

import fqvae
from fqvae.cli import main
from fqvae.training import checkpoint

SMALL = [
    "--model", "factorqvae", "--data", "toy", "--arch", "small", "--batch-size", "8",
    "--no-progress", "--no-tensorboard", "--set", "eval.final_num_train=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 4-step run; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("runs") / "run"
    torch.set_num_threads(1)
    assert main(["train", *SMALL, "--steps", "4", "--out", str(out), "--log-every", "2"]) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def _error(capsys, argv: list[str], code: int = 2, within: float = 15.0) -> str:
    """Run ``fqvae ARGV``; assert the exit code, one error line, and no traceback."""
    start = time.perf_counter()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    if within:
        assert time.perf_counter() - start < within, "the check came after the work"
    return lines[0]


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
]
if not torch.cuda.is_available():
    SETTINGS.append((["--device", "cuda"], "CUDA is not available"))


@pytest.mark.parametrize(("args", "message"), SETTINGS, ids=[" ".join(a) for a, _ in SETTINGS])
def test_train_settings_are_checked_before_work(capsys, tmp_path, args, message):
    line = _error(capsys, ["train", *SMALL, "--steps", "4", "--out", str(tmp_path / "r"), *args])
    assert message in line


# ----------------------------------------------------------------------------- run folders


def test_a_finished_run_is_never_silently_replaced(capsys, tmp_path, finished_run):
    out = _copy(finished_run, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    line = _error(capsys, ["train", *SMALL, "--steps", "2", "--out", str(out)])
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # the demo checks its folders before rendering data or training
    (tmp_path / "demo" / "ae").mkdir(parents=True)
    shutil.copy(out / "config.json", tmp_path / "demo" / "ae" / "config.json")
    assert "already holds a run" in _error(capsys, ["demo", "--out", str(tmp_path / "demo")])


def test_overwrite_replaces_the_run(capsys, tmp_path, finished_run):
    out = _copy(finished_run, tmp_path)
    (out / "eval.csv").write_text("stale\n")
    assert main(["train", *SMALL, "--steps", "2", "--out", str(out), "--overwrite"]) == 0
    assert checkpoint.load(out / "checkpoint.pt")["step"] == 2
    assert not (out / "eval.csv").exists()
    assert json.loads((out / "metrics.json").read_text())["step"] == 2


def test_out_that_is_a_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    assert "is a file" in _error(capsys, ["train", *SMALL, "--out", str(blocker)])
    assert blocker.read_text() == "mine"


def test_partial_files_of_killed_writes_are_removed(tmp_path, finished_run):
    out = _copy(finished_run, tmp_path)
    dead = 2**22 + 12345  # above the default pid_max, so no process has it
    stale = out / f".checkpoint.partial-{dead}.pt"
    stale.write_bytes(b"\0" * 1000)
    alive = out / f".checkpoint.partial-{os.getppid()}.pt"  # a write still in progress
    alive.write_bytes(b"\0")
    argv = ["train", "--resume", "--out", str(out), "--steps", "6", "--no-progress"]
    assert main(argv) == 0
    assert not stale.exists() and alive.exists()


def test_extending_a_run_says_what_it_means(capsys, tmp_path, finished_run):
    out = _copy(finished_run, tmp_path)
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
    out = _copy(finished_run, tmp_path)
    ckpt = out / "checkpoint.pt"
    CHECKPOINTS[kind](ckpt)
    line = _error(capsys, ["train", "--resume", "--out", str(out), "--no-progress"])
    assert str(ckpt) in line and "checkpoint" in line
    assert "weights_only=False" not in line  # never advise an unsafe load of a foreign file
    line = _error(capsys, ["eval", str(ckpt), "--num-train", "10", "--num-test", "10"])
    assert str(ckpt) in line


def test_eval_given_a_config_file(capsys, finished_run):
    line = _error(capsys, ["eval", str(finished_run / "config.json")])
    assert "config.json is not a readable fqvae checkpoint" in line


EVAL_ARGS = [
    (["--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    (["--n-jobs", "0"], "--n-jobs must be a non-zero int"),
    (["--num-train", "1"], "num_train must be an int >= 2"),
]
if not torch.cuda.is_available():
    EVAL_ARGS.append((["--device", "cuda"], "CUDA is not available"))


@pytest.mark.parametrize(("args", "message"), EVAL_ARGS, ids=[" ".join(a) for a, _ in EVAL_ARGS])
def test_eval_arguments_are_checked_before_work(capsys, finished_run, args, message):
    assert message in _error(capsys, ["eval", str(finished_run / "checkpoint.pt"), *args])


def test_eval_json_path_is_checked_before_work(capsys, tmp_path, finished_run):
    line = _error(capsys, ["eval", str(finished_run / "checkpoint.pt"), "--json", str(tmp_path)])
    assert "--json" in line and "is a folder" in line
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = _error(capsys, ["eval", str(finished_run / "checkpoint.pt"), "--json",
                           str(blocker / "m.json")])  # fmt: skip
    assert "is a file, not a folder" in line


def test_broken_config_json_is_named(capsys, tmp_path, finished_run):
    out = _copy(finished_run, tmp_path)
    (out / "config.json").write_text("{not json")
    line = _error(capsys, ["train", "--resume", "--out", str(out), "--no-progress"])
    assert f"{out / 'config.json'} is not a readable run configuration" in line


def test_broken_logs_do_not_block_a_resume_and_are_kept(capsys, tmp_path, finished_run):
    out = _copy(finished_run, tmp_path)
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
    line = _error(capsys, argv, code=3, within=0)
    assert "non-finite" in line and "step" in line and "last good weights" in line
    assert not (out / "checkpoint.pt").exists()  # nothing non-finite was saved


# ----------------------------------------------------------------------------- data files


def test_data_make_refuses_to_replace_a_file(capsys, tmp_path):
    target = tmp_path / "toy.h5"
    target.write_bytes(b"my data")
    line = _error(capsys, ["data", "make", "toy", "--out", str(target), "--reduced"])
    assert str(target) in line and "--overwrite" in line
    assert target.read_bytes() == b"my data"
    stale = tmp_path / f".toy.partial-{2**22 + 12345}.h5"
    stale.write_bytes(b"\0")
    argv = ["data", "make", "toy", "--out", str(target), "--reduced", "--overwrite"]
    assert main(argv) == 0
    assert target.read_bytes() != b"my data" and not stale.exists()


# ----------------------------------------------------------------------------- the layer

INDICES = [("global", [[-1]]), ("global", [[10]]), ("per_dim", [[-1]]), ("per_dim", [[10]])]


@pytest.mark.parametrize(("codebook", "index"), INDICES)
def test_indices_out_of_range_raise(codebook, index):
    layer = fqvae.ScalarQuantize(10, codebook=codebook, num_latents=1)
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 10\)"):
        layer.indices_to_codes(torch.tensor(index))


# ----------------------------------------------------------------------------- huge latents

HUGE = [2e7, -2e7, 1e30, -3e38, 6e4, -6e4, 0.3, 1.0]


@pytest.mark.parametrize("name", fqvae.available_backends("cpu"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_huge_finite_latents_pick_the_end_value(name, dtype):
    if reason := fqvae.backends.unavailable_reason(name, torch.device("cpu"), dtype):
        pytest.skip(f"{name}: {reason}")
    values = [v for v in HUGE if abs(v) <= torch.finfo(dtype).max]
    cb_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    glob = torch.linspace(-1, 1, 10, dtype=cb_dtype)
    # per-dim rows, with repeated end values: the first index of the end value wins
    rows = torch.tensor([[0.0, 2.0, 2.0, -3.0, -3.0], [5.0, -1.0, 5.0, 0.0, -1.0]], dtype=cb_dtype)
    for codebook, z in ((glob, torch.tensor(values)[:, None]),
                        (rows, torch.tensor(values)[:, None].repeat(1, 2))):  # fmt: skip
        z = z.to(dtype)
        lo, hi = (
            codebook.reshape(-1, codebook.shape[-1]).amin(-1),
            codebook.reshape(-1, codebook.shape[-1]).amax(-1),
        )
        with fqvae.backend(name):
            out = fqvae.ops.quantize_nearest(z, codebook)
        q = out.quantized.to(cb_dtype)
        zf = z.to(cb_dtype)
        assert torch.equal(q[zf > hi], hi.expand_as(zf)[zf > hi])
        assert torch.equal(q[zf < lo], lo.expand_as(zf)[zf < lo])
        assert torch.equal(out.indices, fqvae.reference.quantize_nearest(z, codebook).indices)


@pytest.mark.parametrize("name", fqvae.available_backends("cpu"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_huge_finite_latents_take_the_end_value_in_gumbel(name, dtype):
    if reason := fqvae.backends.unavailable_reason(name, torch.device("cpu"), dtype):
        pytest.skip(f"{name}: {reason}")
    values = [v for v in HUGE if abs(v) <= torch.finfo(dtype).max and abs(v) >= 6e4]
    cb_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    codebook = torch.linspace(-1, 1, 10, dtype=cb_dtype).requires_grad_()
    z = torch.tensor(values, dtype=dtype)[:, None].requires_grad_()
    with fqvae.backend(name):
        out = fqvae.ops.quantize_gumbel(z, codebook, tau=0.5, seed=3)
        (out.value.sum() + out.kl).backward()
    end = torch.where(z.detach() > 0, 9, 0)
    assert torch.equal(out.indices, end)
    assert torch.equal(out.value.to(cb_dtype), codebook.detach()[end])
    assert torch.isfinite(out.kl) and torch.isfinite(z.grad).all()
    assert torch.isfinite(codebook.grad).all()


@pytest.mark.parametrize("tau", [1e-40, 0.0, -1.0, float("inf"), float("nan")])
def test_gumbel_tau_outside_float32s_range_is_refused(tau):
    with pytest.raises(ValueError, match="tau must be (finite and >= 1e-20|a number > 0)"):
        fqvae.ops.quantize_gumbel(torch.zeros(2, 3), torch.tensor([0.0, 1.0]), tau=tau, seed=1)


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
    line = _error(capsys, argv, within=0)
    assert str(path) in line and "'images' is a group, not a dataset" in line


@pytest.mark.parametrize("meta", ['{"name": "shapes3d"}', "{broken", "[]"])
def test_cache_with_bad_metadata(capsys, tmp_path, meta):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "meta.json").write_text(meta)
    argv = ["train", "--model", "ae", "--data", "shapes3d", "--data-path", str(cache), "--out",
            str(tmp_path / "r"), "--steps", "2", "--no-progress"]  # fmt: skip
    line = _error(capsys, argv, within=0)
    assert str(cache / "meta.json") in line
