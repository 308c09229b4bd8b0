"""The command line starts and lists its commands."""

from __future__ import annotations

import pytest

from hgwire.cli import main


def test_help_lists_server_side_nature(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "hgwire" in out
    assert "working directory" in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: hgwire" in capsys.readouterr().out
