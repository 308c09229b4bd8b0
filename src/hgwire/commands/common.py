"""Transport-neutral command helpers shared by the v1 and v2 command sets.

Everything here works on the *served* view of a repository (wire spec §8.1): Mercurial's
``served`` filter hides secret (and archived/internal) changesets, and so does hgwire,
always — heads, ``known``, branch map, pushkey listings and symbol lookups never reveal
a changeset that is not served. hgwire has no obsolescence markers, so nothing is hidden
for that reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hgwire.errors import HgwireError, LookupNodeError, UnknownRevisionError
from hgwire.repo import bookmarks as bookmod
from hgwire.repo import branchmap as branchmod
from hgwire.repo import dagops
from hgwire.repo import phases as phasemod
from hgwire.repo import tags as tagsmod

if TYPE_CHECKING:
    from hgwire.repo.changelog import Changelog
    from hgwire.repo.localrepo import Repository

NULLID = b"\0" * 20
NULLREV = -1
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")


@dataclass
class ServedView:
    """One consistent snapshot of a repository as a server exposes it.

    ``served[r]`` is 1 when changeset ``r`` may be shown to a peer (not secret or above).
    Bookmarks, branch map and tags are computed on first use.
    """

    repo: Repository
    cl: Changelog
    dag: dagops.DAG
    phases: phasemod.PhaseCache
    served: bytearray
    _cache: dict[str, Any] = field(default_factory=dict)

    # -- revisions -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.dag)

    def node(self, rev: int) -> bytes:
        return NULLID if rev == NULLREV else self.cl.node(rev)

    def anyrev(self, node: bytes) -> int | None:
        """The revision of ``node`` whether served or not; None when unknown."""
        if not isinstance(node, bytes) or len(node) != 20:
            return None
        try:
            rev = self.cl.rev(node)
        except LookupNodeError:
            return None
        return rev if rev < len(self.dag) else None

    def rev(self, node: bytes) -> int | None:
        """The revision of a served ``node`` (nullid gives nullrev); None otherwise."""
        rev = self.anyrev(node)
        if rev is None or (rev >= 0 and not self.served[rev]):
            return None
        return rev

    def is_served(self, rev: int) -> bool:
        return rev == NULLREV or (0 <= rev < len(self.served) and bool(self.served[rev]))

    def tiprev(self) -> int:
        """The highest served revision (nullrev for none)."""
        r = len(self.served) - 1
        while r >= 0 and not self.served[r]:
            r -= 1
        return r

    # -- derived data ----------------------------------------------------------------

    @property
    def bookmarks(self) -> bookmod.Bookmarks:
        """All bookmarks (including those on unserved changesets; filter before use)."""
        bm = self._cache.get("bookmarks")
        if bm is None:
            bm = self._cache["bookmarks"] = bookmod.Bookmarks(self.repo)
        assert isinstance(bm, bookmod.Bookmarks)
        return bm

    def served_bookmarks(self) -> dict[bytes, bytes]:
        """Bookmark name -> node, for bookmarks on served changesets only."""
        out = {}
        for name, node in self.bookmarks.items():
            rev = self.anyrev(node)
            if rev is not None and self.is_served(rev):
                out[name] = node
        return out

    @property
    def branchmap(self) -> branchmod.BranchMap:
        bm = self._cache.get("branchmap")
        if bm is None:
            bm = self._cache["branchmap"] = branchmod.for_repo(self.repo, self.dag, self.served)
        assert isinstance(bm, branchmod.BranchMap)
        return bm

    @property
    def tags(self) -> dict[bytes, bytes]:
        """Tag name -> node among served changesets (``tip`` included)."""
        t = self._cache.get("tags")
        if t is None:
            t = self._cache["tags"] = tagsmod.tags(self.repo, self.dag, self.served)
        assert isinstance(t, dict)
        return t

    def hassecret(self) -> bool:
        """Whether any changeset is hidden from peers (stream clones refuse then)."""
        return 0 in self.served


def served(repo: Repository) -> ServedView:
    """The served view of ``repo`` as it is on disk now."""
    cl = repo.changelog
    dag = dagops.DAG.from_storage(cl)
    pc = phasemod.PhaseCache.load(repo, dag)
    return ServedView(repo, cl, dag, pc, pc.servable())


# ---------------------------------------------------------------------------------------
# Queries


def heads(view: ServedView, publiconly: bool = False) -> list[bytes]:
    """Head nodes of the served changesets, highest revision first, like
    ``repo.heads()``; ``[nullid]`` for an empty set. ``publiconly``: heads of the
    public changesets (Mercurial's ``immutable`` view)."""
    if publiconly:
        phases = view.phases.phases
        mask = bytearray(1 if p == phasemod.PUBLIC else 0 for p in phases)
    else:
        mask = view.served
    revs = dagops.headrevs_filtered(view.dag, mask)
    if not revs:
        return [NULLID]
    return [view.cl.node(r) for r in reversed(revs)]


def known(view: ServedView, nodes: Iterable[Any]) -> list[bool]:
    """For each node: whether it is a served changeset (nullid counts, as in hg)."""
    out = []
    for n in nodes:
        rev = view.rev(n) if isinstance(n, bytes) else None
        out.append(rev is not None)
    return out


def branchmap(view: ServedView) -> dict[bytes, list[bytes]]:
    """Branch name -> head nodes (ascending revision, closed heads included)."""
    node = view.cl.node
    return {name: [node(r) for r in revs] for name, revs in view.branchmap.items()}


def branchtip(view: ServedView, branch: bytes) -> int | None:
    """The tip of a branch: its highest open head, else its highest (closed) head."""
    bm = view.branchmap
    if branch not in bm:
        return None
    return bm.branchtip(branch)


def listkeys(view: ServedView, namespace: bytes, publishing: bool) -> dict[bytes, bytes]:
    """A pushkey namespace as a server lists it (unknown namespaces give ``{}``)."""
    if namespace == b"bookmarks":
        return {name: node.hex().encode() for name, node in view.served_bookmarks().items()}
    if namespace == b"phases":
        return view.phases.listkeys(publishing, view.served)
    if namespace == b"namespaces":
        return {b"bookmarks": b"", b"namespaces": b"", b"phases": b""}
    return {}


def _dirstate_parent(repo: Repository) -> bytes:
    """The first parent recorded in ``.hg/dirstate`` (v1 or v2 docket), or nullid."""
    data = repo.vfs.tryread("dirstate")
    p1 = data[12:32] if data.startswith(b"dirstate-v2\n") else data[:20]
    return p1 if len(p1) == 20 else NULLID


def _filtered(symbol: bytes) -> UnknownRevisionError:
    return UnknownRevisionError(b"filtered revision '%s' (not in 'served' subset)" % symbol)


def _checked(view: ServedView, symbol: bytes, rev: int) -> bytes:
    if not view.is_served(rev):
        raise _filtered(symbol)
    return view.node(rev)


def _hexprefix(view: ServedView, prefix: bytes) -> int | None:
    """The served revision whose hex node starts with ``prefix`` (None if none);
    :class:`UnknownRevisionError` when several do."""
    if not prefix or len(prefix) > 40 or not set(prefix) <= _HEXDIGITS:
        return None
    want = prefix.lower().decode("ascii")
    node = view.cl.node
    allhex = b"".join(node(r) for r in range(len(view.dag))).hex()
    match = None
    pos = allhex.find(want)
    while pos >= 0:
        if pos % 40 == 0 and view.served[pos // 40]:
            if match is not None:
                raise UnknownRevisionError(b"00changelog.i@%s: ambiguous identifier" % prefix)
            match = pos // 40
            pos = allhex.find(want, pos + 40 - pos % 40)
        else:
            pos = allhex.find(want, pos + 40 - pos % 40 if pos % 40 else pos + 1)
    return match


def lookup(view: ServedView, key: bytes) -> bytes:
    """The node a symbol names, in Mercurial's order (``scmutil.revsymbol``): ``.``,
    ``tip``, ``null``; a revision number (negative counts from the end); a full hex
    node; a bookmark, a tag, a branch name (its tip); a unique hex prefix.

    Raises :class:`UnknownRevisionError` with 6.0's messages (``unknown revision 'x'``,
    ``filtered revision 'x' (not in 'served' subset)`` for secret changesets).
    """
    if key == b"null":
        return NULLID
    if key == b"tip":
        return view.node(view.tiprev())
    if key == b".":
        node = _dirstate_parent(view.repo)
        rev = view.anyrev(node)
        return _checked(view, key, rev) if rev is not None else NULLID
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        r = int(key)
        if b"%d" % r == key:
            n = len(view.dag)
            if r < 0:
                r += n
            if 0 <= r < n:
                return _checked(view, key, r)
    if len(key) == 40 and set(key) <= _HEXDIGITS:
        rev = view.anyrev(bytes.fromhex(key.decode("ascii")))
        if rev is not None:
            return _checked(view, key, rev)
    marknode = view.bookmarks.get(key)
    if marknode is not None:
        rev = view.anyrev(marknode)
        # The served view has no bookmarks on secret changesets: such a name falls
        # through to the other namespaces and ends as "unknown revision", as in 6.0.
        if rev is not None and view.is_served(rev):
            return view.node(rev)
    tagnode = view.tags.get(key)
    if tagnode is not None:
        return tagnode
    tip = branchtip(view, key)
    if tip is not None:
        return view.node(tip)
    rev = _hexprefix(view, key)
    if rev is not None:
        return view.node(rev)
    raise UnknownRevisionError(b"unknown revision '%s'" % key)


def bookmarks_by_node(view: ServedView) -> dict[bytes, list[bytes]]:
    """Served node -> its bookmark names, sorted."""
    out: dict[bytes, list[bytes]] = {}
    for name, node in view.served_bookmarks().items():
        out.setdefault(node, []).append(name)
    for names in out.values():
        names.sort()
    return out


def phase_name(view: ServedView, rev: int, publishing: bool) -> bytes:
    """The phase a server reports: ``public`` for everything on a publishing server
    (as 6.0 does, wire spec §8.3), else the stored phase."""
    if publishing:
        return b"public"
    return phasemod.PHASE_NAMES[view.phases.phase(rev)].encode()


# ---------------------------------------------------------------------------------------
# pushkey


def _isdivergent(name: bytes) -> bool:
    return b"@" in name and not name.endswith(b"@")


@contextlib.contextmanager
def _locked(repo: Repository, wlock: bool) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        if wlock:
            stack.enter_context(repo.wlock())
        stack.enter_context(repo.lock())
        yield


def pushkey(repo: Repository, namespace: bytes, key: bytes, old: bytes, new: bytes) -> bool:
    """Apply one pushkey update as Mercurial does, under the locks and a transaction.

    ``bookmarks``: succeeds when the current value (hex, ``b""`` for none) is ``old``
    or already ``new``; ``new`` must be a served changeset's hex node (``b""``
    deletes). ``phases``: key is a hex node; moves it from phase ``old`` to the lower
    phase ``new`` (True as well when it is already ``new``). Unknown namespaces, and
    keys or values that do not parse, give False.
    """
    if namespace == b"bookmarks":
        return _pushbookmark(repo, key, old, new)
    if namespace == b"phases":
        return _pushphase(repo, key, old, new)
    return False


def _pushbookmark(repo: Repository, key: bytes, old: bytes, new: bytes) -> bool:
    if _isdivergent(key):
        return False
    marks0 = bookmod.Bookmarks(repo)
    with _locked(repo, not marks0.in_store):
        repo.invalidate()
        view = served(repo)
        marks = view.bookmarks
        current = marks.get(key)
        existing = current.hex().encode() if current is not None else b""
        if existing != old and existing != new:
            return False
        if new == b"":
            if current is None:
                return True
            marks.delete(key)
        else:
            if len(new) != 40 or not set(new) <= _HEXDIGITS:
                return False
            node = bytes.fromhex(new.decode("ascii"))
            if view.rev(node) is None or node == NULLID:
                return False
            try:
                marks.set(key, node)
            except HgwireError:
                return False
        if not marks.dirty:
            return True
        with repo.transaction(b"bookmarks") as tr:
            marks.write(tr)
        return True


def _pushphase(repo: Repository, key: bytes, old: bytes, new: bytes) -> bool:
    try:
        node = bytes.fromhex(key.decode("ascii"))
        oldphase, newphase = abs(int(old)), abs(int(new))
    except (ValueError, UnicodeDecodeError):
        return False
    if len(node) != 20 or newphase not in phasemod.PHASE_NAMES:
        return False
    with _locked(repo, False):
        repo.invalidate()
        cl = repo.changelog
        try:
            rev = cl.rev(node)
        except LookupNodeError:
            return False
        if rev < 0:
            return False
        pc = phasemod.PhaseCache.load(repo)
        current = pc.phase(rev)
        if current == oldphase and newphase < oldphase:
            with repo.transaction(b"pushkey-phase") as tr:
                pc.advance_boundary(newphase, [rev])
                pc.write(tr, repo.svfs)
            return True
        return current == newphase
