"""Stream clones: raw store files as a stream (spec storage §10).

* v1: the ``stream_out`` wire command (``0\\n``, ``<files> <bytes>\\n``, then
  ``<name>\\0<size>\\n`` + data per file) and its bundle file form ``HGS1`` (§10.1);
* v2: the payload of the bundle2 ``stream2`` part (source byte, uvarint name length,
  uvarint size, name, data per file) with its ``requirements``/``filecount``/``bytecount``
  parameters (§10.2).

Generation takes a consistent snapshot under the store lock: every file's size is recorded
then. Revlogs are appended to in place, so they are read afterwards up to that size; the
ones a writer may replace by a new file (an inline ``.i`` split into ``.i`` + ``.d``, a
nodemap ``.nd`` that may be deleted) are opened under the lock and read from that handle,
as Mercurial does, so a later rename does not matter. Other files (phaseroots, bookmarks,
nodemap dockets, obsstore, caches), and pre-opened files beyond a file-handle budget, are
small and copied aside while the lock is held. Which is which is decided from names.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from hgwire.errors import AbortError, BundleError, LockError
from hgwire.exchange.bundle2 import Part, urlquote, urlunquote
from hgwire.exchange.changegroup import Readable, readexactly
from hgwire.repo.store import decodedir, encodedir

if TYPE_CHECKING:
    from hgwire.repo.localrepo import Repository
    from hgwire.repo.transaction import Transaction

#: Requirements a stream clone does not transfer (handled by the receiver's vfs or
#: local to a working directory); everything else must be supported by the receiver.
STREAM_IGNORABLE_REQUIREMENTS = frozenset(
    {
        b"dirstate-tracked-key-v1",
        b"dirstate-v2",
        b"dotencode",
        b"exp-sparse",
        b"exp-very-fragile-and-unsafe-plain-store-encoding",
        b"fileindex-v1",
        b"fncache",
        b"persistent-nodemap",
        b"relshared",
        b"share-safe",
        b"shared",
        b"store",
    }
)

#: Cache files a v2 stream may carry (``.hg/cache``), as Mercurial's ``cachetocopy``.
_CACHE_SUBSETS = (b"visible-hidden", b"visible", b"served.hidden", b"served", b"immutable", b"base")
CACHE_FILES: tuple[bytes, ...] = (
    b"branch2",
    *(b"branch2-" + s for s in _CACHE_SUBSETS),
    b"branch3",
    *(b"branch3-" + s for s in _CACHE_SUBSETS),
    b"rbc-names-v2",
    b"rbc-revs-v2",
    b"tags2",
    *(b"tags2-" + s for s in _CACHE_SUBSETS),
    b"hgtagsfnodes1",
)

_COPY_CHUNK = 65536


def streamed_requirements(requirements: Iterable[bytes]) -> frozenset[bytes]:
    """The requirements a stream clone receiver must have (§10.1)."""
    return frozenset(requirements) - STREAM_IGNORABLE_REQUIREMENTS


def new_stream_clone_requirements(
    default: Iterable[bytes], streamed: Iterable[bytes]
) -> frozenset[bytes]:
    """Requirements of a repository created for a stream clone: the receiver's local
    choices that streams ignore, plus exactly the streamed format requirements."""
    return frozenset(set(default) & STREAM_IGNORABLE_REQUIREMENTS) | frozenset(streamed)


def stream_capability(requirements: Iterable[bytes]) -> bytes:
    """The v1 capability token (spec §7.1): ``stream`` for plain revlogv1, else
    ``streamreqs=<sorted streamed requirements>``."""
    reqs = streamed_requirements(requirements)
    if not reqs - {b"revlogv1"}:
        return b"stream"
    return b"streamreqs=" + b",".join(sorted(reqs))


# ---------------------------------------------------------------------------------------
# Snapshot of the store


@dataclass
class StreamEntry:
    """One file of a stream: ``source`` ``s`` (store) or ``c`` (cache), its unencoded
    ``name`` and recorded ``size``. Data comes from the aside copy (``spill``/``offset``),
    from ``fh`` opened under the lock, or from ``path``, read up to ``size``.
    """

    source: bytes
    name: bytes
    size: int
    path: str | None = None
    offset: int | None = None
    fh: IO[bytes] | None = None


@dataclass
class StoreSnapshot:
    """The files of a store as of one moment (see the module docstring). Close it (or
    use it as a context manager) to drop the aside copies.
    """

    entries: list[StreamEntry] = field(default_factory=list)
    requirements: frozenset[bytes] = frozenset()
    spill: IO[bytes] | None = None

    @property
    def filecount(self) -> int:
        return len(self.entries)

    @property
    def bytecount(self) -> int:
        return sum(e.size for e in self.entries)

    def filechunks(self, entry: StreamEntry) -> Iterator[bytes]:
        """The recorded content of ``entry`` (exactly ``entry.size`` bytes)."""
        left = entry.size
        if entry.offset is not None:
            assert self.spill is not None
            pos = entry.offset
            while left:
                self.spill.seek(pos)
                data = self.spill.read(min(left, _COPY_CHUNK))
                if not data:
                    break
                pos += len(data)
                left -= len(data)
                yield data
        else:
            if entry.fh is not None:
                fh, entry.fh = entry.fh, None
            else:
                assert entry.path is not None
                fh = open(entry.path, "rb")  # noqa: SIM115
            with fh:
                while left:
                    data = fh.read(min(left, _COPY_CHUNK))
                    if not data:
                        break
                    left -= len(data)
                    yield data
        if left:
            raise AbortError(
                f"clone could only read {entry.size - left} bytes from "
                f"{entry.name.decode('utf-8', 'replace')}, but expected {entry.size} bytes"
            )

    def close(self) -> None:
        for e in self.entries:
            if e.fh is not None:
                e.fh.close()
                e.fh = None
        if self.spill is not None:
            self.spill.close()
            self.spill = None

    def __enter__(self) -> StoreSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_budget() -> int:
    """How many files a snapshot may keep open (beyond that, they are copied aside)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 2 - 64))


_APPEND_ONLY = "append"
_KEEP_OPEN = "open"
_COPY = "copy"


def _is_volatile(name: bytes, path: str = "", inline: bool | None = None) -> bool:
    """Whether a store file may be replaced rather than appended to: anything but a
    revlog ``.d`` or non-inline ``.i``. ``inline`` (unknown: ``None``, then assumed)
    says whether a ``.i`` keeps its data inline (it has no ``.d``); ``path`` is unused."""
    return _kind(name, inline) != _APPEND_ONLY


def _kind(name: bytes, inline: bool | None) -> str:
    """How a store file is snapshotted, from its name (§10): revlog data and non-inline
    indexes are append-only; an inline index (split by a writer into a new file) and a
    nodemap ``.nd`` (deleted) are kept open; the rest is copied aside."""
    if name.endswith(b".d"):
        return _APPEND_ONLY
    if name.endswith(b".i"):
        return _APPEND_ONLY if inline is False else _KEEP_OPEN
    if name.endswith(b".nd"):
        return _KEEP_OPEN
    return _COPY


def snapshot(
    repo: Repository,
    *,
    phases: bool = False,
    obsolescence: bool = True,
    caches: bool = False,
) -> StoreSnapshot:
    """Record the store's files under the store lock (§10): revlogs of ``data/``/``meta/``,
    then the manifest and changelog; ``phaseroots`` when ``phases`` (non-publishing
    servers), ``bookmarks`` when kept in the store, ``obsstore`` when present and
    ``obsolescence``; cache files when ``caches`` (v2 only).
    """
    snap = StoreSnapshot(requirements=streamed_requirements(repo.requirements))
    svfs = repo.svfs
    with repo.lock():
        spill: IO[bytes] = tempfile.TemporaryFile(prefix="hgwire-stream-")  # noqa: SIM115
        snap.spill = spill
        try:
            names: list[tuple[bytes, bytes, str]] = []
            data_files: list[tuple[bytes, bytes, str]] = []
            top_files: list[tuple[bytes, bytes, str]] = []
            listed: dict[bytes, int] = {}
            prefix = os.path.join(str(svfs.rawvfs.join("")), "")  # no pathlib per file
            for name, enc, size in repo.store_files():
                listed[name] = size
                item = (b"s", name, prefix + enc)
                (data_files if name.startswith((b"data/", b"meta/")) else top_files).append(item)
            names += data_files
            for radix in (b"00manifest", b"00changelog"):
                for ext in (b".n", b".nd"):
                    # persistent nodemap docket and data, when present
                    path = str(svfs.rawvfs.join(os.fsdecode(radix + ext)))
                    if os.path.exists(path):
                        top_files.append((b"s", radix + ext, path))
            # the changelog last, so a receiver never sees changesets without their data
            top_files.sort(key=lambda t: (t[1].startswith(b"00changelog"), t[1]))
            names += top_files
            extras = []
            if phases:
                extras.append(b"phaseroots")
            extras.append(b"bookmarks")
            if obsolescence:
                extras.append(b"obsstore")
            for extra in extras:
                path = str(svfs.rawvfs.join(os.fsdecode(extra)))
                if os.path.exists(path):
                    names.append((b"s", extra, path))
            if caches:
                for cname in CACHE_FILES:
                    path = str(repo.cachevfs.join(os.fsdecode(cname)))
                    if os.path.exists(path):
                        names.append((b"c", cname, path))
            budget = _open_budget()
            for source, name, path in names:
                kind = _COPY
                if source == b"s":
                    inline = None
                    if name.endswith(b".i") and name in listed:
                        inline = name[:-2] + b".d" not in listed
                    kind = _kind(name, inline)
                if kind == _KEEP_OPEN and budget <= 0:
                    kind = _COPY
                fh: IO[bytes] | None = None
                try:
                    if kind == _APPEND_ONLY and source == b"s" and name in listed:
                        size = listed[name]  # stat'ed by the listing, under the lock
                    elif kind == _APPEND_ONLY:
                        size = os.stat(path).st_size
                    else:
                        fh = open(path, "rb")  # noqa: SIM115
                        size = os.fstat(fh.fileno()).st_size
                except FileNotFoundError:
                    continue
                if not size and source == b"s" and not name.endswith(b".i"):
                    if fh is not None:
                        fh.close()
                    continue
                entry = StreamEntry(source, name, size, path=path)
                if kind == _KEEP_OPEN:
                    entry.fh = fh
                    budget -= 1
                elif kind == _COPY:
                    assert fh is not None
                    with fh:
                        entry.offset = spill.seek(0, os.SEEK_END)
                        copied = 0
                        while copied < size:
                            data = fh.read(min(_COPY_CHUNK, size - copied))
                            if not data:
                                break
                            spill.write(data)
                            copied += len(data)
                    entry.size = copied
                snap.entries.append(entry)
            spill.flush()
        except BaseException:
            snap.close()
            raise
    return snap


def has_secret(repo: Repository) -> bool:
    """Whether ``repo`` has changesets a server must not expose (secret or above)."""
    from hgwire.repo.phases import PhaseCache

    return bool(PhaseCache.load(repo).hidden_revs())


# ---------------------------------------------------------------------------------------
# Stream v1 (§10.1)


def v1_entries(snap: StoreSnapshot) -> Iterator[bytes]:
    """The file entries of a v1 stream (store files only; names with ``encodedir``)."""
    for e in snap.entries:
        if e.source != b"s":
            continue
        yield b"%s\0%d\n" % (encodedir(e.name), e.size)
        yield from snap.filechunks(e)


def generate_v1(repo: Repository, allowed: bool = True) -> Iterator[bytes]:
    """The ``stream_out`` response: status ``0`` + counts + entries; ``1`` when not
    ``allowed`` or when the repository has secret changesets (a stream cannot hide
    them, §10); ``2`` when the store lock cannot be taken.
    """
    if not allowed or has_secret(repo):
        yield b"1\n"
        return
    try:
        snap = snapshot(repo, phases=False, obsolescence=False, caches=False)
    except LockError:
        yield b"2\n"
        return
    with snap:
        store = [e for e in snap.entries if e.source == b"s"]
        yield b"0\n"
        yield b"%d %d\n" % (len(store), sum(e.size for e in store))
        yield from v1_entries(snap)


def generate_hgs1(repo: Repository) -> Iterator[bytes]:
    """A stream clone bundle file ``HGS1`` (uncompressed) of ``repo`` (§10.1)."""
    snap = snapshot(repo, phases=False, obsolescence=False, caches=False)
    with snap:
        store = [e for e in snap.entries if e.source == b"s"]
        reqs = b",".join(sorted(snap.requirements))
        yield b"HGS1UN"
        yield struct.pack(">QQ", len(store), sum(e.size for e in store))
        yield struct.pack(">H", len(reqs) + 1) + reqs + b"\0"
        yield from v1_entries(snap)


@dataclass
class StreamFile:
    """One file read from a stream: where it goes and a reader of exactly ``size`` bytes."""

    source: bytes
    name: bytes
    size: int
    chunks: Iterator[bytes]


def _limited(fh: Readable, size: int) -> Iterator[bytes]:
    left = size
    while left:
        data = fh.read(min(left, _COPY_CHUNK))
        if not data:
            raise BundleError(f"stream clone data truncated ({left} bytes missing)")
        left -= len(data)
        yield data


def _readline(fh: Readable, limit: int = 65536) -> bytes:
    out = bytearray()
    while True:
        c = fh.read(1)
        if not c:
            raise BundleError("stream clone header truncated")
        if c == b"\n":
            return bytes(out)
        out += c
        if len(out) > limit:
            raise BundleError("stream clone header line too long")


def read_v1_status(fh: Readable) -> tuple[int, int]:
    """Read the ``stream_out`` status and count lines: ``(filecount, bytecount)``.

    Status ``1`` (not allowed) and ``2`` (lock failure) raise :class:`AbortError`.
    """
    status = _readline(fh)
    if status == b"1":
        raise AbortError("operation forbidden by server (stream clone not allowed)")
    if status == b"2":
        raise AbortError("locking the remote repository failed")
    if status != b"0":
        raise BundleError(f"unexpected response from remote server: {status!r}")
    return _read_counts(fh)


def _read_counts(fh: Readable) -> tuple[int, int]:
    line = _readline(fh)
    try:
        files, size = (int(x) for x in line.split(b" ", 1))
    except ValueError:
        raise BundleError(f"unexpected response from remote server: {line!r}") from None
    if files < 0 or size < 0:
        raise BundleError(f"bad stream clone counts {line!r}")
    return files, size


def read_v1(fh: Readable, filecount: int) -> Iterator[StreamFile]:
    """The ``filecount`` entries of a v1 stream (names ``decodedir``-ed). Each file's
    chunks must be read before the next entry."""
    for _ in range(filecount):
        line = _readline(fh)
        if b"\0" not in line:
            raise BundleError(f"bad stream clone entry header {line[:80]!r}")
        name, size_s = line.split(b"\0", 1)
        try:
            size = int(size_s)
        except ValueError:
            raise BundleError(f"bad stream clone entry size {size_s!r}") from None
        if size < 0:
            raise BundleError(f"bad stream clone entry size {size}")
        f = StreamFile(b"s", decodedir(name), size, _limited(fh, size))
        yield f
        for _ in f.chunks:
            pass


def read_hgs1_header(fh: Readable, magic_read: bool = False) -> tuple[int, int, frozenset[bytes]]:
    """Header of an ``HGS1`` bundle: ``(filecount, bytecount, requirements)``."""
    if not magic_read and readexactly(fh, 4) != b"HGS1":
        raise BundleError("not a stream clone bundle (HGS1)")
    comp = readexactly(fh, 2)
    if comp != b"UN":
        raise BundleError(f"unknown stream clone bundle compression {comp!r}")
    filecount, bytecount = struct.unpack(">QQ", readexactly(fh, 16))
    (size,) = struct.unpack(">H", readexactly(fh, 2))
    raw = readexactly(fh, size)
    if not raw.endswith(b"\0"):
        raise BundleError("malformed stream clone bundle requirements")
    reqs = frozenset(r for r in raw[:-1].split(b",") if r)
    return filecount, bytecount, reqs


# ---------------------------------------------------------------------------------------
# Stream v2 (§10.2)


def uvarint(value: int) -> bytes:
    """Unsigned LEB128."""
    if value < 0:
        raise ValueError("uvarint of a negative number")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_uvarint(fh: Readable) -> int:
    result = shift = 0
    while True:
        b = readexactly(fh, 1)[0]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise BundleError("uvarint too long in stream clone data")


def v2_chunks(snap: StoreSnapshot) -> Iterator[bytes]:
    """The payload of a ``stream2`` part for ``snap``."""
    for e in snap.entries:
        yield e.source + uvarint(len(e.name)) + uvarint(e.size) + e.name
        yield from snap.filechunks(e)


def stream2_part(repo: Repository, *, phases: bool = False, caches: bool = True) -> Part:
    """A ``stream2`` part for ``repo`` (snapshot taken now; dropped once sent)."""
    snap = snapshot(repo, phases=phases, caches=caches)

    def payload() -> Iterator[bytes]:
        with snap:
            yield from v2_chunks(snap)

    reqs = urlquote(b",".join(sorted(snap.requirements)))
    return Part(
        b"stream2",
        [
            (b"bytecount", b"%d" % snap.bytecount),
            (b"filecount", b"%d" % snap.filecount),
            (b"requirements", reqs),
        ],
        data=payload(),
    )


def stream2_requirements(value: bytes) -> frozenset[bytes]:
    """The ``requirements`` parameter of a ``stream2`` part as a set."""
    return frozenset(r for r in urlunquote(value).split(b",") if r)


def read_v2(fh: Readable, filecount: int) -> Iterator[StreamFile]:
    """The ``filecount`` entries of a v2 payload. Each file's chunks must be read
    before the next entry."""
    for _ in range(filecount):
        source = readexactly(fh, 1)
        if source not in (b"s", b"c"):
            raise BundleError(f"unknown stream clone file source {source!r}")
        namelen = read_uvarint(fh)
        size = read_uvarint(fh)
        if namelen > 4096:
            raise BundleError(f"stream clone file name too long ({namelen})")
        name = readexactly(fh, namelen)
        f = StreamFile(source, name, size, _limited(fh, size))
        yield f
        for _ in f.chunks:
            pass


# ---------------------------------------------------------------------------------------
# Applying a stream to an empty repository


def _check_name(name: bytes) -> None:
    parts = name.split(b"/")
    if not name or name.startswith(b"/") or b".." in parts or b"" in parts or b"\0" in name:
        raise BundleError(f"refusing stream clone file name {name!r}")


def apply_files(
    repo: Repository,
    files: Iterable[StreamFile],
    requirements: Iterable[bytes] | None = None,
    tr: Transaction | None = None,
) -> tuple[int, int]:
    """Write streamed files into the empty ``repo`` in one transaction (``tr`` or its own).

    ``requirements`` (when known) must be supported by ``repo``'s format: a receiver
    must have exactly the streamed format. Returns ``(files, bytes)`` written.
    """
    if requirements is not None:
        missing = set(streamed_requirements(requirements)) - set(repo.requirements)
        if missing:
            raise AbortError(
                "unable to apply stream clone: unsupported format "
                + ", ".join(sorted(r.decode() for r in missing))
            )
    if len(repo):
        raise AbortError("cannot apply a stream clone to a non-empty repository")
    if tr is None:
        with repo.transaction(b"clone") as own:
            counts = apply_files(repo, files, None, own)
        repo.invalidate()
        return counts
    nfiles = nbytes = 0
    for f in files:
        _check_name(f.name)
        if f.source == b"c":
            vfs = repo.cachevfs
            with vfs(f.name, "wb") as out:
                for data in f.chunks:
                    out.write(data)
                    nbytes += len(data)
        else:
            tr.add(f.name, repo.svfs.size(f.name))
            with repo.svfs(f.name, "wb") as out:
                for data in f.chunks:
                    out.write(data)
                    nbytes += len(data)
        nfiles += 1
    return nfiles, nbytes
