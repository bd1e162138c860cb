"""Faults of ``fqvae eval``: a wrong file or argument gets one line naming it (exit 2) before
any metric is computed."""

from __future__ import annotations

import pytest
import torch
from fault_cases import error_line
from test_train_tiny import single_thread  # noqa: F401


def test_eval_given_a_config_file(capsys, finished_run):
    line = error_line(capsys, ["eval", str(finished_run / "config.json")])
    assert "config.json is not a readable fqvae checkpoint" in line


EVAL_ARGS = [
    (["--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    (["--n-jobs", "0"], "--n-jobs must be a non-zero int"),
    (["--num-train", "1"], "num_train must be an int >= 2"),
    (["--repr", "mean"], "--repr: repr must be one of ('index', 'value'), got 'mean'"),
]
if not torch.cuda.is_available():
    EVAL_ARGS.append((["--device", "cuda"], "CUDA is not available"))


@pytest.mark.parametrize(("args", "message"), EVAL_ARGS, ids=[" ".join(a) for a, _ in EVAL_ARGS])
def test_eval_arguments_are_checked_before_work(capsys, finished_run, args, message):
    assert message in error_line(capsys, ["eval", str(finished_run / "checkpoint.pt"), *args])


def test_eval_json_path_is_checked_before_work(capsys, tmp_path, finished_run):
    line = error_line(
        capsys, ["eval", str(finished_run / "checkpoint.pt"), "--json", str(tmp_path)]
    )
    assert "--json" in line and "is a folder" in line
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = error_line(capsys, ["eval", str(finished_run / "checkpoint.pt"), "--json",
                           str(blocker / "m.json")])  # fmt: skip
    assert "is a file, not a folder" in line
