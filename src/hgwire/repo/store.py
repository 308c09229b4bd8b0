"""The store: path encoding of revlog file names, the fncache, and the encoded store vfs.

Working-tree paths become file names under ``.hg/store`` through the "hybrid" encoding
(spec §5.2): capitals and reserved bytes are escaped, Windows device names are defused,
and names longer than 120 bytes are replaced by a hashed ``dh/`` name. Because hashed
names cannot be decoded, ``store/fncache`` lists every ``data/``/``meta/`` revlog file by
its unencoded name (spec §5.5); it is updated within the writing transaction.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from hgwire.errors import RepositoryError
from hgwire.repo.vfs import VFS

if TYPE_CHECKING:
    from hgwire.repo.transaction import Transaction

MAXSTOREPATHLEN = 120
DIRPREFIXLEN = 8
MAXSHORTDIRSLEN = 8 * (DIRPREFIXLEN + 1) - 4

_RESERVED = frozenset(range(0x20)) | frozenset(range(0x7E, 0x100)) | frozenset(b'\\:*?"<>|')
_WINDOWS_DEVICES = (b"aux", b"con", b"prn", b"nul")
_WINDOWS_NUMBERED = (b"com", b"lpt")

# Per-byte output of the character encoding (spec §5.2 step 2) and of its "lowerencode"
# variant used by the hashed encoding (capitals only lowercased, "_" kept).
_FULL: tuple[bytes, ...] = tuple(
    b"~%02x" % c
    if c in _RESERVED
    else b"_" + bytes([c + 32])
    if 0x41 <= c <= 0x5A
    else b"__"
    if c == 0x5F
    else bytes([c])
    for c in range(256)
)
_LOWER: tuple[bytes, ...] = tuple(
    b"~%02x" % c if c in _RESERVED else bytes([c + 32]) if 0x41 <= c <= 0x5A else bytes([c])
    for c in range(256)
)
_NEEDS_FULL = re.compile(rb"[^a-z0-9/.\- !#$%&'()+,;=@\[\]^`{}]")

#: Revlog files that must be listed in the fncache (Mercurial's own pattern, spec §3.7).
FNCACHE_FILE = re.compile(rb"^(data|meta)/.*\.[id]\Z", re.DOTALL)


def encodedir(path: bytes) -> bytes:
    """Step 1: keep directories named like revlog files apart from them (spec §5.2)."""
    if b".hg/" not in path and b".i/" not in path and b".d/" not in path:
        return path
    return path.replace(b".hg/", b".hg.hg/").replace(b".i/", b".i.hg/").replace(b".d/", b".d.hg/")


def decodedir(path: bytes) -> bytes:
    """Inverse of :func:`encodedir`."""
    if b".hg/" not in path:
        return path
    return path.replace(b".d.hg/", b".d/").replace(b".i.hg/", b".i/").replace(b".hg.hg/", b".hg/")


_FULL_GET = _FULL.__getitem__
_LOWER_GET = _LOWER.__getitem__
_NEEDS_LOWER = re.compile(rb"[^a-z0-9/.\- !#$%&'()+,;=@\[\]^`{}_]")


def _charencode(path: bytes) -> bytes:
    """Step 2 (most paths need nothing: checked first with one regex scan)."""
    if not _NEEDS_FULL.search(path):
        return path
    return b"".join(map(_FULL_GET, path))


def _lowerencode(path: bytes) -> bytes:
    if not _NEEDS_LOWER.search(path):
        return path
    return b"".join(map(_LOWER_GET, path))


def encodefilename(path: bytes) -> bytes:
    """The reversible encoding of ``store`` repositories without fncache (spec §5)."""
    return _charencode(encodedir(path))


def decodefilename(path: bytes) -> bytes:
    """Inverse of :func:`encodefilename` (also decodes non-hashed fncache-store names)."""
    out = bytearray()
    i = 0
    n = len(path)
    while i < n:
        c = path[i]
        if c == 0x5F and i + 1 < n:  # "_x" -> "X", "__" -> "_"
            nxt = path[i + 1]
            out.append(0x5F if nxt == 0x5F else nxt - 32)
            i += 2
        elif c == 0x7E and i + 2 < n:
            out.append(int(path[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return decodedir(bytes(out))


_DEVICE_PREFIXES = frozenset(_WINDOWS_DEVICES + _WINDOWS_NUMBERED)


def _auxencode(parts: list[bytes], dotencode: bool) -> list[bytes]:
    """Step 3: defuse leading dots/spaces, Windows device names, trailing dots/spaces."""
    for i, part in enumerate(parts):
        if not part:
            continue
        changed = False
        if dotencode and part[0] in (0x2E, 0x20):
            part = b"~%02x" % part[0] + part[1:]
            changed = True
        elif part[:3] in _DEVICE_PREFIXES:
            dot = part.find(b".")
            stem_len = len(part) if dot == -1 else dot
            stem = part[:3]
            if (stem_len == 3 and stem in _WINDOWS_DEVICES) or (
                stem_len == 4 and 0x31 <= part[3] <= 0x39 and stem in _WINDOWS_NUMBERED
            ):
                part = part[:2] + b"~%02x" % part[2] + part[3:]
                changed = True
        if part[-1] in (0x2E, 0x20):
            part = part[:-1] + b"~%02x" % part[-1]
            changed = True
        if changed:
            parts[i] = part
    return parts


def _hashencode(path: bytes, dotencode: bool) -> bytes:
    """Step 5: the ``dh/`` name of an over-long path (``path`` is encodedir'd)."""
    digest = hashlib.sha1(path).hexdigest().encode("ascii")
    parts = _auxencode(_lowerencode(path[5:]).split(b"/"), dotencode)
    basename = parts[-1]
    _, ext = os.path.splitext(basename)
    dirs: list[bytes] = []
    used = 0
    for part in parts[:-1]:
        prefix = part[:DIRPREFIXLEN]
        if prefix[-1:] in (b".", b" "):
            prefix = prefix[:-1] + b"_"
        total = len(prefix) if not dirs else used + 1 + len(prefix)
        if total > MAXSHORTDIRSLEN:
            break
        dirs.append(prefix)
        used = total
    dirpart = b"/".join(dirs) + (b"/" if dirs else b"")
    result = b"dh/" + dirpart + digest + ext
    room = MAXSTOREPATHLEN - len(result)
    if room > 0:
        result = b"dh/" + dirpart + basename[:room] + digest + ext
    return result


# Encoded names, per dotencode flag: a server encodes the same paths request after request
# (a pure-Python fast path for plain names measured no faster than the full steps).
_ENCODED: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})
_ENCODED_MAX = 1 << 16  # entries per table; a full table starts over


def hybridencode(path: bytes, dotencode: bool) -> bytes:
    """The store file name of revlog file ``path`` in an fncache store (spec §5.2)."""
    table = _ENCODED[dotencode]
    result = table.get(path)
    if result is None:
        result = _hybridencode(path, dotencode)
        if len(table) >= _ENCODED_MAX:
            table.clear()
        table[path] = result
    return result


def _hybridencode(path: bytes, dotencode: bool) -> bytes:
    encoded_dirs = encodedir(path)
    if dotencode and len(path) > MAXSTOREPATHLEN:
        return _hashencode(encoded_dirs, True)
    result = b"/".join(_auxencode(_charencode(encoded_dirs).split(b"/"), dotencode))
    if len(result) > MAXSTOREPATHLEN:
        return _hashencode(encoded_dirs, dotencode)
    return result


def pathencode(path: bytes) -> bytes:
    """The default encoding (fncache + dotencode)."""
    return hybridencode(path, True)


def encoder_for(requirements: frozenset[bytes]) -> Callable[[bytes], bytes]:
    """The store-name encoder a repository with ``requirements`` uses (spec §5 table)."""
    if b"fncache" in requirements:
        dotencode = b"dotencode" in requirements
        return lambda p: hybridencode(p, dotencode)
    return encodefilename


def store_key(repo: object) -> str | None:
    """The store directory of ``repo`` (``repo.svfs.base``), naming it in process-wide
    caches of derived data; None when it has no store vfs."""
    base = getattr(getattr(repo, "svfs", None), "base", None)
    return None if base is None else str(base)


def fsbytes(path: str | bytes) -> bytes:
    """A store path as bytes (str paths come from ``os.fsdecode``-style decoding)."""
    return path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")


def fsstr(path: str | bytes) -> str:
    """A store path as str, losslessly (inverse of :func:`fsbytes`)."""
    return path if isinstance(path, str) else path.decode("utf-8", "surrogateescape")


class FnCache:
    """The set of ``data/``/``meta/`` revlog files, read lazily from ``store/fncache``.

    New names are collected in memory and written when the transaction finalizes:
    appended after a backup, like Mercurial (spec §5.5).
    """

    def __init__(self, vfs: VFS) -> None:
        self.vfs = vfs
        self._entries: set[bytes] | None = None
        self._added: dict[bytes, None] = {}

    def _load(self) -> set[bytes]:
        if self._entries is None:
            self._entries = self._parse(self.vfs.tryread("fncache"))
        return self._entries

    def _parse(self, data: bytes) -> set[bytes]:
        name = self.vfs.join("fncache")
        if data and not data.endswith(b"\n"):
            start = data.rfind(b"\n") + 1
            raise RepositoryError(f"{name}: does not end with a newline (offset {start})")
        entries: set[bytes] = set()
        offset = 0
        for line in data.split(b"\n")[:-1]:
            if not line:
                raise RepositoryError(f"{name}: empty entry at offset {offset}")
            entries.add(decodedir(line))
            offset += len(line) + 1
        return entries

    def invalidate(self) -> None:
        """Forget what was read (another writer may have changed the file)."""
        self._entries = None
        self._added = {}

    def add(self, path: bytes) -> None:
        if path not in self._load():
            self._added[path] = None

    def __contains__(self, path: bytes) -> bool:
        return path in self._added or path in self._load()

    def __iter__(self) -> Iterator[bytes]:
        return iter(sorted(self._load() | set(self._added)))

    def __len__(self) -> int:
        return len(self._load() | set(self._added))

    @property
    def pending(self) -> list[bytes]:
        """Names added since the last write."""
        return list(self._added)

    def write(self, tr: Transaction) -> None:
        """Append the new names, backing the file up in ``tr`` first (finalize step)."""
        if not self._added:
            return
        tr.addbackup("fncache")
        old = self.vfs.tryread("fncache")
        new = b"".join(encodedir(p) + b"\n" for p in self._added)
        self.vfs.atomic_write("fncache", old + new)
        self._load().update(self._added)
        self._added = {}


class StoreVFS(VFS):
    """The vfs of ``.hg/store``: encodes ``data/``/``meta/`` names and feeds the fncache.

    Paths may be given as ``str`` or ``bytes`` (unencoded, ``/``-separated); every other
    store file (``00changelog.i``, ``fncache``, ``journal``...) is used as named.
    """

    def __init__(
        self,
        base: str | os.PathLike[str],
        encode: Callable[[bytes], bytes] = pathencode,
        use_fncache: bool = True,
    ) -> None:
        super().__init__(base)
        self.encode = encode
        self.rawvfs = VFS(base)
        self.fncache: FnCache | None = FnCache(self.rawvfs) if use_fncache else None

    def encoded(self, path: str | bytes) -> str:
        """The on-disk name of ``path`` relative to the store."""
        raw = fsbytes(path)
        if raw.startswith((b"data/", b"meta/")):
            return fsstr(self.encode(raw))
        return fsstr(raw)

    def join(self, path: str | bytes) -> Path:
        return super().join(self.encoded(path)) if path else self.base

    def register_file(self, path: str | bytes) -> None:
        """Record a revlog file in the fncache (no-op for other files)."""
        raw = fsbytes(path)
        if self.fncache is not None and FNCACHE_FILE.match(raw):
            self.fncache.add(raw)

    def __call__(self, path: str | bytes, mode: str = "rb") -> IO[bytes]:
        if any(m in mode for m in "wax+"):
            self.register_file(path)
        return super().__call__(path, mode)

    def atomic_write(self, path: str | bytes, data: bytes) -> None:
        self.register_file(path)
        super().atomic_write(path, data)

    def revlog_files(self) -> Iterator[tuple[bytes, str, int]]:
        """Every existing store revlog file: (unencoded name, encoded name, size).

        ``data/``/``meta/`` files come from the fncache (spec §5.5), then the manifest
        and changelog files; stream clones and verification walk this list.
        """
        names: list[bytes] = list(self.fncache) if self.fncache is not None else []
        if self.fncache is None:
            for dirpath, _dirs, files in os.walk(self.base / "data"):
                rel = os.path.relpath(dirpath, self.base).replace(os.sep, "/")
                for f in files:
                    names.append(decodefilename(fsbytes(f"{rel}/{f}")))
        names.sort()
        for radix in (b"00manifest", b"00changelog"):
            names += [radix + b".i", radix + b".d"]
        for name in names:
            enc = self.encoded(name)
            try:
                size = os.stat(self.rawvfs.join(enc)).st_size
            except FileNotFoundError:
                continue
            yield name, enc, size
