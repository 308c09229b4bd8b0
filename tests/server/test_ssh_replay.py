"""Replay of ``ssh_exchange.json`` (sessions with a 6.0 ``hg serve --stdio``) against
hgwire's stdio server run as a process, as an SSH client reaches it: stdout, stderr
and exit status byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VECTORS
from tests.repo import hgrepos

DATA = json.loads((VECTORS / "ssh_exchange.json").read_text())
SHIM = Path(sys.executable).with_name("hgwire-hg")
HGWIRE = Path(sys.executable).with_name("hgwire")


def _run(argv: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, capture_output=True, check=False, timeout=120)


@pytest.fixture
def served(public_repo: Path, tmp_path: Path) -> Path:
    return hgrepos.copy_repo(public_repo, tmp_path / "repo")


LAUNCHERS: dict[str, Callable[[Path], list[str]]] = {
    "hgwire-hg": lambda repo: [str(SHIM), "-R", str(repo), "serve", "--stdio"],
    "hgwire-serve": lambda repo: [str(HGWIRE), "serve", "--stdio", str(repo)],
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
@pytest.mark.parametrize("case", DATA["cases"], ids=[c["name"] for c in DATA["cases"]])
def test_session_replay(served: Path, case: dict[str, Any], launcher: str) -> None:
    (served / ".hg" / "hgrc").write_text(DATA["server_configs"][case["server_config"]])
    proc = _run(LAUNCHERS[launcher](served), bytes.fromhex(case["stdin_hex"]))
    assert proc.stdout == bytes.fromhex(case["stdout_hex"])
    assert proc.stderr == bytes.fromhex(case["stderr_hex"])
    assert proc.returncode == case["exit_code"]


def test_each_step_alone(served: Path) -> None:
    """Every recorded step's reply, step by step, is what 6.0 wrote for it (the
    transcripts concatenate them; here each reply is checked on its own)."""
    for case in DATA["cases"]:
        (served / ".hg" / "hgrc").write_text(DATA["server_configs"][case["server_config"]])
        sent = b""
        expected = b""
        for step in case["steps"]:
            sent += bytes.fromhex(step["send_hex"])
            expected += bytes.fromhex(step.get("stdout_hex", ""))
            if step["expect_kinds"] == ["eof"]:
                break
            proc = _run([str(SHIM), "-R", str(served), "serve", "--stdio"], sent)
            assert proc.stdout == expected, (case["name"], step["name"])


@pytest.mark.parametrize("argv", [["-R", "{repo}", "serve", "--stdio"],
                                  ["serve", "--stdio", "-R", "{repo}"],
                                  ["--repository={repo}", "serve", "--stdio"]])  # fmt: skip
def test_shim_command_lines(served: Path, argv: list[str]) -> None:
    case = DATA["cases"][0]
    args = [a.replace("{repo}", str(served)) for a in argv]
    proc = _run([str(SHIM), *args], bytes.fromhex(case["stdin_hex"]))
    assert proc.stdout == bytes.fromhex(case["stdout_hex"])


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--stdio"],
        ["-R", "{repo}", "serve"],
        ["-R", "{repo}", "serve", "--stdio", "--debugger"],
        ["-R", "--config=x", "serve", "--stdio"],
        ["-R", "{repo}", "-R", "{repo}", "serve", "--stdio"],
        ["-R", "{repo}", "log"],
    ],
)
def test_shim_refuses_other_command_lines(served: Path, argv: list[str]) -> None:
    args = [a.replace("{repo}", str(served)) for a in argv]
    proc = _run([str(SHIM), *args], b"hello\n")
    assert proc.returncode == 255 and proc.stdout == b""
    assert proc.stderr.startswith(b"abort: potentially unsafe serve --stdio invocation")


def test_missing_repository(tmp_path: Path) -> None:
    proc = _run([str(SHIM), "-R", str(tmp_path / "none"), "serve", "--stdio"], b"hello\n")
    assert proc.returncode == 255 and proc.stdout == b""
    assert proc.stderr.startswith(
        b"abort: repository %s not found" % str(tmp_path / "none").encode()
    )


def test_subdirectory_is_not_a_repository(served: Path) -> None:
    """``-R`` must name the repository root (a subdirectory is not found, as in hg)."""
    sub = served / "sub"
    sub.mkdir()
    proc = _run([str(SHIM), "-R", str(sub), "serve", "--stdio"], b"hello\n")
    assert proc.returncode == 255 and proc.stdout == b""
    assert proc.stderr.startswith(b"abort: repository %s not found" % str(sub).encode())
