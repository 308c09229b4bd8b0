"""Flat manifests: ``path\\0hex(filenode)flags\\n`` lines sorted by path (spec §4.2).

Manifest deltas must be line aligned (§3.3): Mercurial parses the inserted data of stored
manifest deltas as manifest lines. The delta writer here walks the two sorted texts line by
line (linear, aligned by construction), and received deltas are stored as-is only when
they are aligned to their base; otherwise the revlog recomputes them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any

from hgwire.errors import RepositoryError
from hgwire.repo import mdiff
from hgwire.repo.revlog import Revlog, Transaction
from hgwire.repo.vfs import VFS

_FLAGS = frozenset({b"", b"l", b"x", b"t"})
_HEX = frozenset(b"0123456789abcdef")


class Manifest(Mapping[bytes, tuple[bytes, bytes]]):
    """path -> (filenode, flags); iteration is in sorted path order."""

    def __init__(self, entries: dict[bytes, tuple[bytes, bytes]] | None = None) -> None:
        self._entries: dict[bytes, tuple[bytes, bytes]] = dict(entries or {})
        self._sorted: list[bytes] | None = None

    @classmethod
    def parse(cls, text: bytes, where: str = "manifest") -> Manifest:
        """Parse a manifest text strictly (sorted unique paths, 40 hex, final newline)."""
        entries: dict[bytes, tuple[bytes, bytes]] = {}
        if not text:
            return cls(entries)
        if not text.endswith(b"\n"):
            raise RepositoryError(f"{where}: manifest did not end in a newline")
        lines = text.split(b"\n")
        lines.pop()
        prev = b""
        offset = 0
        for line in lines:
            path, sep, rest = line.partition(b"\0")
            hexnode = rest[:40]
            flags = rest[40:]
            if (
                not sep
                or not path
                or len(hexnode) != 40
                or flags not in _FLAGS
                or not _HEX.issuperset(hexnode)
            ):
                raise RepositoryError(f"{where}: invalid manifest line at offset {offset}")
            if path <= prev and entries:
                raise RepositoryError(f"{where}: manifest lines not sorted at offset {offset}")
            entries[path] = (bytes.fromhex(hexnode.decode("ascii")), flags)
            prev = path
            offset += len(line) + 1
        m = cls(entries)
        m._sorted = list(entries)
        return m

    def __getitem__(self, path: bytes) -> tuple[bytes, bytes]:
        return self._entries[path]

    def __setitem__(self, path: bytes, value: tuple[bytes, bytes]) -> None:
        node, flags = value
        if len(node) != 20 or flags not in _FLAGS:
            raise ValueError(f"bad manifest entry for {path!r}: {value!r}")
        if b"\n" in path or b"\0" in path or b"\r" in path or not path:
            raise ValueError(f"bad manifest path {path!r}")
        if path not in self._entries:
            self._sorted = None
        self._entries[path] = (node, flags)

    def __delitem__(self, path: bytes) -> None:
        del self._entries[path]
        self._sorted = None

    def __iter__(self) -> Iterator[bytes]:
        if self._sorted is None:
            self._sorted = sorted(self._entries)
        return iter(self._sorted)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def copy(self) -> Manifest:
        m = Manifest(self._entries)
        m._sorted = self._sorted
        return m

    def flags(self, path: bytes) -> bytes:
        return self._entries[path][1]

    def text(self) -> bytes:
        """The canonical manifest text."""
        e = self._entries
        return b"".join(p + b"\0" + e[p][0].hex().encode("ascii") + e[p][1] + b"\n" for p in self)


def _key(line: bytes) -> bytes:
    return line[: line.index(b"\0")]


def manifestdiff(old: bytes, new: bytes) -> bytes:
    """A line-aligned delta between two sorted manifest texts, in one merge walk."""
    a = old.split(b"\n")
    b = new.split(b"\n")
    if a[-1] or b[-1]:  # not newline-terminated: not manifests, use the generic diff
        return mdiff.textdiff(old, new)
    a.pop()
    b.pop()
    out: list[bytes] = []
    i = j = 0
    na, nb = len(a), len(b)
    apos = 0
    hstart = -1
    hend = 0
    hdata: list[bytes] = []
    while i < na or j < nb:
        if i < na and j < nb and a[i] == b[j]:
            if hstart >= 0:
                data = b"".join(hdata)
                out.append(struct.pack(">lll", hstart, hend, len(data)) + data)
                hstart = -1
                hdata = []
            apos += len(a[i]) + 1
            i += 1
            j += 1
            continue
        if hstart < 0:
            hstart = hend = apos
        if j >= nb or (i < na and _key(a[i]) < _key(b[j])):
            apos += len(a[i]) + 1  # removed line
            i += 1
        elif i >= na or _key(b[j]) < _key(a[i]):
            hdata.append(b[j] + b"\n")  # added line
            j += 1
        else:  # same path, changed entry
            apos += len(a[i]) + 1
            hdata.append(b[j] + b"\n")
            i += 1
            j += 1
        hend = apos
    if hstart >= 0:
        data = b"".join(hdata)
        out.append(struct.pack(">lll", hstart, hend, len(data)) + data)
    return b"".join(out)


class ManifestRevlog(Revlog):
    """``00manifest``: flat manifests with line-aligned deltas."""

    def __init__(self, opener: VFS, **kwargs: Any) -> None:
        super().__init__(opener, "00manifest", **kwargs)

    def read(self, rev_or_node: int | bytes) -> Manifest:
        rev = self._revnode(rev_or_node)
        return Manifest.parse(self.revision(rev), f"{self.indexfile} revision {rev}")

    def _diff(self, old: bytes, new: bytes) -> bytes:
        try:
            return manifestdiff(old, new)
        except ValueError:  # a line without \0: not a manifest after all
            return mdiff.textdiff(old, new)

    def _delta_ok(self, base: int, delta: bytes) -> bool:
        return mdiff.is_line_aligned(self.rawdata(base), delta)

    def add(
        self,
        manifest: Manifest,
        tr: Transaction,
        link: int,
        p1: bytes,
        p2: bytes,
    ) -> bytes:
        """Store ``manifest`` (if new) and return its node."""
        return self.node(self.addrevision(manifest.text(), tr, link, p1, p2))
