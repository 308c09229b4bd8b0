"""Tags: ``.hgtags`` parsing, Mercurial's precedence across heads, and agreement with hg."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hgwire.repo import phases, tags
from hgwire.repo.dagops import DAG
from hgwire.repo.localrepo import Repository
from tests.repo import hgrepos

A, B, C, NULL = b"\xaa" * 20, b"\xbb" * 20, b"\xcc" * 20, b"\0" * 20


def line(node: bytes, name: bytes) -> bytes:
    return node.hex().encode() + b" " + name + b"\n"


def test_parse_history_and_garbage() -> None:
    text = line(A, b"v1") + line(B, b"v1 ") + b"garbage\n\n" + line(C, b"v2") + b"zz v3\n"
    warnings: list[str] = []
    parsed = tags.parse(text, warnings.append)
    assert parsed == {b"v1": (B, [A]), b"v2": (C, [])}
    assert len(warnings) == 2


def test_precedence_rules() -> None:
    # the newer head wins when histories are unrelated
    alltags: tags.TagHistory = {}
    tags.update({b"t": (A, [])}, alltags)
    tags.update({b"t": (B, [])}, alltags)
    assert alltags[b"t"] == (B, [])  # history holds earlier values only
    # an older head that superseded the newer head's value keeps its value
    alltags = {}
    tags.update({b"t": (B, [A])}, alltags)  # older head: A then moved to B
    tags.update({b"t": (A, [])}, alltags)  # newer head still has A
    assert alltags[b"t"][0] == B
    # removal (null) in one head supersedes the plain value in another
    alltags = {}
    tags.update({b"t": (NULL, [A])}, alltags)
    tags.update({b"t": (A, [])}, alltags)
    assert alltags[b"t"][0] == NULL
    # mutual supersession: the longer history wins
    alltags = {}
    tags.update({b"t": (A, [B, C, B])}, alltags)
    tags.update({b"t": (B, [A])}, alltags)
    assert alltags[b"t"][0] == A


def test_tags_by_node() -> None:
    assert tags.tags_by_node({b"b": A, b"a": A, b"c": B}) == {A: [b"a", b"b"], B: [b"c"]}


@pytest.mark.interop
def test_tags_match_hg(full_repo: hgrepos.GeneratedRepo) -> None:
    repo = Repository.open(full_repo.path)
    got = {k.decode(): v.hex() for k, v in tags.tags(repo).items()}
    assert got == full_repo.facts()["tags"]
    assert "v0.1" not in got  # removed on default, still present on the stable head


@pytest.mark.interop
def test_served_view_and_localtags(
    full_repo60: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path]
) -> None:
    path = repo_copy(full_repo60.path)
    repo = Repository.open(path)
    cl = repo.changelog
    (path / ".hg" / "localtags").write_bytes(
        line(cl.node(2), b"local-two") + line(cl.node(17), b"local-secret")
    )
    dag = DAG.from_storage(cl)
    served = phases.PhaseCache.load(repo, dag).servable()
    view = tags.tags(repo, dag, served)
    assert view[b"tip"] == cl.node(16)  # the secret tip is not served
    assert view[b"local-two"] == cl.node(2)
    assert b"local-secret" not in view
    assert tags.tags(repo, dag, served, local=False).keys() == {b"stable-tag", b"v1.0", b"tip"}
    everything = {k.decode(): v.hex() for k, v in tags.tags(repo, dag).items()}
    assert everything == hgrepos.hg_facts(full_repo60.hg, path)["tags"]


@pytest.mark.interop
def test_remembered_answer_follows_new_tags_localtags_and_visibility(
    full_repo60: hgrepos.GeneratedRepo,
    repo_copy: Callable[[Path], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = repo_copy(full_repo60.path)
    tags.clear_cache()
    first = tags.tags(Repository.open(path))
    reads: list[int] = []
    real = tags.hgtags_filenode

    def counting(repo: Repository, rev: int) -> bytes | None:
        reads.append(rev)
        return real(repo, rev)

    monkeypatch.setattr(tags, "hgtags_filenode", counting)
    again = tags.tags(Repository.open(path))  # a server opens the repository per request
    assert again == first and reads == []
    again[b"tip"] = NULL  # callers get their own copy
    assert tags.tags(Repository.open(path)) == first
    # localtags changed: recomputed
    repo = Repository.open(path)
    (path / ".hg" / "localtags").write_bytes(line(repo.changelog.node(2), b"local-two"))
    assert tags.tags(repo)[b"local-two"] == repo.changelog.node(2)
    assert tags.tags(repo, local=False) == {**first}
    # a new tag committed by hg: the longer changelog is noticed
    hgrepos.run_hg_steps(full_repo60.hg, path, [["hg", ["tag", "-r", "3", "-f", "late"]]])
    repo = Repository.open(path)
    expected = hgrepos.hg_facts(full_repo60.hg, path)["tags"]
    assert {k.decode(): v.hex() for k, v in tags.tags(repo).items()} == expected
    assert "late" in expected
    # a served view of the same history is answered for its own visible set
    dag = DAG.from_storage(repo.changelog)
    served = phases.PhaseCache.load(repo, dag).servable()
    assert tags.tags(repo, dag, served)[b"tip"] != tags.tags(repo, dag)[b"tip"]
