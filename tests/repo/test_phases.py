"""Phases: computing from roots, moving boundaries, and agreement with real Mercurial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hgwire.errors import RepositoryError
from hgwire.repo import phases
from hgwire.repo.dagops import DAG
from hgwire.repo.localrepo import Repository
from tests.repo import hgrepos

#   0 - 1 - 2 - 4
#        \     /
#         3 --+   5 (child of 0)
DAG6 = DAG.from_arrays([-1, 0, 1, 1, 2, 0], [-1, -1, -1, -1, 3, -1])


def node(rev: int) -> bytes:
    return bytes([rev + 1]) * 20


def rev_of(n: bytes) -> int | None:
    return n[0] - 1 if n[0] <= 6 and n == bytes([n[0]]) * 20 else None


def test_compute_and_minimal_roots() -> None:
    ph = phases.compute_phases(DAG6, {phases.DRAFT: {2}, phases.SECRET: {3}})
    assert list(ph) == [0, 0, 1, 2, 2, 0]
    assert phases.minimal_roots(DAG6, ph) == {1: [2], 2: [3]}
    # redundant roots collapse to the minimal ones
    ph2 = phases.compute_phases(DAG6, {1: {2, 4}, 2: {3, 4}})
    assert ph2 == ph
    text = phases.serialize(phases.minimal_roots(DAG6, ph), node)
    assert text == b"1 " + node(2).hex().encode() + b"\n2 " + node(3).hex().encode() + b"\n"
    assert phases.parse_phaseroots(text, rev_of) == {1: {2}, 2: {3}}


def test_parse_drops_unknown_and_rejects_garbage() -> None:
    unknown = b"1 " + b"ab" * 20 + b"\n"
    assert phases.parse_phaseroots(unknown + b"1 " + node(1).hex().encode(), rev_of) == {1: {1}}
    assert phases.parse_phaseroots(b"", rev_of) == {}
    with pytest.raises(RepositoryError, match="offset 43"):
        phases.parse_phaseroots(unknown + b"zz\n", rev_of, "phaseroots")
    with pytest.raises(RepositoryError, match="unknown phase 7"):
        phases.parse_phaseroots(b"7 " + node(1).hex().encode(), rev_of)


def test_advance_retract_extend() -> None:
    pc = phases.PhaseCache(DAG6, {1: {1}, 2: {3}}, node)
    assert list(pc.phases) == [0, 1, 1, 2, 2, 0]
    assert pc.served_heads() == [2, 5]
    assert pc.hidden_revs() == {3, 4}
    assert pc.advance_boundary(phases.PUBLIC, [2]) == [1, 2]
    assert list(pc.phases) == [0, 0, 0, 2, 2, 0]
    assert pc.advance_boundary(phases.DRAFT, [4]) == [3, 4]
    assert pc.retract_boundary(phases.SECRET, [5]) == [5]
    assert pc.roots() == {1: [3], 2: [5]}
    assert pc.advance_boundary(phases.DRAFT, [0]) == []
    keys = pc.listkeys(publishing=True)
    assert keys == {node(3).hex().encode(): b"1", b"publishing": b"True"}
    assert pc.listkeys(publishing=False) == {node(3).hex().encode(): b"1"}
    with pytest.raises(RepositoryError, match="exp-archived-phase"):
        pc.retract_boundary(phases.ARCHIVED, [4])
    bigger = DAG.from_arrays([*DAG6.p1, 4, 5], [*DAG6.p2, -1, -1])
    pc.extend(bigger)
    assert list(pc.phases[6:]) == [1, 2]
    assert phases.phase_of_name("secret") == 2
    assert phases.phase_of_name("32") == 32
    with pytest.raises(ValueError):
        phases.phase_of_name("purple")


@pytest.mark.interop
def test_phases_match_hg(full_repo: hgrepos.GeneratedRepo) -> None:
    repo = Repository.open(full_repo.path)
    pc = phases.PhaseCache.load(repo)
    facts = full_repo.facts()
    assert list(pc.phases) == facts["phases"]
    expected_roots = {int(k): sorted(v) for k, v in facts["phaseroots"].items()}
    got = {k: sorted(repo.changelog.node(r).hex() for r in v) for k, v in pc.roots().items()}
    assert got == expected_roots
    assert [repo.changelog.node(r).hex() for r in pc.served_heads()] == facts["served_heads"]


@pytest.mark.interop
def test_phases_of_vector_repo(public_repo: Path, public_repo_facts: dict[str, Any]) -> None:
    repo = Repository.open(public_repo)
    pc = phases.PhaseCache.load(repo)
    expected = [phases.PHASE_NUMBERS[c["phase"]] for c in public_repo_facts["changesets"]]
    assert list(pc.phases) == expected


@pytest.mark.interop
def test_missing_phaseroots_means_public(
    full_repo60: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path], hg60: Any
) -> None:
    path = repo_copy(full_repo60.path)
    (path / ".hg" / "store" / "phaseroots").unlink()
    pc = phases.PhaseCache.load(Repository.open(path))
    assert set(pc.phases) == {0}
    assert hgrepos.hg_facts(full_repo60.hg, path)["phases"] == list(pc.phases)


@pytest.mark.interop
def test_written_phases_read_by_hg(
    full_repo: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path]
) -> None:
    path = repo_copy(full_repo.path)
    repo = Repository.open(path)
    pc = phases.PhaseCache.load(repo)
    with repo.transaction(b"phase") as tr:
        assert pc.advance_boundary(phases.PUBLIC, [12]) == [8, 9, 10, 12]
        assert pc.retract_boundary(phases.SECRET, [14]) == [14, 15]
        pc.write(tr, repo.svfs)
    facts = hgrepos.hg_facts(full_repo.hg, path)
    assert facts["phases"] == list(pc.phases)
    assert facts["phases"][12] == 0 and facts["phases"][11] == 1 and facts["phases"][15] == 2
    # the undo backup lets hg roll the move back
    assert (path / ".hg" / "store" / "undo.backupfiles").exists()
    again = phases.PhaseCache.load(Repository.open(path))
    assert again.phases == pc.phases


@pytest.mark.interop
def test_archived_and_internal_phases_match_hg72(
    full_repo72: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path]
) -> None:
    """Phases 32 (archived) and 96 (internal) with their requirements, as 7.2 reads them."""
    path = repo_copy(full_repo72.path)
    store = path / ".hg" / "store"
    reqs = (store / "requires").read_bytes().splitlines()
    reqs += [b"exp-archived-phase", b"internal-phase-2"]
    (store / "requires").write_bytes(b"".join(r + b"\n" for r in sorted(reqs)))
    repo = Repository.open(path)
    cl = repo.changelog
    extra = b"32 %s\n96 %s\n" % (cl.node(13).hex().encode(), cl.node(15).hex().encode())
    (store / "phaseroots").write_bytes((store / "phaseroots").read_bytes() + extra)
    pc = phases.PhaseCache.load(repo)
    assert pc.phase(13) == phases.ARCHIVED and pc.phase(15) == phases.INTERNAL
    assert pc.hidden_revs() == {13, 15, 17}
    assert list(pc.phases) == hgrepos.hg_facts(full_repo72.hg, path)["phases"]
    # moving a boundary keeps the special roots, and hg reads the result the same way
    with repo.transaction(b"phase") as tr:
        pc.advance_boundary(phases.PUBLIC, [11])
        pc.write(tr, repo.svfs)
    assert list(pc.phases) == hgrepos.hg_facts(full_repo72.hg, path)["phases"]
    assert pc.phase(13) == phases.ARCHIVED


@pytest.mark.interop
def test_load_remembers_phases_until_phaseroots_or_history_change(
    full_repo: hgrepos.GeneratedRepo,
    repo_copy: Callable[[Path], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = repo_copy(full_repo.path)
    first = phases.PhaseCache.load(Repository.open(path))
    expected = bytearray(first.phases)
    assert first.advance_boundary(phases.PUBLIC, [12])  # in memory only, not written

    def unexpected(*args: object) -> None:
        raise AssertionError("phaseroots parsed again")

    with monkeypatch.context() as m:
        m.setattr(phases, "parse_phaseroots", unexpected)
        again = phases.PhaseCache.load(Repository.open(path))  # one open per request
    assert again.phases == expected  # each instance has its own copy
    repo = Repository.open(path)
    pc = phases.PhaseCache.load(repo)
    with repo.transaction(b"phase") as tr:
        pc.advance_boundary(phases.PUBLIC, [12])
        pc.write(tr, repo.svfs)
    moved = phases.PhaseCache.load(Repository.open(path))
    assert moved.phases == pc.phases != expected
    assert hgrepos.hg_facts(full_repo.hg, path)["phases"] == list(moved.phases)
    # hg rollback restores the previous phaseroots: noticed too
    hgrepos.run_hg_steps(full_repo.hg, path, [["hg", ["rollback"]]])
    rolled = phases.PhaseCache.load(Repository.open(path))
    assert rolled.phases == expected
