"""The transport-neutral helpers (``hgwire.commands.common``) against what Mercurial
6.0 reads from the same repositories, and pushkey writes checked by Mercurial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hgwire.commands import common
from hgwire.errors import UnknownRevisionError
from hgwire.repo import phases as phasemod
from hgwire.repo.localrepo import Repository
from tests.commands.conftest import run_command
from tests.conftest import HgRunner
from tests.repo import hgrepos

NULLID = b"\0" * 20


def _hex(nodes: list[bytes]) -> list[str]:
    return [n.hex() for n in nodes]


def test_served_queries_match_hg(full_repo60: hgrepos.GeneratedRepo) -> None:
    facts = full_repo60.facts()
    view = common.served(Repository.open(full_repo60.path))
    # repo.heads() order: highest revision first
    assert _hex(common.heads(view)) == list(reversed(facts["served_heads"]))
    bmap = common.branchmap(view)
    assert {b.decode(): _hex(ns) for b, ns in bmap.items()} == {
        b: v["heads"] for b, v in facts["served_branchmap"].items()
    }
    for branch, info in facts["served_branchmap"].items():
        assert common.lookup(view, branch.encode()).hex() == info["tip"]
    tags = {k: v for k, v in facts["tags"].items() if k != "tip"}
    for name, node in tags.items():
        assert common.lookup(view, name.encode()).hex() == node
    served_marks = {
        k: v for k, v in facts["bookmarks"].items() if k != "secret-book"
    }  # the only bookmark on a secret changeset
    assert common.listkeys(view, b"bookmarks", True) == {
        k.encode(): v.encode() for k, v in served_marks.items()
    }
    drafts = facts["phaseroots"]["1"]
    assert common.listkeys(view, b"phases", False) == {r.encode(): b"1" for r in drafts}
    assert common.listkeys(view, b"phases", True)[b"publishing"] == b"True"
    assert common.listkeys(view, b"nope", True) == {}
    assert common.known(view, [NULLID, b"short", view.node(0)]) == [True, False, True]


def test_empty_repository(tmp_path: Path) -> None:
    view = common.served(Repository.create(tmp_path / "empty", format="6.0"))
    assert common.heads(view) == [NULLID]
    assert common.heads(view, publiconly=True) == [NULLID]
    assert common.branchmap(view) == {}
    assert common.lookup(view, b"tip") == NULLID
    assert common.lookup(view, b".") == NULLID
    with pytest.raises(UnknownRevisionError, match="unknown revision '0'"):
        common.lookup(view, b"0")


def test_lookup_dot_is_the_dirstate_parent(full_repo60: hgrepos.GeneratedRepo) -> None:
    """The repository's working directory sits on the secret changeset: ``.`` resolves
    to it and is refused like any other filtered revision (as hg's served view does)."""
    view = common.served(Repository.open(full_repo60.path))
    parent = (full_repo60.hgdir / "dirstate").read_bytes()[:20]
    assert view.anyrev(parent) == 17
    with pytest.raises(UnknownRevisionError, match=r"filtered revision '\.'"):
        common.lookup(view, b".")


def test_lookup_prefix_ambiguity(corpus10k: Path) -> None:
    view = common.served(Repository.open(corpus10k))
    node = view.node(1234)
    for n in range(1, 13):
        try:
            assert common.lookup(view, node.hex()[:n].encode()) == node
            break
        except UnknownRevisionError as e:
            assert "ambiguous identifier" in str(e)
    else:
        raise AssertionError("no unique prefix up to 12 digits")
    assert n > 1  # single hex digits are ambiguous among 10k changesets
    assert common.lookup(view, node.hex()[:12].upper().encode()) == node


def test_pushkey_bookmarks(
    full_repo60: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path], hg60: HgRunner
) -> None:
    path = repo_copy(full_repo60.path)
    repo = Repository.open(path)
    cl = repo.changelog
    n3, n16, secret = (cl.node(r).hex().encode() for r in (3, 16, 17))
    # create: old must be empty (or equal to new)
    assert common.pushkey(repo, b"bookmarks", b"new", b"", n3)
    assert common.pushkey(repo, b"bookmarks", b"new", b"", n3)  # already there: ok
    assert not common.pushkey(repo, b"bookmarks", b"new", b"", n16)  # stale old value
    assert common.pushkey(repo, b"bookmarks", b"new", n3, n16)  # move
    assert not common.pushkey(repo, b"bookmarks", b"new2", b"", secret)  # not served
    assert not common.pushkey(repo, b"bookmarks", b"new2", b"", b"zz" * 20)
    assert not common.pushkey(repo, b"bookmarks", b"div@x", b"", n3)  # divergent name
    assert common.pushkey(repo, b"bookmarks", b"with space", cl.node(3).hex().encode(), b"")
    assert not common.pushkey(repo, b"ns", b"k", b"", b"")
    # through the v2 command
    objs = run_command(repo, b"pushkey", {b"namespace": b"bookmarks", b"key": b"v2",
                                          b"old": b"", b"new": n16})  # fmt: skip
    assert objs == [{b"status": b"ok"}, True]
    out = hg60("bookmarks", "-R", path, "-T", "{bookmark}={node}\n").stdout.decode()
    marks = dict(line.split("=") for line in out.splitlines())
    assert marks["new"] == marks["v2"] == n16.decode()
    assert "with space" not in marks and "new2" not in marks
    assert marks["secret-book"] == secret.decode()


def test_pushkey_phases(
    full_repo60: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path], hg60: HgRunner
) -> None:
    path = repo_copy(full_repo60.path)
    repo = Repository.open(path)
    node16 = repo.changelog.node(16).hex().encode()
    draft, public = b"%d" % phasemod.DRAFT, b"%d" % phasemod.PUBLIC
    assert common.pushkey(repo, b"phases", node16, public, draft)  # already draft (as hg)
    assert not common.pushkey(repo, b"phases", node16, b"2", public)  # it is not secret
    assert not common.pushkey(repo, b"phases", node16, draft, b"2")  # not a lowering
    assert common.pushkey(repo, b"phases", node16, draft, public)
    assert common.pushkey(repo, b"phases", node16, draft, public)  # raced: already public
    assert not common.pushkey(repo, b"phases", b"00" * 20 + b"x", draft, public)
    assert not common.pushkey(repo, b"phases", b"ab" * 20, draft, public)  # unknown
    out = hg60("log", "-R", path, "--hidden", "-T", "{phase}\n").stdout.decode()
    phases = list(reversed(out.split()))
    assert phases[16] == "public" and phases[10] == "public"
    assert phases[17] == "secret" and phases[13] == "draft"
