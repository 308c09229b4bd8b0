"""Writing interop: repositories made by hg 6.0 / 7.2.4, copied revision by revision
through hgwire's writer (fulltexts, or stored delta + delta base as a changegroup carries
them), are what real Mercurial sees in the source: verify is clean, ``log --debug``,
``manifest --debug --all``, phases and bookmarks are equal, and hg commits on top.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from hgwire.repo.dagops import DAG
from hgwire.repo.localrepo import Repository
from hgwire.repo.phases import PhaseCache
from hgwire.repo.revlog import RevisionDelta, Revlog, nullid, nullrev
from tests.conftest import HgRunner
from tests.repo import hgrepos

pytestmark = pytest.mark.interop


def verify_clean(hg: HgRunner, root: Path) -> None:
    """``hg verify`` exits 0 and reports no warnings (e.g. a file missing from fncache)."""
    proc = hg("verify", cwd=root)
    text = (proc.stdout + proc.stderr).lower()
    assert b"warning" not in text and b"error" not in text, text


def _copy_revision(
    src: Revlog, dst: Revlog, rev: int, link: int, linknode: bytes, tr: object, mode: str
) -> None:
    node = src.node(rev)
    p1, p2 = src.parents(node)
    if mode == "fulltext":
        dst.addrevision(src.rawdata(rev), tr, link, p1, p2, node=node, flags=src.flags(rev))  # type: ignore[arg-type]
        return
    base, delta = src.storeddelta(rev)
    deltabase = nullid if base == nullrev else src.node(base)
    item = RevisionDelta(node, p1, p2, linknode, deltabase, delta, src.flags(rev))
    dst.addgroup([item], lambda n: link, tr)  # type: ignore[arg-type]


def copy_history(src: Repository, dst: Repository, mode: str) -> None:
    """Copy every revision, one transaction per changeset, in Mercurial's write order."""
    scl = src.changelog
    sml = src.manifestlog
    assert src.svfs.fncache is not None
    paths = sorted(
        name[5:-2]
        for name in src.svfs.fncache
        if name.startswith(b"data/") and name.endswith(b".i")
    )
    filerevs: dict[int, list[tuple[bytes, int]]] = defaultdict(list)
    srcfiles = {p: src.file(p) for p in paths}
    for path, fl in srcfiles.items():
        for r in range(len(fl)):
            filerevs[fl.linkrev(r)].append((path, r))
    manifestrevs: dict[int, list[int]] = defaultdict(list)
    for r in range(len(sml)):
        manifestrevs[sml.linkrev(r)].append(r)
    dstfiles = {}
    for crev in range(len(scl)):
        linknode = scl.node(crev)
        with dst.lock(), dst.transaction(b"copy") as tr:
            for path, r in filerevs[crev]:
                if path not in dstfiles:
                    dstfiles[path] = dst.file(path)
                _copy_revision(srcfiles[path], dstfiles[path], r, crev, linknode, tr, mode)
            for r in manifestrevs[crev]:
                _copy_revision(sml, dst.manifestlog, r, crev, linknode, tr, mode)
            _copy_revision(scl, dst.changelog, crev, crev, linknode, tr, mode)
    # phases and bookmarks through the metadata modules
    with dst.wlock(), dst.lock(), dst.transaction(b"metadata") as tr:
        roots = PhaseCache.load(src).roots()
        cl = dst.changelog
        phases = PhaseCache(DAG.from_storage(cl), roots, cl.node, dst.requirements)
        phases.dirty = True
        phases.write(tr, dst.svfs)
        from hgwire.repo.bookmarks import Bookmarks

        marks = Bookmarks(dst)
        for name, node in Bookmarks(src).items():
            marks.set(name, node)
        marks.write(tr)


def _hg_views(hg: HgRunner, root: Path) -> dict[str, bytes]:
    """What hg shows of a repository (``log --debug`` includes phases, tags, bookmarks)."""
    return {
        "log": hg("log", "--debug", cwd=root).stdout,
        "manifest": hg("manifest", "--debug", "--all", cwd=root).stdout,
        "bookmarks": hg("bookmarks", "-T", "{bookmark} {node}\n", cwd=root).stdout,
    }


_SOURCE_VIEWS: dict[tuple[str, Path], dict[str, bytes]] = {}


def _source_views(hg: HgRunner, name: str, root: Path) -> dict[str, bytes]:
    """The views of a (read-only, session-shared) source repository, computed once."""
    key = (name, root)
    if key not in _SOURCE_VIEWS:
        _SOURCE_VIEWS[key] = _hg_views(hg, root)
    return _SOURCE_VIEWS[key]


@pytest.mark.parametrize("mode", ["fulltext", "delta"])
@pytest.mark.parametrize("version", hgrepos.HG_VERSIONS)
def test_copy_through_hgwire_writer(
    tmp_path: Path,
    version: str,
    mode: str,
    hg60: HgRunner,
    hg72: HgRunner,
    request: pytest.FixtureRequest,
) -> None:
    source: hgrepos.GeneratedRepo = request.getfixturevalue(
        "full_repo60" if version == "6.0" else "full_repo72"
    )
    src = Repository.open(source.path)
    fmt = "6.0" if version == "6.0" else "7.2"
    dst = Repository.create(tmp_path / "copy", format=fmt)
    copy_history(src, dst, mode)
    root = dst.root
    assert (root / ".hg" / "requires").read_bytes() == (source.hgdir / "requires").read_bytes()
    assert sorted(dst.svfs.fncache or []) == sorted(src.svfs.fncache or [])
    for name, hg in (("6.0", hg60), ("7.2.4", hg72)):
        verify_clean(hg, root)
        views = _hg_views(hg, root)
        assert re.search(rb"phase: +draft", views["log"]) and re.search(
            rb"phase: +secret", views["log"]
        )
        assert views == _source_views(hg, name, source.path)
    # Mercurial can work on top of the copy: update, commit, verify under both versions
    hg72("update", "-r", "default", cwd=root)
    (root / "added-by-hg.txt").write_bytes(b"hello from hg\n")
    hg72("commit", "-Am", "on top of an hgwire copy", cwd=root)
    hg60("update", "-r", "stable", cwd=root)
    (root / "added-by-hg60.txt").write_bytes(b"hello from hg 6.0\n")
    hg60("commit", "-Am", "6.0 on top", cwd=root)
    for hg in (hg60, hg72):
        verify_clean(hg, root)
    n = len(Repository.open(root).changelog)
    assert n == len(src.changelog) + 2


@pytest.mark.parametrize("mode", ["fulltext", "delta"])
def test_copy_public_vector_repository(
    tmp_path: Path, public_repo: Path, mode: str, hg60: HgRunner, hg72: HgRunner
) -> None:
    """The shared vector repository (zlib, no share-safe), copied keeping its format."""
    src = Repository.open(public_repo)
    dst = Repository.create(tmp_path / "copy", requirements=src.requirements)
    assert dst.requirements == src.requirements
    copy_history(src, dst, mode)
    for name, hg in (("6.0", hg60), ("7.2.4", hg72)):
        verify_clean(hg, dst.root)
        assert _hg_views(hg, dst.root) == _source_views(hg, name, public_repo)
