"""The branch map: named branch -> heads (open and closed), computed from the changelog.

Storage spec §6.3: a changeset's branch is its ``branch`` extra (``default`` when absent);
a branch head is a changeset of that branch with no child on the same branch; it is closed
when its changeset carries ``close`` in extra, and a branch is closed when all its heads
are. Mercurial's caches are never needed to answer this: hgwire reads the changelog,
using valid records of the revision-branch cache (``cache/rbc-*``) only to avoid
decompressing changelog entries, and writes no cache, so Mercurial's self-validating caches
stay consistent (it recomputes them when they no longer match).

A long-running server asks for the branch map per request, so :func:`for_repo` keeps the
last answer per store in memory, keyed like Mercurial's branch cache by the changelog
length, the tip node and the visible set; revisions appended since are read and folded in
incrementally, and a changelog whose old tip node moved (strip, rollback, another
repository at the same path) is read again from scratch.

Heads are listed in ascending revision order, as Mercurial's branch map lists them; a
branch's tip is its tipmost open head, or its tipmost head when all are closed.
"""

from __future__ import annotations

import struct
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hgwire.repo.dagops import DAG
from hgwire.repo.store import store_key


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


def read_branchinfo(
    count: int,
    branchinfo: Callable[[int], tuple[bytes, bool]],
    base: BranchInfo | None = None,
) -> BranchInfo:
    """Collect ``branchinfo(rev)`` (``(branch, closed)``) for revisions ``0..count-1``;
    with ``base`` (the answers for its first revisions) only the later ones are read.
    ``base`` is not modified."""
    start = len(base) if base is not None else 0
    names: list[bytes] = list(base.names) if base is not None else []
    ids = {name: i for i, name in enumerate(names)}
    index = array("i", base.index if base is not None else ())
    index.frombytes(bytes(4 * (count - start)))
    closed = bytearray(base.closed if base is not None else b"") + bytes(count - start)
    for r in range(start, count):
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

    def copy(self) -> BranchMap:
        return BranchMap({b: list(h) for b, h in self.heads.items()}, set(self.closed))


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


def advance(
    bmap: BranchMap,
    dag: DAG,
    info: BranchInfo,
    start: int,
    visible: bytearray | bytes | None = None,
) -> BranchMap:
    """The branch map of ``dag`` from ``bmap``, the map of its first ``start`` revisions
    under the same visibility: each later visible revision becomes a head of its branch
    and retires its same-branch parents (``bmap`` is not modified)."""
    out = bmap.copy()
    idx = info.index
    names = info.names
    p1, p2 = dag.p1, dag.p2
    for r in range(start, len(dag)):
        if visible is not None and not visible[r]:
            continue
        b = idx[r]
        heads = out.heads.setdefault(names[b], [])
        for a in (p1[r], p2[r]):
            if a >= 0 and idx[a] == b and a in heads:
                heads.remove(a)
                out.closed.discard(a)
        heads.append(r)
        if info.closed[r]:
            out.closed.add(r)
    return out


RBC_FILES = (("rbc-names-v2", "rbc-revs-v2"), ("rbc-names-v1", "rbc-revs-v1"))
_RBC_RECORD = struct.Struct(">4sI")
_RBC_CLOSED = 0x80000000


def read_branchinfo_cached(
    count: int,
    node: Callable[[int], bytes],
    branchinfo: Callable[[int], tuple[bytes, bool]],
    cachevfs: Any,
    base: BranchInfo | None = None,
) -> BranchInfo:
    """Like :func:`read_branchinfo`, taking each revision's answer from Mercurial's
    revision-branch cache (``cache/rbc-names-v2``/``rbc-revs-v2``, or the ``-v1`` files of
    6.0; spec §6.3) when its record is valid: the record's node prefix matches the
    changeset and its branch index exists. Other revisions are read from the changelog;
    the cache is never written."""
    start = len(base) if base is not None else 0
    names_data = revs_data = b""
    for names_file, revs_file in RBC_FILES:
        names_data = cachevfs.tryread(names_file)
        if names_data:
            revs_data = cachevfs.tryread(revs_file)
            break
    usable = min(count, len(revs_data) // _RBC_RECORD.size)
    if not names_data or usable <= start:
        return read_branchinfo(count, branchinfo, base)
    cached_names = names_data.split(b"\0")
    view = memoryview(revs_data)[start * _RBC_RECORD.size : usable * _RBC_RECORD.size]
    cache: list[tuple[bytes, bool] | None] = []
    for rev, (prefix, value) in enumerate(_RBC_RECORD.iter_unpack(view), start):
        idx = value & ~_RBC_CLOSED
        if prefix != b"\0\0\0\0" and idx < len(cached_names) and node(rev)[:4] == prefix:
            cache.append((cached_names[idx], bool(value & _RBC_CLOSED)))
        else:
            cache.append(None)

    def lookup(rev: int) -> tuple[bytes, bool]:
        if rev < usable:
            hit = cache[rev - start]
            if hit is not None:
                return hit
        return branchinfo(rev)

    return read_branchinfo(count, lookup, base)


@dataclass(frozen=True)
class _Cached:
    """One store's last branch map (immutable: shared between threads)."""

    count: int
    tipnode: bytes
    visible: bytes | None
    info: BranchInfo
    bmap: BranchMap


_CACHE: dict[str, _Cached] = {}
_CACHE_MAX = 16  # stores remembered (a server with more repositories recomputes)
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every remembered branch map."""
    with _CACHE_LOCK:
        _CACHE.clear()


def for_repo(
    repo: Any,
    dag: DAG | None = None,
    visible: bytearray | None = None,
    use_cache: bool = True,
) -> BranchMap:
    """The branch map of ``repo`` (anything with a ``changelog`` offering ``branchinfo``).

    With ``use_cache``, the previous answer for the same store is reused when the
    changelog still starts with the revisions it was computed from (same node at its
    last revision; revisions added since are read and folded in), and valid records of
    Mercurial's revision-branch cache save reading changelog entries. ``use_cache=False``
    reads every changelog entry.
    """
    cl = repo.changelog
    if dag is None:
        dag = DAG.from_storage(cl)
    n = len(dag)
    key = store_key(repo) if use_cache else None
    vis = None if visible is None else bytes(visible[:n])
    entry = _CACHE.get(key) if key is not None else None
    if entry is not None and not (
        entry.count <= n and (entry.count == 0 or cl.node(entry.count - 1) == entry.tipnode)
    ):
        entry = None  # history was replaced: nothing of it can be trusted
    base = entry.info if entry is not None else None
    if base is not None and len(base) == n:
        info = base
    else:
        cachevfs = getattr(repo, "cachevfs", None)
        if use_cache and cachevfs is not None:
            info = read_branchinfo_cached(n, cl.node, cl.branchinfo, cachevfs, base)
        else:
            info = read_branchinfo(n, cl.branchinfo, base)
    if entry is None:
        bmap = compute(dag, info, visible)
    elif entry.count == n and entry.visible == vis:
        bmap = entry.bmap
    elif entry.visible == (None if vis is None else vis[: entry.count]):
        bmap = advance(entry.bmap, dag, info, entry.count, visible)
    else:  # visibility of older revisions changed (a phase moved)
        bmap = compute(dag, info, visible)
    if key is not None:
        tipnode = cl.node(n - 1) if n else b""
        with _CACHE_LOCK:
            _CACHE.pop(key, None)
            _CACHE[key] = _Cached(n, tipnode, vis, info, bmap)
            while len(_CACHE) > _CACHE_MAX:
                del _CACHE[next(iter(_CACHE))]
    return bmap.copy()
