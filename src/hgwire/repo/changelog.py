"""The changelog: one revision per changeset (spec §4.1).

Rawtext: ``hex(manifest)\\nuser\\ntime tz[ extra]\\nfile...\\n\\ndescription``. The
changelog never stores deltas and is created non-inline (as Mercurial 7.2 does; 6.0 reads
it), see §2.2 and §3.4.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Any

from hgwire.errors import RepositoryError
from hgwire.repo.revlog import Revlog, Transaction, nullid
from hgwire.repo.vfs import VFS

_RESERVED_BRANCHES = frozenset({b".", b"null", b"tip"})


def encodeextra(extra: dict[bytes, bytes]) -> bytes:
    """``key:value`` items, sorted by key, escaped and joined by ``\\0`` (§4.1)."""
    items = []
    for key in sorted(extra):
        item = key + b":" + extra[key]
        item = (
            item.replace(b"\\", b"\\\\")
            .replace(b"\n", b"\\n")
            .replace(b"\r", b"\\r")
            .replace(b"\0", b"\\0")
        )
        items.append(item)
    return b"\0".join(items)


def _unescape(item: bytes) -> bytes:
    if b"\\0" in item:
        # \0 means NUL, but not in \\0 (an escaped backslash followed by 0)
        item = item.replace(b"\\\\", b"\\\\\n").replace(b"\\0", b"\0").replace(b"\n", b"")
    result: Any = codecs.escape_decode(item)
    return bytes(result[0])


def decodeextra(text: bytes) -> dict[bytes, bytes]:
    extra: dict[bytes, bytes] = {}
    for item in text.split(b"\0"):
        if not item:
            continue
        try:
            decoded = _unescape(item)
        except ValueError:
            decoded = item
        key, _, value = decoded.partition(b":")
        extra[key] = value
    return extra


def stripdesc(desc: bytes) -> bytes:
    """Strip trailing whitespace of lines and surrounding blank lines (as Mercurial does)."""
    return b"\n".join(line.rstrip() for line in desc.splitlines()).strip(b"\n")


@dataclass
class ChangesetEntry:
    """A parsed changelog revision."""

    manifest: bytes
    user: bytes
    date: tuple[float, int]
    files: list[bytes]
    description: bytes
    extra: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def branch(self) -> bytes:
        return self.extra.get(b"branch") or b"default"

    @property
    def closed(self) -> bool:
        return b"close" in self.extra


def parse_changeset(text: bytes, where: str = "changelog") -> ChangesetEntry:
    """Parse a changelog rawtext; errors say ``where`` the text came from."""
    if not text:
        return ChangesetEntry(nullid, b"", (0.0, 0), [], b"", {})
    sep = text.find(b"\n\n")
    if sep < 0:
        raise RepositoryError(f"{where}: changeset text has no description separator")
    lines = text[:sep].split(b"\n")
    if len(lines) < 3:
        raise RepositoryError(f"{where}: changeset header has {len(lines)} lines, wants >= 3")
    try:
        manifest = bytes.fromhex(lines[0].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise RepositoryError(f"{where}: bad manifest node {lines[0]!r}") from None
    if len(manifest) != 20:
        raise RepositoryError(f"{where}: bad manifest node {lines[0]!r}")
    parts = lines[2].split(b" ", 2)
    try:
        when = float(parts[0])
    except ValueError:
        raise RepositoryError(f"{where}: bad date {lines[2]!r}") from None
    try:
        tz = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        tz = 0
    extra = decodeextra(parts[2]) if len(parts) > 2 else {}
    return ChangesetEntry(manifest, lines[1], (when, tz), lines[3:], text[sep + 2 :], extra)


def build_changeset(
    manifest: bytes,
    files: list[bytes],
    description: bytes,
    user: bytes,
    date: tuple[float, int],
    extra: dict[bytes, bytes] | None,
) -> bytes:
    """The rawtext for a changeset, validating what Mercurial validates (§4.1)."""
    user = user.strip()
    if not user:
        raise RepositoryError("empty username")
    if b"\n" in user:
        raise RepositoryError(f"username {user!r} contains a newline")
    extra = dict(extra or {})
    branch = extra.get(b"branch")
    if branch in (b"default", b""):
        del extra[b"branch"]
    elif branch in _RESERVED_BRANCHES:
        raise RepositoryError(f"the name {branch!r} is reserved")
    for f in files:
        if b"\n" in f or b"\r" in f:
            raise RepositoryError(f"file name {f!r} contains a newline or carriage return")
    when, tz = date
    dateline = b"%d %d" % (int(when), tz)
    if extra:
        dateline += b" " + encodeextra(extra)
    lines = [manifest.hex().encode("ascii"), user, dateline, *sorted(set(files)), b""]
    return b"\n".join(lines) + b"\n" + stripdesc(description)


_BRANCH_RE = re.compile(rb"(?:^|\0)branch:([^\0]*)")


class Changelog(Revlog):
    """``00changelog``: full-text revisions, non-generaldelta, created non-inline.

    Writes are delayed like Mercurial's (spec §7.3): within a transaction new index
    entries (and, for an inline changelog, their data) stay in memory and reach
    ``00changelog.i`` in one append when the transaction finalizes, after every filelog
    and manifest write. A concurrent reader never sees a changeset whose manifest or
    files are not written yet, nor one a failing transaction will roll back. The data
    of a split changelog is appended at once (readers ignore data past the index). An
    inline changelog is not split while entries are pending.
    """

    _storedeltas = False
    _may_inline = False

    def __init__(self, opener: VFS, *, compression: str = "zlib", **kwargs: Any) -> None:
        kwargs.pop("generaldelta", None)
        self._pending: bytearray | None = None  # index bytes not yet written
        super().__init__(
            opener, "00changelog", generaldelta=False, compression=compression, **kwargs
        )

    @property
    def delayed(self) -> bool:
        """Whether entries of the running transaction are still held in memory."""
        return self._pending is not None

    def _write_index(self, tr: Transaction, data: bytes) -> None:
        addfinalize = getattr(tr, "addfinalize", None)
        if addfinalize is None:  # a bare journal without finalizers: write at once
            super()._write_index(tr, data)
            return
        if self._pending is None:
            self._pending = bytearray()
            addfinalize(b"cl-delayed", self._finalize_pending)
            tr.addabort(b"cl-delayed", self._drop_pending)  # type: ignore[attr-defined]
        self._pending += data

    def _may_split(self) -> bool:
        return self._pending is None

    def _finalize_pending(self, tr: Any) -> None:
        """Make the transaction's changesets visible: one append to the index."""
        pending, self._pending = self._pending, None
        if pending:
            super()._write_index(tr, bytes(pending))

    def _drop_pending(self, tr: Any) -> None:
        self._pending = None

    def read(self, rev_or_node: int | bytes) -> ChangesetEntry:
        rev = self._revnode(rev_or_node)
        return parse_changeset(self.revision(rev), f"{self.indexfile} revision {rev}")

    def add(
        self,
        manifest: bytes,
        files: list[bytes],
        description: bytes,
        tr: Transaction,
        p1: bytes,
        p2: bytes,
        user: bytes,
        date: tuple[float, int],
        extra: dict[bytes, bytes] | None = None,
    ) -> bytes:
        """Append a changeset; its linkrev is its own rev. Returns the node."""
        text = build_changeset(manifest, files, description, user, date, extra)
        rev = self.addrevision(text, tr, len(self), p1, p2)
        return self.node(rev)

    def branchinfo(self, rev: int) -> tuple[bytes, bool]:
        """``(branch, closed)`` of ``rev`` without building a full entry."""
        text = self.revision(rev)
        # the date line is the third line; extras follow its second space
        i = text.find(b"\n")
        i = text.find(b"\n", i + 1)
        j = text.find(b"\n", i + 1)
        dateline = text[i + 1 : j]
        if dateline.count(b" ") < 2:
            return b"default", False
        extratext = dateline.split(b" ", 2)[2]
        if b"\\" in extratext:
            extra = decodeextra(extratext)
            return extra.get(b"branch") or b"default", b"close" in extra
        m = _BRANCH_RE.search(extratext)
        branch = m.group(1) if m and m.group(1) else b"default"
        closed = extratext.startswith(b"close:") or b"\0close:" in extratext
        return branch, closed
