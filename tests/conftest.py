"""Shared fixtures: paths to the shared material and to real Mercurial test peers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
VECTORS = SHARED / "vectors"
CORPUS = SHARED / "corpus"
CACHE = Path(os.environ.get("HGWIRE_CACHE", Path.home() / ".cache" / "hgwire"))
IN_CI = os.environ.get("CI", "").lower() == "true"

HgRunner = Callable[..., subprocess.CompletedProcess[bytes]]


def _hg_path(env: str, version: str) -> Path | None:
    path = Path(os.environ.get(env) or CACHE / f"hg-{version}" / "bin" / "hg")
    return path if path.is_file() else None


def require_hg(version: str) -> Path:
    """The path of real Mercurial ``version``; fails under CI=true, skips elsewhere."""
    env = {"6.0": "HGWIRE_HG60", "7.2.4": "HGWIRE_HG72"}[version]
    path = _hg_path(env, version)
    if path is None:
        msg = f"Mercurial {version} not installed (run scripts/install-hg.sh)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def hg_env() -> dict[str, str]:
    """Environment for running real hg reproducibly: no user config, plain output."""
    env = dict(os.environ)
    env.update(HGRCPATH="", HGPLAIN="1", HGUSER="test <test@example.com>", LC_ALL="C")
    return env


def make_runner(hg: Path) -> HgRunner:
    """A function running ``hg`` with the given arguments, raising on failure."""

    def run(
        *args: str | os.PathLike[str],
        cwd: str | os.PathLike[str] | None = None,
        input: bytes | None = None,
        check: bool = True,
        extra: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(hg), *extra, *(str(a) for a in args)]
        proc = subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, env=hg_env())
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                f"{proc.stdout.decode(errors='replace')}\n{proc.stderr.decode(errors='replace')}"
            )
        return proc

    return run


@pytest.fixture(scope="session")
def hg60_path() -> Path:
    return require_hg("6.0")


@pytest.fixture(scope="session")
def hg72_path() -> Path:
    return require_hg("7.2.4")


@pytest.fixture(scope="session")
def hg60(hg60_path: Path) -> HgRunner:
    return make_runner(hg60_path)


@pytest.fixture(scope="session")
def hg72(hg72_path: Path) -> HgRunner:
    return make_runner(hg72_path)


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not VECTORS.is_dir():
        pytest.fail(f"conformance vectors missing: {VECTORS}")
    return VECTORS


#: The ``hg``-compatible entry point an SSH client runs as its remote command.
HGWIRE_HG_SHIM = Path(sys.executable).with_name("hgwire-hg")

SSH_STANDIN = """#!/bin/sh
# ssh stand-in: drop ssh options and the host, run the remote command here.
while [ $# -gt 1 ]; do
    case $1 in
        -o|-p|-l|-i|-F) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
shift
exec sh -c "$*"
"""


@pytest.fixture
def ssh(tmp_path: Path) -> list[str]:
    """``--config`` options making hg reach ``hgwire-hg serve --stdio`` on this machine
    through an ssh stand-in (no sshd; ``tests/server/test_ssh_sshd.py`` uses a real one)."""
    assert HGWIRE_HG_SHIM.is_file(), f"{HGWIRE_HG_SHIM} missing (run scripts/bootstrap.sh)"
    script = tmp_path / "ssh-standin"
    script.write_text(SSH_STANDIN)
    script.chmod(0o755)
    return ["--config", f"ui.ssh={script}", "--config", f"ui.remotecmd={HGWIRE_HG_SHIM}"]
