"""Changegroups cg1 ``01``, cg2 ``02`` and cg3 ``03`` (spec storage §8, §11).

A changegroup is a stream of length-prefixed chunks: the changelog group, the root
manifest group, (cg3) the tree-manifest groups, then one group per file. Each revision is
a delta header (§8.3) plus a binary delta against a base (§8.4).

This module has three layers:

* framing and headers (:func:`chunkheader`, :func:`getchunk`, :func:`deltaheader`);
* :class:`CgUnpacker`, which streams a changegroup as :class:`DeltaGroup` records holding
  :class:`~hgwire.repo.revlog.RevisionDelta` items without reading the whole stream, and
  :func:`packgroups`, which frames such records back into chunks;
* repository-driven generation (:func:`makechangegroup`) and application
  (:func:`apply`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from hgwire.errors import AbortError, BundleError, HgwireError, LookupNodeError
from hgwire.repo import dagops, mdiff
from hgwire.repo import phases as phasesmod
from hgwire.repo.manifest import manifest_lines
from hgwire.repo.revlog import RevisionDelta, Revlog

if TYPE_CHECKING:
    from hgwire.repo.localrepo import Repository
    from hgwire.repo.transaction import Transaction

NULLID = b"\0" * 20
NULLREV = -1

#: Changegroup versions hgwire reads and writes (§8.8).
SUPPORTED_VERSIONS: tuple[bytes, ...] = (b"01", b"02", b"03")

_CHUNK_LENGTH = struct.Struct(">l")
_HEADERS: dict[bytes, struct.Struct] = {
    b"01": struct.Struct(">20s20s20s20s"),
    b"02": struct.Struct(">20s20s20s20s20s"),
    b"03": struct.Struct(">20s20s20s20s20sH"),
}

#: How long a single chunk may be; larger lengths are refused as corrupt input.
MAX_CHUNK = 1 << 30


class Readable(Protocol):
    """A binary stream: ``read(n)`` returns at most ``n`` bytes, ``b''`` at the end."""

    def read(self, n: int = -1, /) -> bytes: ...


_READ_PIECE = 1 << 20


def readexactly(fh: Readable, n: int) -> bytes:
    """Exactly ``n`` bytes from ``fh``, or :class:`BundleError` if the stream ends first.

    Large reads go in 1 MiB pieces, so a bogus length claimed by a truncated stream does
    not allocate its full size up front.
    """
    data = fh.read(min(n, _READ_PIECE))
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = fh.read(min(n - got, _READ_PIECE))
        if not more:
            raise BundleError(f"stream ended unexpectedly (got {got} bytes, expected {n})")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


# ---------------------------------------------------------------------------------------
# Framing (§8.1)


def chunkheader(length: int) -> bytes:
    """The 4-byte prefix of a chunk carrying ``length`` payload bytes."""
    return _CHUNK_LENGTH.pack(length + 4)


def closechunk() -> bytes:
    """The empty chunk that ends a group (or the changegroup)."""
    return _CHUNK_LENGTH.pack(0)


def chunk(payload: bytes) -> bytes:
    """``payload`` framed as one chunk."""
    return chunkheader(len(payload)) + payload


def getchunk(fh: Readable) -> bytes:
    """The payload of the next chunk; ``b''`` for the empty (terminating) chunk."""
    length = _CHUNK_LENGTH.unpack(readexactly(fh, 4))[0]
    if length <= 4:
        if length:
            raise BundleError(f"invalid chunk length {length}")
        return b""
    if length > MAX_CHUNK:
        raise BundleError(f"chunk length {length} exceeds the limit of {MAX_CHUNK}")
    return readexactly(fh, length - 4)


# ---------------------------------------------------------------------------------------
# Delta headers (§8.3)


def headersize(version: bytes) -> int:
    """Size of the delta header of changegroup ``version``."""
    return _headerstruct(version).size


def _headerstruct(version: bytes) -> struct.Struct:
    try:
        return _HEADERS[version]
    except KeyError:
        raise BundleError(f"unsupported changegroup version {version!r}") from None


def deltaheader(
    version: bytes,
    node: bytes,
    p1: bytes,
    p2: bytes,
    deltabase: bytes,
    linknode: bytes,
    flags: int = 0,
) -> bytes:
    """The delta header of one revision (``deltabase`` is implicit in cg1)."""
    s = _headerstruct(version)
    if version == b"01":
        return s.pack(node, p1, p2, linknode)
    if version == b"02":
        return s.pack(node, p1, p2, deltabase, linknode)
    return s.pack(node, p1, p2, deltabase, linknode, flags)


def parsedelta(version: bytes, payload: bytes, prevnode: bytes | None) -> RevisionDelta:
    """A delta chunk's payload as a :class:`RevisionDelta` (cg1 base resolved, §8.4)."""
    s = _headerstruct(version)
    if len(payload) < s.size:
        raise BundleError(
            f"changegroup chunk of {len(payload)} bytes is shorter than a cg{version[1:].decode()}"
            f" delta header ({s.size} bytes)"
        )
    fields = s.unpack_from(payload)
    flags = 0
    if version == b"01":
        node, p1, p2, linknode = fields
        deltabase = p1 if prevnode is None else prevnode
    elif version == b"02":
        node, p1, p2, deltabase, linknode = fields
    else:
        node, p1, p2, deltabase, linknode, flags = fields
    return RevisionDelta(
        node=node,
        p1=p1,
        p2=p2,
        linknode=linknode,
        deltabase=deltabase,
        delta=payload[s.size :],
        flags=flags,
    )


def deltachunk(version: bytes, d: RevisionDelta) -> bytes:
    """One framed delta chunk for ``d``."""
    header = deltaheader(version, d.node, d.p1, d.p2, d.deltabase, d.linknode, d.flags)
    return chunkheader(len(header) + len(d.delta)) + header + d.delta


# ---------------------------------------------------------------------------------------
# Streaming reader (§8.2)

GroupKind = Literal["changelog", "manifest", "tree", "file"]


@dataclass
class DeltaGroup:
    """One group of a changegroup: ``kind``, ``name`` (path or ``dir/``; ``b''`` for the
    changelog and root manifest) and its deltas, which must be read before the next group.
    """

    kind: GroupKind
    name: bytes
    deltas: Iterator[RevisionDelta]


class CgUnpacker:
    """Reads a changegroup of ``version`` from ``fh`` one chunk at a time (§8.2).

    Use :meth:`groups` (everything, in stream order) or the per-section methods
    :meth:`changelog`, :meth:`manifests`, :meth:`trees`, :meth:`files` in that order.
    Records hold one delta each; memory stays bounded by the largest chunk.
    """

    def __init__(self, fh: Readable, version: bytes = b"01") -> None:
        _headerstruct(version)
        self.fh = fh
        self.version = version
        self._section = 0  # 0 changelog, 1 manifest, 2 trees, 3 files, 4 done
        self._open: Iterator[RevisionDelta] | None = None

    def _deltas(self, what: str) -> Iterator[RevisionDelta]:
        prev: bytes | None = None
        count = 0
        while True:
            payload = getchunk(self.fh)
            if not payload:
                break
            d = parsedelta(self.version, payload, prev)
            prev = d.node
            count += 1
            yield d
        if not count and what:
            raise BundleError(f"received {what} group is empty")

    def _drain(self) -> None:
        if self._open is not None:
            for _ in self._open:
                pass
            self._open = None

    def _enter(self, section: int) -> None:
        self._drain()
        if self._section != section:
            names = ("changelog", "manifests", "trees", "files", "end")
            raise BundleError(
                f"changegroup read out of order: wanted {names[section]}, at {names[self._section]}"
            )

    def _group(self, what: str) -> Iterator[RevisionDelta]:
        it = self._deltas(what)
        self._open = it
        return it

    def changelog(self) -> Iterator[RevisionDelta]:
        """The changelog group's deltas."""
        self._enter(0)
        self._section = 1
        return self._group("")

    def manifests(self) -> Iterator[RevisionDelta]:
        """The root manifest group's deltas."""
        self._enter(1)
        self._section = 2 if self.version == b"03" else 3
        return self._group("")

    def _named(self, what: str) -> Iterator[tuple[bytes, Iterator[RevisionDelta]]]:
        while True:
            self._drain()
            name = getchunk(self.fh)
            if not name:
                return
            yield name, self._group(f"{what} {name.decode('utf-8', 'replace')}")

    def trees(self) -> Iterator[tuple[bytes, Iterator[RevisionDelta]]]:
        """(cg3) ``(directory, deltas)`` per tree-manifest group; empty for cg1/cg2."""
        if self.version != b"03":
            return
        self._enter(2)
        yield from self._named("tree manifest")
        self._section = 3

    def files(self) -> Iterator[tuple[bytes, Iterator[RevisionDelta]]]:
        """``(path, deltas)`` per file group."""
        self._enter(3)
        yield from self._named("file revlog")
        self._drain()
        self._section = 4

    @property
    def done(self) -> bool:
        """Whether the whole changegroup (with its final empty chunk) has been read."""
        return self._section == 4

    def groups(self) -> Iterator[DeltaGroup]:
        """Every group in stream order; unread deltas are skipped when moving on."""
        yield DeltaGroup("changelog", b"", self.changelog())
        yield DeltaGroup("manifest", b"", self.manifests())
        for name, deltas in self.trees():
            yield DeltaGroup("tree", name, deltas)
        for name, deltas in self.files():
            yield DeltaGroup("file", name, deltas)

    def consume(self) -> None:
        """Read (and discard) the rest of the changegroup."""
        for g in self.groups() if self._section == 0 else self._rest():
            for _ in g.deltas:
                pass

    def _rest(self) -> Iterator[DeltaGroup]:
        if self._section == 1:
            yield DeltaGroup("manifest", b"", self.manifests())
        if self._section == 2:
            for name, deltas in self.trees():
                yield DeltaGroup("tree", name, deltas)
        if self._section == 3:
            for name, deltas in self.files():
                yield DeltaGroup("file", name, deltas)
        self._drain()


# ---------------------------------------------------------------------------------------
# Framing records back into a stream


def _packdeltas(
    version: bytes, deltas: Iterable[RevisionDelta], what: str, nonempty: bool
) -> Iterator[bytes]:
    prev: bytes | None = None
    count = 0
    for d in deltas:
        if version == b"01":
            expected = d.p1 if prev is None else prev
            if d.deltabase != expected:
                raise BundleError(
                    f"cg1 {what}: delta of {d.node.hex()} must be against"
                    f" {expected.hex()}, not {d.deltabase.hex()}"
                )
        if d.flags and version != b"03":
            raise BundleError(f"{what}: revision flags need changegroup 03")
        prev = d.node
        count += 1
        yield deltachunk(version, d)
    if nonempty and not count:
        raise BundleError(f"{what}: a named group cannot be empty")
    yield closechunk()


def packgroups(
    version: bytes,
    changelog: Iterable[RevisionDelta],
    manifests: Iterable[RevisionDelta],
    files: Iterable[tuple[bytes, Iterable[RevisionDelta]]],
    trees: Iterable[tuple[bytes, Iterable[RevisionDelta]]] = (),
) -> Iterator[bytes]:
    """Frame delta records as a changegroup of ``version`` (chunks, lazily).

    The iterables are consumed in stream order, so they may be generators. cg1 requires
    each delta to be against p1 (first of a group) or the previous node (§8.4).
    """
    _headerstruct(version)
    yield from _packdeltas(version, changelog, "changelog", False)
    yield from _packdeltas(version, manifests, "manifest", False)
    if version == b"03":
        for name, deltas in trees:
            yield chunk(name)
            yield from _packdeltas(version, deltas, f"tree {name!r}", True)
        yield closechunk()
    else:
        for _name, _deltas in trees:
            raise BundleError("tree manifests need changegroup 03")
    for name, deltas in files:
        yield chunk(name)
        yield from _packdeltas(version, deltas, f"file {name!r}", True)
    yield closechunk()


def writechunks(chunks: Iterable[bytes], write: Callable[[bytes], object]) -> int:
    """Write every chunk with ``write``; returns the number of bytes written."""
    total = 0
    for c in chunks:
        write(c)
        total += len(c)
    return total


# ---------------------------------------------------------------------------------------
# Generation from a repository (§8.4, §8.5)


@dataclass
class Outgoing:
    """What a peer knowing ``common`` lacks to have ``heads``: ``missing`` changeset revs
    (ascending, a topological order) and ``commonrevs`` (``::common`` incl. nullrev)."""

    missing: list[int]
    commonrevs: set[int]
    heads: list[bytes]

    @property
    def nbchanges(self) -> int:
        return len(self.missing)


def findoutgoing(
    repo: Repository,
    common: Iterable[bytes],
    heads: Iterable[bytes] | None = None,
    *,
    served: bytearray | None = None,
    dag: dagops.DAG | None = None,
) -> Outgoing:
    """``missing = ::heads - ::common`` (spec §9.7). Unknown ``common`` nodes are ignored;
    unknown ``heads`` (or heads outside ``served``, one byte per rev) raise
    :class:`AbortError`. ``heads`` defaults (``None``) to the served heads. ``dag`` is the
    changelog's, when the caller has it already."""
    cl = repo.changelog
    if dag is None:
        dag = dagops.DAG.from_storage(cl)
    commonrevs = []
    for n in common:
        if n == NULLID:
            continue
        try:
            commonrevs.append(cl.rev(n))
        except LookupNodeError:
            continue
    if served is None:
        served = phasesmod.PhaseCache.load(repo, dag).servable()
    if heads is None:
        headrevs = dagops.headrevs_filtered(dag, served)
    else:
        headrevs = []
        for n in heads:
            try:
                r = cl.rev(n)
            except LookupNodeError:
                raise AbortError(f"unknown revision {n.hex()}") from None
            if r >= 0 and not served[r]:
                raise AbortError(f"unknown revision {n.hex()} (not served)")
            headrevs.append(r)
    has, missing = dagops.findcommonmissing(dag, commonrevs, headrevs)
    return Outgoing(missing, has, [cl.node(r) for r in headrevs if r >= 0])


def _fulltext(text: bytes) -> bytes:
    return mdiff.trivialdiffheader(len(text)) + text


def _revisiondeltas(
    rl: Revlog,
    revs: Sequence[int],
    version: bytes,
    linknode: Callable[[int], bytes],
    known: Callable[[int], bool],
) -> Iterator[RevisionDelta]:
    """Deltas for ``revs`` (ascending) of ``rl``: cg1 against p1/previous; cg2/cg3 the
    stored delta when its base was sent earlier or is ``known`` to the receiver, else
    against p1 or the previous revision sent when available, else a full text."""
    sent: set[int] = set()
    prev = NULLREV
    for i, rev in enumerate(revs):
        p1r, p2r = rl.parentrevs(rev)
        flags = rl.flags(rev)
        if flags and version != b"03":
            raise AbortError(
                f"{rl.indexfile}: revision {rev} has flags {flags:#x}; changegroup"
                f" {version.decode()} cannot carry them"
            )
        if version == b"01":
            base = p1r if i == 0 else prev
            delta = rl.revdiff(base, rev)
        else:
            stored, sdelta = rl.storeddelta(rev)

            def usable(r: int) -> bool:
                return r == NULLREV or r in sent or known(r)

            if usable(stored) and not (flags & _CENSORED):
                base, delta = stored, sdelta
            elif p1r != NULLREV and usable(p1r):
                base, delta = p1r, rl.revdiff(p1r, rev)
            elif prev != NULLREV:
                base, delta = prev, rl.revdiff(prev, rev)
            else:
                base, delta = NULLREV, _fulltext(rl.rawdata(rev))
        yield RevisionDelta(
            node=rl.node(rev),
            p1=rl.node(p1r),
            p2=rl.node(p2r),
            linknode=linknode(rev),
            deltabase=rl.node(base),
            delta=delta,
            flags=flags if version == b"03" else 0,
        )
        sent.add(rev)
        prev = rev


_CENSORED = 1 << 15


def _manifestlines(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """``(path, filenode)`` per manifest line of ``data``; None if a line is malformed."""
    lines = manifest_lines(data)
    if lines is None:
        return None
    try:
        return [(path, bytes.fromhex(node.decode("ascii"))) for path, node in lines]
    except (ValueError, UnicodeDecodeError):
        return None


def _manifestchanges(ml: Revlog, mrev: int, p1mrev: int) -> list[tuple[bytes, bytes]]:
    """``(path, filenode)`` of every line of manifest ``mrev`` that differs from manifest
    ``p1mrev``, read from a line-aligned delta (§3.3); all lines of the full text when
    there is no parent or the delta does not parse as whole lines."""
    if p1mrev != NULLREV:
        base, delta = ml.storeddelta(mrev)
        if base != p1mrev:
            delta = ml.revdiff(p1mrev, mrev)
        lines = _manifestlines(b"".join(h[2] for h in mdiff.hunks(delta)))
        if lines is not None:
            return lines
    lines = _manifestlines(ml.rawdata(mrev))
    if lines is None:
        raise AbortError(f"{ml.indexfile}: bad manifest line in revision {mrev}")
    return lines


_BATCH = 512


def _allentries(
    rl: Revlog, version: bytes, ncl: int
) -> list[tuple[int, int, int, int, int, int, int, bytes]] | None:
    """The index entries of ``rl`` when every revision can be sent with its stored delta
    as is (linkrevs below ``ncl``, no flags, cg2/cg3); ``None`` otherwise."""
    if version == b"01":
        return None
    entries = [rl._entry(r) for r in range(len(rl))]
    for e in entries:
        if e[0] & 0xFFFF or not 0 <= e[4] < ncl:
            return None
    return entries


def _allchunks(
    rl: Revlog,
    version: bytes,
    entries: list[tuple[int, int, int, int, int, int, int, bytes]],
    linknodes: Sequence[bytes],
) -> Iterator[bytes]:
    """Framed delta chunks of every revision of ``rl`` in order, each with its stored
    delta (its base was sent before it), linknode ``linknodes[linkrev]``."""
    n = len(entries)
    gd = rl.generaldelta
    nodes = [e[7] for e in entries]
    nodes.append(NULLID)  # index -1 (nullrev)
    decompress = rl._decompress
    trivial = mdiff.trivialdiffheader
    s = _headerstruct(version)
    pack = s.pack
    framelen = _CHUNK_LENGTH.pack
    extra = s.size + 4
    v3 = version == b"03"
    for lo in range(0, n, _BATCH):
        revs = list(range(lo, min(n, lo + _BATCH)))
        for rev, raw in zip(revs, rl._rawchunks(revs), strict=True):
            e = entries[rev]
            data = decompress(raw, rev)
            base = e[3]
            if base == rev:
                head = trivial(len(data))
                size = len(head) + len(data)
                basenode = NULLID
            else:
                head = b""
                size = len(data)
                basenode = nodes[base if gd else rev - 1]
            if v3:
                header = pack(e[7], nodes[e[5]], nodes[e[6]], basenode, linknodes[e[4]], 0)
            else:
                header = pack(e[7], nodes[e[5]], nodes[e[6]], basenode, linknodes[e[4]])
            yield b"".join((framelen(size + extra), header, head, data))


def _isfullclone(repo: Repository, outgoing: Outgoing) -> bool:
    """Whether ``outgoing`` is every changeset of ``repo`` with nothing common."""
    missing = outgoing.missing
    n = len(repo.changelog)
    return (
        n > 0
        and b"treemanifest" not in repo.requirements
        and len(missing) == n
        and missing[0] == 0
        and missing[-1] == n - 1
        and not any(r != NULLREV for r in outgoing.commonrevs)
    )


def _storefilepaths(repo: Repository) -> list[bytes]:
    """Paths of every filelog in the store (fncache, else the store walk), sorted."""
    fncache = getattr(repo.svfs, "fncache", None)
    names: Iterable[bytes]
    if fncache is not None:
        names = list(fncache)
    else:
        names = [name for name, _enc, _size in repo.store_files()]
    return sorted({n[5:-2] for n in names if n.startswith(b"data/") and n.endswith(b".i")})


def _fullchangegroup(repo: Repository, version: bytes) -> Iterator[bytes]:
    """Every revision of every revlog whose linkrev is a changeset (a full clone): the
    file list from the store and linknodes from linkrevs, reading no manifest
    (Mercurial's "fast path by linkrev"). Same records as :func:`packgroups` frames."""
    cl = repo.changelog
    ml = repo.manifestlog
    ncl = len(cl)
    clnodes = [cl.node(r) for r in range(ncl)]

    def group(rl: Revlog, name: bytes | None) -> Iterator[bytes]:
        entries = _allentries(rl, version, ncl)
        if entries is not None:
            if not entries and name is not None:
                return
            if name is not None:
                yield chunk(name)
            yield from _allchunks(rl, version, entries, clnodes)
            yield closechunk()
            return
        revs = [r for r in range(len(rl)) if 0 <= rl.linkrev(r) < ncl]
        if not revs and name is not None:
            return
        if name is not None:
            yield chunk(name)
        yield from _packdeltas(
            version,
            _revisiondeltas(
                rl, revs, version, lambda r: clnodes[rl.linkrev(r)], lambda r: r == NULLREV
            ),
            rl.indexfile,
            False,
        )

    yield from group(cl, None)
    yield from group(ml, None)
    if version == b"03":
        yield closechunk()  # no tree manifests
    for path in _storefilepaths(repo):
        yield from group(repo.file(path), path)
    yield closechunk()


def makechangegroup(
    repo: Repository,
    outgoing: Outgoing,
    version: bytes = b"02",
    *,
    fastpath: bool = True,
) -> Iterator[bytes]:
    """The changegroup of ``outgoing.missing`` as chunks (spec §8.4, §8.5), streamed.

    Changesets in revision order, then the manifests they reference and the file
    revisions those introduce, minus what the receiver has (linkrev in
    ``outgoing.commonrevs``); linknode = the first outgoing changeset referencing it.
    A full clone (every changeset, nothing common) takes the linkrev fast path unless
    ``fastpath`` is false: every revision of every revlog, linknode from its linkrev.
    """
    _headerstruct(version)
    if fastpath and _isfullclone(repo, outgoing):
        yield from _fullchangegroup(repo, version)
        return
    cl = repo.changelog
    ml = repo.manifestlog
    csets = outgoing.missing
    commonrevs = outgoing.commonrevs
    mfs: dict[bytes, bytes] = {}  # manifest node -> linknode

    def clnode(rev: int) -> bytes:
        return cl.node(rev)

    mnodes: dict[int, bytes] = {}  # changeset rev -> manifest node

    def manifestof(crev: int) -> bytes:
        mnode = mnodes.get(crev)
        if mnode is None:
            mnode = mnodes[crev] = _manifestnode(cl.rawdata(crev))
        return mnode

    def cldeltas() -> Iterator[RevisionDelta]:
        for crev, d in zip(
            csets,
            _revisiondeltas(cl, csets, version, clnode, lambda r: r in commonrevs),
            strict=True,
        ):
            mnode = manifestof(crev)
            if mnode != NULLID:
                mfs.setdefault(mnode, d.node)
            yield d

    fnodes: dict[bytes, dict[bytes, bytes]] = {}  # path -> filenode -> linknode

    def mfdeltas() -> Iterator[RevisionDelta]:
        mrevs = sorted(r for r in (ml.rev(n) for n in mfs) if ml.linkrev(r) not in commonrevs)
        # file revisions: lines changed against the p1 changeset's manifest
        for crev in csets:
            mnode = mnodes[crev]
            if mnode == NULLID:
                continue
            p1 = cl.parentrevs(crev)[0]
            p1mnode = manifestof(p1) if p1 != NULLREV else NULLID
            p1m = ml.rev(p1mnode) if p1mnode != NULLID else NULLREV
            mrev = ml.rev(mnode)
            if p1m == mrev:
                continue
            linknode = cl.node(crev)
            for path, fnode in _manifestchanges(ml, mrev, p1m):
                fnodes.setdefault(path, {}).setdefault(fnode, linknode)
        yield from _revisiondeltas(
            ml,
            mrevs,
            version,
            lambda r: mfs[ml.node(r)],
            lambda r: ml.linkrev(r) in commonrevs,
        )

    def filegroups() -> Iterator[tuple[bytes, Iterator[RevisionDelta]]]:
        for path in sorted(fnodes):
            fl = repo.file(path)
            links = fnodes[path]
            revs = []
            for fnode in links:
                try:
                    r = fl.rev(fnode)
                except LookupNodeError:
                    raise AbortError(
                        f"data/{path.decode('utf-8', 'replace')}: missing file revision"
                        f" {fnode.hex()}"
                    ) from None
                if fl.linkrev(r) not in commonrevs:
                    revs.append(r)
            if not revs:
                continue
            revs.sort()
            yield (
                path,
                _revisiondeltas(
                    fl,
                    revs,
                    version,
                    lambda r, fl=fl, links=links: links[fl.node(r)],  # type: ignore[misc]
                    lambda r, fl=fl: fl.linkrev(r) in commonrevs,  # type: ignore[misc]
                ),
            )

    yield from packgroups(version, cldeltas(), mfdeltas(), filegroups())


def _manifestnode(cltext: bytes) -> bytes:
    """The manifest node named on the first line of a changelog text."""
    if not cltext:
        return NULLID
    try:
        node = bytes.fromhex(cltext[:40].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise AbortError("bad manifest node in changelog entry") from None
    if len(node) != 20:
        raise AbortError("bad manifest node in changelog entry")
    return node


def outgoingversions(requirements: Iterable[bytes]) -> tuple[bytes, ...]:
    """Changegroup versions hgwire can produce for a repository of ``requirements``."""
    if b"treemanifest" in set(requirements):
        return (b"03",)
    return SUPPORTED_VERSIONS


# ---------------------------------------------------------------------------------------
# Application to a repository (§8.6)


@dataclass
class ApplyResult:
    """What :func:`apply` did: ``added`` changeset nodes (new ones, in order),
    ``ret`` the head-count result (§8.6), revision and file counts for the summary."""

    added: list[bytes]
    ret: int
    changesets: int
    revisions: int
    files: int
    deltaheads: int
    bundlerevs: list[int]

    def summary(self) -> bytes:
        """Mercurial's one-line report of a changegroup application."""
        heads = b""
        if self.deltaheads > 0:
            heads = b" (+%d heads)" % self.deltaheads
        elif self.deltaheads < 0:
            heads = b" (%d heads)" % self.deltaheads
        return b"added %d changesets with %d changes to %d files%s\n" % (
            self.changesets,
            self.revisions,
            self.files,
            heads,
        )


def _openheads(repo: Repository) -> set[bytes]:
    cl = repo.changelog
    return {cl.node(r) for r in cl.headrevs()} if len(cl) else {NULLID}


def apply(
    repo: Repository,
    unpacker: CgUnpacker,
    *,
    tr: Transaction | None = None,
    targetphase: int = phasesmod.DRAFT,
    phaseall: int | None = None,
    expectedtotal: int | None = None,
) -> ApplyResult:
    """Add a changegroup to ``repo`` (spec §8.6): changelog, manifests, files, then phases.

    Runs inside ``tr`` or its own transaction; on any error nothing is kept. New
    changesets get at least ``targetphase`` (draft on pull); ``phaseall`` then moves
    every changeset of the bundle down to that phase (a push: public into a publishing
    repository, draft into a non-publishing one, as Mercurial does).
    Tree manifests are refused (flat-manifest storage only).
    """
    if tr is None:
        with repo.transaction(b"unbundle") as own:
            return apply(
                repo,
                unpacker,
                tr=own,
                targetphase=targetphase,
                phaseall=phaseall,
                expectedtotal=expectedtotal,
            )
    try:
        return _apply(repo, unpacker, tr, targetphase, phaseall, expectedtotal)
    except (HgwireError, ValueError) as exc:
        if isinstance(exc, HgwireError) and not isinstance(exc, LookupNodeError):
            raise
        raise AbortError(f"cannot apply changegroup: {exc}") from exc


def _apply(
    repo: Repository,
    unpacker: CgUnpacker,
    tr: Transaction,
    targetphase: int,
    phaseall: int | None,
    expectedtotal: int | None,
) -> ApplyResult:
    cl = repo.changelog
    oldheads = _openheads(repo)
    oldlen = len(cl)

    def cllink(_node: bytes) -> int:
        return len(cl)

    def group(
        what: str, it: Iterator[RevisionDelta], rl: Revlog, link: Callable[[bytes], int]
    ) -> list[int]:
        try:
            return rl.addgroup(it, link, tr)
        except LookupNodeError as exc:
            key = exc.key.hex() if isinstance(exc.key, bytes) else str(exc.key)
            raise AbortError(f"{what}: unknown parent or delta base {key}") from exc

    clrevs = group("changelog", unpacker.changelog(), cl, cllink)
    # ``expectedtotal`` (the ``nbchanges`` parameter) only sizes progress in Mercurial;
    # a wrong value is not an error there either.

    def linkrev(node: bytes) -> int:
        try:
            return cl.rev(node)
        except LookupNodeError:
            raise AbortError(f"unknown linknode {node.hex()}") from None

    group("manifests", unpacker.manifests(), repo.manifestlog, linkrev)
    for name, _deltas in unpacker.trees():
        raise AbortError(
            f"bundle contains tree manifests ({name.decode('utf-8', 'replace')}),"
            " which this repository does not support"
        )
    nfiles = nrevs = 0
    for path, deltas in unpacker.files():
        fl = repo.file(path)
        before = len(fl)
        group(f"data/{path.decode('utf-8', 'replace')}", deltas, fl, linkrev)
        added = len(fl) - before
        nfiles += 1
        nrevs += added
    added_revs = list(range(oldlen, len(cl)))
    # phases (§8.6 step 4): new changesets get at least ``targetphase``; ``phaseall``
    # then lowers every changeset of the bundle (duplicates included) to that phase
    if clrevs:
        pc = phasesmod.PhaseCache.load(repo)
        if targetphase != phasesmod.PUBLIC:
            pc.retract_boundary(targetphase, added_revs)
        if phaseall is not None:
            pc.advance_boundary(phaseall, clrevs)
        pc.write(tr, repo.svfs)
    newheads = {cl.node(r) for r in cl.headrevs()} if len(cl) else {NULLID}
    deltaheads = len(newheads) - len(oldheads)
    for h in newheads - oldheads:
        if cl.branchinfo(cl.rev(h))[1]:
            deltaheads -= 1
    ret = deltaheads - 1 if deltaheads < 0 else deltaheads + 1
    return ApplyResult(
        added=[cl.node(r) for r in added_revs],
        ret=ret,
        changesets=len(added_revs),
        revisions=nrevs,
        files=nfiles,
        deltaheads=deltaheads,
        bundlerevs=clrevs,
    )


__all__: Sequence[str] = (
    "MAX_CHUNK",
    "NULLID",
    "SUPPORTED_VERSIONS",
    "ApplyResult",
    "CgUnpacker",
    "DeltaGroup",
    "Outgoing",
    "Readable",
    "RevisionDelta",
    "apply",
    "chunk",
    "chunkheader",
    "closechunk",
    "deltachunk",
    "deltaheader",
    "findoutgoing",
    "getchunk",
    "headersize",
    "makechangegroup",
    "outgoingversions",
    "packgroups",
    "parsedelta",
    "readexactly",
)
