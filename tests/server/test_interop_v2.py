"""Real Mercurial 6.0 clones and pulls from ``hgwire serve`` over the frame protocol.

``hgwire serve`` runs as a subprocess on 127.0.0.1; hg 6.0 uses
``experimental.httppeer.advertise-v2=true`` (spec §10.3) with the identity or the
default (zstd-8mb) encoder order. The clone must pass ``hg verify`` and show the same
changesets (``hg log --debug``), phases, bookmarks, tags and manifests as the source,
minus secret changesets (never served).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HgRunner
from tests.repo import hgrepos
from tests.server.conftest import ServerProcess

pytestmark = pytest.mark.interop

V2 = ("--config", "experimental.httppeer.advertise-v2=true")
ENCODERS = {
    "identity": ("--config", "experimental.httppeer.v2-encoder-order=identity"),
    "zstd-8mb": ("--config", "experimental.httppeer.v2-encoder-order=zstd-8mb"),
}
SERVE_ARGS = ("--config", "phases.publish=false")
_REVNODE = re.compile(r"\b-?\d+:([0-9a-f]{40})\b")


def _lines(proc: Any) -> str:
    return str(proc.stdout.decode("utf-8", "surrogateescape"))


def log_blocks(hg: HgRunner, repo: Path, revs: str) -> list[str]:
    """``hg log --debug`` per changeset, revision numbers removed, sorted."""
    out = _lines(hg("log", "--debug", "-r", revs, cwd=repo))
    blocks = [b for b in out.split("\n\n") if b.strip()]
    # "tip" depends on secret changesets the clone never gets.
    return sorted(_REVNODE.sub(r"\1", b.strip()).replace("tag:         tip\n", "") for b in blocks)


def facts(hg: HgRunner, repo: Path, revs: str) -> dict[str, Any]:
    heads = _lines(hg("log", "-r", f"heads({revs})", "-T", "{node}\n", cwd=repo)).split()
    phases = sorted(_lines(hg("log", "-r", revs, "-T", "{node} {phase}\n", cwd=repo)).splitlines())
    nodes = {line.split()[0] for line in phases}
    return {
        "log": log_blocks(hg, repo, revs),
        "phases": phases,
        "bookmarks": sorted(
            line
            for line in _lines(hg("bookmarks", "-T", "{bookmark} {node}\n", cwd=repo)).splitlines()
            if line.split()[-1] in nodes
        ),
        "tags": sorted(
            _REVNODE.sub(r"\1", t) for t in _lines(hg("tags", "--debug", cwd=repo)).splitlines()[1:]
        ),
        "manifests": {h: _lines(hg("manifest", "--debug", "-r", h, cwd=repo)) for h in heads},
        "heads": sorted(
            _lines(
                hg("log", "-r", f"heads({revs})", "-T", "{branch} {node} {extras}\n", cwd=repo)
            ).splitlines()
        ),
    }


def clone_v2(hg: HgRunner, server: ServerProcess, dest: Path, encoder: str) -> None:
    hg("clone", "-U", *V2, *ENCODERS[encoder], server.url, dest)
    assert "/api/exp-http-v2-0003/ro/changesetdata" in server.output()


def verify(hg: HgRunner, repo: Path) -> None:
    proc = hg("verify", cwd=repo, check=False)
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, out
    assert "error" not in out and "warning" not in out, out


def assert_same(hg: HgRunner, source: Path, clone: Path) -> None:
    verify(hg, clone)
    want = facts(hg, source, "not secret()")
    got = facts(hg, clone, "all()")
    for key, value in want.items():
        if isinstance(value, list):
            missing = sorted(set(value) - set(got[key]))
            extra = sorted(set(got[key]) - set(value))
            assert (key, missing, extra) == (key, [], [])
        assert got[key] == value, key
    if not _lines(hg("log", "-r", "secret()", "-T", "x", cwd=source)):
        assert _lines(hg("manifest", "--all", cwd=clone)) == _lines(
            hg("manifest", "--all", cwd=source)
        )


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_clone_vector_repo(
    hg60: HgRunner,
    public_repo: Path,
    server_factory: Callable[..., Any],
    tmp_path: Path,
    encoder: str,
) -> None:
    with server_factory(str(public_repo), *SERVE_ARGS) as server:
        clone_v2(hg60, server, tmp_path / "clone", encoder)
    assert_same(hg60, public_repo, tmp_path / "clone")


def test_clone_full_repo(
    hg60: HgRunner,
    full_repo60: hgrepos.GeneratedRepo,
    server_factory: Callable[..., Any],
    tmp_path: Path,
    encoder: str = "identity",
) -> None:
    """Merges, renames, binary and > 1 MB files, named/closed branches, secret
    changesets (must not arrive), bookmarks, tags."""
    src = full_repo60.path
    assert _lines(hg60("log", "-r", "secret()", "-T", "{node}\n", cwd=src)).strip()
    with server_factory(str(src), *SERVE_ARGS) as server:
        clone_v2(hg60, server, tmp_path / "clone", encoder)
    assert_same(hg60, src, tmp_path / "clone")
    secret = _lines(hg60("log", "-r", "secret()", "-T", "{node}\n", cwd=src)).split()
    present = _lines(hg60("log", "-r", "all()", "-T", "{node}\n", cwd=tmp_path / "clone")).split()
    assert not set(secret) & set(present)


def test_incremental_pull(
    hg60: HgRunner,
    full_repo60: hgrepos.GeneratedRepo,
    repo_copy: Callable[[Path], Path],
    server_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """A new head, a bookmark move and a phase change arrive with ``hg pull``."""
    src = repo_copy(full_repo60.path)
    clone = tmp_path / "clone"
    with server_factory(str(src), *SERVE_ARGS) as server:
        clone_v2(hg60, server, clone, "zstd-8mb")  # compared in test_clone_full_repo
        # New commits made next door and pushed locally into the served repository.
        work = tmp_path / "work"
        hg60("clone", "-q", src, work)
        hg60("update", "-q", "-r", "draft() and head()", cwd=work, check=False)
        for i in range(2):
            (work / "pulled-new.txt").write_bytes(b"new %d\n" % i * 1000)
            if i == 0:
                hg60("add", "pulled-new.txt", cwd=work)
            hg60("commit", "-m", f"new head for the pull {i}", "-d", "0 0", cwd=work)
        hg60("push", "-q", "-f", "--config", "phases.publish=false", "-r", ".", src, cwd=work,
             check=False)  # fmt: skip
        # A phase change on the new changesets (6.0's v2 pull only asks for the phases of
        # changesets it fetches: exchangev2 requests changesetdata for the new range).
        hg60("phase", "--public", "-r", "desc('new head for the pull 0')", cwd=src)
        mark = _lines(hg60("bookmarks", "-T", "{bookmark}\n", cwd=src)).split()[0]
        hg60("bookmark", "-f", "-r", "tip", mark, cwd=src)
        hg60("pull", *V2, server.url, cwd=clone)
        log = server.output()
    assert log.count("/api/exp-http-v2-0003/ro/changesetdata") >= 2
    assert_same(hg60, src, clone)
    tip = _lines(hg60("log", "-r", "tip", "-T", "{desc}", cwd=clone))
    assert tip == "new head for the pull 1"
    phases = _lines(hg60("log", "-r", "desc('new head')", "-T", "{phase} ", cwd=clone))
    assert phases == "public draft "


@pytest.mark.slow
def test_clone_corpus_10k(
    hg60: HgRunner, corpus10k: Path, server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """Real history with file removals (6.0's own server cannot serve it, Appendix B.10)."""
    assert _lines(hg60("log", "-r", "removes('**')", "-l", "1", "-T", "{node}", cwd=corpus10k))
    with server_factory(str(corpus10k), *SERVE_ARGS) as server:
        clone_v2(hg60, server, tmp_path / "clone", "zstd-8mb")
        # Responses stream: the server's memory stays bounded (target < 200 MB).
        assert server.peak_rss_mb() < 200
    clone = tmp_path / "clone"
    verify(hg60, clone)
    for template in ("{node} {phase} {p1node} {p2node}\n", "{bookmarks} {tags}\n"):
        assert _lines(hg60("log", "-T", template, cwd=clone)) == _lines(
            hg60("log", "-T", template, cwd=corpus10k)
        )
    assert _lines(hg60("manifest", "--debug", "-r", "tip", cwd=clone)) == _lines(
        hg60("manifest", "--debug", "-r", "tip", cwd=corpus10k)
    )
