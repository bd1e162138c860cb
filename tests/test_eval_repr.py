"""``fqvae eval --repr``: the same trained model read through another representation."""

from __future__ import annotations

import json

import torch
from fault_cases import error_line

from fqvae.cli import main
from fqvae.data import load, resize
from fqvae.training.evaluation import load_for_eval


def test_value_codes_carry_the_index_codes_information_in_value_order(finished_run):
    index_fn, _, _ = load_for_eval(finished_run / "checkpoint.pt", "cpu")
    value_fn, discrete, _ = load_for_eval(finished_run / "checkpoint.pt", "cpu", repr="value")
    toy = resize(load("toy"), index_fn.model.image_size)
    x = toy.batch(range(64), "cpu", pixels=index_fn.pixels)
    index, value = index_fn(x), value_fn(x)
    codebook = value_fn.model.latent.codebook.detach().reshape(-1)
    assert discrete and not index.dtype.is_floating_point and value.dtype.is_floating_point
    torch.testing.assert_close(value, codebook[index])  # the value of the chosen code
    # sorting the codebook turns the index into a code ordered like the value
    rank = torch.argsort(torch.argsort(codebook))[index]
    for d in range(index.shape[1]):
        order = torch.argsort(value[:, d], stable=True)
        assert torch.all(rank[order, d].diff() >= 0)


def test_eval_records_the_representation_it_read(finished_run, tmp_path):
    report = tmp_path / "m.json"
    argv = ["eval", str(finished_run / "checkpoint.pt"), "--repr", "value", "--num-train",
            "64", "--num-test", "32", "--metrics", "dci", "--n-jobs", "1", "--json",
            str(report)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(report.read_text())
    assert result["repr"] == "value" and 0 <= result["dci.disentanglement"] <= 1


def test_repr_on_a_model_with_one_representation_is_refused(capsys, tmp_path):
    out = tmp_path / "ae"
    argv = ["train", "--model", "ae", "--data", "toy", "--arch", "small", "--batch-size", "8",
            "--steps", "1", "--no-progress", "--no-tensorboard", "--set",
            "eval.final_num_train=0", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    line = error_line(capsys, ["eval", str(out / "checkpoint.pt"), "--repr", "value"])
    assert "--repr: model 'ae' has one representation" in line


def test_eval_takes_the_run_folder(finished_run, tmp_path):
    """``fqvae eval RUN`` reads ``RUN/checkpoint.pt``: the same numbers as naming the file."""
    reports = [tmp_path / "folder.json", tmp_path / "file.json"]
    for target, report in zip([finished_run, finished_run / "checkpoint.pt"], reports):
        argv = ["eval", str(target), "--num-train", "64", "--num-test", "32", "--metrics",
                "dci", "--n-jobs", "1", "--seed", "3", "--json", str(report)]  # fmt: skip
        assert main(argv) == 0
    folder, file = (json.loads(r.read_text()) for r in reports)
    assert folder["checkpoint"] == str(finished_run / "checkpoint.pt")
    assert folder["dci.disentanglement"] == file["dci.disentanglement"]


def test_eval_on_a_folder_without_a_checkpoint_names_the_file(capsys, tmp_path):
    line = error_line(capsys, ["eval", str(tmp_path)])
    assert f"no checkpoint at {tmp_path / 'checkpoint.pt'}" in line
