"""Flat manifests: ``path\\0hex(filenode)flags\\n`` lines sorted by path (spec §4.2).

Manifest deltas must be line aligned (§3.3): Mercurial parses the inserted data of stored
manifest deltas as manifest lines. The delta writer here works on whole lines of the two sorted
texts (aligned by construction), and received deltas are stored as-is only when
they are aligned to their base; otherwise the revlog recomputes them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping
from itertools import accumulate
from typing import Any

from hgwire.errors import RepositoryError
from hgwire.repo import mdiff
from hgwire.repo.mdiff import HUNK
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


def manifest_lines(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """``(path, 40-byte hex file node)`` of each whole manifest line in ``data`` (a full
    text, or the inserted text of a line-aligned delta, §4.2/§3.3); None when ``data``
    is not a sequence of well-formed lines. Flags after the node are not returned."""
    if data and not data.endswith(b"\n"):
        return None
    out = []
    for line in data.split(b"\n"):
        if not line:
            continue
        path, sep, rest = line.partition(b"\0")
        if not sep or len(rest) < 40:
            return None
        out.append((path, rest[:40]))
    return out


def manifestdiff(old: bytes, new: bytes) -> bytes:
    """A line-aligned delta between two sorted manifest texts.

    Lines sort like their paths (``\0`` sorts below any path byte), so the removed and
    added lines (set differences, C speed) are placed with ``bisect`` on the old lines and
    grouped into hunks; only the changed lines are handled in Python.
    """
    a = old.split(b"\n")
    b = new.split(b"\n")
    if a[-1] or b[-1]:  # not newline-terminated: not manifests, use the generic diff
        return mdiff.textdiff(old, new)
    a.pop()
    b.pop()
    removed = set(a).difference(b)
    added = sorted(set(b).difference(a))
    # events: (index in a, 0 = remove a[index] / 1 = insert line before a[index])
    events = [(bisect_left(a, line), 0, line) for line in removed]
    events += [(bisect_left(a, line), 1, line) for line in added]
    if not events:
        return b""
    events.sort()
    # byte offset of line k = length of the k lines before it + their k newlines
    sizes = [0, *accumulate(map(len, a))]
    out: list[bytes] = []
    start = end = events[0][0]
    data: list[bytes] = []
    for index, kind, line in events:
        if index > end:  # a gap of unchanged lines: close the hunk
            payload = b"".join(data)
            out.append(HUNK.pack(sizes[start] + start, sizes[end] + end, len(payload)) + payload)
            start = end = index
            data = []
        if kind == 0:
            end = index + 1
        else:
            data.append(line + b"\n")
    payload = b"".join(data)
    out.append(HUNK.pack(sizes[start] + start, sizes[end] + end, len(payload)) + payload)
    return b"".join(out)


class ManifestRevlog(Revlog):
    """``00manifest``: flat manifests with line-aligned deltas."""

    def __init__(self, opener: VFS, **kwargs: Any) -> None:
        super().__init__(opener, "00manifest", **kwargs)

    def read(self, rev_or_node: int | bytes) -> Manifest:
        rev = self._revnode(rev_or_node)
        return Manifest.parse(self.revision(rev), f"{self.indexfile} revision {rev}")

    def _diff(self, old: bytes, new: bytes) -> bytes:
        return manifestdiff(old, new)

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
