"""Filelogs (spec §4.3): metadata framing, copies, sizes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hgwire.errors import RepositoryError
from hgwire.repo.filelog import Filelog, packmeta, parsemeta
from hgwire.repo.revlog import nullid
from hgwire.repo.vfs import VFS
from tests.repo.test_revlog import FakeTransaction


def test_meta_round_trip() -> None:
    raw = packmeta({b"copyrev": b"ab" * 20, b"copy": b"src"}, b"content")
    assert raw == b"\x01\ncopy: src\ncopyrev: " + b"ab" * 20 + b"\n\x01\ncontent"
    meta, offset = parsemeta(raw)
    assert meta == {b"copy": b"src", b"copyrev": b"ab" * 20}
    assert raw[offset:] == b"content"
    assert parsemeta(b"plain") == (None, 0)
    with pytest.raises(RepositoryError, match="not terminated"):
        parsemeta(b"\x01\ncopy: x\n")
    with pytest.raises(RepositoryError, match="bad filelog metadata"):
        packmeta({b"k": b"a\nb"}, b"")


def test_plain_revision(tmp_path: Path) -> None:
    vfs = VFS(tmp_path)
    fl = Filelog(vfs, b"dir/file.txt")
    assert fl.indexfile == "data/dir/file.txt.i"
    node = fl.add(b"hello\n", None, FakeTransaction(vfs), 0, nullid, nullid)
    assert node == hashlib.sha1(nullid * 2 + b"hello\n").digest()
    assert fl.read(node) == b"hello\n"
    assert fl.renamed(node) is None
    assert fl.size(0) == 6
    assert not fl.cmp(node, b"hello\n") and fl.cmp(node, b"other")


def test_content_starting_with_marker_is_escaped(tmp_path: Path) -> None:
    vfs = VFS(tmp_path)
    fl = Filelog(vfs, b"f")
    node = fl.add(b"\x01\nodd", None, FakeTransaction(vfs), 0, nullid, nullid)
    assert fl.rawdata(node) == b"\x01\n\x01\n\x01\nodd"
    assert fl.read(node) == b"\x01\nodd"
    assert fl.size(0) == 9  # rawsize: the known quirk of §4.3


def test_copy(tmp_path: Path) -> None:
    vfs = VFS(tmp_path)
    tr = FakeTransaction(vfs)
    src = Filelog(vfs, b"src")
    snode = src.add(b"data\n", None, tr, 0, nullid, nullid)
    dst = Filelog(vfs, b"dst")
    meta = {b"copy": b"src", b"copyrev": snode.hex().encode()}
    dnode = dst.add(b"data\n", meta, tr, 1, nullid, nullid)
    assert dst.renamed(dnode) == (b"src", snode)
    assert dst.read(dnode) == b"data\n"
    assert dst.size(0) == 5
    # with p1 set the metadata is not a copy (Mercurial's rule)
    other = dst.add(b"data\n", meta, tr, 2, dnode, nullid)
    assert dst.renamed(other) is None


def test_non_utf8_path(tmp_path: Path) -> None:
    vfs = VFS(tmp_path)
    fl = Filelog(vfs, b"caf\xe9")
    fl.add(b"x", None, FakeTransaction(vfs), 0, nullid, nullid)
    assert Filelog(vfs, b"caf\xe9").read(0) == b"x"


def test_addgroup_repairs_issue6528_parent_order(tmp_path: Path) -> None:
    from hgwire.repo import mdiff
    from hgwire.repo.revlog import RevisionDelta

    vfs = VFS(tmp_path)
    tr = FakeTransaction(vfs)
    fl = Filelog(vfs, b"dst")
    prev = fl.add(b"old\n", None, tr, 0, nullid, nullid)
    raw = packmeta({b"copy": b"src", b"copyrev": b"ab" * 20}, b"copied\n")
    node = hashlib.sha1(nullid + prev + raw).digest()  # parents sorted: same node
    swapped = RevisionDelta(node, prev, nullid, b"L", prev, mdiff.textdiff(b"old\n", raw))
    (rev,) = fl.addgroup([swapped], lambda _n: 1, tr)
    assert fl.parentrevs(rev) == (-1, 0)
    assert fl.renamed(node) == (b"src", bytes.fromhex("ab" * 20))
    # ordinary revisions keep their parents
    plain = fl.add(b"next\n", None, tr, 2, node, nullid)
    other = Filelog(vfs, b"other")
    base = other.add(b"old\n", None, tr, 0, nullid, nullid)
    onode = hashlib.sha1(nullid + base + b"x\n").digest()
    delta = RevisionDelta(onode, base, nullid, b"L", base, mdiff.textdiff(b"old\n", b"x\n"))
    (orev,) = other.addgroup([delta], lambda _n: 1, tr)
    assert other.parentrevs(orev) == (0, -1)
    assert fl.parentrevs(fl.rev(plain)) == (1, -1)
