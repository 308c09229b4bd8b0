"""The local CLI commands (init, verify, log, debugindex) compared with real Mercurial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hgwire.cli import build_parser, main
from hgwire.repo.commands import RepoView, datestr
from hgwire.repo.localrepo import Repository
from tests.conftest import HgRunner, make_runner, require_hg
from tests.repo import hgrepos

pytestmark = pytest.mark.interop
UTF8 = ["--encoding", "utf-8"]


def hgwire(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, bytes, bytes]:
    status = main(list(args))
    out, err = capsysbinary.readouterr()
    return status, out, err


def without_phase(text: bytes) -> bytes:
    return b"".join(
        line for line in text.splitlines(keepends=True) if not line.startswith(b"phase:")
    )


def test_help_says_server_side() -> None:
    text = build_parser().format_help()
    assert "server-side" in text and "no" in text and "working directory" in text


def test_datestr() -> None:
    assert datestr(1700000100, -3600) == "Tue Nov 14 23:15:00 2023 +0100"
    assert datestr(1700000000, 19800) == "Tue Nov 14 16:43:20 2023 -0530"


@pytest.mark.parametrize("fmt", ["6.0", "7.2"])
def test_init_matches_hg_init(
    fmt: str, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    hg = require_hg("6.0" if fmt == "6.0" else "7.2.4")
    status, _out, _err = hgwire(capsysbinary, "init", "--format", fmt, str(tmp_path / "ours"))
    assert status == 0
    make_runner(hg)("init", tmp_path / "theirs")
    for name in ("requires", "store/requires", "00changelog.i"):
        ours, theirs = tmp_path / "ours" / ".hg" / name, tmp_path / "theirs" / ".hg" / name
        assert ours.exists() == theirs.exists(), name
        if theirs.exists():
            assert ours.read_bytes() == theirs.read_bytes(), name
    assert make_runner(hg)("verify", cwd=tmp_path / "ours").returncode == 0
    status, out, _err = hgwire(capsysbinary, "log", "-R", str(tmp_path / "ours"))
    assert (status, out) == (0, b"")
    theirs = make_runner(hg)("log", "-r", "tip", "-r", "null", cwd=tmp_path / "ours").stdout
    status, out, _err = hgwire(capsysbinary, "log", "-R", str(tmp_path / "ours"), "-r", "tip")
    assert status == 0 and without_phase(out) == theirs
    status, _out, err = hgwire(capsysbinary, "init", str(tmp_path / "ours"))
    assert status == 255 and b"already exists" in err


def test_verify_command(
    full_repo72: hgrepos.GeneratedRepo,
    repo_copy: Callable[[Path], Path],
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    status, out, err = hgwire(capsysbinary, "verify", "-R", str(full_repo72.path))
    assert status == 0, err
    theirs = make_runner(full_repo72.hg)("verify", cwd=full_repo72.path).stdout
    # same stages and counts (7.2 also checks the dirstate: hgwire has no working copy)
    assert out == theirs.replace(b"checking dirstate\n", b"")
    path = repo_copy(full_repo72.path)
    target = path / ".hg" / "store" / "data" / "b.txt.i"
    data = bytearray(target.read_bytes())
    data[-2] ^= 0x20
    target.write_bytes(bytes(data))
    status, out, err = hgwire(capsysbinary, "verify", "-R", str(path))
    assert status == 1
    assert b"b.txt@" in err and b"integrity errors encountered!" in err


def test_log_matches_hg(
    full_repo: hgrepos.GeneratedRepo, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    run = make_runner(full_repo.hg)
    for mode in ([], ["-v"]):
        theirs = run("log", *mode, cwd=full_repo.path, extra=UTF8).stdout
        status, ours, _err = hgwire(capsysbinary, "log", "-R", str(full_repo.path), *mode)
        assert status == 0
        assert without_phase(ours) == theirs
        phases = [
            line.split()[1].decode() for line in ours.splitlines() if line.startswith(b"phase:")
        ]
        names = {0: "public", 1: "draft", 2: "secret"}
        assert phases == [names[p] for p in reversed(full_repo.facts()["phases"])]


def test_log_debug_matches_hg72(
    full_repo60: hgrepos.GeneratedRepo,
    public_repo: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
    hg72: HgRunner,
) -> None:
    """``--debug`` equals Mercurial 7.2's (6.0 lists files of merges differently)."""
    for path in (full_repo60.path, public_repo):
        theirs = hg72("log", "--debug", "-r", "null", "-r", "0:", cwd=path, extra=UTF8).stdout
        status, ours, _err = hgwire(
            capsysbinary, "log", "--debug", "-R", str(path), "-r", "null", "-r", "0:"
        )
        assert status == 0
        assert ours == theirs


def test_revision_symbols(
    full_repo60: hgrepos.GeneratedRepo, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    repo = Repository.open(full_repo60.path)
    view = RepoView(repo)
    cl = repo.changelog
    node7 = cl.node(7).hex()
    symbols = ["tip", "0", "-1", "-3", "main", "with space", "stable", "feature", "default",
               "v1.0", "stable-tag", "secret-book", node7, node7[:5], "null", "3:5", "5:3",
               "3::7", "16:"]  # fmt: skip
    args = [a for s in symbols for a in ("-r", s)]
    theirs = make_runner(full_repo60.hg)("log", *args, "-T", "{rev}\n", cwd=full_repo60.path)
    ours = list(dict.fromkeys(r for s in symbols for r in view.revs(s)))  # a union, like hg
    assert ours == [int(x) for x in theirs.stdout.split()]
    # an ambiguous prefix and an unknown name abort, like hg
    hexes = [cl.node(r).hex() for r in range(len(cl))]
    first = next(h[0] for h in hexes if h[0] in "abcdef" and sum(x[0] == h[0] for x in hexes) > 1)
    status, _out, err = hgwire(capsysbinary, "log", "-R", str(full_repo60.path), "-r", first)
    assert status == 255 and b"ambiguous identifier" in err
    status, _out, err = hgwire(capsysbinary, "log", "-R", str(full_repo60.path), "-r", "nope")
    assert status == 255 and b"unknown revision 'nope'" in err


def test_debugindex_matches_hg60(
    full_repo: hgrepos.GeneratedRepo, capsysbinary: pytest.CaptureFixture[bytes], hg60: HgRunner
) -> None:
    for what in (["-c"], ["-m"], ["a.txt"], ["big.bin"], ["--debug", "-m"], ["--debug", "b.txt"]):
        theirs = hg60("debugindex", *what, cwd=full_repo.path).stdout
        status, ours, _err = hgwire(capsysbinary, "debugindex", "-R", str(full_repo.path), *what)
        assert status == 0
        assert ours == theirs, what
    status, _out, err = hgwire(capsysbinary, "debugindex", "-R", str(full_repo.path), "no-such")
    assert status == 255 and b"no filelog" in err


@pytest.mark.slow
def test_log_on_corpus(
    corpus10k: Path, capsysbinary: pytest.CaptureFixture[bytes], hg72: HgRunner
) -> None:
    """Real history (merges, renames, many files): default log and the index are hg's."""
    theirs = hg72("log", cwd=corpus10k, extra=UTF8).stdout
    status, ours, _err = hgwire(capsysbinary, "log", "-R", str(corpus10k))
    assert status == 0
    assert without_phase(ours) == theirs
    theirs = hg72("log", "-v", "-r", "9000:", cwd=corpus10k, extra=UTF8).stdout
    status, ours, _err = hgwire(capsysbinary, "log", "-v", "-R", str(corpus10k), "-r", "9000:")
    assert without_phase(ours) == theirs
