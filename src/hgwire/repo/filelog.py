"""Filelogs: one revlog per tracked file, ``data/<path>`` (spec §4.3).

A revision's rawtext is the file content, preceded by a metadata block
``\\1\\n key: value\\n ... \\1\\n`` when the revision is a copy (``copy``/``copyrev``) or when
the content itself starts with ``\\1\\n`` (then the block is empty). The node hashes the
whole rawtext. A copy has parents ``(nullid, previous node of the destination or nullid)``.
"""

from __future__ import annotations

from typing import Any

from hgwire.errors import RepositoryError
from hgwire.repo.revlog import Revlog, Transaction, nullid
from hgwire.repo.vfs import VFS

META_MARKER = b"\x01\n"


def parsemeta(text: bytes) -> tuple[dict[bytes, bytes] | None, int]:
    """``(metadata or None, offset of the content)`` of a filelog rawtext."""
    if not text.startswith(META_MARKER):
        return None, 0
    end = text.find(META_MARKER, 2)
    if end < 0:
        raise RepositoryError("filelog metadata block is not terminated")
    meta: dict[bytes, bytes] = {}
    for line in text[2:end].split(b"\n"):
        if not line:
            continue
        key, sep, value = line.partition(b": ")
        if not sep:
            raise RepositoryError(f"bad filelog metadata line {line!r}")
        meta[key] = value
    return meta, end + 2


def packmeta(meta: dict[bytes, bytes], text: bytes) -> bytes:
    """``text`` preceded by a metadata block (keys sorted)."""
    for key, value in meta.items():
        if b"\n" in key or b"\n" in value or b": " in key:
            raise RepositoryError(f"bad filelog metadata {key!r}: {value!r}")
    block = b"".join(b"%s: %s\n" % (k, meta[k]) for k in sorted(meta))
    return META_MARKER + block + META_MARKER + text


def _surrogate(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


class Filelog(Revlog):
    """The revlog of one tracked file; ``path`` is the repository path in bytes."""

    def __init__(self, opener: VFS, path: bytes, **kwargs: Any) -> None:
        self.path = path
        super().__init__(opener, "data/" + _surrogate(path), **kwargs)

    def read(self, rev_or_node: int | bytes) -> bytes:
        """The file content (metadata stripped)."""
        text = self.revision(rev_or_node)
        if not text.startswith(META_MARKER):
            return text
        return text[parsemeta(text)[1] :]

    def readmeta(self, rev_or_node: int | bytes) -> dict[bytes, bytes]:
        return parsemeta(self.revision(rev_or_node))[0] or {}

    def renamed(self, rev_or_node: int | bytes) -> tuple[bytes, bytes] | None:
        """``(source path, source filenode)`` if this revision is a copy (§4.3)."""
        rev = self._revnode(rev_or_node)
        if self.parentrevs(rev)[0] != -1:
            return None
        meta = self.readmeta(rev)
        if b"copy" in meta and b"copyrev" in meta:
            try:
                return meta[b"copy"], bytes.fromhex(meta[b"copyrev"].decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                raise RepositoryError(
                    f"{self.indexfile}: bad copyrev {meta[b'copyrev']!r} in revision {rev}"
                ) from None
        return None

    def add(
        self,
        text: bytes,
        meta: dict[bytes, bytes] | None,
        tr: Transaction,
        link: int,
        p1: bytes,
        p2: bytes,
    ) -> bytes:
        """Store a file revision (escaping content that starts with ``\\1\\n``)."""
        if meta or text.startswith(META_MARKER):
            text = packmeta(meta or {}, text)
        return self.node(self.addrevision(text, tr, link, p1, p2))

    def size(self, rev: int) -> int:
        """Length of the content; copies report it without their metadata (§4.3)."""
        if self.renamed(rev):
            return len(self.read(rev))
        return self.rawsize(rev)

    def _incoming_parents(self, text: bytes, p1: bytes, p2: bytes) -> tuple[bytes, bytes]:
        """issue6528 (§4.3): Mercurial 5.8-5.9 sent some copies with parents swapped; like
        Mercurial since 5.9.1, store ``(null, p1)`` when the rawtext has a metadata block,
        p1 is set and p2 is null. The node does not depend on the order."""
        if p2 == nullid and p1 != nullid and text.startswith(META_MARKER):
            return nullid, p1
        return p1, p2

    def cmp(self, node: bytes, text: bytes) -> bool:
        """True if ``text`` differs from the content stored at ``node``."""
        return self.read(node) != text


__all__ = ["Filelog", "nullid", "packmeta", "parsemeta"]
