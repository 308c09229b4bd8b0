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

from hgwire.errors import BundleError
from hgwire.repo.revlog import RevisionDelta

if TYPE_CHECKING:
    pass

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


def readexactly(fh: Readable, n: int) -> bytes:
    """Exactly ``n`` bytes from ``fh``, or :class:`BundleError` if the stream ends first."""
    data = fh.read(n)
    if len(data) < n:
        parts = [data]
        got = len(data)
        while got < n:
            more = fh.read(n - got)
            if not more:
                raise BundleError(f"stream ended unexpectedly (got {got} bytes, expected {n})")
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
    return data


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


__all__: Sequence[str] = (
    "MAX_CHUNK",
    "NULLID",
    "SUPPORTED_VERSIONS",
    "CgUnpacker",
    "DeltaGroup",
    "Readable",
    "RevisionDelta",
    "chunk",
    "chunkheader",
    "closechunk",
    "deltachunk",
    "deltaheader",
    "getchunk",
    "headersize",
    "packgroups",
    "parsedelta",
    "readexactly",
)
