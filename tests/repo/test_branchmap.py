"""Branch map: heads per named branch, closed heads, branch tips; agreement with hg."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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
