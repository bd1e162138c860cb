"""Every command's --help reads as plain text: no reStructuredText from the docstrings."""

import pytest

from fqvae.cli import main

COMMANDS = [
    [],
    ["train"],
    ["eval"],
    ["demo"],
    ["study"],
    ["study", "run"],
    ["study", "report"],
    ["doctor"],
    ["data"],
    ["data", "make"],
    ["data", "show"],
    ["data", "prepare"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "fqvae")
def test_help_is_plain_text(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: fqvae")
    for markup in ("``", ":data:", ":mod:", ":func:", "::"):
        assert markup not in text, f"{markup!r} in `fqvae {' '.join(command)} --help`"


def test_top_level_help_names_the_first_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "fqvae demo" in capsys.readouterr().out
