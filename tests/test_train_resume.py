"""Checkpoints: exact resume, stop on signal, NaN stop, atomic writes, unwritable output."""

from __future__ import annotations

import csv
import json
import os
import signal
import time

import pytest
import torch
from test_train_tiny import TinyModel, single_thread, tiny_config, tiny_dataset  # noqa: F401

from fqvae.training import checkpoint
from fqvae.training.config import ConfigError
from fqvae.training.step import NonFiniteLoss
from fqvae.training.trainer import train


class Interrupting(TinyModel):
    """Raises ``exc`` (or sends itself ``signal``) at the start of batch ``at``."""

    def __init__(self, at: int, sig: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.at, self.sig = at, sig

    def set_step(self, it: int) -> None:
        super().set_step(it)
        if it == self.at:
            if self.sig is None:
                raise RuntimeError("simulated crash")
            os.kill(os.getpid(), self.sig)


def _run(out, model_cls=TinyModel, resume=False, iterations=12, **kwargs):
    torch.manual_seed(0)
    cfg = tiny_config(out, iterations)
    cfg.log.ckpt_every = kwargs.pop("ckpt_every", 0)
    return train(cfg, dataset=tiny_dataset(), model=model_cls(**kwargs), resume=resume)


def _weights(out):
    return checkpoint.load(out / checkpoint.CHECKPOINT)["model"]


def _assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _log_steps(out):
    with open(out / "log.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def test_resume_after_a_crash_is_bitwise_exact(tmp_path):
    _run(tmp_path / "full", ckpt_every=5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(tmp_path / "part", Interrupting, ckpt_every=5, at=8)
    assert checkpoint.load(tmp_path / "part" / checkpoint.CHECKPOINT)["step"] == 5
    _run(tmp_path / "part", resume=True, ckpt_every=5)
    _assert_bitwise_equal(_weights(tmp_path / "full"), _weights(tmp_path / "part"))
    assert _log_steps(tmp_path / "part") == list(range(1, 13))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_resume_is_exact(tmp_path, sig):
    _run(tmp_path / "full")
    result = _run(tmp_path / "part", Interrupting, at=7, sig=sig)
    assert result.stopped == "signal" and result.step == 8
    assert checkpoint.load(tmp_path / "part" / checkpoint.CHECKPOINT)["step"] == 8
    assert signal.getsignal(sig) is not None  # handlers restored
    _run(tmp_path / "part", resume=True)
    _assert_bitwise_equal(_weights(tmp_path / "full"), _weights(tmp_path / "part"))


class Slow(Interrupting):
    """A step that takes at least 50 ms, so that training time is measurable."""

    def set_step(self, it: int) -> None:
        time.sleep(0.05)
        super().set_step(it)


def test_training_time_counts_every_part_of_a_resumed_run(tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(tmp_path, Slow, ckpt_every=5, at=8)  # 9 steps slept; the checkpoint holds 5
    assert checkpoint.load(tmp_path / checkpoint.CHECKPOINT)["train_s"] >= 5 * 0.05
    _run(tmp_path, Slow, resume=True, at=-1)  # steps 6-12 again
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train_s"] >= 12 * 0.05  # the 5 steps before the crash count too


def test_resume_rejects_a_changed_training_setting(tmp_path):
    _run(tmp_path, iterations=4)
    cfg = tiny_config(tmp_path, 8)
    cfg.train.lr = 0.5
    with pytest.raises(ConfigError, match="train.lr"):
        train(cfg, dataset=tiny_dataset(), model=TinyModel(), resume=True)


def test_resume_without_checkpoint_fails_fast(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config(tmp_path), dataset=tiny_dataset(), model=TinyModel(), resume=True)
    assert not (tmp_path / "config.json").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLoss, match=r"step 8: .*loss=nan"):
        _run(tmp_path, ckpt_every=5, nan_at=7)
    state = checkpoint.load(tmp_path / checkpoint.CHECKPOINT)
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    stub = {"config": {}, "model_kwargs": {}}
    checkpoint.save({"step": 1, "model": {"w": torch.ones(3)}, **stub}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save({"step": 2, "model": {"w": torch.zeros(3)}, **stub}, path)
    assert checkpoint.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_unwritable_or_full_output_is_reported_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="not writable"):
        train(tiny_config(blocker / "run"), dataset=tiny_dataset(), model=TinyModel())

    class Usage:
        free = 1024

    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(OSError, match="MiB free"):
        train(tiny_config(tmp_path / "run"), dataset=tiny_dataset(), model=TinyModel())
    assert not (tmp_path / "run" / "config.json").exists()
