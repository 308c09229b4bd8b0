"""Algorithms on the revision DAG (ancestors, descendants, heads, ranges, discovery sets).

Revisions are integers and every parent has a smaller number than its child (a revlog
invariant, storage spec §3.1), so most questions are answered by one linear pass over a
``bytearray`` of marks, walking down for ancestors and up for descendants. Parents come
from two integer arrays (``array('i')``), ``-1`` (nullrev) for "no parent"; build a
:class:`DAG` once per changelog snapshot and reuse it.
"""

from __future__ import annotations

import heapq
import operator
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from hgwire.errors import LookupNodeError

NULLREV = -1


class ParentRevs(Protocol):
    """The minimal storage interface the DAG needs (a revlog satisfies it)."""

    def __len__(self) -> int: ...

    def parentrevs(self, rev: int) -> tuple[int, int]: ...


class DAG:
    """Parent arrays of ``len(p1)`` revisions; immutable once built.

    ``p1[r]``/``p2[r]`` are the parent revisions of ``r`` (``-1`` for none). Every parent
    must be smaller than its child; :meth:`from_arrays` checks that, since a violation
    would make the linear passes silently wrong.
    """

    __slots__ = ("p1", "p2")

    def __init__(self, p1: array[int], p2: array[int]) -> None:
        self.p1 = p1
        self.p2 = p2

    @classmethod
    def from_arrays(cls, p1: Iterable[int], p2: Iterable[int]) -> DAG:
        a1, a2 = array("i", p1), array("i", p2)
        if len(a1) != len(a2):
            raise ValueError("parent arrays differ in length")
        n = len(a1)
        # parent < child and parent >= -1, checked with C-level loops (map/max/min)
        if n and (
            max(map(operator.sub, a1, range(n))) >= 0
            or max(map(operator.sub, a2, range(n))) >= 0
            or min(a1) < -1
            or min(a2) < -1
        ):
            for r in range(n):
                if not (-1 <= a1[r] < r and -1 <= a2[r] < r):
                    raise ValueError(f"revision {r} has parents {a1[r]}, {a2[r]}")
        return cls(a1, a2)

    @classmethod
    def from_parentrevs(cls, count: int, parentrevs: Callable[[int], tuple[int, int]]) -> DAG:
        """Build from a per-revision parent function (e.g. ``Revlog.parentrevs``)."""
        p1 = array("i", bytes(4 * count))
        p2 = array("i", bytes(4 * count))
        for r in range(count):
            a, b = parentrevs(r)
            p1[r] = a
            p2[r] = b
        return cls.from_arrays(p1, p2)

    @classmethod
    def from_storage(cls, store: ParentRevs) -> DAG:
        """Build from anything with ``len()`` and ``parentrevs(rev)``; uses bulk access
        (``parentrevs_array()``) when the storage offers it."""
        bulk = getattr(store, "parentrevs_array", None)
        if bulk is not None:
            p1, p2 = bulk()
            return cls.from_arrays(p1, p2)
        return cls.from_parentrevs(len(store), store.parentrevs)

    def __len__(self) -> int:
        return len(self.p1)

    def parentrevs(self, rev: int) -> tuple[int, int]:
        return self.p1[rev], self.p2[rev]

    def parents(self, rev: int) -> list[int]:
        """The real parents of ``rev`` (nullrev left out, p1 first)."""
        a, b = self.p1[rev], self.p2[rev]
        if a == NULLREV:
            return [] if b == NULLREV else [b]
        return [a] if b in (NULLREV, a) else [a, b]

    def children(self) -> list[list[int]]:
        """Child lists of every revision (one pass; O(n) memory)."""
        kids: list[list[int]] = [[] for _ in range(len(self.p1))]
        for r in range(len(self.p1)):
            a, b = self.p1[r], self.p2[r]
            if a >= 0:
                kids[a].append(r)
            if b >= 0 and b != a:
                kids[b].append(r)
        return kids


def _marks(n: int, revs: Iterable[int]) -> tuple[bytearray, int, int]:
    """Mark ``revs`` (ignoring nullrev); returns marks, lowest and highest marked rev."""
    mark = bytearray(n)
    lo, hi = n, -1
    for r in revs:
        if r < 0:
            continue
        if r >= n:
            raise LookupNodeError(r, "changelog")
        mark[r] = 1
        if r < lo:
            lo = r
        if r > hi:
            hi = r
    return mark, lo, hi


def _checked(dag: DAG, revs: Iterable[int]) -> list[int]:
    """``revs`` without nullrev; unknown revisions raise :class:`LookupNodeError`."""
    n = len(dag)
    out = [r for r in revs if r >= 0]
    for r in out:
        if r >= n:
            raise LookupNodeError(r, "changelog")
    return out


def ancestor_marks(dag: DAG, revs: Iterable[int], stoprev: int = 0) -> bytearray:
    """Marks of ``revs`` and all their ancestors with rev >= ``stoprev``."""
    mark, _lo, hi = _marks(len(dag), revs)
    p1, p2 = dag.p1, dag.p2
    stop = max(stoprev, 0)
    # jump from marked rev to marked rev downwards (rfind runs at C speed over gaps)
    rfind = mark.rfind
    r = rfind(1, stop, hi + 1)
    while r >= 0:
        a = p1[r]
        if a >= 0:
            mark[a] = 1
        b = p2[r]
        if b >= 0:
            mark[b] = 1
        r = rfind(1, stop, r)
    return mark


def descendant_marks(dag: DAG, revs: Iterable[int]) -> bytearray:
    """Marks of ``revs`` and all their descendants."""
    mark, lo, _hi = _marks(len(dag), revs)
    p1, p2 = dag.p1, dag.p2
    for r in range(lo + 1, len(dag)):
        if not mark[r]:
            a = p1[r]
            b = p2[r]
            if (a >= 0 and mark[a]) or (b >= 0 and mark[b]):
                mark[r] = 1
    return mark


def _revs_of(mark: bytearray | bytes) -> list[int]:
    """The marked revisions, ascending (``find`` skips unmarked runs at C speed)."""
    out: list[int] = []
    find = mark.find
    r = find(1)
    while r >= 0:
        out.append(r)
        r = find(1, r + 1)
    return out


def ancestors(dag: DAG, revs: Iterable[int], inclusive: bool = False, stoprev: int = 0) -> set[int]:
    """Ancestors of ``revs`` with rev >= ``stoprev``; ``revs`` themselves only when
    ``inclusive`` or when one is an ancestor of another (Mercurial's semantics)."""
    revs = _checked(dag, revs)
    if inclusive:
        seeds: Iterable[int] = revs
    else:
        p1, p2 = dag.p1, dag.p2
        seeds = [p for r in revs for p in (p1[r], p2[r])]
    mark = ancestor_marks(dag, seeds, stoprev)
    stoprev = max(stoprev, 0)
    out: set[int] = set()
    find = mark.find
    r = find(1, stoprev)
    while r >= 0:
        out.add(r)
        r = find(1, r + 1)
    return out


class LazyAncestors:
    """Ancestors of ``revs`` produced on demand in descending order (like Mercurial's
    ``lazyancestors``): iteration and ``in`` only walk as far as needed, which matters
    when a caller stops early (discovery, ``isancestor`` style checks)."""

    def __init__(self, dag: DAG, revs: Iterable[int], inclusive: bool = False, stoprev: int = 0):
        self._dag = dag
        self._initrevs = _checked(dag, revs)
        self._inclusive = inclusive
        self._stoprev = max(stoprev, 0)
        self._seen: set[int] = set()
        self._heap: list[int] = []
        self._started = False
        self._done = False

    def _start(self) -> None:
        self._started = True
        p1, p2 = self._dag.p1, self._dag.p2
        seeds: set[int] = set()
        for r in self._initrevs:
            if self._inclusive:
                seeds.add(r)
            else:
                seeds.add(p1[r])
                seeds.add(p2[r])
        for r in seeds:
            if r >= self._stoprev:
                heapq.heappush(self._heap, -r)

    def _advance(self) -> int | None:
        """The next ancestor in descending order, or None when exhausted."""
        if not self._started:
            self._start()
        heap = self._heap
        p1, p2 = self._dag.p1, self._dag.p2
        stop = self._stoprev
        while heap:
            r = -heapq.heappop(heap)
            while heap and heap[0] == -r:
                heapq.heappop(heap)
            if r in self._seen:
                continue
            self._seen.add(r)
            a, b = p1[r], p2[r]
            if a >= stop:
                heapq.heappush(heap, -a)
            if b >= stop and b != a:
                heapq.heappush(heap, -b)
            return r
        self._done = True
        return None

    def __iter__(self) -> Iterator[int]:
        """All ancestors, descending (restarts from scratch each time)."""
        fresh = LazyAncestors(self._dag, self._initrevs, self._inclusive, self._stoprev)
        while True:
            r = fresh._advance()
            if r is None:
                return
            yield r

    def __contains__(self, rev: object) -> bool:
        if not isinstance(rev, int) or rev < self._stoprev:
            return False
        if rev in self._seen:
            return True
        # Revisions come out in descending order: once the heap's top is below rev, no
        # later output can be rev.
        while not self._done:
            if self._started and (not self._heap or -self._heap[0] < rev):
                return False
            r = self._advance()
            if r == rev:
                return True
            if r is None or r < rev:
                return False
        return False

    def __bool__(self) -> bool:
        if self._seen:
            return True
        return next(iter(self), None) is not None


def descendants(dag: DAG, revs: Iterable[int], inclusive: bool = False) -> set[int]:
    """Descendants of ``revs``; ``revs`` themselves only when ``inclusive`` or when one
    descends from another."""
    seeds, lo, _hi = _marks(len(dag), revs)
    mark = bytearray(len(dag))
    p1, p2 = dag.p1, dag.p2
    for r in range(lo + 1, len(dag)):
        a = p1[r]
        b = p2[r]
        if (a >= 0 and (mark[a] or seeds[a])) or (b >= 0 and (mark[b] or seeds[b])):
            mark[r] = 1
    if inclusive:
        for r in _revs_of(seeds):
            mark[r] = 1
    return set(_revs_of(mark))


def _descendants_pass(dag: DAG, mark: bytearray, start: int) -> None:
    """Complete ``mark`` (seeds set to 1) with every descendant, from ``start`` upward."""
    p1, p2 = dag.p1, dag.p2
    for r in range(start, len(dag)):
        if not mark[r]:
            a = p1[r]
            b = p2[r]
            if (a >= 0 and mark[a]) or (b >= 0 and mark[b]):
                mark[r] = 1


def dagrange(dag: DAG, roots: Iterable[int], heads: Iterable[int]) -> list[int]:
    """``roots::heads``: revisions that descend from a root and lead to a head (both
    inclusive), ascending."""
    anc = ancestor_marks(dag, heads)
    roots = [r for r in roots if r >= 0 and anc[r]]
    if not roots:
        return []
    desc, lo, _hi = _marks(len(dag), roots)
    _descendants_pass(dag, desc, lo + 1)
    return [r for r in _revs_of(desc) if anc[r]]


def headrevs(dag: DAG) -> list[int]:
    """Revisions without children, ascending (an empty DAG has the head nullrev)."""
    n = len(dag)
    if n == 0:
        return [NULLREV]
    ishead = bytearray(b"\x01") * (n + 1)  # slot n absorbs nullrev (index -1)
    for p in dag.p1:
        ishead[p] = 0
    for p in dag.p2:
        ishead[p] = 0
    del ishead[n]
    return _revs_of(ishead)


def headrevs_subset(dag: DAG, revs: Iterable[int]) -> list[int]:
    """Heads of the set ``revs``: members with no child inside the set, ascending."""
    members = sorted({r for r in revs if r >= 0})
    inset, _lo, _hi = _marks(len(dag), members)
    ishead = bytearray(inset)
    p1, p2 = dag.p1, dag.p2
    for r in members:
        a = p1[r]
        if a >= 0:
            ishead[a] = 0
        b = p2[r]
        if b >= 0:
            ishead[b] = 0
    return [r for r in members if ishead[r]]


def headrevs_filtered(dag: DAG, visible: bytearray | bytes) -> list[int]:
    """Heads among the revisions whose ``visible`` byte is non-zero (e.g. not secret)."""
    n = len(dag)
    ishead = bytearray(visible[:n])
    p1, p2 = dag.p1, dag.p2
    for r in range(n):
        if visible[r]:
            a = p1[r]
            if a >= 0:
                ishead[a] = 0
            b = p2[r]
            if b >= 0:
                ishead[b] = 0
    return [r for r in range(n) if ishead[r]]


def rootrevs(dag: DAG, revs: Iterable[int]) -> list[int]:
    """Roots of the set ``revs``: members none of whose parents are in the set."""
    members = sorted({r for r in revs if r >= 0})
    inset, _lo, _hi = _marks(len(dag), members)
    p1, p2 = dag.p1, dag.p2
    out = []
    for r in members:
        a, b = p1[r], p2[r]
        if not ((a >= 0 and inset[a]) or (b >= 0 and inset[b])):
            out.append(r)
    return out


def isancestor(dag: DAG, a: int, b: int) -> bool:
    """Whether ``a`` is an ancestor of ``b`` or ``b`` itself (nullrev precedes all)."""
    if a == NULLREV:
        return True
    if a > b:
        return False
    if a == b:
        return True
    return a in LazyAncestors(dag, [b], inclusive=True, stoprev=a)


def findcommonmissing(
    dag: DAG, common: Iterable[int], heads: Iterable[int] | None = None
) -> tuple[set[int], list[int]]:
    """Discovery sets, as Mercurial's ``findcommonmissing``: ``(has, missing)``.

    ``has`` = ``::common`` including nullrev; ``missing`` = ``(::heads) - (::common)``,
    ascending (a topological order). ``heads`` defaults to all heads.
    """
    common = _checked(dag, common)
    heads = _checked(dag, headrevs(dag) if heads is None else heads)
    has = set(_revs_of(ancestor_marks(dag, common)))
    has.add(NULLREV)
    return has, _missing(dag, common, heads)


def findmissingrevs(
    dag: DAG, common: Iterable[int], heads: Iterable[int] | None = None
) -> list[int]:
    """``(::heads) - (::common)``, ascending; what a peer knowing ``common`` lacks."""
    heads = _checked(dag, headrevs(dag) if heads is None else heads)
    return _missing(dag, _checked(dag, common), heads)


_HEADS, _COMMON = 1, 2


def _missing(dag: DAG, common: Sequence[int], heads: Sequence[int]) -> list[int]:
    """Ancestors of ``heads`` (inclusive) that are not ancestors of ``common``, ascending.

    One downward walk marks revisions reachable from the heads and from ``common``; a
    revision reached only from the heads when the walk gets to it is missing (all its
    descendants were seen before it). The walk stops as soon as no such candidate is left,
    so its cost is the span of the answer, not the size of the history (like Mercurial's
    incremental missing-ancestors).
    """
    if not heads:
        return []
    mark = bytearray(len(dag))
    for c in common:
        mark[c] = _COMMON
    pending = 0
    for h in heads:
        if not mark[h]:
            mark[h] = _HEADS
            pending += 1
    p1, p2 = dag.p1, dag.p2
    out = []
    r = max(max(heads), max(common, default=-1))
    while pending and r >= 0:
        m = mark[r]
        if m == _HEADS:
            pending -= 1
            out.append(r)
            a = p1[r]
            if a >= 0 and not mark[a]:
                mark[a] = _HEADS
                pending += 1
            b = p2[r]
            if b >= 0 and not mark[b]:
                mark[b] = _HEADS
                pending += 1
        elif m:
            for p in (p1[r], p2[r]):
                if p >= 0:
                    old = mark[p]
                    if old == _HEADS:
                        pending -= 1
                    mark[p] = old | _COMMON
        r -= 1
    out.reverse()
    return out


def toposort(dag: DAG, revs: Iterable[int]) -> list[int]:
    """A topological order of ``revs`` (parents first): ascending rev order is one."""
    return sorted({r for r in revs if r >= 0})


def commonancestorsheads(dag: DAG, a: int, b: int) -> list[int]:
    """Heads of the common ancestors of ``a`` and ``b`` (both inclusive), ascending."""
    if a < 0 or b < 0:
        return []
    both = bytearray(ancestor_marks(dag, [a]))
    other = ancestor_marks(dag, [b])
    for r in range(len(both)):
        both[r] = both[r] & other[r]
    return headrevs_filtered(dag, both)
