"""The branch map: named branch -> heads (open and closed), computed from the changelog.

Storage spec §6.3: a changeset's branch is its ``branch`` extra (``default`` when absent);
a branch head is a changeset of that branch with no child on the same branch; it is closed
when its changeset carries ``close`` in extra, and a branch is closed when all its heads
are. Mercurial's caches are never needed to answer this: hgwire reads the changelog,
using valid records of the revision-branch cache (``cache/rbc-*``) only to avoid
decompressing changelog entries, and writes no cache, so Mercurial's self-validating caches
stay consistent (it recomputes them when they no longer match).

Heads are listed in ascending revision order, as Mercurial's branch map lists them; a
branch's tip is its tipmost open head, or its tipmost head when all are closed.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hgwire.repo.dagops import DAG


@dataclass
class BranchInfo:
    """Per-revision branch index and closed flag, with the branch names."""

    names: list[bytes]
    index: array[int]
    closed: bytearray

    def branch(self, rev: int) -> bytes:
        return self.names[self.index[rev]]

    def __len__(self) -> int:
        return len(self.index)


def read_branchinfo(count: int, branchinfo: Callable[[int], tuple[bytes, bool]]) -> BranchInfo:
    """Collect ``branchinfo(rev)`` (``(branch, closed)``) for revisions ``0..count-1``."""
    names: list[bytes] = []
    ids: dict[bytes, int] = {}
    index = array("i", bytes(4 * count))
    closed = bytearray(count)
    for r in range(count):
        name, isclosed = branchinfo(r)
        i = ids.get(name)
        if i is None:
            i = ids[name] = len(names)
            names.append(name)
        index[r] = i
        if isclosed:
            closed[r] = 1
    return BranchInfo(names, index, closed)


@dataclass
class BranchMap:
    """Branch name -> heads (ascending revs, closed ones included) and closed heads."""

    heads: dict[bytes, list[int]] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)

    def __contains__(self, branch: object) -> bool:
        return branch in self.heads

    def __iter__(self) -> Iterator[bytes]:
        return iter(sorted(self.heads))

    def __len__(self) -> int:
        return len(self.heads)

    def branchheads(self, branch: bytes, closed: bool = False) -> list[int]:
        """Heads of ``branch`` (open ones only unless ``closed``); [] for unknown names."""
        heads = self.heads.get(branch, [])
        return list(heads) if closed else [h for h in heads if h not in self.closed]

    def branchtip(self, branch: bytes) -> int:
        """The tipmost open head, or the tipmost head when every head is closed."""
        heads = self.heads[branch]
        for h in reversed(heads):
            if h not in self.closed:
                return h
        return heads[-1]

    def isclosed(self, branch: bytes) -> bool:
        """Whether every head of ``branch`` is closed."""
        return all(h in self.closed for h in self.heads[branch])

    def items(self) -> list[tuple[bytes, list[int]]]:
        return [(b, list(self.heads[b])) for b in sorted(self.heads)]


def compute(dag: DAG, info: BranchInfo, visible: bytearray | bytes | None = None) -> BranchMap:
    """The branch map of the revisions marked in ``visible`` (all when None).

    ``visible`` must be closed under descendants' removal the way Mercurial's repo views
    are (hidden revisions only have hidden descendants), e.g. "not secret".
    """
    n = len(dag)
    idx = info.index
    nothead = bytearray(n)
    p1, p2 = dag.p1, dag.p2
    for r in range(n):
        if visible is not None and not visible[r]:
            nothead[r] = 1
            continue
        b = idx[r]
        a = p1[r]
        if a >= 0 and idx[a] == b:
            nothead[a] = 1
        a = p2[r]
        if a >= 0 and idx[a] == b:
            nothead[a] = 1
    bmap = BranchMap()
    names = info.names
    find = nothead.find
    r = find(0)
    while r >= 0:
        bmap.heads.setdefault(names[idx[r]], []).append(r)
        if info.closed[r]:
            bmap.closed.add(r)
        r = find(0, r + 1)
    return bmap


RBC_FILES = (("rbc-names-v2", "rbc-revs-v2"), ("rbc-names-v1", "rbc-revs-v1"))
_RBC_RECORD = struct.Struct(">4sI")
_RBC_CLOSED = 0x80000000


def read_branchinfo_cached(
    count: int,
    node: Callable[[int], bytes],
    branchinfo: Callable[[int], tuple[bytes, bool]],
    cachevfs: Any,
) -> BranchInfo:
    """Like :func:`read_branchinfo`, taking each revision's answer from Mercurial's
    revision-branch cache (``cache/rbc-names-v2``/``rbc-revs-v2``, or the ``-v1`` files of
    6.0; spec §6.3) when its record is valid: the record's node prefix matches the
    changeset and its branch index exists. Other revisions are read from the changelog;
    the cache is never written."""
    names_data = revs_data = b""
    for names_file, revs_file in RBC_FILES:
        names_data = cachevfs.tryread(names_file)
        if names_data:
            revs_data = cachevfs.tryread(revs_file)
            break
    if not names_data or not revs_data:
        return read_branchinfo(count, branchinfo)
    cached_names = names_data.split(b"\0")
    usable = min(count, len(revs_data) // _RBC_RECORD.size)
    records = _RBC_RECORD.iter_unpack(memoryview(revs_data)[: usable * _RBC_RECORD.size])
    cache: list[tuple[bytes, bool] | None] = []
    for rev, (prefix, value) in enumerate(records):
        idx = value & ~_RBC_CLOSED
        if prefix != b"\0\0\0\0" and idx < len(cached_names) and node(rev)[:4] == prefix:
            cache.append((cached_names[idx], bool(value & _RBC_CLOSED)))
        else:
            cache.append(None)

    def lookup(rev: int) -> tuple[bytes, bool]:
        if rev < usable:
            hit = cache[rev]
            if hit is not None:
                return hit
        return branchinfo(rev)

    return read_branchinfo(count, lookup)


def for_repo(
    repo: Any,
    dag: DAG | None = None,
    visible: bytearray | None = None,
    use_cache: bool = True,
) -> BranchMap:
    """The branch map of ``repo`` (anything with a ``changelog`` offering ``branchinfo``);
    with ``use_cache``, valid records of Mercurial's revision-branch cache save reading
    the changelog entries."""
    cl = repo.changelog
    if dag is None:
        dag = DAG.from_storage(cl)
    cachevfs = getattr(repo, "cachevfs", None)
    if use_cache and cachevfs is not None:
        info = read_branchinfo_cached(len(dag), cl.node, cl.branchinfo, cachevfs)
    else:
        info = read_branchinfo(len(dag), cl.branchinfo)
    return compute(dag, info, visible)
