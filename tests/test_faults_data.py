"""Faults of ``fqvae data``: an existing file is never replaced without ``--overwrite``, and a
killed write leaves nothing behind."""

from __future__ import annotations

from fault_cases import error_line

from fqvae.cli import main

# ----------------------------------------------------------------------------- data files


def test_data_make_refuses_to_replace_a_file(capsys, tmp_path):
    target = tmp_path / "toy.h5"
    target.write_bytes(b"my data")
    line = error_line(capsys, ["data", "make", "toy", "--out", str(target), "--reduced"])
    assert str(target) in line and "--overwrite" in line
    assert target.read_bytes() == b"my data"
    stale = tmp_path / f".toy.partial-{2**22 + 12345}.h5"
    stale.write_bytes(b"\0")
    argv = ["data", "make", "toy", "--out", str(target), "--reduced", "--overwrite"]
    assert main(argv) == 0
    assert target.read_bytes() != b"my data" and not stale.exists()
