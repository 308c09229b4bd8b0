"""Bookmarks: file format, pushkey semantics, and agreement with real Mercurial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hgwire.errors import LookupNodeError, RepositoryError
from hgwire.repo import bookmarks
from hgwire.repo.localrepo import Repository
from tests.repo import hgrepos

N1, N2 = b"\x11" * 20, b"\x22" * 20


def test_parse_and_serialize() -> None:
    text = b"%s with space\n%s book\n" % (N2.hex().encode(), N1.hex().encode())
    warnings: list[str] = []
    known = {N1, N2}.__contains__
    garbage = b"not a line\n" + b"%s gone\n" % (b"33" * 20)
    marks = bookmarks.parse(text + garbage + b"\n  \n", known, warnings.append)
    assert marks == {b"with space": N2, b"book": N1}
    assert len(warnings) == 1 and "offset" in warnings[0]
    assert bookmarks.serialize(marks) == b"%s book\n%s with space\n" % (
        N1.hex().encode(),
        N2.hex().encode(),
    )
    with pytest.raises(RepositoryError):
        bookmarks.serialize({b"bad\nname": N1})
    for bad in (b"tip", b"a:b", b"42", b""):
        with pytest.raises(RepositoryError):
            bookmarks.check_new_name(bad)
    bookmarks.check_new_name(b"feature-1")


def test_location() -> None:
    assert bookmarks.location(frozenset()) == ("plain", "bookmarks")
    assert bookmarks.location(frozenset({b"bookmarksinstore"})) == ("", "bookmarks")


@pytest.mark.interop
def test_bookmarks_match_hg(full_repo: hgrepos.GeneratedRepo) -> None:
    repo = Repository.open(full_repo.path)
    marks = bookmarks.Bookmarks(repo)
    assert {k.decode(): v.hex() for k, v in marks.items()} == full_repo.facts()["bookmarks"]
    assert marks.warnings == []


@pytest.mark.interop
def test_vector_repo_bookmarks(public_repo: Path, public_repo_facts: dict[str, Any]) -> None:
    marks = bookmarks.Bookmarks(Repository.open(public_repo))
    assert {k.decode(): v.hex() for k, v in marks.items()} == public_repo_facts["bookmarks"]


def _write_and_compare(path: Path, hg: Path) -> None:
    repo = Repository.open(path)
    marks = bookmarks.Bookmarks(repo)
    cl = repo.changelog
    first, last = cl.node(0), cl.node(len(cl) - 1)
    with pytest.raises(LookupNodeError):
        marks.set(b"nowhere", b"\x99" * 20)
    assert marks.pushkey(b"new one", b"", first.hex().encode())
    assert not marks.pushkey(b"new one", b"", last.hex().encode())  # old value mismatch
    assert not marks.pushkey(b"other", b"", b"99" * 20)  # unknown node
    victim = next(iter(marks))
    assert marks.pushkey(victim, marks[victim].hex().encode(), b"")
    marks.set(b"at tip", last)
    with repo.wlock(), repo.transaction(b"bookmark") as tr:
        marks.write(tr)
    expected = {k.decode(): v.hex() for k, v in marks.items()}
    assert hgrepos.hg_facts(hg, path)["bookmarks"] == expected
    assert bookmarks.Bookmarks(Repository.open(path)).listkeys() == {
        k.encode(): v.encode() for k, v in expected.items()
    }


@pytest.mark.interop
def test_written_bookmarks_read_by_hg(
    full_repo: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path]
) -> None:
    _write_and_compare(repo_copy(full_repo.path), full_repo.hg)


@pytest.mark.interop
@pytest.mark.parametrize("version", hgrepos.HG_VERSIONS)
def test_bookmarks_in_store(tmp_path: Path, version: str) -> None:
    from tests.conftest import require_hg

    hg = require_hg(version)
    steps: list[list[Any]] = [
        ["write", "f", b"x\n".hex(), "644"],
        ["hg", ["commit", "-Am", "one", "-d", "0 0", "-u", "t"]],
        ["write", "f", b"y\n".hex(), "644"],
        ["hg", ["commit", "-m", "two", "-d", "0 0", "-u", "t"]],
        ["hg", ["bookmark", "-r", "0", "stored"]],
    ]
    path = tmp_path / "r"
    path.mkdir()
    hgrepos.run_hg_steps(
        hg, path, [["hg", ["init", "--config", "format.bookmarks-in-store=yes"]], *steps]
    )
    repo = Repository.open(path)
    assert b"bookmarksinstore" in repo.requirements
    assert (path / ".hg" / "store" / "bookmarks").exists()
    assert not (path / ".hg" / "bookmarks").exists()
    assert bookmarks.Bookmarks(repo).items() == [(b"stored", repo.changelog.node(0))]
    _write_and_compare(path, hg)
    assert not (path / ".hg" / "bookmarks").exists()
