"""Branch map: heads per named branch, closed heads, branch tips; agreement with hg."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hgwire.repo import branchmap, phases
from hgwire.repo.dagops import DAG
from hgwire.repo.localrepo import Repository
from tests.repo import hgrepos

#  0(default) - 1(default) - 2(stable) - 3(stable, closed)
#            \- 4(default) - 5(default, merges 2) ; 6(default, child of 1, closed)
DAG7 = DAG.from_arrays([-1, 0, 1, 2, 0, 4, 1], [-1, -1, -1, -1, -1, 2, -1])
INFO = {
    0: (b"default", False),
    1: (b"default", False),
    2: (b"stable", False),
    3: (b"stable", True),
    4: (b"default", False),
    5: (b"default", False),
    6: (b"default", True),
}


def test_compute_synthetic() -> None:
    info = branchmap.read_branchinfo(7, INFO.__getitem__)
    assert info.names == [b"default", b"stable"]
    assert info.branch(3) == b"stable"
    bm = branchmap.compute(DAG7, info)
    assert bm.items() == [(b"default", [5, 6]), (b"stable", [3])]
    assert bm.closed == {3, 6}
    assert bm.branchheads(b"default") == [5]
    assert bm.branchheads(b"default", closed=True) == [5, 6]
    assert bm.branchtip(b"default") == 5
    assert bm.branchtip(b"stable") == 3
    assert bm.isclosed(b"stable") and not bm.isclosed(b"default")
    assert bm.branchheads(b"nope") == []
    # hide 3, 5 and 6 (a view such as "served"): 1, 2 and 4 become heads again
    visible = bytearray([1, 1, 1, 0, 1, 0, 0])
    served = branchmap.compute(DAG7, info, visible)
    assert served.items() == [(b"default", [1, 4]), (b"stable", [2])]
    assert served.closed == set()


def _as_hex(repo: Repository, bm: branchmap.BranchMap) -> dict[str, Any]:
    node = repo.changelog.node
    return {
        name.decode(): {
            "heads": [node(r).hex() for r in heads],
            "closed": [node(r).hex() for r in heads if r in bm.closed],
            "tip": node(bm.branchtip(name)).hex(),
            "branch_closed": bm.isclosed(name),
        }
        for name, heads in bm.items()
    }


@pytest.mark.interop
def test_branchmap_matches_hg(full_repo: hgrepos.GeneratedRepo) -> None:
    repo = Repository.open(full_repo.path)
    dag = DAG.from_storage(repo.changelog)
    facts = full_repo.facts()
    assert _as_hex(repo, branchmap.for_repo(repo, dag)) == facts["branchmap"]
    served = phases.PhaseCache.load(repo, dag).servable()
    assert _as_hex(repo, branchmap.for_repo(repo, dag, served)) == facts["served_branchmap"]


@pytest.mark.interop
def test_vector_repo_branchmap(public_repo: Path, public_repo_facts: dict[str, Any]) -> None:
    repo = Repository.open(public_repo)
    bm = branchmap.for_repo(repo)
    assert [n.decode() for n in bm] == sorted(
        {c["branch"] for c in public_repo_facts["changesets"]}
    )
    heads = [repo.changelog.node(r).hex() for r in bm.branchheads(b"default", closed=True)]
    assert sorted(heads) == sorted(public_repo_facts["served_heads"])


@pytest.mark.interop
def test_revision_branch_cache_used_and_validated(
    full_repo: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path]
) -> None:
    """hg's rbc cache (v1 from 6.0, v2 from 7.2) gives the same answer as the changelog,
    and damaged records (wrong node prefix, unknown branch index) are not trusted."""
    path = repo_copy(full_repo.path)
    repo = Repository.open(path)
    cl = repo.changelog
    truth = branchmap.read_branchinfo(len(cl), cl.branchinfo)
    cache = path / ".hg" / "cache"
    revs_file = next(cache.glob("rbc-revs-v*"))
    cached = branchmap.read_branchinfo_cached(len(cl), cl.node, cl.branchinfo, repo.cachevfs)
    assert [cached.branch(r) for r in range(len(cl))] == [truth.branch(r) for r in range(len(cl))]
    assert cached.closed == truth.closed
    # lie in the cache: every record says "branch 0, closed"; node prefixes of half of
    # them are broken, the other half point at an unknown name index
    data = bytearray(revs_file.read_bytes())
    for rev in range(len(data) // 8):
        if rev % 2:
            data[rev * 8 : rev * 8 + 4] = b"\x01\x02\x03\x04"
        data[rev * 8 + 4 : rev * 8 + 8] = (0x80000000 | 999).to_bytes(4, "big")
    revs_file.write_bytes(bytes(data))
    damaged = branchmap.read_branchinfo_cached(len(cl), cl.node, cl.branchinfo, repo.cachevfs)
    assert [damaged.branch(r) for r in range(len(cl))] == [truth.branch(r) for r in range(len(cl))]
    assert damaged.closed == truth.closed
    assert branchmap.for_repo(repo) == branchmap.for_repo(repo, use_cache=False)


class _FakeChangelog:
    """Parents, nodes and branch info of a synthetic history; counts entry reads."""

    def __init__(self, p1: list[int], p2: list[int], info: dict[int, tuple[bytes, bool]]):
        self.p1, self.p2, self.info = p1, p2, info
        self.reads: list[int] = []
        self.salt = b""

    def __len__(self) -> int:
        return len(self.p1)

    def node(self, rev: int) -> bytes:
        return hashlib.sha1(self.salt + b"%d" % rev).digest()

    def branchinfo(self, rev: int) -> tuple[bytes, bool]:
        self.reads.append(rev)
        return self.info[rev]

    def parentrevs_array(self) -> tuple[list[int], list[int]]:
        return self.p1, self.p2


class _FakeRepo:
    def __init__(self, base: Path, cl: _FakeChangelog) -> None:
        self.changelog = cl
        self.svfs = SimpleNamespace(base=base)


def _grow(cl: _FakeChangelog, rnd: random.Random, count: int) -> None:
    for _ in range(count):
        rev = len(cl)
        p1 = rev - 1 if rnd.random() < 0.7 else rnd.randrange(-1, rev)
        p2 = rnd.randrange(-1, rev) if rev and rnd.random() < 0.2 else -1
        cl.p1.append(p1)
        cl.p2.append(p2 if p2 != p1 else -1)
        cl.info[rev] = (rnd.choice([b"default", b"stable", b"b3"]), rnd.random() < 0.2)


@pytest.mark.parametrize("seed", range(4))
def test_for_repo_cache_is_incremental_and_matches_a_full_computation(
    tmp_path: Path, seed: int
) -> None:
    rnd = random.Random(seed)
    cl = _FakeChangelog([], [], {})
    repo = _FakeRepo(tmp_path / f"store{seed}", cl)
    branchmap.clear_cache()

    def fresh(visible: bytearray | None = None) -> branchmap.BranchMap:
        info = branchmap.read_branchinfo(len(cl), cl.info.__getitem__)
        return branchmap.compute(DAG.from_storage(cl), info, visible)  # type: ignore[arg-type]

    assert branchmap.for_repo(repo) == fresh()  # empty history
    _grow(cl, rnd, 60)
    assert branchmap.for_repo(repo) == fresh()
    assert sorted(cl.reads) == list(range(60))
    cl.reads.clear()
    got = branchmap.for_repo(repo)
    assert got == fresh() and cl.reads == []  # same history: nothing read again
    got.heads.clear()  # callers get their own copy
    assert branchmap.for_repo(repo) == fresh()
    cl.reads.clear()
    _grow(cl, rnd, 7)
    assert branchmap.for_repo(repo) == fresh()
    assert cl.reads == list(range(60, 67))  # only the new revisions
    # a served view: hide the last 5 revisions, then grow (the prefix stays the same)
    cl.reads.clear()
    visible = bytearray([1] * 62 + [0] * 5)
    assert branchmap.for_repo(repo, visible=visible) == fresh(visible)
    _grow(cl, rnd, 3)
    visible += b"\x01\x00\x01"
    assert branchmap.for_repo(repo, visible=visible) == fresh(visible)
    visible[10] = 0  # an older revision hidden (its descendants too, in a real view)
    assert branchmap.for_repo(repo, visible=visible) == fresh(visible)
    assert cl.reads == list(range(67, 70))
    # history replaced under the same store path (strip / new repository): all read again
    cl.reads.clear()
    cl.salt = b"other"
    assert branchmap.for_repo(repo) == fresh()
    assert sorted(cl.reads) == list(range(70))
    # a shorter history is never answered from a longer one
    del cl.p1[50:], cl.p2[50:]
    assert branchmap.for_repo(repo) == fresh()
