"""Bookmarks: ``.hg/bookmarks`` (or ``.hg/store/bookmarks`` with ``bookmarksinstore``).

Storage spec §6.2: one ``<40 hex node> <name>\\n`` line per bookmark, sorted by name;
the name is everything after the first space. Like Mercurial, surrounding whitespace of a
line is stripped, malformed lines are skipped with a warning and bookmarks naming unknown
nodes are ignored. The active bookmark (``bookmarks.current``) belongs to a working
directory and is not handled here.

Writes go through a transaction: the file is backed up (location ``plain`` = ``.hg`` or
the store) and replaced atomically. Without ``bookmarksinstore`` Mercurial protects the
file with the working-directory lock (spec §7.1), so writers should hold ``wlock`` too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from hgwire.errors import LookupNodeError, RepositoryError

BOOKMARKS_IN_STORE = b"bookmarksinstore"
NULLID = b"\0" * 20
_RESERVED = (b"tip", b".", b"null")


class Transaction(Protocol):
    def addbackup(self, path: str, location: str = ...) -> None: ...


def parse(
    data: bytes, known: Callable[[bytes], bool], warn: Callable[[str], None] | None = None
) -> dict[bytes, bytes]:
    """Bookmark name -> node from the file's bytes; ``known(node)`` filters unknown nodes."""
    marks: dict[bytes, bytes] = {}
    offset = 0
    for raw in data.splitlines(keepends=True):
        line = raw.strip()
        here = offset
        offset += len(raw)
        if not line:
            continue
        sha, sep, name = line.partition(b" ")
        try:
            if not sep or len(sha) != 40:
                raise ValueError
            node = bytes.fromhex(sha.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            if warn is not None:
                warn(f"malformed line in bookmarks at offset {here}: {raw!r}")
            continue
        if known(node):
            marks[name] = node
    return marks


def serialize(marks: Mapping[bytes, bytes]) -> bytes:
    """The file content: one line per bookmark, sorted by name."""
    out = []
    for name in sorted(marks):
        check_storable(name)
        out.append(b"%s %s\n" % (marks[name].hex().encode(), name))
    return b"".join(out)


def check_storable(name: bytes) -> None:
    """Refuse names the file format cannot hold."""
    if not name or name != name.strip() or any(c in name for c in b"\n\r\0"):
        raise RepositoryError(f"bookmark name {name!r} cannot be stored")


def check_new_name(name: bytes) -> None:
    """Mercurial's rules for a new label: not reserved, no ``:``, not a number."""
    check_storable(name)
    if name in _RESERVED:
        raise RepositoryError(f"the name {name.decode(errors='replace')!r} is reserved")
    if b":" in name:
        raise RepositoryError("':' cannot be used in a bookmark name")
    try:
        int(name)
    except ValueError:
        return
    raise RepositoryError("cannot use an integer as a bookmark name")


def location(requirements: frozenset[bytes] | set[bytes]) -> tuple[str, str]:
    """``(transaction location, file name)``: ``("plain", "bookmarks")`` for
    ``.hg/bookmarks``, ``("", "bookmarks")`` (the store) with ``bookmarksinstore``."""
    return ("", "bookmarks") if BOOKMARKS_IN_STORE in requirements else ("plain", "bookmarks")


class Bookmarks:
    """The bookmarks of a repository: a mutable mapping name -> node, written on demand."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo
        self.in_store = BOOKMARKS_IN_STORE in repo.requirements
        self.vfs = repo.svfs if self.in_store else repo.vfs
        cl = repo.changelog
        self.warnings: list[str] = []

        def known(node: bytes) -> bool:
            if node == NULLID:
                return False
            try:
                cl.rev(node)
            except LookupNodeError:
                return False
            return True

        self._known = known
        self._marks = parse(self.vfs.tryread("bookmarks"), known, self.warnings.append)
        self.dirty = False

    def __getitem__(self, name: bytes) -> bytes:
        return self._marks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._marks

    def __iter__(self) -> Iterator[bytes]:
        return iter(sorted(self._marks))

    def __len__(self) -> int:
        return len(self._marks)

    def get(self, name: bytes) -> bytes | None:
        return self._marks.get(name)

    def items(self) -> list[tuple[bytes, bytes]]:
        return sorted(self._marks.items())

    def names_for(self, node: bytes) -> list[bytes]:
        """Bookmarks pointing at ``node``, sorted."""
        return sorted(n for n, v in self._marks.items() if v == node)

    def set(self, name: bytes, node: bytes) -> None:
        check_storable(name)
        if not self._known(node):
            raise LookupNodeError(node, "changelog")
        if self._marks.get(name) != node:
            self._marks[name] = node
            self.dirty = True

    def delete(self, name: bytes) -> None:
        if self._marks.pop(name, None) is not None:
            self.dirty = True

    def listkeys(self, visible: Callable[[bytes], bool] | None = None) -> dict[bytes, bytes]:
        """The ``bookmarks`` pushkey namespace: name -> hex node, optionally only for
        nodes a server exposes (``visible``)."""
        return {
            name: node.hex().encode()
            for name, node in sorted(self._marks.items())
            if visible is None or visible(node)
        }

    def pushkey(self, name: bytes, old: bytes, new: bytes) -> bool:
        """Apply a ``pushkey bookmarks`` update: ``old``/``new`` are hex nodes, empty for
        "absent"; fails (False) when the current value is not ``old`` or ``new`` is
        unknown. The caller writes the change inside its transaction."""
        current = self._marks.get(name)
        if (current.hex().encode() if current is not None else b"") != old:
            return False
        if not new:
            if current is None:
                return False
            self.delete(name)
            return True
        try:
            node = bytes.fromhex(new.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            return False
        if len(node) != 20 or not self._known(node):
            return False
        self.set(name, node)
        return True

    def write(self, tr: Transaction) -> None:
        """Replace the bookmarks file inside ``tr`` (backed up first) if it changed."""
        if not self.dirty:
            return
        loc, name = location(self.repo.requirements)
        tr.addbackup(name, location=loc)
        self.vfs.atomic_write(name, serialize(self._marks))
        self.dirty = False
