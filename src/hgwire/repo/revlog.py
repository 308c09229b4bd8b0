"""Revlog version 1: reading and appending Mercurial's revision logs (spec §2, §3).

A revlog is an index (``<radix>.i``, 64-byte entries, §2.2) plus revision chunks, either
interleaved in the index ("inline") or in ``<radix>.d``. Each chunk is a full text or a
delta against an earlier revision (§2.6), compressed per §2.4.

Reading keeps the index as one ``bytearray`` of entries (the revlog header in entry 0 is
zeroed) and unpacks entries on demand; bulk columns (parents, linkrevs...) are converted
blockwise with ``array`` strided slices at C speed, so a million-revision index costs about
its own size in memory. Node lookups scan the index at C speed until enough of them justify
building the node→rev dict. Delta chains are resolved by
:func:`hgwire.repo.mdiff.patches` (folded, or applied one by one when a cost model says
memcpy is cheaper), starting from the nearest of a few cached verified texts, so sequential
reads apply one delta each. Every damaged-input path raises ``RepositoryError`` naming the
file and offset.

Writing follows §3: full text when the revlog stores no deltas (the changelog), else the
best delta among the cached (received) delta base, the parents, then (sparse revlogs)
the snapshots of the parents' chains, under Mercurial's bounds (chain length 1000, chain
size ≤ 2× text, delta ≤ text, base not smaller than text/500, intermediate snapshots
shrinking with depth); chunks are compressed with the configured engine only when that
is smaller (§2.4). Inline revlogs are split at 128 KiB of data (§3.4).

Transactions (§3.6, §7.2): before the first append to a file in a transaction the revlog
calls ``tr.add(path, size)``; rollback truncates to it (deleting the file for 0). The
inline→split conversion rewrites the index in place, so it is done only when rollback
stays exact without mixing the two mechanisms on one file: either the index did not exist
before the transaction (``tr.add(index, 0)``: rollback deletes both files), or nothing was
appended to it yet in this transaction (``tr.addbackup(index)`` first: rollback restores
the inline file whole). Otherwise the revlog stays inline past 128 KiB until its first
write in a later transaction — Mercurial reads such revlogs and splits them itself (§3.4).
Which case applies is asked of the transaction (``tr.findoffset``), never remembered per
object: another object for the same file may have appended in this transaction.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

from hgwire.errors import LookupNodeError, RepositoryError
from hgwire.repo import mdiff
from hgwire.repo.vfs import VFS

nullrev = -1
nullid = b"\0" * 20
wdirid = b"\xff" * 20
_RESERVED_NODES = frozenset({nullid, wdirid, b"\x21" * 20, b"\x2b" * 20})

INDEX_ENTRY = struct.Struct(">Qiiiiii20s12x")
ENTRY_SIZE = 64
_HEADER = struct.Struct(">I")

REVLOGV1 = 1
FLAG_INLINE_DATA = 1 << 16
FLAG_GENERALDELTA = 1 << 17
_KNOWN_HEADER_FLAGS = FLAG_INLINE_DATA | FLAG_GENERALDELTA

REVIDX_ISCENSORED = 1 << 15
REVIDX_ELLIPSIS = 1 << 14
REVIDX_EXTSTORED = 1 << 13
REVIDX_HASCOPIESINFO = 1 << 12
REVIDX_KNOWN_FLAGS = REVIDX_ISCENSORED | REVIDX_ELLIPSIS | REVIDX_EXTSTORED | REVIDX_HASCOPIESINFO
# flags whose rawtext does not hash to the node, or must not take part in deltas (§2.8)
REVIDX_NOHASH_FLAGS = REVIDX_ISCENSORED | REVIDX_ELLIPSIS | REVIDX_EXTSTORED
REVIDX_RAWTEXT_CHANGING_FLAGS = REVIDX_ISCENSORED | REVIDX_EXTSTORED

MAX_INLINE = 131072  # revlog._maxinline (§3.4)
MAX_CHAIN_LEN = 1000  # sparse-revlog default maxchainlen (§3.2)
LIMIT_DELTA2TEXT = 2
LIMIT_BASE2TEXT = 500
_READ_WINDOW = 65536
_CACHE_ENTRIES = 4
_GROUP_GAP = 262144  # read chunks of one chain in one go when gaps are below this


class Transaction(Protocol):
    """What a revlog needs from a transaction (implemented in ``transaction.py``).

    ``add(path, offset)``: called with a file's size before the first append to it in the
    transaction; rollback truncates the file back to ``offset`` (removing it for 0).
    ``addbackup(path)``: called before a file is rewritten in place; rollback restores the
    file as it was at this call. A revlog never calls both for one file in one
    transaction, so the order in which rollback applies them does not matter.
    ``findoffset(path)``: the offset ``add`` recorded for ``path`` in this transaction
    (by any writer), None if it was not journaled by size. ``hasbackup(path)``: whether
    ``addbackup`` was called for ``path`` in this transaction.
    """

    def add(self, path: str, offset: int) -> None: ...

    def addbackup(self, path: str) -> None: ...

    def findoffset(self, path: str) -> int | None: ...

    def hasbackup(self, path: str) -> bool: ...


@dataclass(frozen=True)
class RevisionDelta:
    """One revision as carried by a changegroup: a delta against ``deltabase`` (a node)."""

    node: bytes
    p1: bytes
    p2: bytes
    linknode: bytes
    deltabase: bytes
    delta: bytes
    flags: int = 0


def hashrevision(text: bytes | bytearray | memoryview, p1: bytes, p2: bytes) -> bytes:
    """The node of ``text`` with parents ``p1``/``p2`` (§2.7)."""
    a, b = (p1, p2) if p1 < p2 else (p2, p1)
    h = hashlib.sha1(a)
    h.update(b)
    h.update(text)
    return h.digest()


_COLUMNS = {"length": 2, "rawsize": 3, "base": 4, "linkrev": 5, "p1": 6, "p2": 7}
_COLUMN_BLOCK = 65536  # entries converted at a time (4 MiB): bounded extra memory


def _columns(index: bytearray, count: int, names: list[str]) -> dict[str, array[int]]:
    """The int32 columns ``names`` of ``count`` entries, in one blockwise pass (C speed).

    Each block of entries is viewed as big-endian int32 words (16 per entry), byteswapped
    once, and every column is taken with a strided slice of that array.
    """
    cols = {name: array("i") for name in names}
    view = memoryview(index)
    swap = sys.byteorder == "little"
    for start in range(0, count, _COLUMN_BLOCK):
        words = array("i")
        words.frombytes(view[start * ENTRY_SIZE : min(count, start + _COLUMN_BLOCK) * ENTRY_SIZE])
        if swap:
            words.byteswap()
        for name in names:
            cols[name].extend(words[_COLUMNS[name] :: 16])
    return cols


_SEQ: dict[str, bytes] = {}  # byte order -> the longest sequence built so far


def _counting(n: int, byteorder: str) -> bytearray:
    """int32 bytes of ``0, 1, ..., n-1`` in ``byteorder``, built byte lane by byte lane.

    Lane ``k`` (bits ``8k..8k+7``) is runs of ``256**k`` equal bytes cycling through 0..255;
    each lane is written with one strided slice assignment, so no Python loop runs per value.
    """
    buf = bytearray(4 * n)
    lanes = range(4) if byteorder == "little" else range(3, -1, -1)
    for k, pos in enumerate(lanes):
        run = 256**k
        if run >= n:
            break  # this lane and the higher ones are all zero
        period = b"".join(
            bytes((j,)) * min(run, n - j * run) for j in range(min(256, -(-n // run)))
        )
        buf[pos::4] = (period * -(-n // len(period)))[:n]
    return buf


def _sequence(n: int, byteorder: str = sys.byteorder) -> bytes:
    """int32 bytes of ``-1, 0, 1, ..., n-2`` in ``byteorder`` (built once per size, sliced)."""
    seq = _SEQ.get(byteorder, b"")
    if len(seq) < 4 * n:
        seq = _SEQ[byteorder] = b"\xff\xff\xff\xff" + bytes(
            _counting(max(n, len(seq) // 2), byteorder)
        )
    return seq[: 4 * n]


def _mismatches(a: bytes, b: bytes) -> list[int]:
    """Indices of the 4-byte words that differ between ``a`` and ``b`` (same length)."""
    out: list[int] = []
    stack = [(0, len(a) // 4)]
    while stack:
        lo, hi = stack.pop()
        if a[lo * 4 : hi * 4] == b[lo * 4 : hi * 4]:
            continue
        if hi - lo <= 16:
            out.extend(i for i in range(lo, hi) if a[i * 4 : i * 4 + 4] != b[i * 4 : i * 4 + 4])
            continue
        mid = (lo + hi) // 2
        stack.append((mid, hi))
        stack.append((lo, mid))
    out.sort()
    return out


class Revlog:
    """One revlog (``<radix>.i`` [+ ``<radix>.d``]) opened through ``opener``."""

    _storedeltas = True  # the changelog stores full texts only (§3.2)
    _may_inline = True  # a new revlog starts inline (7.2 never does for the changelog)

    def __init__(
        self,
        opener: VFS,
        radix: str,
        *,
        generaldelta: bool = True,
        compression: str = "zlib",
        sparse: bool = True,
        persistent_nodemap: bool = False,
    ) -> None:
        if compression not in ("zlib", "zstd", "none"):
            raise RepositoryError(f"unknown revlog compression engine {compression!r}")
        self.opener = opener
        self.radix = radix
        self.indexfile = radix + ".i"
        self.datafile = radix + ".d"
        self.compression = compression
        self.sparse = sparse and generaldelta
        self.persistent_nodemap = persistent_nodemap
        self._new_generaldelta = generaldelta
        # a few recently used verified rawtexts: sequential reads and delta computation
        # against parents/snapshots rebuild little
        self._cache: dict[int, bytes] = {}
        self._chaininfo: dict[int, tuple[int, int, int]] = {}  # rev -> (len, size, base)
        self._segment: tuple[int, bytes] = (0, b"")  # read cache over the data file
        self._tr: Any = None
        self._snapshot_memo: dict[int, bool] = {}
        self._zstd_c: Any = None
        self._handles: dict[str, IO[bytes]] | None = None  # open for appends in addgroup
        self._zstd_d: Any = None
        self._load()

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        size = self.opener.size(self.indexfile)
        self._nodemap: dict[bytes, int] | None = None
        self._cols: dict[str, array[int]] = {}
        self._lookups = 0
        self._inline_data: bytearray | None = None
        if size == 0:
            self.version = REVLOGV1
            self.header_flags = FLAG_GENERALDELTA if self._new_generaldelta else 0
            if self._may_inline:
                self.header_flags |= FLAG_INLINE_DATA
            self._index = bytearray()
            if self._may_inline:
                self._inline_data = bytearray()
            return
        buf = bytearray(size)
        with self.opener(self.indexfile) as fh:
            got = fh.readinto(buf)  # type: ignore[attr-defined]
        if got != size:
            raise RepositoryError(f"{self.indexfile}: short read at offset {got}")
        if size < ENTRY_SIZE:
            raise RepositoryError(
                f"{self.indexfile}: corrupt index, partial entry at offset 0 (size {size})"
            )
        (header,) = _HEADER.unpack_from(buf, 0)
        self.version = header & 0xFFFF
        self.header_flags = header & ~0xFFFF
        if self.version != REVLOGV1:
            raise RepositoryError(
                f"{self.indexfile}: unsupported revlog version {self.version:#x} at offset 0"
            )
        if self.header_flags & ~_KNOWN_HEADER_FLAGS:
            raise RepositoryError(
                f"{self.indexfile}: unknown flags {self.header_flags >> 16:#x} in version 1 "
                "revlog header at offset 0"
            )
        if self.header_flags & FLAG_INLINE_DATA:
            self._index = self._scan_inline(buf)
            self._inline_data = buf
        else:
            if size % ENTRY_SIZE:
                raise RepositoryError(
                    f"{self.indexfile}: corrupt index, partial entry at offset "
                    f"{size - size % ENTRY_SIZE} (size {size})"
                )
            self._index = buf
        self._index[0:4] = b"\0\0\0\0"

    def _scan_inline(self, buf: bytearray) -> bytearray:
        """Walk entry, chunk, entry, chunk... and return the entries alone."""
        parts: list[bytearray] = []
        pos = 0
        size = len(buf)
        unpack = struct.Struct(">i").unpack_from
        while pos < size:
            if pos + ENTRY_SIZE > size:
                raise RepositoryError(
                    f"{self.indexfile}: corrupt inline index, partial entry at offset {pos}"
                )
            (complen,) = unpack(buf, pos + 8)
            end = pos + ENTRY_SIZE + complen
            if complen < 0 or end > size:
                raise RepositoryError(
                    f"{self.indexfile}: truncated revision data at offset {pos + ENTRY_SIZE} "
                    f"(entry {len(parts)} wants {complen} bytes, file has {size})"
                )
            parts.append(buf[pos : pos + ENTRY_SIZE])
            pos = end
        return bytearray(b"".join(parts))

    # ------------------------------------------------------------------ index access

    def __len__(self) -> int:
        return len(self._index) // ENTRY_SIZE

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self)))

    @property
    def inline(self) -> bool:
        return bool(self.header_flags & FLAG_INLINE_DATA)

    @property
    def generaldelta(self) -> bool:
        return bool(self.header_flags & FLAG_GENERALDELTA)

    def _entry(self, rev: int) -> tuple[int, int, int, int, int, int, int, bytes]:
        if not 0 <= rev < len(self):
            raise LookupNodeError(rev, self.radix)
        return INDEX_ENTRY.unpack_from(self._index, rev * ENTRY_SIZE)

    def tip(self) -> bytes:
        return self.node(len(self) - 1)

    def node(self, rev: int) -> bytes:
        if rev == nullrev:
            return nullid
        return self._entry(rev)[7]

    def start(self, rev: int) -> int:
        return self._entry(rev)[0] >> 16

    def end(self, rev: int) -> int:
        e = self._entry(rev)
        return (e[0] >> 16) + e[1]

    def length(self, rev: int) -> int:
        return self._entry(rev)[1]

    def flags(self, rev: int) -> int:
        return self._entry(rev)[0] & 0xFFFF

    def rawsize(self, rev: int) -> int:
        return self._entry(rev)[2]

    def linkrev(self, rev: int) -> int:
        return self._entry(rev)[4]

    def parentrevs(self, rev: int) -> tuple[int, int]:
        e = self._entry(rev)
        return e[5], e[6]

    def parents(self, node: bytes) -> tuple[bytes, bytes]:
        p1, p2 = self.parentrevs(self.rev(node))
        return self.node(p1), self.node(p2)

    def _datasize(self) -> int:
        n = len(self)
        return self.end(n - 1) if n else 0

    def column(self, name: str) -> array[int]:
        """A whole index column as ``array('i')``: ``p1``, ``p2``, ``linkrev``, ``base``,
        ``length`` or ``rawsize`` — for DAG work over many revisions."""
        if name not in _COLUMNS:
            raise KeyError(name)
        col = self._cols.get(name)
        if col is None:
            wanted = ["p1", "p2"] if name in ("p1", "p2") else [name]
            self._cols.update(_columns(self._index, len(self), wanted))
            col = self._cols[name]
        return col

    def parentrevs_array(self) -> tuple[array[int], array[int]]:
        """``(p1s, p2s)``: every revision's parent revs (shared, do not modify)."""
        return self.column("p1"), self.column("p2")

    def linkrevs_array(self) -> array[int]:
        return self.column("linkrev")

    def headrevs(self) -> list[int]:
        """Revisions without children, ascending ([nullrev] for an empty revlog).

        Most revisions are the child of the revision just before them, so the p1 column is
        compared with ``rev - 1`` by bisecting on byte slices (C speed) and only the
        exceptions, and the few non-null p2 values, are handled one by one. On a fresh
        index the parent columns are taken as raw big-endian words with strided memoryview
        slices, so no column is converted to ints.
        """
        n = len(self)
        if not n:
            return [nullrev]
        if "p1" in self._cols:
            p1b, p2b = self._cols["p1"].tobytes(), self._cols["p2"].tobytes()
            order = sys.byteorder
        else:
            with memoryview(self._index) as view, view.cast("i") as words:
                p1b = words[_COLUMNS["p1"] :: 16].tobytes()
                p2b = words[_COLUMNS["p2"] :: 16].tobytes()
            order = "big"

        def parent(col: bytes, r: int, field: int) -> int:
            p = int.from_bytes(col[4 * r : 4 * r + 4], order, signed=True)
            if not nullrev <= p < r:
                raise RepositoryError(
                    f"{self.indexfile}: revision {r} has invalid parent {p} at offset "
                    f"{self._entry_offset(r) + 4 * field}"
                )
            return p

        haschild = bytearray(b"\x01") * (n - 1) + b"\x00\x00"  # slot n absorbs nullrev
        odd = _mismatches(p1b, _sequence(n, order))
        for r in odd:
            haschild[r - 1] = 0
        for r in odd:
            haschild[parent(p1b, r, _COLUMNS["p1"])] = 1
        for r in _mismatches(p2b, b"\xff" * (4 * n)):  # non-null p2
            haschild[parent(p2b, r, _COLUMNS["p2"])] = 1
        haschild[n] = 0
        heads = []
        pos = haschild.find(0)
        while 0 <= pos < n:
            heads.append(pos)
            pos = haschild.find(0, pos + 1)
        return heads

    def _build_nodemap(self) -> dict[bytes, int]:
        index = bytes(self._index)
        nm = {index[pos : pos + 20]: r for r, pos in enumerate(range(32, len(index), ENTRY_SIZE))}
        if len(nm) != len(self):
            raise RepositoryError(f"{self.indexfile}: duplicate nodes in index")
        self._nodemap = nm
        return nm

    def rev(self, node: bytes) -> int:
        """The revision number of ``node``; raises :class:`LookupNodeError`."""
        if node == nullid:
            return nullrev
        nm = self._nodemap
        if nm is not None:
            try:
                return nm[node]
            except KeyError:
                raise LookupNodeError(node, self.radix) from None
        if len(node) != 20:
            raise LookupNodeError(node, self.radix)
        self._lookups += 1
        # a few lookups (a server opens the repository per request) scan the index at C
        # speed; building the map costs as much as ~30 scans of a 40k-revision index
        if len(self) < 2048 or self._lookups > 16:
            try:
                return self._build_nodemap()[node]
            except KeyError:
                raise LookupNodeError(node, self.radix) from None
        index = self._index
        pos = index.find(node)
        while pos >= 0 and pos % ENTRY_SIZE != 32:
            pos = index.find(node, pos + 1)
        if pos < 0:
            raise LookupNodeError(node, self.radix)
        return pos // ENTRY_SIZE

    def hasnode(self, node: bytes) -> bool:
        try:
            self.rev(node)
        except LookupNodeError:
            return False
        return node != nullid

    def _revnode(self, rev_or_node: int | bytes) -> int:
        if isinstance(rev_or_node, int):
            if not nullrev <= rev_or_node < len(self):
                raise LookupNodeError(rev_or_node, self.radix)
            return rev_or_node
        return self.rev(rev_or_node)

    # ------------------------------------------------------------------ deltas

    def deltaparent(self, rev: int) -> int:
        """The revision ``rev``'s chunk is a delta against, or nullrev for a full text."""
        base = self._entry(rev)[3]
        if base == rev:
            return nullrev
        return base if self.generaldelta else rev - 1

    def _chain(self, rev: int, stop: Container[int] = ()) -> tuple[list[int], bool]:
        """Revisions whose chunks rebuild ``rev``, oldest first; True if a rev in ``stop``
        was reached (then the first element's chunk is a delta against that rev)."""
        chain: list[int] = []
        gd = self.generaldelta
        index = self._index
        unpack = INDEX_ENTRY.unpack_from
        cur = rev
        while True:
            if cur in stop:
                chain.reverse()
                return chain, True
            chain.append(cur)
            base = unpack(index, cur * ENTRY_SIZE)[3]
            if base == cur:
                break
            if not 0 <= base < cur:
                raise RepositoryError(
                    f"{self.indexfile}: revision {cur} has invalid delta base {base} "
                    f"at offset {self._entry_offset(cur) + 16}"
                )
            cur = base if gd else cur - 1
        chain.reverse()
        return chain, False

    def _info(self, rev: int) -> tuple[int, int, int]:
        """``(chain length, sum of chunk sizes, chain base)`` of ``rev``, memoized."""
        info = self._chaininfo.get(rev)
        if info is not None:
            return info
        todo = []
        cur = rev
        unpack = INDEX_ENTRY.unpack_from
        while True:
            e = unpack(self._index, cur * ENTRY_SIZE)
            base = e[3]
            if base == cur:
                info = (1, e[1], cur)
                break
            if not 0 <= base < cur:
                raise RepositoryError(
                    f"{self.indexfile}: revision {cur} has invalid delta base {base} "
                    f"at offset {self._entry_offset(cur) + 16}"
                )
            todo.append((cur, e[1]))
            cur = base if self.generaldelta else cur - 1
            known = self._chaininfo.get(cur)
            if known is not None:
                info = known
                break
        self._chaininfo[cur] = info
        for r, length in reversed(todo):
            info = (info[0] + 1, info[1] + length, info[2])
            self._chaininfo[r] = info
        return info

    def chainlen(self, rev: int) -> int:
        return self._info(rev)[0]

    def _chainsize(self, rev: int) -> int:
        return self._info(rev)[1]

    def issnapshot(self, rev: int) -> bool:
        """A full text, or (sparse) a delta against a snapshot that is not a parent (§2.6)."""
        if rev == nullrev:
            return True
        memo = self._snapshot_memo.get(rev)
        if memo is not None:
            return memo
        e = self._entry(rev)
        base = e[3]
        if base == rev:
            result = True
        elif not self.sparse or not self.generaldelta or base in (e[5], e[6]):
            result = False
        else:
            result = self.issnapshot(base)
        self._snapshot_memo[rev] = result
        return result

    # ------------------------------------------------------------------ chunks

    def _entry_offset(self, rev: int) -> int:
        """Where ``rev``'s index entry starts in the ``.i`` file."""
        return rev * ENTRY_SIZE + (self.start(rev) if self.inline else 0)

    def _where(self, rev: int) -> tuple[str, int]:
        """File and physical offset of ``rev``'s chunk, for error messages."""
        start = self.start(rev)
        if self.inline:
            return self.indexfile, start + (rev + 1) * ENTRY_SIZE
        return self.datafile, start

    def _read_span(self, start: int, length: int, fh: Any = None) -> bytes:
        """``length`` bytes of the data file at ``start`` (non-inline), through a cache."""
        cstart, cdata = self._segment
        if cstart <= start and start + length <= cstart + len(cdata):
            return cdata[start - cstart : start - cstart + length]
        if length >= _READ_WINDOW:
            wstart, wlen = start, length
        else:
            wstart = start & ~(_READ_WINDOW - 1)
            wlen = ((start + length + _READ_WINDOW) & ~(_READ_WINDOW - 1)) - wstart
        if length < 0:
            raise RepositoryError(
                f"{self.indexfile}: negative chunk length {length} for data at offset {start}"
            )
        try:
            if fh is None:
                with self.opener(self.datafile) as f:
                    f.seek(wstart)
                    data = f.read(wlen)
            else:
                fh.seek(wstart)
                data = fh.read(wlen)
        except (OSError, OverflowError, ValueError) as exc:
            raise RepositoryError(
                f"{self.datafile}: cannot read {length} bytes at offset {start}: {exc}"
            ) from exc
        if len(data) < start + length - wstart:
            raise RepositoryError(
                f"{self.datafile}: truncated revision data at offset "
                f"{wstart + len(data)} (wanted {length} bytes at {start})"
            )
        if len(data) <= 4 * 1024 * 1024:
            self._segment = (wstart, data)
        return data[start - wstart : start - wstart + length]

    def _rawchunks(self, revs: list[int]) -> list[bytes | memoryview]:
        """Stored chunks of ``revs`` (ascending), read in few I/O calls."""
        entries = [INDEX_ENTRY.unpack_from(self._index, r * ENTRY_SIZE) for r in revs]
        if self.inline:
            data = self._inline_data
            assert data is not None
            view = memoryview(data)
            out: list[bytes | memoryview] = []
            for r, e in zip(revs, entries, strict=True):
                pos = (e[0] >> 16) + (r + 1) * ENTRY_SIZE
                if pos + e[1] > len(data):
                    raise RepositoryError(
                        f"{self.indexfile}: truncated revision data at offset {pos}"
                    )
                out.append(view[pos : pos + e[1]])
            return out
        out = []
        if len(revs) == 1:
            e = entries[0]
            return [self._read_span(e[0] >> 16, e[1])]
        # group revisions whose chunks are close together and read each group at once
        try:
            fh = self.opener(self.datafile)
        except OSError as exc:
            raise RepositoryError(f"{self.datafile}: cannot open data file: {exc}") from exc
        with fh:
            i = 0
            n = len(revs)
            while i < n:
                gstart = entries[i][0] >> 16
                gend = gstart + entries[i][1]
                j = i + 1
                while j < n:
                    s = entries[j][0] >> 16
                    if s - gend > _GROUP_GAP or s < gend:
                        break
                    gend = s + entries[j][1]
                    j += 1
                blob = self._read_span(gstart, gend - gstart, fh)
                view = memoryview(blob)
                for k in range(i, j):
                    s = (entries[k][0] >> 16) - gstart
                    out.append(view[s : s + entries[k][1]])
                i = j
        return out

    def _decompress(self, chunk: bytes | memoryview, rev: int) -> bytes | memoryview:
        """Decode one stored chunk (§2.4); errors name the file and offset."""
        if not chunk:
            return b""
        t = chunk[0]
        if t == 0x00:
            return chunk
        if t == 0x75:  # 'u'
            return chunk[1:]
        try:
            if t == 0x78:  # 'x'
                return zlib.decompress(chunk)
            if t == 0x28:  # '(' zstd
                if self._zstd_d is None:
                    import zstandard

                    self._zstd_d = zstandard.ZstdDecompressor()
                result: bytes = self._zstd_d.decompressobj().decompress(chunk)
                return result
        except Exception as exc:  # zlib.error, zstd.ZstdError
            where, off = self._where(rev)
            raise RepositoryError(
                f"{where}: cannot decompress revision {rev} at offset {off}: {exc}"
            ) from exc
        where, off = self._where(rev)
        raise RepositoryError(
            f"{where}: unknown compression type {bytes([t])!r} for revision {rev} at offset {off}"
        )

    def _chunk(self, rev: int) -> bytes | memoryview:
        return self._decompress(self._rawchunks([rev])[0], rev)

    # ------------------------------------------------------------------ revisions

    def _rawtext(self, rev: int) -> bytes:
        """Reconstructed rawtext of ``rev`` (length checked, hash not checked)."""
        cache = self._cache
        if rev in cache:
            return cache[rev]
        chain, stopped = self._chain(rev, cache)
        chunks = self._rawchunks(chain)
        try:
            if stopped:
                base: bytes | memoryview = cache[self.deltaparent(chain[0])]
                deltas = [self._decompress(c, r) for r, c in zip(chain, chunks, strict=True)]
            else:
                base = self._decompress(chunks[0], chain[0])
                deltas = [
                    self._decompress(c, r) for r, c in zip(chain[1:], chunks[1:], strict=True)
                ]
            text = mdiff.patches(base, deltas)
        except mdiff.PatchError as exc:
            where, off = self._where(rev)
            raise RepositoryError(
                f"{where}: cannot rebuild revision {rev} (chunk at offset {off}): {exc}"
            ) from exc
        expected = self._entry(rev)[2]
        if len(text) != expected:
            raise RepositoryError(
                f"{self.indexfile}: revision {rev} unpacked size is {len(text)}, "
                f"{expected} expected"
            )
        return text

    def _checkhash(self, text: bytes, rev: int) -> None:
        e = self._entry(rev)
        if e[0] & 0xFFFF & REVIDX_NOHASH_FLAGS:
            return
        for field, p in ((24, e[5]), (28, e[6])):
            if not nullrev <= p < rev:
                raise RepositoryError(
                    f"{self.indexfile}: revision {rev} has invalid parent {p} "
                    f"(index field at offset {self._entry_offset(rev) + field})"
                )
        if hashrevision(text, self.node(e[5]), self.node(e[6])) != e[7]:
            raise RepositoryError(
                f"{self.indexfile}: integrity check failed on revision {rev} (node {e[7].hex()})"
            )

    def rawdata(self, rev_or_node: int | bytes) -> bytes:
        """The stored rawtext, SHA-1 verified (unless its flags exempt it, §2.8)."""
        rev = self._revnode(rev_or_node)
        if rev == nullrev:
            return b""
        cache = self._cache
        text = cache.get(rev)
        if text is not None:
            return text
        text = self._rawtext(rev)
        self._checkhash(text, rev)
        self._remember(rev, text)
        return text

    def _remember(self, rev: int, text: bytes) -> None:
        cache = self._cache
        if len(cache) >= _CACHE_ENTRIES:
            del cache[next(iter(cache))]  # oldest first (insertion order)
        cache[rev] = text

    def revision(self, rev_or_node: int | bytes) -> bytes:
        """The fulltext; equal to :meth:`rawdata` for flag 0 (no flag processors here)."""
        rev = self._revnode(rev_or_node)
        if rev != nullrev and self.flags(rev) & REVIDX_ISCENSORED:
            raise RepositoryError(f"{self.indexfile}: revision {rev} is censored")
        return self.rawdata(rev)

    def storeddelta(self, rev: int) -> tuple[int, bytes]:
        """``(base, delta)`` as stored; a full text comes as a delta against nullrev."""
        base = self.deltaparent(rev)
        data = bytes(self._chunk(rev))
        if base == nullrev:
            return nullrev, mdiff.trivialdiffheader(len(data)) + data
        return base, data

    def revdiff(self, rev1: int, rev2: int) -> bytes:
        """A delta turning ``rawdata(rev1)`` into ``rawdata(rev2)``."""
        if rev1 != nullrev and self.deltaparent(rev2) == rev1:
            return bytes(self._chunk(rev2))
        return self._diff(self.rawdata(rev1), self.rawdata(rev2))

    def _diff(self, old: bytes, new: bytes) -> bytes:
        """The delta to store (line based; the manifest overrides it for speed)."""
        return mdiff.textdiff(old, new)

    def _delta_ok(self, base: int, delta: bytes) -> bool:
        """Whether a received delta may be stored as-is (the manifest checks alignment)."""
        return True

    def size(self, rev: int) -> int:
        return self.rawsize(rev)

    # ------------------------------------------------------------------ writing

    def compress(self, data: bytes) -> bytes:
        """Encode a chunk (§2.4): the engine's output if strictly smaller, else raw."""
        if not data:
            return b""
        n = len(data)
        if self.compression == "zstd" and n >= 50:
            if self._zstd_c is None:
                import zstandard

                self._zstd_c = zstandard.ZstdCompressor(level=3)
            out: bytes = self._zstd_c.compress(data)
            if len(out) < n:
                return out
        elif self.compression == "zlib" and n >= 44:
            out = zlib.compress(data)
            if len(out) < n:
                return out
        if data[0] == 0:
            return data
        return b"u" + data

    def _journal(self, tr: Transaction, path: str) -> None:
        """Journal ``path``'s size before its first append in ``tr`` (by any writer)."""
        if tr.findoffset(path) is None and not tr.hasbackup(path):
            tr.add(path, self.opener.size(path))

    def addrevision(
        self,
        text: bytes,
        tr: Transaction,
        link: int,
        p1: bytes,
        p2: bytes,
        *,
        node: bytes | None = None,
        flags: int = 0,
        cachedelta: tuple[int, bytes] | None = None,
    ) -> int:
        """Append ``text`` (unless its node exists) and return its revision number."""
        if flags & ~REVIDX_KNOWN_FLAGS:
            raise RepositoryError(f"{self.indexfile}: incompatible revision flag {flags:#x}")
        p1r = self.rev(p1)
        p2r = self.rev(p2)
        expected = hashrevision(text, p1, p2)
        if node is None:
            node = expected
        elif node != expected and not flags & REVIDX_NOHASH_FLAGS:
            raise RepositoryError(
                f"{self.indexfile}: integrity error adding {node.hex()}: content hashes "
                f"to {expected.hex()}"
            )
        if node in _RESERVED_NODES:
            raise RepositoryError(f"{self.indexfile}: attempted to add reserved node {node.hex()}")
        if self.hasnode(node):
            return self.rev(node)
        return self._addrevision(node, text, tr, link, p1r, p2r, flags, cachedelta)

    def addgroup(
        self,
        deltas: Iterable[RevisionDelta],
        linkmapper: Callable[[bytes], int],
        tr: Transaction,
    ) -> list[int]:
        """Add changegroup revisions; returns the rev of each (existing ones included)."""
        self._handles = {}
        try:
            return self._addgroup(deltas, linkmapper, tr)
        finally:
            self._close_handles()

    def _addgroup(
        self,
        deltas: Iterable[RevisionDelta],
        linkmapper: Callable[[bytes], int],
        tr: Transaction,
    ) -> list[int]:
        revs = []
        for d in deltas:
            if self.hasnode(d.node):
                revs.append(self.rev(d.node))
                continue
            if d.flags & ~REVIDX_KNOWN_FLAGS:
                raise RepositoryError(
                    f"{self.indexfile}: incompatible revision flag {d.flags:#x} on {d.node.hex()}"
                )
            p1r = self.rev(d.p1)
            p2r = self.rev(d.p2)
            try:
                base = self.rev(d.deltabase)
            except LookupNodeError:
                raise LookupNodeError(d.deltabase, self.radix + " (unknown delta base)") from None
            basetext = self.rawdata(base) if base != nullrev else b""
            try:
                text = mdiff.patch(basetext, d.delta)
            except mdiff.PatchError as exc:
                raise RepositoryError(
                    f"{self.indexfile}: bad delta for {d.node.hex()}: {exc}"
                ) from exc
            if not d.flags & REVIDX_NOHASH_FLAGS:
                actual = hashrevision(text, d.p1, d.p2)
                if actual != d.node:
                    raise RepositoryError(
                        f"{self.indexfile}: integrity error: {d.node.hex()} hashes to "
                        f"{actual.hex()}"
                    )
            link = linkmapper(d.linknode)
            p1, p2 = self._incoming_parents(text, d.p1, d.p2)
            if (p1, p2) != (d.p1, d.p2):
                p1r, p2r = self.rev(p1), self.rev(p2)
            cached = (base, d.delta) if base != nullrev else None
            revs.append(self._addrevision(d.node, text, tr, link, p1r, p2r, d.flags, cached))
        return revs

    def _incoming_parents(self, text: bytes, p1: bytes, p2: bytes) -> tuple[bytes, bytes]:
        """Parents to store for a received revision (the filelog repairs issue6528)."""
        return p1, p2

    def _isgood(self, base: int, textlen: int, deltalen: int, snapshotdepth: int) -> bool:
        """Mercurial's bounds for a candidate delta (§3.2)."""
        if deltalen > textlen:
            return False
        chainlen, chainsize, chainbase = self._info(base)
        if chainlen + 1 > MAX_CHAIN_LEN:
            return False
        if chainsize + deltalen > textlen * LIMIT_DELTA2TEXT:
            return False
        if not self.sparse:
            span = self._datasize() + deltalen - self.start(chainbase)
            if span > 4 * textlen:
                return False
        if snapshotdepth:
            if deltalen > textlen >> snapshotdepth:
                return False
            if self.length(base) < deltalen:
                return False
        return True

    def _candidates(self, p1r: int, p2r: int, textlen: int) -> Iterator[tuple[list[int], bool]]:
        """Groups of bases to try, and whether deltas in that group are snapshots."""
        rev = len(self)
        if not self.generaldelta:
            if rev:
                yield [rev - 1], False
            return
        parents = [p for p in (p1r, p2r) if p != nullrev]
        parents = sorted(set(parents), reverse=True)
        if parents:
            yield parents, False
        if not self.sparse:
            if rev and rev - 1 not in parents:
                yield [rev - 1], False
            return
        snaps: set[int] = set()
        for p in parents:
            for r in self._chain(p)[0]:
                if self.issnapshot(r):
                    snaps.add(r)
        if snaps:
            # deepest first, a few at most
            ordered = sorted(snaps, key=lambda r: (-self.chainlen(r), -r))[:6]
            yield ordered, True

    def _choose(
        self,
        text: bytes,
        p1r: int,
        p2r: int,
        flags: int,
        cachedelta: tuple[int, bytes] | None,
    ) -> tuple[int, bytes] | None:
        """``(base, compressed delta)`` to store, or None for a full text."""
        textlen = len(text)
        if not self._storedeltas or flags & REVIDX_RAWTEXT_CHANGING_FLAGS or not len(self):
            return None
        tried: set[int] = {nullrev}

        def usable(base: int, mark: bool = True) -> bool:
            if base in tried:
                return False
            if mark:
                tried.add(base)
            if self.flags(base) & REVIDX_RAWTEXT_CHANGING_FLAGS:
                return False
            return not (self.sparse and self.rawsize(base) < textlen // LIMIT_BASE2TEXT)

        if cachedelta is not None:
            base, delta = cachedelta
            legal = self.generaldelta or base == len(self) - 1
            # the received delta is not computed again; its base may still be tried below
            if legal and usable(base, mark=False) and self._delta_ok(base, delta):
                comp = self.compress(delta)
                depth = 0
                if self.sparse and base not in (p1r, p2r) and self.issnapshot(base):
                    depth = self.chainlen(base)
                if self._isgood(base, textlen, len(comp), depth):
                    return base, comp
        for group, snapshot in self._candidates(p1r, p2r, textlen):
            best: tuple[int, bytes] | None = None
            for base in group:
                if not usable(base):
                    continue
                comp = self.compress(self._diff(self.rawdata(base), text))
                depth = self.chainlen(base) if snapshot else 0
                if self._isgood(base, textlen, len(comp), depth) and (
                    best is None or len(comp) < len(best[1])
                ):
                    best = (base, comp)
            if best is not None:
                return best
        return None

    def _addrevision(
        self,
        node: bytes,
        text: bytes,
        tr: Transaction,
        link: int,
        p1r: int,
        p2r: int,
        flags: int,
        cachedelta: tuple[int, bytes] | None,
    ) -> int:
        rev = len(self)
        choice = self._choose(text, p1r, p2r, flags, cachedelta)
        if choice is None:
            base, chunk = rev, self.compress(text)
        else:
            base, chunk = choice
            if not self.generaldelta:
                base = self._entry(rev - 1)[3]  # legacy: base field is the chain start
        offset = self._datasize()
        entry = INDEX_ENTRY.pack(
            (offset << 16) | flags, len(chunk), len(text), base, link, p1r, p2r, node
        )
        self._write(tr, entry, chunk)
        self._appended(entry, node)
        self._remember(rev, text)
        return rev

    def _header_bytes(self) -> bytes:
        return _HEADER.pack(self.header_flags | self.version)

    def _write(self, tr: Transaction, entry: bytes, chunk: bytes) -> None:
        """Append one entry (and chunk) to disk under ``tr`` (§3.5)."""
        if tr is not self._tr:
            self._tr = tr
            self._check_unchanged()
            if self.persistent_nodemap:
                from hgwire.repo import nodemap

                nodemap.invalidate(self.opener, self.radix)
        rev = len(self)
        if rev == 0:
            entry = self._header_bytes() + entry[4:]
        if (
            self.inline
            and self._datasize() + len(chunk) >= MAX_INLINE
            and self._may_split()
            and tr.findoffset(self.indexfile) is None
            and self.opener.size(self.indexfile) > 0
        ):
            # nothing appended to the index in this transaction yet (by this object or
            # another): split first, with a backup of the inline file as rollback target
            tr.addbackup(self.indexfile)
            self._split(tr)
        if self.inline:
            self._write_index(tr, entry + chunk)
        else:
            self._journal(tr, self.datafile)
            if chunk:
                self._append(self.datafile, chunk)
            self._write_index(tr, entry)
        if self.inline:
            assert self._inline_data is not None
            self._inline_data += entry + chunk

    def _write_index(self, tr: Transaction, data: bytes) -> None:
        """Append index bytes (an entry, plus its chunk when inline) to the index file."""
        self._journal(tr, self.indexfile)
        self._append(self.indexfile, data)

    def _may_split(self) -> bool:
        """Whether the inline→split conversion may run now (the changelog defers it)."""
        return True

    def _append(self, path: str, data: bytes) -> None:
        """Append ``data`` in one write; inside :meth:`addgroup` the handle stays open."""
        handles = self._handles
        if handles is None:
            with self.opener(path, "ab") as once:
                once.write(data)
            return
        fh = handles.get(path)
        if fh is None:
            fh = handles[path] = self.opener(path, "ab")
        fh.write(data)
        fh.flush()  # readers (this revlog included) see whole entries only

    def _close_handles(self) -> None:
        handles, self._handles = self._handles, None
        for fh in (handles or {}).values():
            fh.close()

    def _check_unchanged(self) -> None:
        """Refuse to append when the files no longer match what was loaded: another writer
        (or a rollback) changed them, and appending would corrupt the revlog."""
        checks = [
            (self.indexfile, len(self._inline_data or b"") if self.inline else len(self._index))
        ]
        if not self.inline:
            checks.append((self.datafile, self._datasize()))
        for path, expected in checks:
            actual = self.opener.size(path)
            if actual != expected:
                raise RepositoryError(
                    f"{path}: changed on disk (size {actual}, expected {expected}); "
                    "reopen the revlog before writing"
                )

    def _appended(self, entry: bytes, node: bytes) -> None:
        rev = len(self)
        self._index += entry
        if rev == 0:
            self._index[0:4] = b"\0\0\0\0"
        if self._nodemap is not None:
            self._nodemap[node] = rev
        if self._cols:
            fields = INDEX_ENTRY.unpack(entry)
            for name, col in self._cols.items():
                col.append(fields[_COLUMNS[name] - 1])
        if self.inline and self._datasize() >= MAX_INLINE and self._may_split():
            tr = self._tr
            if tr is not None and tr.findoffset(self.indexfile) == 0:
                # the index is new in this transaction: rollback deletes it anyway
                self._split(tr)

    def _split(self, tr: Transaction) -> None:
        """Convert an inline revlog to index + data file (§3.4)."""
        data = self._inline_data
        assert data is not None
        n = len(self)
        view = memoryview(data)
        chunks = []
        for r in range(n):
            e = INDEX_ENTRY.unpack_from(self._index, r * ENTRY_SIZE)
            pos = (e[0] >> 16) + (r + 1) * ENTRY_SIZE
            chunks.append(view[pos : pos + e[1]])
        handles = self._handles
        self._close_handles()  # the index is replaced: append handles would be stale
        if handles is not None:
            self._handles = {}
        self._journal(tr, self.datafile)
        with self.opener(self.datafile, "wb") as fh:
            fh.write(b"".join(chunks))
        self.header_flags &= ~FLAG_INLINE_DATA
        newindex = bytearray(self._index)
        if n:
            newindex[0:4] = self._header_bytes()
        self.opener.atomic_write(self.indexfile, bytes(newindex))
        self._inline_data = None
        self._segment = (0, b"")

    # ------------------------------------------------------------------ misc

    def clearcaches(self) -> None:
        self._cache = {}
        self._chaininfo.clear()
        self._segment = (0, b"")
        self._snapshot_memo.clear()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.radix} ({len(self)} revs)>"
