"""DAG algorithms against naive reference implementations on random DAGs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hgwire.errors import LookupNodeError
from hgwire.repo import dagops
from hgwire.repo.dagops import DAG, NULLREV


def random_dag(rnd: random.Random, n: int, merge_rate: float = 0.2) -> DAG:
    p1, p2 = [], []
    for r in range(n):
        if r == 0 or rnd.random() < 0.05:
            a = NULLREV
        else:
            a = rnd.randrange(max(0, r - 5), r) if rnd.random() < 0.8 else rnd.randrange(r)
        b = rnd.randrange(r) if r > 1 and a != NULLREV and rnd.random() < merge_rate else NULLREV
        if b == a:
            b = NULLREV
        p1.append(a)
        p2.append(b)
    return DAG.from_arrays(p1, p2)


def naive_ancestors(dag: DAG, revs: list[int]) -> set[int]:
    """Inclusive ancestors by plain graph walk."""
    seen: set[int] = set()
    stack = [r for r in revs if r >= 0]
    while stack:
        r = stack.pop()
        if r in seen:
            continue
        seen.add(r)
        stack.extend(p for p in dag.parentrevs(r) if p >= 0)
    return seen


def naive_descendants(dag: DAG, revs: list[int]) -> set[int]:
    """Inclusive descendants by plain graph walk over child lists."""
    kids = dag.children()
    seen: set[int] = set()
    stack = list(revs)
    while stack:
        r = stack.pop()
        if r in seen:
            continue
        seen.add(r)
        stack.extend(kids[r])
    return seen


dags = st.builds(
    random_dag, st.randoms(use_true_random=False), st.integers(min_value=0, max_value=60)
)


@settings(max_examples=150, deadline=None)
@given(dags, st.data())
def test_ancestors_descendants_match_reference(dag: DAG, data: st.DataObject) -> None:
    n = len(dag)
    revs = data.draw(st.lists(st.integers(min_value=-1, max_value=max(n - 1, -1)), max_size=5))
    real = [r for r in revs if r >= 0]
    inc = naive_ancestors(dag, real)
    assert dagops.ancestors(dag, revs, inclusive=True) == inc
    parents = [p for r in real for p in dag.parentrevs(r)]
    assert dagops.ancestors(dag, revs) == naive_ancestors(dag, parents)
    assert set(dagops.LazyAncestors(dag, revs, inclusive=True)) == inc
    assert list(dagops.LazyAncestors(dag, revs)) == sorted(
        naive_ancestors(dag, parents), reverse=True
    )
    lazy = dagops.LazyAncestors(dag, revs, inclusive=True)
    for probe in data.draw(st.lists(st.integers(min_value=-1, max_value=max(n, 0)), max_size=8)):
        assert (probe in lazy) == (probe in inc)
    stop = data.draw(st.integers(min_value=0, max_value=max(n, 0)))
    assert dagops.ancestors(dag, revs, inclusive=True, stoprev=stop) == {
        r for r in naive_ancestors_stop(dag, real, stop)
    }
    desc = naive_descendants(dag, real)
    assert dagops.descendants(dag, revs, inclusive=True) == desc
    kids = dag.children()
    assert dagops.descendants(dag, revs) == naive_descendants(
        dag, [k for r in real for k in kids[r]]
    )


def naive_ancestors_stop(dag: DAG, revs: list[int], stop: int) -> set[int]:
    """Ancestors reachable without passing through revisions below ``stop``."""
    seen: set[int] = set()
    stack = [r for r in revs if r >= stop]
    while stack:
        r = stack.pop()
        if r in seen:
            continue
        seen.add(r)
        stack.extend(p for p in dag.parentrevs(r) if p >= stop)
    return seen


@settings(max_examples=150, deadline=None)
@given(dags, st.data())
def test_sets_heads_roots_range_missing(dag: DAG, data: st.DataObject) -> None:
    n = len(dag)
    pick = st.lists(st.integers(min_value=0, max_value=n - 1), max_size=6) if n else st.just([])
    kids = dag.children()
    # heads of the whole DAG
    expected_heads = [r for r in range(n) if not kids[r]] if n else [NULLREV]
    assert dagops.headrevs(dag) == expected_heads
    # heads / roots of a subset
    subset = set(data.draw(pick)) | set(data.draw(pick))
    assert dagops.headrevs_subset(dag, subset) == sorted(
        r for r in subset if not any(k in subset for k in kids[r])
    )
    assert dagops.rootrevs(dag, subset) == sorted(
        r for r in subset if not any(p in subset for p in dag.parentrevs(r))
    )
    visible = bytearray(1 if r in subset else 0 for r in range(n))
    assert dagops.headrevs_filtered(dag, visible) == dagops.headrevs_subset(dag, subset)
    # roots::heads
    roots, heads = data.draw(pick), data.draw(pick)
    expected = naive_descendants(dag, roots) & naive_ancestors(dag, heads)
    assert dagops.dagrange(dag, roots, heads) == sorted(expected)
    # discovery sets
    common = data.draw(pick)
    has, missing = dagops.findcommonmissing(dag, common, heads)
    assert has == naive_ancestors(dag, common) | {NULLREV}
    assert missing == sorted(naive_ancestors(dag, heads) - naive_ancestors(dag, common))
    assert dagops.findmissingrevs(dag, common, heads) == missing
    assert dagops.findmissingrevs(dag, common) == sorted(
        set(range(n)) - naive_ancestors(dag, common)
    )
    # ancestry predicates
    if n:
        a, b = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
        assert dagops.isancestor(dag, a, b) == (a in naive_ancestors(dag, [b]))
        both = naive_ancestors(dag, [a]) & naive_ancestors(dag, [b])
        assert dagops.commonancestorsheads(dag, a, b) == sorted(
            r for r in both if not any(k in both for k in kids[r])
        )
    assert dagops.toposort(dag, subset) == sorted(subset)


def test_from_parentrevs_and_validation() -> None:
    parents = {0: (-1, -1), 1: (0, -1), 2: (0, -1), 3: (1, 2)}
    dag = DAG.from_parentrevs(4, parents.__getitem__)
    assert dag.parents(3) == [1, 2]
    assert dag.parents(0) == []
    assert dagops.headrevs(dag) == [3]
    assert dagops.headrevs(DAG.from_arrays([], [])) == [NULLREV]
    with pytest.raises(ValueError, match="revision 1"):
        DAG.from_arrays([-1, 1], [-1, -1])
    with pytest.raises(LookupNodeError, match="no node 7"):
        dagops.ancestors(dag, [7])


def test_linear_on_large_history() -> None:
    """100k revisions: the passes stay correct on a long chain with periodic merges."""
    n = 100_000
    p1 = [r - 1 for r in range(n)]
    p2 = [r - 10 if r % 10 == 0 and r >= 10 else -1 for r in range(n)]
    dag = DAG.from_arrays(p1, p2)
    assert dagops.headrevs(dag) == [n - 1]
    assert len(dagops.ancestors(dag, [n - 1], inclusive=True)) == n
    assert dagops.findmissingrevs(dag, [n - 100], [n - 1]) == list(range(n - 99, n))
    assert len(dagops.descendants(dag, [n // 2])) == n // 2 - 1
